"""The paper's experiment configs (trainer/configs/*.toml) and real-format loading
(trainer/data/paper.py): every config loads with section IV-B's settings, and runs one pretrain
and one adaptation iteration of its real model on tiny trees in each dataset's exact format."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import torch

from tests.trainer.data import fabricate
from trainer.bench.experiment import run_strategy
from trainer.config import TrainConfig, check_model_selection, load_config
from trainer.loop.train import load_data
from trainer.nets.catalog import ENCODERS
from trainer.strategies import configure

CONFIGS = sorted(
    p.name for p in (resources.files("trainer") / "configs").iterdir() if p.name.endswith(".toml")
)
# the paper's networks (DeepLab v2 / v3+), and beside them the timm encoders at Table I's budgets
PAPER = [n for n in CONFIGS if "-dlv" in n]
ENCODER_CONFIGS = [n for n in CONFIGS if n not in PAPER]
ENCODER_RUNS = [n for n in ENCODER_CONFIGS if n.endswith("-1.7.toml")]  # one per family runs
TINY = (33, 65)


def _config(name: str) -> TrainConfig:
    with resources.as_file(resources.files("trainer") / "configs" / name) as path:
        return load_config(path)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    return {
        "cityscapes": fabricate.cityscapes(root / "cityscapes", {"train": 3, "val": 2}),
        "gta5": fabricate.gta5(root / "gta5", 3),
        "synthia": fabricate.synthia(root / "synthia", 3),
        "synscapes": fabricate.synscapes(root / "synscapes", 3),
        "cache": root / "cache",
    }


def _tiny(cfg: TrainConfig, trees: dict[str, Path], **changes: object) -> TrainConfig:
    return configure(
        cfg,
        cfg.strategy,
        data_root=str(trees["cityscapes"]),
        source_root=str(trees[cfg.source_dataset]),
        crop=TINY,
        data_cache=str(trees["cache"]),
        pretrain_iterations=1,
        iterations=1,
        eval_every=1,
        device="cpu",
        amp=False,
        threads=1,
        **changes,
    )


def test_the_papers_experiments_are_all_there() -> None:
    runs = {(c.source_dataset, c.model, c.num_classes, c.budget_rate) for c in map(_config, PAPER)}
    rates = (0.017, 0.034, 0.068, 0.168)
    assert runs == (
        {("gta5", "deeplabv2_r101", 19, r) for r in rates}
        | {("synthia", "deeplabv2_r101", 16, r) for r in rates}
        | {("synscapes", "deeplabv2_r101", 19, 0.05), ("gta5", "deeplabv3plus_r101", 19, 0.05)}
    )


def test_each_encoder_family_has_a_config_beside_the_papers() -> None:
    """Each timm family (trainer/nets/catalog.py) at each of Table I's budgets: the paper's
    GTA5 -> Cityscapes file of that budget but for the model block."""
    budgets = {}
    for name in ENCODER_CONFIGS:
        cfg = _config(name).to_dict()
        paper = _config(f"gta5-cityscapes-dlv2-{name.rsplit('-', 1)[1]}").to_dict()
        assert cfg["model"] in ENCODERS and not cfg["frozen_bn"]
        assert {k for k in cfg if cfg[k] != paper[k]} == {"model", "frozen_bn"}
        family = ENCODERS[cfg["model"]].arch.split("_")[0]
        budgets.setdefault(family, set()).add(cfg["budget_rate"])
    assert budgets == {f: {0.017, 0.034, 0.068, 0.168} for f in ("convnext", "pvt", "vit")}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_has_section_iv_b_settings(name: str) -> None:
    cfg = _config(name)
    assert (cfg.lr, cfg.pretrain_lr, cfg.momentum, cfg.weight_decay) == (2.5e-4, 2.5e-4, 0.9, 1e-4)
    assert (cfg.poly_power, cfg.head_lr_mult, cfg.batch_source, cfg.batch_target) == (
        0.9,
        10.0,
        2,
        2,
    )
    assert cfg.strategy == "full" and configure(cfg, "full") == cfg  # the full model, spelled out
    assert cfg.pretrained is None and cfg.translated_dir is None  # "" in TOML means none
    assert cfg.dataset == "cityscapes" and cfg.crop == (512, 1024)
    assert cfg.frozen_bn == (name in PAPER)  # the timm encoders have no BatchNorm
    assert (cfg.target_split, cfg.val_split, cfg.test_split) == ("train", "val", "val")
    # the schedule in passes: ~27 over Cityscapes train (2,975 images) at batch 2, val once
    assert cfg.adapt_iterations(2975) == 40_176 == cfg.eval_every
    assert cfg.passes - cfg.query_passes >= 10 and cfg.contrast_weight == 1.0


def test_configs_of_one_table_differ_only_in_budget() -> None:
    gta = [_config(n).to_dict() for n in PAPER if n.startswith("gta5-cityscapes-dlv2")]
    for other in gta[1:]:
        assert {k for k in other if other[k] != gta[0][k]} == {"budget_rate"}


# One config per (source, model): the others of its table differ only in budget_rate (above).
RUNS = [
    "gta5-cityscapes-dlv2-1.7.toml",
    "synthia-cityscapes-dlv2-1.7.toml",
    "synscapes-cityscapes-dlv2-5.toml",
    "gta5-cityscapes-dlv3plus-5.toml",
    *ENCODER_RUNS,
]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """ResNet-101 at 33x65 takes ~3 s per step on one thread, and many times that on two
    threads of a busy machine (the threads wait on each other)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.usefixtures("one_thread")
