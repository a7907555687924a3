"""The trainer's one config dataclass, built at the edge (CLI, env or a config file).

A strategy (``trainer/strategies.py``) is a set of overrides of these fields, so every row of
the paper's Table VI is a configuration of the same loop. Config files are plain TOML or JSON
files whose keys are these field names; there is no inheritance between them.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any


class Selection(StrEnum):
    """The selection strategies, one name each; :mod:`trainer.selection.policy` maps every
    one to its policy."""

    NONE = "none"
    ALL = "all"
    RANDOM = "random"
    ENTROPY = "entropy"
    RIPU = "ripu"
    ALGORITHM1 = "algorithm1"
    # the comparison rows (trainer/selection/comparison.py) and mcu-cap (mcucap.py)
    PIXELPICK = "pixelpick"
    RIPU_PA = "ripu-pa"
    RIPU_RA = "ripu-ra"
    IMAGE_WISE = "image-wise"
    MCU_CAP = "mcu-cap"


class QueryKind(StrEnum):
    """What a run asks (issue 24): pixels, superpixel regions (their dominant class in one
    click, ``trainer/selection/regions.py``), or both (``trainer/selection/seconds.py``)."""

    PIXELS = "pixels"
    REGIONS = "regions"
    BOTH = "both"


class CenterScope(StrEnum):
    """Over which pixels a class centre of the c2c units averages
    (``trainer.learning.centres.center_units``)."""

    IMAGE = "image"  # each image's own (ours)
    DOMAIN = "domain"  # every image of the domain in the batch (section III-C1)


class CenterPixels(StrEnum):
    """Which G_l pixels a class centre averages (``trainer.learning.pixel_sets``)."""

    DRAWN = "drawn"  # the MCU draw's, capped per image and class (ours)
    EVERY = "every"  # every G_l pixel (section III-C1)


class McuLow(StrEnum):
    """Which target G_l pixels the MCUs take with pseudo labels (``trainer/loop/learn.py``)."""

    ALL = "all"  # every G_l pixel of the batch, before the per-class caps (ours)
    SAMPLED = "sampled"  # the adaptive-sampling draw of Eq. 5 (III-D1's G_l^t)


class FixedShapes(StrEnum):
    """Whether the step takes its fixed-size, sync-free forms: on a GPU, always, never."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class WeightMode(StrEnum):
    """How the DCCM weights InfoNCE's logits (``trainer.learning.contrast.MCUSettings``)."""

    NEGATIVES = "negatives"  # negative logits times 1 + w[u, v]
    PAPER = "paper"  # every logit times w[u, v] (Eq. 10 as printed)
    NONE = "none"


