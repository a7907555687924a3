"""The optional torch.compile of the step's pure kernels (``compile_step``): off by default, and
a compiler that fails falls back to the eager function with a warning."""

import pytest
import torch

from trainer.config import TrainConfig
from trainer.nets import forward
from trainer.selection.uncertainty import uncertainty_score


def test_off_by_default_and_off_is_the_function_itself() -> None:
    assert TrainConfig().compile_step is False
    assert forward.maybe_compiled(uncertainty_score, False) is uncertainty_score


def test_a_failing_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda fn, **_kw: broken)
    forward.maybe_compiled.cache_clear()
    main, aux = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    run = forward.maybe_compiled(uncertainty_score, True)
    with pytest.warns(UserWarning, match="running eagerly"):
        got = run(main, aux, 0.5)
    assert torch.equal(got, uncertainty_score(main, aux, 0.5))
    assert torch.equal(run(main, aux, 0.5), got)  # eager from then on, no second warning
    forward.maybe_compiled.cache_clear()