def test_config_runs_one_pretrain_and_one_adaptation_iteration(
    name: str, trees: dict[str, Path]
) -> None:
    cfg = _tiny(_config(name), trees)
    data = load_data(cfg)
    n_classes = cfg.num_classes
    assert data.num_classes == n_classes == len(data.class_colors)
    assert data.source.images.shape[1:] == (3, *TINY) and data.target.images.shape == (3, 3, *TINY)
    assert data.val is data.test and data.val.ids[0].startswith("val/")
    for split in (data.source, data.target, data.val):
        valid = split.labels[split.labels != 255]
        assert valid.numel() > 0 and int(valid.max()) < n_classes
    result = run_strategy(cfg, data, None)
    assert [p["iteration"] for p in result["curve"]] == [1]
    # M_e: 3 target images of 33 x 65 = 6,435 pixels; 1.7 % of them is 109, 5 % is 321
    assert result["expected_pixels"] == {0.017: 109, 0.05: 321}[cfg.budget_rate]
    # the one adaptation iteration is Algorithm 1's high iteration: every label from G_h,
    # at most the high half M_e // 2 (none when G_h is empty: in the SYNTHIA run S is 0 at
    # every pixel after the one pretraining step, so no pixel is above pi_high)
    labeled, spent = result["labeled_pixels"], result["spent"]
    assert spent["high"] == labeled == sum(spent.values()) == result["spent_high"]
    assert labeled <= result["high_expected"] == result["expected_pixels"] // 2
    # mIoU: the mean of the per-class IoUs it reports (rounded to 0.01), absent classes left out
    ious = [v for v in result["test_per_class_iou"] if v is not None]
    assert len(result["test_per_class_iou"]) == n_classes and ious
    assert abs(result["test_miou"] - sum(ious) / len(ious)) < 0.01


def test_cache_is_memory_mapped_and_equal(trees: dict[str, Path]) -> None:
    cfg = _tiny(_config("synthia-cityscapes-dlv2-3.4.toml"), trees)
    cached = load_data(cfg)
    fresh = load_data(cfg.replace(data_cache=""))
    assert torch.equal(cached.source.images, fresh.source.images)
    assert torch.equal(cached.target.labels, fresh.target.labels)
    assert cached.target.ids == fresh.target.ids
    assert any(p.name.startswith("synthia-all-") for p in trees["cache"].iterdir())


def test_missing_dataset_names_the_fix(tmp_path: Path, trees: dict[str, Path]) -> None:
    cfg = _tiny(_config("gta5-cityscapes-dlv2-1.7.toml"), trees)
    with pytest.raises(FileNotFoundError, match="gtFine/train/<city>.*data_root"):
        load_data(cfg.replace(data_root=str(tmp_path / "nowhere"), data_cache=""))
    (tmp_path / "gta5").mkdir()
    with pytest.raises(FileNotFoundError, match="images/\\*.png"):
        load_data(cfg.replace(source_root=str(tmp_path / "gta5"), data_cache=""))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_paper_config_spells_out_every_field(name: str) -> None:
    """A paper config sets every TrainConfig field, so a later default cannot change the
    experiment (scripts/paper_config_fields.py --write appends what a new field lacks)."""
    import tomllib
    from dataclasses import fields

    with resources.as_file(resources.files("trainer") / "configs" / name) as path:
        keys = set(tomllib.loads(path.read_text()))
    assert keys == {f.name for f in fields(TrainConfig)}


@pytest.mark.parametrize("name", CONFIGS)
def test_paper_configs_select_no_model_on_the_reported_split(name: str) -> None:
    cfg = _config(name)
    iterations = cfg.adapt_iterations(2975)  # Cityscapes train
    assert cfg.val_split == cfg.test_split == "val"
    check_model_selection(cfg, cfg.eval_every or cfg.pass_length(2975), iterations)
    with pytest.raises(ValueError, match="select the model on the reported split"):
        check_model_selection(cfg, iterations // 2, iterations)


def test_adapt_refuses_to_select_on_the_reported_split(trees: dict[str, Path]) -> None:
    cfg = _tiny(_config(CONFIGS[0]), trees).replace(iterations=2, eval_every=1)
    assert cfg.val_split == cfg.test_split
    with pytest.raises(ValueError, match="eval_every = 2"):
        run_strategy(cfg, load_data(cfg), trees["cache"] / "ckpt")
    other = cfg.replace(val_split="train")  # another split: selection is fine
    check_model_selection(other, 1, 2)
