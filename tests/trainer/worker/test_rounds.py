"""The session's pieces without I/O: the queue's size from the pace, Algorithm 1 in rounds,
the outstanding queries, answer-to-gradient waits; and the link's post/withdraw/rebuild
against the in-memory service."""

import pytest
import torch

from trainer.config import Selection, TrainConfig
from trainer.constants import Group
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Asking, Batch, Forward
from trainer.loop.step import ask as step_ask
from trainer.loop.stepstats import StepStats
from trainer.selection.policy import make_policy
from trainer.selection.sampling import ActiveSampler, AlgorithmOneState
from trainer.selection.views import BudgetView, QueryWindow
from trainer.worker.link import ServiceLink
from trainer.worker.rounds import (
    Freshness,
    Outstanding,
    Picker,
    SessionOptions,
    queue_target,
    round_budget,
    round_maps,
    round_size,
)
from trainer.worker.simulated import MemoryService

OPTS = SessionOptions(queue_minutes=2, queue_floor=10, queue_ceiling=100, min_round=5)


def test_the_queue_holds_n_minutes_of_work_within_floor_and_ceiling() -> None:
    assert queue_target({"answers_per_minute": 0}, OPTS) == 10  # no rate yet: the floor
    assert queue_target({"answers_per_minute": 3}, OPTS) == 10  # 6 < floor
    assert queue_target({"answers_per_minute": 30}, OPTS) == 60  # 2 min x 30/min
    assert queue_target({"answers_per_minute": 900}, OPTS) == 100  # the ceiling
    pace = {"answers_per_minute": 30, "pending": 52, "budget_left": 500}
    assert round_size(pace, OPTS) == 8
    assert round_size({**pace, "pending": 57}, OPTS) == 0  # 3 < min_round: wait
    assert round_size({**pace, "pending": 57, "budget_left": 3}, OPTS) == 3  # the last pixels
    assert round_size({**pace, "pending": 0, "budget_left": 20}, OPTS) == 20
    with pytest.raises(ValueError, match="queue_floor"):
        SessionOptions(queue_floor=50, queue_ceiling=10)


def select_round(
    score: torch.Tensor,
    unasked: torch.Tensor,
    sampler: ActiveSampler,
    expected: int,
    spent: dict[str, int],
    quota: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, str]:
    """A round of Algorithm 1 as the session picks it (no pass ends)."""
    maps = round_maps(score, torch.ones(1), sampler, unasked)
    return sampler.select(maps, round_budget(expected, spent, quota, False), gen)


def _groups_score() -> tuple[torch.Tensor, ActiveSampler]:
    """Scores of 2 images 4x5: 8 pixels over pi_high, 10 under pi_low, 22 between."""
    score = torch.full((2, 4, 5), 0.5)
    score[0, :2] = 0.9
    score[0, 1, 3:] = 0.5
    score[1, 2:] = 0.01
    return score, ActiveSampler(AlgorithmOneState(pi_high=0.8, pi_low=0.1))


def test_a_round_follows_algorithm_one_phases_by_the_budget_spent() -> None:
    score, sampler = _groups_score()
    gen = torch.Generator().manual_seed(0)
    unasked = torch.ones(2, 4, 5, dtype=torch.bool)
    mask, phase = select_round(score, unasked, sampler, 100, {}, 30, gen)
    assert phase == "high" and int(mask.sum()) == 4  # half of G_h (footnote 3)
    assert bool((score[mask] > 0.8).all())
    mask, _ = select_round(score, unasked, sampler, 100, {}, 3, gen)
    assert int(mask.sum()) == 3  # capped at the round
    mask, _ = select_round(score, unasked, sampler, 100, {"high": 48}, 30, gen)
    assert int(mask.sum()) == 2  # capped at M_e // 2 - spent high
    mask, phase = select_round(score, unasked, sampler, 100, {"high": 50}, 25, gen)
    groups = torch.where(score > 0.8, Group.HIGH, torch.where(score < 0.1, Group.LOW, 1))
    assert phase == "medium" and int(mask.sum()) == 25  # all 22 of G_m, 3 more from G_h
    assert int((groups[mask] == Group.HIGH).sum()) == 3
    assert not bool((groups[mask] == Group.LOW).any())
    mask, phase = select_round(score, unasked, sampler, 100, {"high": 50, "medium": 45}, 30, gen)
    assert phase == "medium" and int(mask.sum()) == 5  # the budget left
    _, phase = select_round(score, unasked, sampler, 100, {"high": 50, "medium": 50}, 30, gen)
    assert phase == "done"
    sure = score * 0.01 + torch.arange(40.0).view(2, 4, 5) * 1e-4  # every pixel in G_l now
    mask, phase = select_round(sure, unasked, sampler, 100, {"high": 50}, 6, gen)
    assert phase == "medium" and int(mask.sum()) == 6  # the budget goes to the least sure
    assert float(sure[mask].min()) >= float(sure[~mask].max())


