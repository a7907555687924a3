"""One adaptation step for every strategy on a tiny random batch: budget and bank invariants."""

import pytest
import torch

from trainer.config import TrainConfig
from trainer.labelbank import IGNORE, LabelBank
from trainer.model import build_model, param_groups
from trainer.step import Batch, adaptation_step
from trainer.strategies import STRATEGIES, configure
from trainer.train import GroundTruthOracle, local_spent, new_loop_state

H, W, C = 32, 48, 5


def _setup(strategy: str, budget_rate: float = 0.05, iterations: int = 6):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = configure(
        TrainConfig(iterations=iterations, embed_dim=16), strategy, budget_rate=budget_rate
    )
    model = build_model("small", C, embed_dim=16)
    opt = torch.optim.SGD(param_groups(model, 0.01, 1.0), lr=0.01)
    target = torch.randint(C, (4, H, W), generator=gen).to(torch.uint8)
    bank = LabelBank(4, H, W)
    state = new_loop_state(cfg, int(budget_rate * target.numel()), C)
    return cfg, model, opt, target, bank, state, gen


def _batch(target: torch.Tensor, it: int, gen: torch.Generator, supervised: bool) -> Batch:
    index = torch.tensor([(2 * it) % 4, (2 * it + 1) % 4])
    sy = torch.randint(C, (2, H, W), generator=gen)
    ty = target[index].long() if supervised else None
    return Batch(
        torch.randn(2, 3, H, W, generator=gen),
        sy,
        torch.randn(2, 3, H, W, generator=gen),
        index,
        ty,
    )


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "source-only"])
def test_step_respects_budget_and_never_asks_twice(strategy: str) -> None:
    cfg, model, opt, target, bank, state, gen = _setup(strategy)
    asked_log: list[tuple[int, int, int]] = []
    oracle = GroundTruthOracle(target)

    def ask(index, ys, xs, group, scores):
        asked_log.extend(zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True))
        return oracle(index, ys, xs, group, scores)

    for it in range(cfg.iterations):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, strategy == "supervised"),
            bank,
            state,
            cfg,
            it,
            ask,
            local_spent(bank),
            gen,
        )
        assert torch.isfinite(torch.tensor(stats.loss))
        assert bank.num_labeled <= state.expected
    assert len(asked_log) == len(set(asked_log))  # no pixel asked twice
    labels = bank.batch(torch.arange(bank.shape[0]))[0]
    labeled = labels != IGNORE
    assert bank.num_labeled == len(asked_log) == int(labeled.sum())
    if strategy == "supervised":
        assert not asked_log
    else:  # the whole budget is spent within the query window
        assert bank.num_labeled == state.expected
        idx, ys, xs = labeled.nonzero(as_tuple=True)
        assert torch.equal(labels[idx, ys, xs], target[idx, ys, xs].long())


def test_algorithm_one_spends_high_then_medium() -> None:
    cfg, model, opt, target, bank, state, gen = _setup("al-as", budget_rate=0.1, iterations=8)
    oracle = GroundTruthOracle(target)
    phases = []
    for it in range(cfg.iterations):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, False),
            bank,
            state,
            cfg,
            it,
            oracle,
            local_spent(bank),
            gen,
        )
        phases.append(stats.phase)
    counts = bank.counts()
    assert counts["high"] + counts["medium"] == state.expected
    assert counts["high"] <= state.expected // 2
    first_medium = phases.index("medium")
    assert "high" not in phases[first_medium:]


def test_full_strategy_updates_dccm_and_reports_contrast_losses() -> None:
    cfg, model, opt, target, bank, state, gen = _setup("full")
    oracle = GroundTruthOracle(target)
    stats = None
    for it in range(3):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, False),
            bank,
            state,
            cfg,
            it,
            oracle,
            local_spent(bank),
            gen,
        )
    assert state.dccm.abs().sum() > 0
    assert torch.all(state.dccm.diagonal() == 0)
    assert {"p2p_intra", "p2p_cross_image", "p2p_cross_domain", "c2c_intra"} <= set(stats.parts)


