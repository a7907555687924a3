"""The deviation switches of docs/fidelity.md: each one on a hand-computable case, with our
setting (the default) and the paper's reading side by side."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX, Group
from trainer.learning.centres import center_units, every_pixel_sums
from trainer.learning.contrast import MCUSettings, PixelBatch, mcu_loss
from trainer.learning.dccm import dccm_step
from trainer.learning.pixel_sets import PixelSetInputs, build_pixel_sets, gather_batch_embeddings
from trainer.loop.learn import mcu_target_low
from trainer.loop.train import source_batch, source_indices
from trainer.selection.sampling import (
    ActiveSampler,
    AlgorithmOneState,
    pseudo_open,
    target_masks,
    target_pixel_bound,
)
from trainer.selection.uncertainty import partition


@pytest.mark.parametrize("freeze, row1", [(True, [0.4, 0.0]), (False, [0.36, 0.0])])
def test_dccm_row_of_an_absent_class(freeze: bool, row1: list[float]) -> None:
    """Eq. 8 with beta 0.9 on a batch of class 0 only (one of its two pixels taken for 1):
    row 0 moves to 0.9 x 0.2 + 0.1 x 0.5 = 0.23; row 1 (class 1 absent) keeps 0.4 (ours) or
    decays by beta to 0.36 (every element updated, as printed)."""
    w = torch.tensor([[0.0, 0.2], [0.4, 0.0]])
    new = dccm_step(w, torch.tensor([1, 0]), torch.tensor([0, 0]), 0.9, freeze)
    assert torch.allclose(new, torch.tensor([[0.0, 0.23], row1]))
    assert torch.equal(w, torch.tensor([[0.0, 0.2], [0.4, 0.0]]))  # not modified in place


def test_calibration_does_not_read_the_global_generator() -> None:
    """Over 100 000 scores the thresholds come from a subsample; it is drawn by a generator
    seeded with the run's seed, so torch's global state does not move them."""
    score = torch.rand(300_000, generator=torch.Generator().manual_seed(5))
    found = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        sampler = ActiveSampler()
        sampler.calibrate(score, 0.99, 0.5, seed=7)
        found.append((sampler.state.pi_high, sampler.state.pi_low))
    assert found[0] == found[1]
    other = ActiveSampler()
    other.calibrate(score, 0.99, 0.5, seed=8)
    assert (other.state.pi_high, other.state.pi_low) != found[0]  # the seed is what draws


@pytest.mark.parametrize("floor, expected", [(True, 0.45), (False, 0.4)])
def test_pi_high_floor(floor: bool, expected: float) -> None:
    """Algorithm 1 line 7 from pi_high 0.5 with r = 0.8: 0.4, below pi_low = 0.45; ours stops
    at pi_low, the paper's keeps decaying."""
    sampler = ActiveSampler(AlgorithmOneState(pi_high=0.5, pi_low=0.45, decay=0.8, floor=floor))
    assert sampler.end_epoch() == pytest.approx(expected)


def test_crossed_thresholds_give_g_h_precedence() -> None:
    """pi_high 0.4 under pi_low 0.45 (no floor): 0.42 is both above pi_high and below pi_low;
    it is in G_h, as line 7 lowers pi_high to grow G_h."""
    groups = partition(torch.tensor([0.3, 0.42, 0.5]), pi_high=0.4, pi_low=0.45)
    assert groups.tolist() == [Group.LOW, Group.HIGH, Group.HIGH]


@pytest.mark.parametrize(
    "after, phase, open_",
    [
        (False, "high", True),
        (False, "medium", True),
        (True, "high", False),
        (True, "medium", False),
        (True, "done", True),
        (True, None, True),
    ],
)
def test_pseudo_open(after: bool, phase: str | None, open_: bool) -> None:
    """Ours: G_l pseudo labels from the first batch; Algorithm 1 lines 11-12: only once the
    budget is spent (phase "done", or no asking: past the query window)."""
    assert pseudo_open(TrainConfig(pseudo_after_budget=after), phase) is open_


