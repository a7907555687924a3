"""The session's queue keeper against the in-memory service: a round tops the queue up to the
pace's shortfall, stale queries are withdrawn (their pixels free again) unless claimed, a
finished run stops the rounds, a pixel the server refuses as a duplicate is left out."""

import pytest
import torch

from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.loop.schedule import new_loop_state
from trainer.selection.policy import make_policy
from trainer.worker.link import ServiceLink
from trainer.worker.queue_keeper import QueueKeeper
from trainer.worker.rounds import Picker, SessionOptions
from trainer.worker.shared import Shared
from trainer.worker.simulated import MemoryService

PACE = SessionOptions(queue_floor=6, queue_ceiling=6, min_round=1, stale_minutes=0)


def _keeper(sopts: SessionOptions = PACE) -> tuple[MemoryService, QueueKeeper]:
    svc = MemoryService()
    svc.create_run(budget_rate=0.5, target_pixels=40)  # 2 images of 4 x 5: a budget of 20
    svc.register_images(1, [("a", None), ("b", None)])
    cfg, expected = TrainConfig(), int(svc.run["budget_total"])
    state = new_loop_state(cfg, expected, 2, 2)
    picker, draws = Picker(2, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)
    shared = Shared(1, expected, LabelBank(2, 4, 5), state, picker, draws)
    scores = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(2))
    prob = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(3)).softmax(1)
    link = ServiceLink(svc, 1, ["a", "b"], "human")
    policy = make_policy(cfg, state.sampler)  # Algorithm 1, the default strategy's
    score = lambda rows: (scores[rows], prob[rows])  # noqa: E731
    return svc, QueueKeeper(link, sopts, cfg, shared, score, policy)