@dataclass
class TrainConfig:
    """Everything one training run needs; saved in every checkpoint."""

    # data
    data_root: str = "data/bundled"
    dataset: str = "folder"
    source_dataset: str = ""
    source_root: str = ""
    source_split: str = "source-train"
    target_split: str = "target-train"
    val_split: str = "target-val"
    test_split: str = "target-test"
    num_classes: int = 0  # 0: read from the dataset's classes.json
    translated_dir: str | None = None
    fda_beta: float = 0.0
    crop: tuple[int, int] | None = None  # real datasets: every split is resized to (H, W)
    data_cache: str = ""  # real datasets: folder of decoded splits (.npy, memory-mapped)
    # model
    model: str = "small"  # a name of trainer.nets.model.MODEL_NAMES or "package.module:function"
    embed_dim: int = 32
    pretrained: str | None = None
    init_checkpoint: str | None = None  # start adaptation from these trained weights
    frozen_bn: bool = False
    # optimisation (section IV-B: SGD, poly 0.9, momentum 0.9, weight decay 1e-4)
    lr: float = 0.01
    head_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    batch_source: int = 2
    batch_target: int = 2
    pretrain_iterations: int = 1500
    pretrain_lr: float = 0.02
    source_flip: bool = True  # source images flipped left-right at random (False: as loaded)
    source_distinct: bool = False  # True: a batch's source images are distinct (randperm)
    # schedule, in passes over target-train (one pass: every target image once, in a fresh
    # seeded order); the defaults give every label >= passes - query_passes = 10 more visits
    passes: float = 16.0
    query_passes: float = 6.0  # queries only in the first query_passes; G_h in the first half
    iterations: int = 0  # > 0: exactly this many iterations, the windows scaled (tiny runs)
    eval_every: int = 0  # iterations between target-val evaluations; 0: once per pass
    # selection (Algorithm 1 and the baselines)
    strategy: str = "full"
    selection: str = "algorithm1"
    budget_rate: float = 0.017
    gamma: float = 0.5
    pi_high_quantile: float = 0.99
    pi_low_quantile: float = 0.5
    decay: float = 0.9  # pi_high *= decay once per pass of the high window (Alg. 1 line 7)
    pi_high_floor: bool = True  # pi_high never decays below pi_low (False: Alg. 1 line 7 as is)
    high_cap_factor: float = 2.0  # high phase: <= ceil(M_e/2 / high iterations) x this a batch
    # True (the paper's reading, Alg. 1 line 7): a visit whose half of G_h is short of its
    # share of M_e/2 decays pi_high again; False: once per pass only, G_m takes the rest
    high_catch_up: bool = True
    score_dropout: bool = False  # True: Eq. 1 on the train-mode (dropout) target forward
    # the comparison rows and mcu-cap (trainer/selection/comparison.py, baselines.py, ripu.py,
    # mcucap.py)
    pixelpick_top: float = 0.05  # PixelPick's top_n_percent: the candidates' share of an image
    ripu_radius_k: float = 32.0  # RIPU-PA's K at 1280x640, scaled by sqrt of the area ratio
    ripu_region_k: float = 1.0  # RIPU-RA's K (3x3 regions) at 1280x640, scaled the same way
    cap_class_share: float = 0.25  # mcu-cap: most of an image's quota for one predicted class
    cap_impurity: bool = True  # mcu-cap: rank by S x region impurity (False: uniform)
    cap_radius_k: float = 16.0  # mcu-cap: blanking window K at 1280x640 (0: none)
    # mcu-cap: G_l pseudo labels while M_e is under this share of the target pixels (a budget
    # rate; 0: never). 0.24 % = 19.7 labels a 64x128 image, 5,033 a 1024x2048 one
    cap_pseudo_below_rate: float = 0.0024
    mcu_true_labels: bool = False  # MCU target pixels: true labels only, no G_l pseudo labels
    # region queries and the budget in annotator seconds (issue 24; trainer/cost.py)
    query_kind: str = "pixels"  # "regions" / "both" need budget_seconds_per_image > 0
    # SLIC superpixels per target image (trainer/data/superpixels.py): about 32 pixels a region
    # at 64x128, 8,192 (~90x90) at 1024x2048; the same share of the frame at every size
    regions_per_image: int = 256
    # > 0: the budget in annotator seconds, this many per target image (trainer.cost.
    # seconds_budget), charged by the cost model instead of counting pixels; 0: pixels
    budget_seconds_per_image: float = 0.0
    cost_spread: float = 0.0  # a charge: its mean x U[1 - spread, 1 + spread] (0: the mean)
    mcu_low_pixels: str = "all"  # MCU target G_l pixels: all; "sampled": Eq. 5's AS draw
    # losses
    pseudo_labels: bool = True
    # True: G_l pseudo labels (Eq. 5, MCUs) only once the budget is spent (Alg. 1 lines 11-12);
    # False: from the first batch on, next to the labels
    pseudo_after_budget: bool = False
    adaptive_sampling: bool = True
    pseudo_only_batches: bool = False  # True: a batch without labels trains on G_l alone
    # G_l pixels of such a batch (pseudo_only_batches only), a share of its target pixels:
    # 1/256 = 64 pixels of 2 x 64x128, 16,384 of 2 x 1024x2048
    min_low_share: float = 0.00390625
    target_weight: float = 1.0
    entropy_weight: float = 0.0  # MinEnt on target (ADVENT: 0.001)
    negative_weight: float = 0.0  # RIPU's negative learning on target (RIPU: 1.0)
    negative_threshold: float = 0.05  # ... on classes with p below this (RIPU: 0.05)
    consistency_weight: float = 0.0  # RIPU's local consistency on source (RIPU: 0.1)
    aux_target_loss: bool = True  # 0.5 x CE of the aux head on labeled target pixels
    # multi-level contrastive units (section III-C, Eq. 7-11)
    contrast_intra: bool = False
    contrast_cross_image: bool = False
    contrast_cross_domain: bool = False
    p2p: bool = False
    c2c: bool = False
    dccm: bool = False
    dccm_beta: float = 0.9  # Eq. 8's beta; the paper gives no value (our choice)
    dccm_freeze_absent: bool = True  # rows of classes absent from the batch keep their value
    weight_mode: str = "negatives"
    temperature: float = 0.1  # Eq. 10's lambda; the paper gives no value ([25]'s 0.1)
    c2c_self_positive: bool = True  # intra c2c: a centre is its own positive (False: none)
    center_scope: str = "image"  # c2c centres per (image, class); "domain": per (domain, class)
    center_pixels: str = "drawn"  # centres of the drawn G_l pixels; "every": all G_l pixels
    contrast_weight: float = 1.0  # L_total = L_seg + L_con (section III-D3)
    max_anchors_per_class: int = 16
    max_samples_per_class: int = 32
    # execution
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = False
    compile_step: bool = False  # torch.compile Eq. 1 and the InfoNCE kernel (falls back to eager)
    # fixed-size (padded) MCU sets and loss gathers, no host sync: "auto" on CUDA only (on the
    # CPU a sync costs nothing and the exact sizes do less work), "on", "off"
    fixed_shapes: str = "auto"
    threads: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        modes: dict[str, type[StrEnum]] = {"selection": Selection, "weight_mode": WeightMode}
        modes |= {"fixed_shapes": FixedShapes, "center_scope": CenterScope}
        modes |= {"mcu_low_pixels": McuLow, "center_pixels": CenterPixels}
        modes |= {"query_kind": QueryKind}
        for name, kind in modes.items():
            names = [k.value for k in kind]
            if getattr(self, name) not in names:
                raise ValueError(f"{name} must be one of {names}, got {getattr(self, name)!r}")
        if not 0.0 <= self.budget_rate <= 1.0:
            raise ValueError(f"budget_rate must lie in [0, 1], got {self.budget_rate}")
        if not 0.0 <= self.min_low_share <= 1.0:
            raise ValueError(f"min_low_share must lie in [0, 1], got {self.min_low_share}")
        for name in ("pixelpick_top", "cap_class_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        if self.budget_seconds_per_image < 0 or not 0 <= self.cost_spread < 1:
            raise ValueError("budget_seconds_per_image must be >= 0 and cost_spread in [0, 1)")
        if self.regions_per_image < 1:
            raise ValueError(f"regions_per_image must be >= 1, got {self.regions_per_image}")
        if self.passes < 0 or self.iterations < 0:
            raise ValueError("passes and iterations must be >= 0")
        if self.query_passes <= 0 or 0 < self.passes < self.query_passes:
            raise ValueError(
                f"query_passes must lie in (0, passes={self.passes}], got {self.query_passes}: "
                "set query_passes with passes (the defaults: 6 of 16)"
            )
        if self.crop is not None:
            self.crop = (int(self.crop[0]), int(self.crop[1]))
        # TOML has no null: an empty string means "none" for the optional paths
        self.pretrained = self.pretrained or None
        self.translated_dir = self.translated_dir or None
        self.init_checkpoint = self.init_checkpoint or None

    @property
    def contrast(self) -> bool:
        levels = self.contrast_intra or self.contrast_cross_image or self.contrast_cross_domain
        return levels and (self.p2p or self.c2c)

    def adapt_iterations(self, target_images: int) -> int:
        """Adaptation iterations on ``target_images`` images: ``iterations`` when set, else
        ``passes`` whole passes of ``ceil(target_images / batch_target)`` batches."""
        if self.iterations > 0:
            return self.iterations
        return round(self.passes * self.pass_length(target_images))

    def pass_length(self, target_images: int) -> int:
        """Iterations of one pass over ``target_images`` images (the last batch is topped up)."""
        return max(1, -(-target_images // max(1, self.batch_target)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return from_dict({**self.to_dict(), **changes})


def check_model_selection(cfg: TrainConfig, eval_every: int, iterations: int) -> None:
    """Refuse a run that would select its model on the split it reports.

    Adaptation keeps the state that scored best on ``val_split``; with ``val_split ==
    test_split`` (Cityscapes val in the paper, whose test labels are not public) more than one
    evaluation would choose the reported model on the reported split. One evaluation, at the
    end (``eval_every >= iterations``), selects nothing."""
    if cfg.val_split == cfg.test_split and eval_every < iterations:
        raise ValueError(
            f"val_split and test_split are both {cfg.val_split!r}: evaluating every {eval_every} "
            f"of {iterations} iterations would select the model on the reported split; set "
            f"eval_every = {iterations} (one evaluation, at the end) or another val_split"
        )


# keys of older configs, and what replaced them (the schedule moved from iterations to passes)
RENAMED = {
    "query_fraction": "query_passes (queries in the first query_passes passes over target-train)",
    "decay_every": "nothing: pi_high decays once per pass of the high window",
    "min_low_samples": "min_low_share (a share of the batch's target pixels: 64 of 2 x 64x128 "
    "is 0.00390625)",
    "cap_pseudo_below": "cap_pseudo_below_rate (a share of the target pixels, not labels an "
    "image: 20 labels a 64x128 image is 0.0024)",
}


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a config, refusing unknown keys with a message that names them."""
    known = {f.name for f in fields(TrainConfig)}
    old = sorted(set(values) & set(RENAMED))
    if old:
        said = "; ".join(f"{k} was replaced by {RENAMED[k]}" for k in old)
        raise ValueError(f"config keys {old} are no longer read: {said}")
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
    return TrainConfig(**values)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML or JSON config file into a :class:`TrainConfig`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    return from_dict(values)
