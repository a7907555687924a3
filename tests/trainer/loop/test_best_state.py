"""Algorithm 1 line 18 ("return theta"): adaptation returns the state that scored best on
target-val, not the last one (README: model selection on target-val)."""

from __future__ import annotations

import torch

from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptResult, _Run


def test_the_best_evaluation_keeps_its_weights() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    run = _Run(AdaptResult(model, LabelBank(1, 1, 1), -1.0, -1), {}, {})
    seen = []
    for it, (weight, miou) in enumerate([(1.0, 0.30), (2.0, 0.50), (3.0, 0.40)], 1):
        model.weight.data.fill_(weight)
        run.evaluated({"iteration": it, "miou": miou}, seen.append)
    assert [p["miou"] for p in seen] == [0.30, 0.50, 0.40]  # every point reported
    assert (run.best.best_val, run.best.best_iteration) == (0.50, 2)
    assert run.best_state["weight"].item() == 2.0  # the weights of iteration 2, a copy
    assert model.weight.item() == 3.0 and run.best.curve == seen