SPENT = [{}, {"high": 48}, {"high": 50}, {"high": 50, "medium": 45}, {"random": 97}]


@pytest.mark.parametrize("selection", [s.value for s in Selection])
@pytest.mark.parametrize("spent", SPENT)
def test_session_and_benchmark_mode_ask_for_the_same_pixels(selection, spent) -> None:
    """The same scores, bank and budget view: the benchmark loop's asking half
    (``trainer.loop.step.ask``, at the window's last iteration) and a session's round
    (``round_maps`` / ``round_budget``, capped at the window's high cap) call the same policy
    and ask for the same pixels, and leave the thresholds equal (a pass ends in both). The
    catch-up decay is off: it answers a window's deadline, which a session does not have."""
    score, _ = _groups_score()
    prob = torch.softmax(torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)), 1)
    cfg = TrainConfig(selection=selection, ripu_radius_k=0.0, cap_radius_k=0.0)
    window = QueryWindow(100, query_until=1, high_until=1, pass_length=1, high_cap=40)
    picks, thresholds = [], []
    for mode in ("benchmark", "session"):
        bank = LabelBank(2, 4, 5)
        bank.mark_asked(torch.tensor([0, 1]), torch.tensor([0, 3]), torch.tensor([0, 4]))
        asked = bank.batch(torch.arange(2))[2]
        sampler = ActiveSampler(AlgorithmOneState(pi_high=0.8, pi_low=0.1), catch_up=False)
        policy, gen = make_policy(cfg, sampler), torch.Generator().manual_seed(7)
        maps = round_maps(score, prob, sampler, ~asked)
        if mode == "benchmark":
            fwd = Forward(None, None, None, score, maps.groups, prob, None, 0)
            batch = Batch(torch.zeros(0, 3, 4, 5), None, None, torch.arange(2))
            view = BudgetView.at(window, 0, spent)
            ask = lambda i, y, x, g, s: torch.zeros_like(i)  # noqa: E731
            mask = step_ask(fwd, batch, bank, Asking(policy, view, ask), gen, StepStats())
        else:
            mask = policy.select(maps, round_budget(100, spent, 40, True), gen).mask
        picks.append(mask)
        thresholds.append(vars(sampler.state))
    assert torch.equal(picks[0], picks[1]) and thresholds[0] == thresholds[1]
    assert selection in ("none", "all") or bool(picks[0].any()) == (sum(spent.values()) < 100)


def test_outstanding_queries_go_stale_unless_seen_claimed() -> None:
    out = Outstanding()
    out.add(1, 0, 2, 3, now=0.0)
    out.add(2, 1, 0, 0, now=100.0)
    assert out.stale(1.0, now=90.0) == [1] and out.rows() == [0, 1]
    out.touch([1], now=90.0)
    assert out.stale(1.0, now=120.0) == []
    assert [q.row for q in out.drop([2, 9])] == [1] and len(out) == 1


def test_outstanding_queries_the_model_is_sure_of_are_those_under_the_quantile() -> None:
    out = Outstanding()
    out.add(1, 0, 0, 0)  # score 0.0: the surest pixel of row 0
    out.add(2, 0, 1, 1)  # score 3.0
    out.add(3, 2, 1, 0)  # score 0.5 in row 2
    scores = {0: torch.tensor([[0.0, 1.0], [2.0, 3.0]]), 2: torch.tensor([[4.0, 5.0], [0.5, 6.0]])}
    seen = []

    def score_rows(rows: list[int]) -> torch.Tensor:
        seen.append(rows)
        return torch.stack([scores[r] for r in rows])

    # the 0.25-quantile of the 8 scores {0, .5, 1, 2, 3, 4, 5, 6} is 0.875
    assert out.sure(score_rows, 0.25) == {1, 3} and seen == [[0, 2]]
    assert Outstanding().sure(score_rows, 0.25) == set() and len(seen) == 1


def test_freshness_trains_the_longest_waiting_first_and_measures_the_wait() -> None:
    fresh = Freshness()
    fresh.add(3, (4, 0, 0), 10.0)
    fresh.add(1, (2, 0, 0), 12.0)
    fresh.add(3, (4, 1, 1), 13.0)
    assert fresh.next_rows(1) == [3] and fresh.next_rows(5) == [3, 1]
    fresh.stepped([3], now=14.0)
    assert fresh.next_rows(5) == [1] and fresh.waits == [4.0, 1.0]
    fresh.stepped([1, 1], now=13.0)
    summary = fresh.summary()
    assert summary["answers_trained"] == 3 and summary["median_s"] == 1.0
    assert summary["max_s"] == 4.0 and len(fresh.trained) == 3 and not fresh.fresh