def test_closed_pseudo_labels_take_no_g_l_pixel() -> None:
    """A batch of 2 labeled pixels (one from G_h) in 8 G_l pixels: AS draws max(1, 1) = 1
    pseudo label when open, none when closed; the labeled pixels stay either way."""
    groups = torch.full((1, 2, 4), int(Group.LOW), dtype=torch.uint8)
    labels = torch.full((1, 2, 4), IGNORE_INDEX)
    labels[0, 0, 0], labels[0, 1, 3] = 3, 4
    label_group = torch.full((1, 2, 4), IGNORE_INDEX)
    label_group[0, 0, 0], label_group[0, 1, 3] = int(Group.HIGH), int(Group.MEDIUM)
    cfg = TrainConfig()
    for pseudo, low in ((True, 1), (False, 0)):
        gen = torch.Generator().manual_seed(0)
        masks = target_masks(cfg, groups, labels, label_group, gen, (1, 1), pseudo)
        assert int(masks["low"].sum()) == low
        assert int(masks["high"].sum()) == int(masks["medium"].sum()) == 1
        assert target_pixel_bound(cfg, (1, 1), labels.numel(), pseudo) == 2 + low
    plain = TrainConfig(adaptive_sampling=False)
    gen = torch.Generator().manual_seed(0)
    closed = target_masks(plain, groups, labels, label_group, gen, None, False)
    assert int(closed["low"].sum()) == 0 and int(closed["medium"].sum()) == 2


def test_source_draw_distinct_or_with_replacement() -> None:
    """Two of two source images: distinct draws are always {0, 1}; draws with replacement
    repeat an image in about half the batches."""
    repeats = 0
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        assert sorted(source_indices(2, 2, gen, True).tolist()) == [0, 1]
        gen = torch.Generator().manual_seed(seed)
        repeats += len(set(source_indices(2, 2, gen, False).tolist())) == 1
    assert 5 <= repeats <= 35
    gen = torch.Generator().manual_seed(0)
    assert len(source_indices(2, 5, gen, True)) == 5  # more than there are: with replacement


@pytest.mark.parametrize("flip", [True, False])
def test_source_flip(flip: bool) -> None:
    """One source image, drawn 20 times: flipped left-right in some batches when on, never
    when off (the loaded image exactly)."""
    image = torch.arange(6, dtype=torch.uint8).view(1, 1, 1, 6).expand(1, 3, 2, 6).clone()
    label = torch.arange(6).view(1, 1, 6).expand(1, 2, 6).clone()
    source = SimpleNamespace(ids=["a"], images=image, labels=label)
    data = SimpleNamespace(source=source)
    cfg = TrainConfig(source_flip=flip)
    gen = torch.Generator().manual_seed(0)
    flipped = 0
    for _ in range(20):
        _, y = source_batch(data, 1, gen, cfg, torch.device("cpu"))  # type: ignore[arg-type]
        flipped += bool(torch.equal(y[0], label[0].flip(-1)))
        assert torch.equal(y[0], label[0]) or torch.equal(y[0], label[0].flip(-1))
    assert (flipped > 0) is flip


def _two_centres(images: int) -> PixelBatch:
    """Per image: two pixels of class 0 at (1, 0), two of class 1 at (0, 1), all in G_l."""
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).repeat(images, 1)
    return PixelBatch(
        emb=emb,
        label=torch.tensor([0, 0, 1, 1]).repeat(images),
        anchor=torch.zeros(4 * images, dtype=torch.bool),
        center=torch.ones(4 * images, dtype=torch.bool),
        image=torch.arange(images).repeat_interleave(4),
        domains=[0] * images,
    )


@pytest.mark.parametrize("self_positive, intra", [(True, math.log1p(math.exp(-2))), (False, 0.0)])
def test_intra_c2c_self_positive(self_positive: bool, intra: float) -> None:
    """Centres (1, 0) and (0, 1), lambda 0.5. Ours: a centre is its own positive in its image,
    -log(e^2 / (e^2 + e^0)) = log(1 + e^-2) for each; off: no positive, no pair, 0. The
    cross-image c2c (the other image's centres) is log(1 + e^-2) either way."""
    settings = MCUSettings(
        intra=True, cross_image=True, c2c=True, temperature=0.5, c2c_self_positive=self_positive
    )
    out = mcu_loss(_two_centres(2), settings, num_classes=2)
    assert out["c2c_intra"].item() == pytest.approx(intra, rel=1e-5, abs=1e-7)
    assert out["c2c_cross_image"].item() == pytest.approx(math.log1p(math.exp(-2)), rel=1e-5)


def test_switches_reach_their_functions() -> None:
    """The config fields are what the loop passes on (MCUSettings, the Algorithm 1 state)."""
    cfg = TrainConfig(c2c_self_positive=False, pi_high_floor=False, decay=0.5)
    assert MCUSettings.from_config(cfg).c2c_self_positive is False
    from trainer.loop.schedule import new_loop_state

    state = new_loop_state(cfg, 100, 2, 4)
    assert state.sampler.state.floor is False