def test_batched_gather_matches_per_image_grid_sample() -> None:
    from trainer.step import gather_batch_embeddings, gather_embeddings

    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(3, 8, 8, 12, generator=g), dim=1)
    image = torch.randint(0, 3, (400,), generator=g).sort().values
    ys, xs = torch.randint(0, H, (400,), generator=g), torch.randint(0, W, (400,), generator=g)
    got = torch.nn.functional.normalize(gather_batch_embeddings(emb, image, ys, xs, (H, W)), dim=1)
    want = torch.cat(
        [gather_embeddings(emb[i], ys[image == i], xs[image == i], (H, W)) for i in range(3)]
    )
    assert torch.allclose(got, want, atol=1e-5)


def test_build_pixel_sets_respects_caps_and_anchor_rules() -> None:
    from trainer.model import SegOutput
    from trainer.step import build_pixel_sets

    g = torch.Generator().manual_seed(1)
    cfg = TrainConfig(max_anchors_per_class=3, max_samples_per_class=5)
    src_y = torch.randint(C, (2, H, W), generator=g)
    src_y[:, :4] = IGNORE
    tgt_y = torch.full((2, H, W), IGNORE)
    tgt_y[:, ::4, ::4] = torch.randint(C, (2, H // 4, W // 4), generator=g)
    pred = torch.randint(C, (4, H, W), generator=g)
    low = torch.rand(2, H, W, generator=g) < 0.3
    src_low = torch.rand(2, H, W, generator=g) < 0.3
    out = SegOutput(
        torch.zeros(4, C, 8, 12),
        torch.zeros(4, C, 8, 12),
        torch.nn.functional.normalize(torch.randn(4, 16, 8, 12, generator=g), dim=1),
    )
    pix = build_pixel_sets(
        out,
        2,
        src_y,
        tgt_y,
        pred[2:],
        low,
        src_low,
        pred,
        (H, W),
        C,
        cfg,
        torch.Generator().manual_seed(0),
    )
    assert pix.domains == [0, 0, 1, 1] and pix.emb.shape == (pix.label.numel(), 16)
    assert (pix.label != IGNORE).all()
    for i in range(4):
        on = pix.image == i
        for c in range(C):
            cls = on & (pix.label == c)
            assert int((cls & pix.anchor).sum()) <= cfg.max_anchors_per_class
            assert int(cls.sum()) <= 2 * cfg.max_samples_per_class + cfg.max_anchors_per_class
    assert int((pix.anchor & (pix.image >= 2)).sum()) > 0  # misclassified labeled pixels
    assert int((pix.center & (pix.image >= 2)).sum()) > 0


def test_build_pixel_sets_takes_every_candidate_when_caps_do_not_bind() -> None:
    from trainer.model import SegOutput
    from trainer.step import build_pixel_sets

    g = torch.Generator().manual_seed(2)
    cfg = TrainConfig(max_anchors_per_class=10_000, max_samples_per_class=10_000)
    src_y = torch.randint(C, (2, H, W), generator=g)
    src_y[:, :3] = IGNORE
    tgt_y = torch.full((2, H, W), IGNORE)
    tgt_y[:, ::3, ::5] = torch.randint(C, tgt_y[:, ::3, ::5].shape, generator=g)
    pred = torch.randint(C, (4, H, W), generator=g)
    low = torch.rand(2, H, W, generator=g) < 0.3
    src_low = torch.rand(2, H, W, generator=g) < 0.3
    out = SegOutput(
        torch.zeros(4, C, 8, 12), torch.zeros(4, C, 8, 12), torch.randn(4, 16, 8, 12, generator=g)
    )
    pix = build_pixel_sets(
        out,
        2,
        src_y,
        tgt_y,
        pred[2:],
        low,
        src_low,
        pred,
        (H, W),
        C,
        cfg,
        torch.Generator().manual_seed(0),
    )
    labeled = tgt_y != IGNORE
    label = torch.cat([src_y, torch.where(labeled, tgt_y, torch.where(low, pred[2:], IGNORE))])
    valid = torch.cat([src_y != IGNORE, labeled])
    assert pix.label.numel() == int((label != IGNORE).sum())
    assert torch.equal(pix.label, label.flatten()[label.flatten() != IGNORE])
    wrong = (valid & (pred != label)).flatten()[label.flatten() != IGNORE]
    assert torch.equal(pix.anchor, wrong)
    center = torch.cat([src_low & (src_y != IGNORE), low & ~labeled]).flatten()
    assert torch.equal(pix.center, center[label.flatten() != IGNORE])