def test_picker_passes_and_fresh_rows_first() -> None:
    picker = Picker(5, torch.Generator().manual_seed(0))
    chunks = list(picker.pick_rows(2))
    assert [len(c) for c in chunks] == [2, 2, 1] and sorted(sum(chunks, [])) == list(range(5))
    assert picker.wrapped
    rows = picker.train_rows([4, 4], 3)
    assert rows[0] == 4 and len(set(rows)) == 3


def _service() -> tuple[MemoryService, ServiceLink]:
    svc = MemoryService()
    svc.create_run(budget_rate=0.5, target_pixels=40)
    svc.register_images(1, [("a", None), ("b", None)])
    return svc, ServiceLink(svc, 1, ["a", "b"], "human")


def test_withdrawn_pixels_are_released_and_may_be_asked_again() -> None:
    svc, link = _service()
    ids = link.post([0, 0, 1], [0, 1, 2], [0, 1, 3], "high", [0.9, 0.8, 0.7])
    assert sorted(ids.values()) == [(1, 0, 0), (1, 1, 1), (2, 2, 3)]
    (leased,) = svc.claim("p", 1)
    withdrawn, kept = link.withdraw(list(ids))
    assert len(withdrawn) == 2 and kept == {leased["id"]: "leased"}
    assert svc.budget(1)["reserved"] == 1  # the withdrawn reservations are released
    with pytest.raises(Exception, match="not_withdrawable"):
        svc.withdraw(1, [leased["id"]])
    assert link.withdraw([leased["id"]]) == ([], {leased["id"]: "unknown"})
    again = link.post([0], [1], [1], "medium", [0.5])  # withdrawn: never answered
    assert list(again.values()) == [(1, 1, 1)]


def test_rebuild_marks_standing_queries_only_and_merges_every_answer() -> None:
    svc, link = _service()
    ids = link.post([0, 0, 1], [0, 1, 2], [0, 1, 3], "high", [0.9, 0.8, 0.7])
    first = min(ids)
    svc.claim("p", 1)
    svc.answer("p", first, 4)
    link.withdraw([i for i in ids if i != first])
    bank, seen = LabelBank(2, 4, 5), []
    standing = ServiceLink(svc, 1, ["a", "b"], "human").rebuild(bank, seen.extend)
    assert [q["id"] for q in standing] == [first] and [a["query_id"] for a in seen] == [first]
    assert bank.num_asked == 1 and bank.num_labeled == 1


def test_a_round_whose_response_was_lost_reads_its_ids_back() -> None:
    from client.api import DuplicatePixel

    svc, _ = _service()

    class Lossy(MemoryService):
        def post_queries(self, run_id, queries):  # noqa: ANN001
            MemoryService.post_queries(self, run_id, queries)
            error = DuplicatePixel("duplicate_pixel", "stored by the first try", 409)
            error.maybe_stored = True
            raise error

    lossy = Lossy(run=svc.run, images=svc.images)
    ids = ServiceLink(lossy, 1, ["a", "b"], "human").post([1], [2], [3], "high", [0.5])
    assert list(ids.values()) == [(2, 2, 3)] and list(ids) == list(lossy.queries)


@pytest.mark.parametrize(
    ("strategy", "group"), [("full", "high"), ("random", "random"), ("pixelpick", "entropy")]
)
def test_a_session_round_asks_with_the_configured_selection(
    strategy: str, group: str, tmp_path, monkeypatch
) -> None:
    """A session picks its rounds with the run's selection policy, as the benchmark loop does
    (before, every session asked by Algorithm 1 whatever its strategy)."""
    from trainer.data.folder import SplitTensors
    from trainer.loop.train import Data
    from trainer.nets.model import build_model
    from trainer.strategies import configure
    from trainer.worker.run import WorkerOptions
    from trainer.worker.session import Session

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=gen)
    split = SplitTensors(images, torch.zeros(4, 16, 16, dtype=torch.uint8), list("abcd"))
    data = Data(split, split, split, split, ["x", "y", "z"], [(0, 0, 0)] * 3)
    cfg = configure(TrainConfig(device="cpu", embed_dim=16), strategy)
    torch.manual_seed(0)
    model = build_model("small", 3, embed_dim=16)
    opts = WorkerOptions("mem", "t", "session", tmp_path)
    run = {"id": 1, "budget_total": 40}
    session = Session(cfg, opts, SessionOptions(round_images=4), data, model, "cpu", None, run)
    posted = []
    monkeypatch.setattr(session.link, "spent", lambda: {})  # nothing spent on the server yet
    keeper = session.keeper
    monkeypatch.setattr(
        keeper, "_post", lambda rows, mask, score, phase: posted.append(phase) or int(mask.sum())
    )
    assert keeper.post_round(6) == 6 and posted == [group]
    session.events.close()