def test_center_scope_image_or_domain() -> None:
    """Two source images: class 0 at (1, 0) in the first, at (0, 1) in the second. Per image
    (ours) each image's centre is its own; per domain (III-C1) both carry their mean,
    (1, 1) / sqrt(2). Class 1 has no pixel: its cells are in the unlinked unit 2 x images."""
    batch = PixelBatch(
        emb=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        label=torch.tensor([0, 0]),
        anchor=torch.zeros(2, dtype=torch.bool),
        center=torch.ones(2, dtype=torch.bool),
        image=torch.tensor([0, 1]),
        domains=[0, 0],
    )
    pixels = (batch.center, batch.label, batch.image)
    emb, cls, unit = center_units(pixels, batch.domains, batch.emb, 2, "image")
    assert torch.allclose(emb[[0, 2]], torch.eye(2)) and cls.tolist() == [0, 1, 0, 1]
    assert unit.tolist() == [2, 4, 3, 4]
    emb, _, unit = center_units(pixels, batch.domains, batch.emb, 2, "domain")
    half = torch.full((2, 2), 2**-0.5)
    assert torch.allclose(emb[[0, 2]], half) and unit.tolist() == [2, 4, 3, 4]
    with pytest.raises(ValueError, match="center_scope"):
        TrainConfig(center_scope="batch")


def test_mcu_target_low_all_or_sampled() -> None:
    """The MCUs' pseudo-labelled target pixels: every G_l pixel (ours), the AS draw of Eq. 5
    ("sampled"), none under mcu_true_labels or while pseudo labels are closed."""
    low, high = int(Group.LOW), int(Group.HIGH)
    groups = torch.tensor([[[low, low]], [[low, high]], [[low, low]]])  # a source row first
    fwd = SimpleNamespace(groups=groups, n_src=1)
    drawn = torch.tensor([[[False, False]], [[True, False]]])
    every = mcu_target_low(TrainConfig(), fwd, drawn, True)  # type: ignore[arg-type]
    assert every.tolist() == [[[True, False]], [[True, True]]]
    sampled = TrainConfig(mcu_low_pixels="sampled")
    assert torch.equal(mcu_target_low(sampled, fwd, drawn, True), drawn)  # type: ignore[arg-type]
    assert not mcu_target_low(sampled, fwd, None, True).any()  # type: ignore[arg-type]
    assert not mcu_target_low(TrainConfig(), fwd, drawn, False).any()  # type: ignore[arg-type]
    true_only = TrainConfig(mcu_true_labels=True)
    assert not mcu_target_low(true_only, fwd, drawn, True).any()  # type: ignore[arg-type]


def test_every_pixel_sums_by_hand() -> None:
    """A 1x1 map v read at 2x2 pixels (align_corners=False, zero padding): each pixel reads
    0.75 x 0.75 v; three pixels of class 0, one of none -> sum 1.6875 v, count 3."""
    v = torch.tensor([2.0, -4.0]).view(1, 2, 1, 1)
    cls = torch.tensor([[[0, 0], [0, 1]]])  # 1 = C: no class
    sums, counts = every_pixel_sums(v, cls, 1, (2, 2))
    assert torch.allclose(sums, 1.6875 * v.view(1, 2)) and counts.tolist() == [3]


def test_every_pixel_sums_equal_the_sums_of_the_gathered_pixels() -> None:
    """The same sums as reading every pixel with gather_batch_embeddings (the drawn path)."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 3, 4, 5, generator=g)
    cls = torch.randint(0, 4, (2, 16, 20), generator=g)  # 3 classes, 3 = none
    sums, counts = every_pixel_sums(emb, cls, 3, (16, 20))
    b, ys, xs = torch.nonzero(cls < 3, as_tuple=True)
    cell = b * 3 + cls[b, ys, xs]
    read = gather_batch_embeddings(emb, b, ys, xs, (16, 20))
    assert torch.allclose(sums, torch.zeros(6, 3).index_add(0, cell, read), atol=1e-5)
    assert counts.tolist() == torch.bincount(cell, minlength=6).tolist()


@pytest.mark.parametrize("pixels", ["drawn", "every"])
def test_center_pixels_drawn_or_every(pixels: str) -> None:
    """Ours: the centres come from the capped draw (no sums passed on); "every": the batch
    carries every G_l pixel's sums, and a centre built from them ignores the drawn pixels."""
    n, h, w, c = 2, 4, 4, 2
    out = SimpleNamespace(embedding=torch.nn.functional.normalize(torch.randn(n, 3, 2, 2), dim=1))
    y = torch.zeros(1, h, w, dtype=torch.long)
    inputs = PixelSetInputs(
        out=out,  # type: ignore[arg-type]
        n_src=1,
        source_y=y,
        target_y=torch.full((1, h, w), IGNORE_INDEX),
        target_pred=torch.ones(1, h, w, dtype=torch.long),
        target_low=torch.ones(1, h, w, dtype=torch.bool),
        source_low=torch.ones(1, h, w, dtype=torch.bool),
        pred=torch.zeros(n, h, w, dtype=torch.long),
        size=(h, w),
        num_classes=c,
    )
    cfg = TrainConfig(center_pixels=pixels, max_samples_per_class=1)  # 2 drawn per class
    sets = build_pixel_sets(inputs, cfg, torch.Generator().manual_seed(0))
    if pixels == "drawn":
        assert sets.centres is None
        return
    assert sets.centres is not None
    sums, counts = sets.centres
    assert counts.tolist() == [16, 0, 0, 16]  # source: class 0; target: pseudo class 1
    emb, _, unit = center_units(
        (sets.center, sets.label, sets.image), [0, 1], sets.emb, c, "image", sets.centres
    )
    assert torch.allclose(emb[[0, 3]], torch.nn.functional.normalize(sums[[0, 3]], dim=1))
    assert unit.tolist() == [2, 4, 4, 3]