def test_a_round_posts_the_queues_shortfall_and_keeps_its_queries() -> None:
    svc, keeper = _keeper()
    posted = keeper.top_up()
    assert keeper.shared.state.calibrated  # the first images scored set the thresholds
    # Algorithm 1's high phase within the round's quota of 6: half of G_h, rounded up
    scores = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(2))
    n_high = int((scores > keeper.shared.state.sampler.state.pi_high).sum())
    assert n_high == 2 and posted is not None and posted["quota"] == 6
    assert posted["posted"] == min(6, -(-n_high // 2)) == 1
    n = posted["posted"]
    assert len(keeper.outstanding) == n == svc.budget(1)["reserved"] == keeper.shared.bank.num_asked
    assert keeper.counts["rounds"] == 1 and keeper.counts["posted"] == n
    pixels = {(q.row, q.y, q.x) for q in keeper.outstanding.queries.values()}
    assert len(pixels) == n  # one query per pixel
    (claimed,) = svc.claim("p", 1)
    svc.answer("p", claimed["id"], 3)
    keeper.link.sync(keeper.shared.bank, keeper.answered)
    assert len(keeper.outstanding) == n - 1 and claimed["id"] not in keeper.outstanding.queries


def test_stale_queries_are_withdrawn_and_their_pixels_freed_unless_claimed() -> None:
    svc, keeper = _keeper()
    n = keeper.top_up()["posted"]
    (leased,) = svc.claim("p", 1)
    withdrawn = keeper.withdraw(rescore=False)  # stale after 0 minutes: every pending one
    assert withdrawn == {"ids": withdrawn["ids"], "kept": 1, "rescore": False}
    assert len(withdrawn["ids"]) == n - 1 == keeper.counts["withdrawn"]
    assert list(keeper.outstanding.queries) == [leased["id"]]  # claimed: kept, its age reset
    assert keeper.shared.bank.num_asked == 1 and len(keeper.withdrawn_pixels) == n - 1
    assert svc.budget(1)["reserved"] == 1


def test_a_run_finished_by_an_admin_stops_the_rounds() -> None:
    svc, keeper = _keeper()
    svc.finish_run(1)
    posted = keeper.top_up()
    assert posted is not None and posted["posted"] == 0 and keeper.finished
    assert not keeper.outstanding.queries and keeper.shared.bank.num_asked == 0


def test_a_resumed_keeper_waits_for_the_standing_queries_only() -> None:
    svc, keeper = _keeper()
    keeper.top_up()
    first, *others = sorted(keeper.outstanding.queries)
    svc.claim("p", 1)
    svc.answer("p", first, 2)
    _, again = _keeper()
    again.link = ServiceLink(svc, 1, ["a", "b"], "human")
    again.restore(again.link.rebuild(again.shared.bank), {"rounds": 1, "posted": 4})
    assert sorted(again.outstanding.queries) == others
    assert again.counts == {"rounds": 1, "posted": 4, "withdrawn": 0, "max_pending": 0}


def test_a_round_the_server_refuses_as_duplicate_is_left_out_not_fatal() -> None:
    """A server that keeps withdrawn pixels unique (refuses to ask one again): the withdrawn
    pixels of the round are left out and the rest posted; a refusal of unknown cause drops the
    round, its pixels marked asked so that the next rounds pick others."""
    svc, keeper = _keeper()
    keeper.link.post([0, 0], [1, 3], [1, 3], "high", [0.9, 0.9])  # (0,3,3): a withdrawn one
    bank = keeper.shared.bank

    def post(*pixels: tuple[int, int]) -> int:
        mask = torch.zeros(1, 4, 5, dtype=torch.bool)
        for y, x in pixels:
            mask[0, y, x] = True
        return keeper._post([0], mask, torch.zeros(1, 4, 5), "high")

    assert post((1, 1), (2, 2)) == 0 and bank.num_asked == 2  # cause unknown: all out
    keeper.withdrawn_pixels = {(0, 3, 3)}
    assert post((3, 3), (0, 4)) == 1 and bank.num_asked == 4
    assert svc.budget(1)["reserved"] == 3 and list(keeper.outstanding.queries) == [3]


class _SecondsLink:
    """The budget's groups as the server reports them (all a seconds round reads first)."""

    def __init__(self, groups: dict) -> None:
        self._groups = groups

    def groups(self) -> dict:
        return self._groups


def test_a_seconds_budget_counts_the_answered_seconds_and_the_most_of_each_query_in_flight() -> (
    None
):
    from trainer.cost import CostModel

    _, keeper = _keeper()
    keeper.cfg = TrainConfig(query_kind="regions", budget_seconds_per_image=6.0)
    keeper.shared.costs, keeper.shared.budget_seconds = CostModel(), 12.0  # 2 images x 6 s
    keeper.outstanding.add(1, 0, 1, 1, None, "random", [(1, 1), (1, 2)])  # a region query
    keeper.outstanding.add(2, 1, 0, 0, None, "random")  # a pixel query
    keeper.outstanding.add(3, 1, 2, 2, None, "high", [(2, 2)])  # skipped: nothing reserved
    groups = {
        "random": {"reserved": 3, "answered": 40, "answered_seconds": 6.0},
        "high": {"reserved": 0, "answered": 0, "answered_seconds": 0.0},
    }
    keeper.link = _SecondsLink(groups)
    spent = keeper.spent()
    assert spent == {"random": pytest.approx(6.0 + 3.0 + 2.4), "high": 0.0}
    # 12 s buy 4 region clicks; 11.4 s spent or in flight round up to 4: nothing fits
    assert keeper.spent_out(spent)
    assert keeper.post_round(5) == 0 and keeper.exhausted  # the round ends the budget
    groups["random"]["reserved"] = 0  # the server holds nothing in flight: answered or skipped
    assert keeper.spent() == {"random": 6.0, "high": 0.0}
    assert not keeper.spent_out(keeper.spent())
    keeper.shared.costs = None  # a pixel budget: never spent out by seconds
    assert not keeper.spent_out({"random": 100.0})


def test_a_seconds_budget_counts_the_skips_seconds_the_server_reports() -> None:
    """A skip costs a person seconds (the in-process oracle charges 1.2 s): the server counts
    them in ``spent_seconds`` beside ``answered_seconds``, and the round spends that."""
    from trainer.cost import CostModel

    _, keeper = _keeper()
    keeper.cfg = TrainConfig(query_kind="pixels", budget_seconds_per_image=6.0)
    keeper.shared.costs, keeper.shared.budget_seconds = CostModel(), 12.0
    keeper.link = _SecondsLink(
        {
            "random": {
                "reserved": 0,
                "answered_seconds": 7.2,
                "skipped_seconds": 2.4,
                "spent_seconds": 9.6,
            },
            "high": {"reserved": 0, "answered_seconds": 0.0},  # an older server's group
        }
    )
    spent = keeper.spent()
    assert spent == {"random": pytest.approx(9.6), "high": 0.0}
    # 12 s buy 5 pixel clicks; 9.6 s spent leave 2.4 s: one more click fits, none after
    assert not keeper.spent_out(spent)
    assert keeper.spent_out({"random": 9.7})


def test_a_run_of_pixels_and_regions_alternates_its_rounds_and_posts_whole_regions() -> None:
    from trainer.cost import CostModel

    svc, keeper = _keeper()
    cfg = TrainConfig(query_kind="both", selection="random", budget_seconds_per_image=50.0)
    keeper.cfg, keeper.policy = cfg, make_policy(cfg, keeper.shared.state.sampler, 2)
    # each 4 x 5 image cut into 4 regions: columns 0-1 / 2-4 of rows 0-1 / 2-3
    quarter = torch.tensor([[0, 0, 1, 1, 1]] * 2 + [[2, 2, 3, 3, 3]] * 2, dtype=torch.int32)
    keeper.shared.regions = quarter.expand(2, 4, 5).clone()
    keeper.shared.costs, keeper.shared.budget_seconds = CostModel(), 100.0
    bank = keeper.shared.bank
    assert keeper.post_round(2) == 2  # selection 0: pixel queries
    assert all(q.cells is None for q in keeper.outstanding.queries.values())
    assert bank.num_asked == 2
    first = set(keeper.outstanding.queries)
    assert keeper.post_round(2) == 2  # selection 1: region queries, each a whole region
    regions = [q for i, q in keeper.outstanding.queries.items() if i not in first]
    assert len(regions) == 2 and all(q.cells for q in regions)
    for q in regions:
        ids = {int(keeper.shared.regions[q.row, y, x]) for y, x in q.cells}
        assert len(ids) == 1 and (q.y, q.x) == q.cells[0]  # one region, posted at its first pixel
        (rid,) = ids
        unasked_before = int((keeper.shared.regions[q.row] == rid).sum())
        assert len(q.cells) <= unasked_before
    assert bank.num_asked == 2 + sum(len(q.cells) for q in regions)
    assert len(svc.queries) == 4  # four queries on the wire: two pixels, two regions
