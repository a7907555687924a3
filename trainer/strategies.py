"""The strategies compared under one budget and one oracle: each is a set of config overrides.

Rows of the paper's Table V/VI are configurations of the same step (``trainer/loop/step.py``,
``adaptation_step``): a selection policy (``trainer/selection/policy.py``; Algorithm 1 in
``sampling.py``) and the learning step (``trainer/loop/learn.py``):

| strategy      | selection            | target loss                      | MCU             | DCCM |
|---------------|----------------------|----------------------------------|-----------------|------|
| source-only   | none (no adaptation) | -                                | -               | -    |
| random        | uniform pixels       | CE on labeled pixels             | -               | -    |
| entropy       | top-S pixels (Eq. 1) | labeled + all of G_l, plain mean | -               | -    |
|               |                      | (the paper's AL w/o AS)          |                 |      |
| ripu          | RIPU-PA: greedy, K-  | CE on labeled pixels + RIPU's    | -               | -    |
|               | window blanking,     | negative learning (target) and   |                 |      |
|               | fixed share / image  | local consistency (source)       |                 |      |
| ripu-ra       | RIPU-RA: 3x3 regions | as ripu                          | -               | -    |
|               | labeled whole        |                                  |                 |      |
| pixelpick     | uniform in the top   | CE on labeled pixels             | -               | -    |
|               | 5 % margin / image   |                                  |                 |      |
| image-wise    | whole random images  | CE on labeled pixels             | -               | -    |
| minent        | none (UDA, no label) | CE on source + target entropy    | -               | -    |
| al-as         | Algorithm 1          | adaptive sampling (AS)           | -               | -    |
| mcu-i         | Algorithm 1          | AS                               | intra + cross-  | -    |
|               |                      |                                  | image, p2p+c2c  |      |
| mcu-d         | Algorithm 1          | AS                               | + cross-domain  | -    |
| p2p           | Algorithm 1          | AS                               | 3 levels, p2p   | -    |
| full          | Algorithm 1          | AS                               | 3 levels, both  | yes  |
| mcu-cap       | Alg. 1 groups, paced | CE on labeled pixels (no pseudo  | 3 levels p2p,   | yes  |
|               | per image and class, | labels)                          | true labels     |      |
|               | impurity, windows    |                                  | only; c2c on    |      |
|               |                      |                                  | source centres  |      |
| supervised    | every target label   | CE on every target pixel         | -               | -    |
| region-random | random superpixels   | as random (issue 24: superpixels | -               | -    |
| region-ripu   | superpixels: mean    | as ripu       labelled whole by  | -               | -    |
|               | entropy x impurity   |               their GT-dominant  |                 |      |
| region-cap    | mcu-cap's groups on  | as mcu-cap    class; a seconds   | as mcu-cap      | yes  |
|               | superpixels          |               budget)            |                 |      |

The comparison rows' policies are in ``trainer/selection/comparison.py`` (RIPU in ``ripu.py``,
PixelPick and image-wise in ``baselines.py``), ``mcu-cap``'s in ``mcucap.py``. ``ripu`` is RIPU
as its authors run it (BIT-DA/RIPU's PA config); the earlier plain top-k form of its score
stays reachable as ``selection = "ripu"`` in a config file.
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
# BIT-DA/RIPU configs: SOLVER.NEGATIVE_LOSS 1.0, NEGATIVE_THRESHOLD 0.05, CONSISTENT_LOSS 0.1
_RIPU_LOSSES = {"negative_weight": 1.0, "negative_threshold": 0.05, "consistency_weight": 0.1}

STRATEGIES: dict[str, dict[str, Any]] = {
    "source-only": {**_NO_CONTRAST, "selection": "none", "passes": 0.0, "iterations": 0},
    "random": {**_NO_CONTRAST, "selection": "random", "pseudo_labels": False},
    "entropy": {
        **_NO_CONTRAST,
        "selection": "entropy",
        "pseudo_labels": True,
        "adaptive_sampling": False,
    },
    "ripu": {**_NO_CONTRAST, **_RIPU_LOSSES, "selection": "ripu-pa", "pseudo_labels": False},
    "ripu-ra": {**_NO_CONTRAST, **_RIPU_LOSSES, "selection": "ripu-ra", "pseudo_labels": False},
    "pixelpick": {**_NO_CONTRAST, "selection": "pixelpick", "pseudo_labels": False},
    "image-wise": {**_NO_CONTRAST, "selection": "image-wise", "pseudo_labels": False},
    "minent": {
        **_NO_CONTRAST,
        "selection": "none",
        "pseudo_labels": False,
        "entropy_weight": 0.001,
    },
    "al-as": {**_NO_CONTRAST, "selection": "algorithm1", "adaptive_sampling": True},
    "mcu-i": {**_NO_CONTRAST, **_LEVELS_I, "selection": "algorithm1", "p2p": True, "c2c": True},
    "mcu-d": {**_NO_CONTRAST, **_LEVELS_D, "selection": "algorithm1", "p2p": True, "c2c": True},
    "p2p": {**_NO_CONTRAST, **_LEVELS_D, "selection": "algorithm1", "p2p": True},
    "full": {**_LEVELS_D, "selection": "algorithm1", "p2p": True, "c2c": True, "dccm": True},
    "mcu-cap": {
        **_LEVELS_D,
        "selection": "mcu-cap",
        "pseudo_labels": False,
        "mcu_true_labels": True,
        "p2p": True,
        "c2c": True,
        "dccm": True,
    },
    "supervised": {**_NO_CONTRAST, "selection": "all", "pseudo_labels": False},
}
# region queries (issue 24, trainer/selection/regions.py): the rows above lifted to superpixels,
# asked by their dominant class in one click; they need a budget in annotator seconds
# (``budget_seconds_per_image``), which the `seconds` bench preset sets
REGION_STRATEGIES: dict[str, dict[str, Any]] = {
    "region-random": {**STRATEGIES["random"], "query_kind": "regions"},
    "region-ripu": {**STRATEGIES["ripu"], "query_kind": "regions"},
    "region-cap": {**STRATEGIES["mcu-cap"], "query_kind": "regions"},
}
STRATEGIES.update(REGION_STRATEGIES)

BUDGET_FREE = ("source-only", "minent", "supervised")


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


def for_budget(cfg: TrainConfig, expected: int, target_pixels: int) -> TrainConfig:
    """The config a run uses once its budget is known: ``mcu-cap`` takes G_l pseudo labels
    (Eq. 5, and in its MCUs) while M_e is under ``cap_pseudo_below_rate`` of the
    ``target_pixels`` (labels an image as a share of its pixels: the same rule at every frame
    size). The target-val ablation (docs/results.md, ``val_ablation.py cap``): at 0.1 % (8
    labels a 64x128 image) pseudo labels gained 3.4 and 3.0 points on the two shifts, at 0.5 %
    (41) and more they cost 0.7-0.9 or were even. Every other config is returned as is."""
    if cfg.selection != "mcu-cap" or expected >= cfg.cap_pseudo_below_rate * target_pixels:
        return cfg
    return cfg.replace(pseudo_labels=True, mcu_true_labels=False)
