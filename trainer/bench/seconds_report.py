"""The seconds bench's table (issue 24 item 5): target-test mIoU of each strategy at each
budget in annotator seconds, pixels vs regions, with the labels the seconds bought and the
label noise of the region queries."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainer.bench.presets import CITYSCAPES_TRAIN_IMAGES


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def seconds_rows(
    results: Iterable[dict[str, Any]], target_images: int
) -> dict[tuple[str, str, float], list[dict]]:
    """Timed runs grouped by (shift, strategy, seconds per target image); a run that does not
    say its target images had ``target_images``."""
    rows: dict[tuple[str, str, float], list[dict]] = defaultdict(list)
    for r in results:
        if r.get("budget_seconds"):
            r = {"target_images": target_images, **r}
            per_image = r["budget_seconds"] / r["target_images"]
            rows[(r.get("shift", ""), r["strategy"], round(per_image, 4))].append(r)
    return rows


def seconds_table(results: list[dict[str, Any]], target_images: int) -> str:
    """Markdown: one row per (shift, strategy, budget): the budget as seconds per target
    image, minutes over the bench's target images and Cityscapes-equivalent minutes (the same
    seconds per image over its 2,975 frames), test mIoU (mean ± sd over seeds), the seconds
    spent, labelled pixels per image, region queries and their label noise."""
    lines = [
        "| shift | strategy | s / image | bench min | Cityscapes min | seeds | test mIoU "
        "| val mIoU | spent min | labels / image | regions | region noise |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (shift, strategy, per_image), runs in sorted(seconds_rows(results, target_images).items()):
        n = runs[0]["target_images"]
        noise = [r["region_noise"] for r in runs if r.get("region_noise") is not None]
        lines.append(
            f"| {shift} | {strategy} | {per_image:g} | {per_image * n / 60:.2f} "
            f"| {per_image * CITYSCAPES_TRAIN_IMAGES / 60:.0f} | {len(runs)} "
            f"| {_mean_sd([r['test_miou'] for r in runs])} "
            f"| {_mean_sd([r['val_miou'] for r in runs])} "
            f"| {statistics.mean(r['spent_seconds'] for r in runs) / 60:.2f} "
            f"| {statistics.mean(r['labeled_pixels'] for r in runs) / n:.1f} "
            f"| {statistics.mean(r['regions_asked'] for r in runs):.0f} "
            f"| {f'{100 * statistics.mean(noise):.1f} %' if noise else '-'} |"
        )
    return "\n".join(lines) + "\n"


def seconds_plot(results: list[dict[str, Any]], target_images: int, path: Path) -> None:
    """Test mIoU (mean over seeds) against annotator hours, Cityscapes-equivalent (the same
    seconds per image over its 2,975 frames), one line per strategy and shift: pixel rows
    solid, region rows dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for (shift, strategy, per_image), runs in sorted(seconds_rows(results, target_images).items()):
        hours = per_image * CITYSCAPES_TRAIN_IMAGES / 3600
        lines[(shift, strategy)].append((hours, statistics.mean(r["test_miou"] for r in runs)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (shift, strategy), points in sorted(lines.items()):
        xs, ys = zip(*sorted(points), strict=True)
        style = "--" if strategy.startswith("region-") else "-"
        ax.plot(xs, ys, style, marker="o", label=f"{strategy} ({shift})")
    ax.set_xscale("log")
    ax.set_xlabel("annotator hours (Cityscapes-equivalent: same seconds per frame)")
    ax.set_ylabel("target-test mIoU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