PAPER_READINGS = {
    "dccm_freeze_absent": False,
    "center_scope": "domain",
    "center_pixels": "every",
    "c2c_self_positive": False,
    "mcu_low_pixels": "sampled",
    "pi_high_floor": False,
    "pseudo_after_budget": True,
    "source_flip": False,
    "source_distinct": True,
}


def _total_of(parts: dict[str, float]) -> float:
    """III-D3 from a full step's reported parts, at the default weights (target 1, contrast
    1): source CE + the mean of the non-empty target groups (Eq. 4, equal weight; an empty
    group reports 0) + the aux head's target CE + every MCU loss (Eq. 9-11)."""
    groups = [parts[g] for g in ("target_high", "target_medium", "target_low") if parts[g] != 0]
    mcu = sum(v for k, v in parts.items() if k.startswith(("p2p_", "c2c_")))
    return parts["source"] + sum(groups) / max(1, len(groups)) + parts["target_aux"] + mcu


@pytest.mark.parametrize("fixed", ["off", "on"])
def test_the_full_model_runs_with_every_paper_reading(fixed: str) -> None:
    """Every switch at the paper's reading, exact and padded (GPU) shapes: six iterations of
    the full model; the loss stays finite and is its reported parts put together (III-D3),
    the parts are the exact set, the budget is spent, and G_l pseudo labels enter
    the loss only once it is (and then do)."""
    from trainer.learning.labelbank import LabelBank
    from trainer.loop.bundles import Batch, Learner, Oracle
    from trainer.loop.schedule import new_loop_state
    from trainer.loop.step import adaptation_step, asking_at
    from trainer.loop.train import GroundTruthOracle
    from trainer.nets.model import build_model, param_groups
    from trainer.selection.policy import make_policy
    from trainer.strategies import configure

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    base = TrainConfig(iterations=6, embed_dim=16, fixed_shapes=fixed, **PAPER_READINGS)
    cfg = configure(base, "full", budget_rate=0.05)
    assert (cfg.target_weight, cfg.contrast_weight, cfg.adaptive_sampling) == (1.0, 1.0, True)
    model = build_model("small", 5, embed_dim=16)
    opt = torch.optim.SGD(param_groups(model, 0.01, 1.0), lr=0.01)
    target = torch.randint(5, (4, 32, 48), generator=gen).to(torch.uint8)
    bank = LabelBank(4, 32, 48)
    expected = int(0.05 * target.numel())
    state = new_loop_state(cfg, expected, 5, 4)
    oracle = Oracle(GroundTruthOracle(target), bank.counts)
    opened = False  # G_l pseudo labels entered the loss once the budget was spent
    for it in range(6):
        index = torch.tensor([(2 * it) % 4, (2 * it + 1) % 4])
        x = torch.randn(2, 3, 32, 48, generator=gen)
        batch = Batch(x, torch.randint(5, (2, 32, 48), generator=gen), x.flip(-1), index)
        asking = asking_at(make_policy(cfg, state.sampler), state, it, oracle)
        spent_before = sum(bank.counts().values()) < expected
        learner = Learner(model, opt, cfg, state, gen)
        stats = adaptation_step(learner, batch, bank, asking)
        assert torch.isfinite(torch.as_tensor(stats.loss))
        assert math.isclose(stats.loss, _total_of(stats.parts), rel_tol=1e-5), it
        low = float(stats.parts.get("target_low", 0.0))
        if spent_before:
            assert low == 0.0
        opened |= low > 0
    assert sum(bank.counts().values()) == expected and opened
    levels = ("intra", "cross_image", "cross_domain")
    mcu = {f"{k}_{lv}" for k in ("p2p", "c2c") for lv in levels}
    groups = {"target_high", "target_medium", "target_low"}
    assert set(stats.parts) == mcu | groups | {"source", "target_aux"}
