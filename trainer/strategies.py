"""The strategies compared under one budget and one oracle: each is a set of config overrides.

Rows of the paper's Table V/VI are configurations of the same step (``trainer/step.py``,
``adaptation_step``; Algorithm 1 in ``trainer/sampling.py``):

| strategy      | selection            | target loss                      | MCU             | DCCM |
|---------------|----------------------|----------------------------------|-----------------|------|
| source-only   | none (no adaptation) | -                                | -               | -    |
| random        | uniform pixels       | CE on labeled pixels             | -               | -    |
| entropy       | top-S pixels (Eq. 1) | labeled + all of G_l, plain mean | -               | -    |
|               |                      | (the paper's AL w/o AS)          |                 |      |
| ripu          | region impurity x    | CE on labeled pixels             | -               | -    |
|               | uncertainty (RIPU)   |                                  |                 |      |
| al-as         | Algorithm 1          | adaptive sampling (AS)           | -               | -    |
| mcu-i         | Algorithm 1          | AS                               | intra + cross-  | -    |
|               |                      |                                  | image, p2p+c2c  |      |
| mcu-d         | Algorithm 1          | AS                               | + cross-domain  | -    |
| p2p           | Algorithm 1          | AS                               | 3 levels, p2p   | -    |
| full          | Algorithm 1          | AS                               | 3 levels, both  | yes  |
| supervised    | every target label   | CE on every target pixel         | -               | -    |
"""

from __future__ import annotations

from typing import Any

from trainer.config import TrainConfig

_NO_CONTRAST = {
    "contrast_intra": False,
    "contrast_cross_image": False,
    "contrast_cross_domain": False,
    "p2p": False,
    "c2c": False,
    "dccm": False,
}
_LEVELS_I = {"contrast_intra": True, "contrast_cross_image": True}
_LEVELS_D = {**_LEVELS_I, "contrast_cross_domain": True}

STRATEGIES: dict[str, dict[str, Any]] = {
    "source-only": {**_NO_CONTRAST, "selection": "none", "passes": 0.0, "iterations": 0},
    "random": {**_NO_CONTRAST, "selection": "random", "pseudo_labels": False},
    "entropy": {
        **_NO_CONTRAST,
        "selection": "entropy",
        "pseudo_labels": True,
        "adaptive_sampling": False,
    },
    "ripu": {**_NO_CONTRAST, "selection": "ripu", "pseudo_labels": False},
    "al-as": {**_NO_CONTRAST, "selection": "algorithm1", "adaptive_sampling": True},
    "mcu-i": {**_NO_CONTRAST, **_LEVELS_I, "selection": "algorithm1", "p2p": True, "c2c": True},
    "mcu-d": {**_NO_CONTRAST, **_LEVELS_D, "selection": "algorithm1", "p2p": True, "c2c": True},
    "p2p": {**_NO_CONTRAST, **_LEVELS_D, "selection": "algorithm1", "p2p": True},
    "full": {**_LEVELS_D, "selection": "algorithm1", "p2p": True, "c2c": True, "dccm": True},
    "supervised": {**_NO_CONTRAST, "selection": "all", "pseudo_labels": False},
}

BUDGET_FREE = ("source-only", "supervised")


def configure(base: TrainConfig, strategy: str, **changes: Any) -> TrainConfig:
    """The base config with ``changes`` applied, then the strategy's overrides.

    A change that the strategy would override with another value is refused (``ValueError``
    naming the field and the strategy) instead of being dropped silently: ``random`` with
    ``pseudo_labels=True`` is not the ``random`` row of the tables. A change equal to the
    strategy's value, or of a field the strategy leaves alone, is applied. Values of ``base``
    (e.g. a config file) are not changes: the strategy's overrides replace them.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    overrides = STRATEGIES[strategy]
    clashes = [k for k, v in changes.items() if k in overrides and overrides[k] != v]
    if clashes:
        said = ", ".join(f"{k}={changes[k]!r} (it sets {overrides[k]!r})" for k in clashes)
        raise ValueError(
            f"strategy {strategy!r} overrides {said}: drop the change or pick another strategy"
        )
    return base.replace(**{**changes, **overrides, "strategy": strategy})
