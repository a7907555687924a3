"""Pixels vs regions at equal annotator seconds (issue 24 item 5), end to end on tiny data."""

import torch

from trainer.bench.experiment import run_strategy
from trainer.bench.grid import plan
from trainer.bench.presets import PRESETS, SECONDS_PER_IMAGE
from trainer.config import TrainConfig
from trainer.cost import REGION_SECONDS
from trainer.data.superpixels import region_maps
from trainer.loop.train import load_data
from trainer.strategies import configure


def test_the_seconds_preset_times_every_run() -> None:
    assert SECONDS_PER_IMAGE == (0.3025, 1.2101, 4.8403)  # 15, 60, 240 min / 2,975 frames
    runs = plan(PRESETS["seconds"], TrainConfig())
    # the standard preset's seven rows that take a budget and the three region rows
    pixel_rows = {"random", "ripu", "ripu-ra", "pixelpick", "image-wise", "full", "mcu-cap"}
    assert {r.strategy for r in runs} == pixel_rows | {"region-random", "region-ripu", "region-cap"}
    assert len(runs) == 10 * 3 * 3
    assert {r.budget_seconds_per_image for r in runs} == set(SECONDS_PER_IMAGE)
    assert {r.query_kind for r in runs if r.strategy.startswith("region-")} == {"regions"}


def test_a_region_run_spends_its_seconds_on_whole_regions(tmp_path) -> None:
    from trainer.data.synth import generate_benchmark

    root = generate_benchmark(
        tmp_path / "data",
        counts={"source-train": 8, "target-train": 4, "target-val": 2, "target-test": 2},
    )
    base = TrainConfig(
        data_root=str(root),
        pretrain_iterations=2,
        iterations=6,
        passes=2.0,
        query_passes=1.0,
        eval_every=3,
        threads=1,
    )
    cfg = configure(base, "region-cap", budget_seconds_per_image=10.0)  # 40 s: 13 regions
    data = load_data(cfg)
    res = run_strategy(cfg, data, tmp_path / "cache")
    assert res["budget_seconds"] == 40.0
    assert 40.0 - REGION_SECONDS < res["spent_seconds"] <= 40.0
    assert sum(res["spent"].values()) == res["spent_seconds"]
    assert res["regions_asked"] == 13  # 39 s: every query a region click (no void region)
    assert res["labeled_pixels"] > 5 * res["regions_asked"]  # a region labels many pixels
    assert 0.0 <= res["region_noise"] < 0.5
    # the bank holds whole regions, each labelled with the GT-dominant class of its pixels
    bank, cost = _adapt_regions(cfg, data, tmp_path)
    labels, _, asked = bank.batch(torch.arange(bank.shape[0]))
    maps = region_maps(data.target.images, cfg.regions_per_image, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("superpixels-*.npy"))) == 1  # computed once
    truth = data.target.labels.long()
    regions_seen = 0
    for i in range(maps.shape[0]):
        for r in maps[i][asked[i]].unique().tolist():
            inside = maps[i] == r
            assert bool(asked[i][inside].all())  # a region is asked whole
            got = labels[i][inside].unique()
            gt = truth[i][inside]
            gt = gt[gt != 255]
            assert got.numel() == 1 and int(got) == int(gt.bincount().argmax())
            regions_seen += 1
    assert regions_seen == 13 and cost <= 40.0
    _refused_without_a_charging_oracle(cfg, data)


def _refused_without_a_charging_oracle(cfg, data) -> None:
    import pytest

    from trainer.learning.labelbank import LabelBank
    from trainer.loop.adapt import adapt, local_oracle

    n, _, h, w = data.target.images.shape
    bank = LabelBank(n, h, w)
    with pytest.raises(ValueError, match="an oracle that charges seconds"):
        adapt(None, cfg, data, local_oracle(data.target.labels, bank), bank, torch.device("cpu"))
    assert bank.num_asked == 0


def _adapt_regions(cfg, data, tmp_path):
    from trainer.cost import CostModel, SecondsLedger
    from trainer.learning.labelbank import LabelBank
    from trainer.loop.adapt import AdaptHooks, adapt, local_oracle
    from trainer.loop.train import pretrain

    device = torch.device("cpu")
    model = pretrain(cfg, data, device, tmp_path / "cache", progress=False)
    n, _, h, w = data.target.images.shape
    bank, ledger = LabelBank(n, h, w), SecondsLedger(CostModel(), seed=cfg.seed)
    data.target_regions = region_maps(data.target.images, cfg.regions_per_image, tmp_path / "cache")
    oracle = local_oracle(data.target.labels, bank, ledger)
    adapt(model, cfg, data, oracle, bank, device, AdaptHooks(progress=False))
    return bank, ledger.total


def test_the_seconds_table_by_hand() -> None:
    from trainer.bench.seconds_report import seconds_table

    run = {"shift": "moderate", "strategy": "region-cap", "budget_seconds": 96.0}
    runs = [
        {
            **run,
            "test_miou": 50.0,
            "val_miou": 40.0,
            "spent_seconds": 90.0,
            "labeled_pixels": 320,
            "regions_asked": 30,
            "region_noise": 0.1,
        },
        {
            **run,
            "test_miou": 54.0,
            "val_miou": 44.0,
            "spent_seconds": 96.0,
            "labeled_pixels": 384,
            "regions_asked": 32,
            "region_noise": 0.2,
        },
        {"strategy": "random", "budget_rate": 0.017, "test_miou": 1.0},  # untimed: left out
    ]
    table = seconds_table(runs, 32).splitlines()
    assert len(table) == 3
    # 96 s over 32 images: 3 s an image, 1.6 bench minutes, 149 min over 2,975 frames;
    # labels (320 + 384) / 2 / 32 = 11.0 an image; noise (10 + 20) / 2 = 15 %
    assert table[2] == (
        "| moderate | region-cap | 3 | 1.60 | 149 | 2 | 52.0 ± 2.8 | 42.0 ± 2.8 | 1.55 "
        "| 11.0 | 31 | 15.0 % |"
    )


def test_the_seconds_plot_is_written(tmp_path) -> None:
    from trainer.bench.seconds_report import seconds_plot

    runs = [
        {"shift": "moderate", "strategy": s, "budget_seconds": b, "test_miou": m}
        for s, b, m in (("random", 9.6, 40.0), ("random", 96.0, 45.0), ("region-cap", 96.0, 50.0))
    ]
    seconds_plot(runs, 32, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_the_seconds_report_never_overwrites_its_input(tmp_path) -> None:
    """``--out`` the folder of a bench's own results.json: refused with a message, the input
    left as it was (the merge used to replace it)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    bench = tmp_path / "bench-seconds"
    bench.mkdir()
    source = bench / "results.json"
    source.write_text('{"results": [], "seconds": 1.0}')
    before = source.read_bytes()
    cmd = [sys.executable, str(root / "scripts" / "seconds_report.py"), "--results", str(source)]
    r = subprocess.run([*cmd, "--out", str(bench)], capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "would overwrite its input" in r.stderr
    assert source.read_bytes() == before and not (bench / "seconds.md").exists()
