"""The comparison rows and mcu-cap in the step: dispatch, groups, extra losses, switches."""

from __future__ import annotations

import math

import pytest
import torch

import trainer.loop.learn as learn
from tests.trainer.loop.test_step import _batch, _setup
from trainer.config import TrainConfig
from trainer.learning import regularisers
from trainer.learning.labelbank import LabelBank
from trainer.learning.losses import entropy_loss, local_consistency_loss, negative_learning_loss
from trainer.loop.adapt import local_oracle
from trainer.loop.bundles import Learner
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.stepstats import StepStats
from trainer.selection.policy import make_policy
from trainer.strategies import configure


def _one_step(strategy: str) -> tuple[StepStats, LabelBank]:
    cfg, model, opt, target, bank, state, gen = _setup(strategy)
    batch = _batch(target, 0, gen, False)
    asking = asking_at(make_policy(cfg, state.sampler), state, 0, local_oracle(target, bank))
    stats = adaptation_step(Learner(model, opt, cfg, state, gen), batch, bank, asking)
    return stats, bank


ROWS = {"ripu": "ripu", "ripu-ra": "ripu", "pixelpick": "entropy", "image-wise": "random"}
# M_e = 5 % of 4 x 32 x 48 = 307 pixels, a query window of 2 iterations (high half: 1)
FIRST_ASK = {
    "ripu": 154,  # ceil(307 / 2): the budget spread over the window
    "ripu-ra": 154,
    "pixelpick": 154,
    "image-wise": 307,  # behind ceil(307 / 2): a whole image, cut at M_e
    "mcu-cap": 153,  # Algorithm 1's high half, M_e // 2, in its one iteration
}


@pytest.mark.parametrize("strategy", sorted(ROWS) + ["mcu-cap"])
def test_one_iteration_asks_under_the_rows_group(strategy: str) -> None:
    stats, bank = _one_step(strategy)
    assert stats.queried == stats.answered == FIRST_ASK[strategy]
    assert stats.phase == ROWS.get(strategy, "high")
    assert bank.count(stats.phase) == stats.answered


def test_ripu_trains_with_its_authors_losses_and_minent_with_entropy() -> None:
    for strategy, parts in (("ripu", {"negative", "consistency"}), ("minent", {"minent"})):
        stats, _ = _one_step(strategy)
        # exactly the row's terms beside the CE ones (no MCU, no other row's term), and the
        # loss is their sum: one target group (G_m; empty for minent, which asks nothing)
        assert set(stats.parts) == {"source", "target_medium", "target_aux"} | parts
        assert math.isclose(stats.loss, sum(stats.parts.values()), rel_tol=1e-6), strategy
        assert (stats.parts["target_medium"] == 0.0) is (strategy == "minent")
    # the weighted terms on sure logits (2 source + 2 target images) and smooth source labels
    logits = torch.zeros(4, 3, 6, 6)
    logits[:, 0] = 4.0
    logits[0, 0, 2, 2] = -4.0  # one source pixel disagrees with its neighbours
    source_y = torch.zeros(2, 6, 6, dtype=torch.long)
    cfg = configure(TrainConfig(), "ripu")
    parts: dict[str, torch.Tensor] = {}
    total = regularisers.extra_loss(cfg, logits, source_y, 2, parts)
    assert set(parts) == {"negative", "consistency"} and all(v > 0 for v in parts.values())
    assert torch.isclose(total, parts["negative"] + parts["consistency"])
    assert torch.isclose(parts["negative"], negative_learning_loss(logits[2:], 0.05))
    assert torch.isclose(parts["consistency"], 0.1 * local_consistency_loss(logits[:2], source_y))
    parts = {}
    regularisers.extra_loss(configure(TrainConfig(), "minent"), logits, source_y, 2, parts)
    assert set(parts) == {"minent"}
    assert torch.isclose(parts["minent"], 0.001 * entropy_loss(logits[2:]))
    assert regularisers.extra_loss(TrainConfig(), logits, source_y, 2, {}).item() == 0.0


def test_mcu_true_labels_keeps_pseudo_labels_out_of_the_target_mcus(monkeypatch) -> None:
    seen = []
    real = learn.build_pixel_sets

    def spy(inputs, *rest):
        seen.append(bool(inputs.target_low.any()))
        return real(inputs, *rest)

    monkeypatch.setattr(learn, "build_pixel_sets", spy)
    for strategy in ("mcu-cap", "full"):
        _one_step(strategy)
    assert seen == [False, True]


def test_fractions_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="pixelpick_top"):
        TrainConfig(pixelpick_top=0.0)
    with pytest.raises(ValueError, match="cap_class_share"):
        configure(TrainConfig(), "mcu-cap", cap_class_share=1.5)
