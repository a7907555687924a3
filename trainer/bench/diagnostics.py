"""Label diagnostics of a run: where the labels went and how the model did where it asked.

``label_diagnostics`` summarises a label bank against the target-train ground truth and the
run's :class:`trainer.loop.schedule.QueryLog`; ``plot_labels`` draws the benchmark's second plot.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import torch

from trainer.constants import IGNORE_INDEX
from trainer.loop.schedule import QueryLog


def label_diagnostics(
    labels: torch.Tensor, truth: torch.Tensor, num_classes: int, log: QueryLog
) -> dict[str, Any]:
    """Labels per image, class shares, the model's error where it asked, queries per iteration.

    Args:
        labels: (N, H, W) the label bank (``IGNORE_INDEX`` where unlabeled).
        truth: (N, H, W) target-train ground truth.
        num_classes: ``C``.
        log: pixels asked per iteration, answered and answered-but-mispredicted in all.

    Returns:
        ``labels_per_image_median``, ``top10_share`` (share of all labels held by the 10 % of
        images with most labels, at least one image), ``label_class_share`` and
        ``pixel_class_share`` (per class, of the labels and of the labeled ground truth),
        ``query_error_rate`` (answered pixels where the model's prediction at query time was
        not the answer; None without answers), ``queries_per_iteration`` max and mean over
        the iterations that asked, and how many did.
    """
    labeled = labels != IGNORE_INDEX
    per_image = labeled.flatten(1).sum(1).sort(descending=True).values
    total = int(per_image.sum())
    top = max(1, math.ceil(0.1 * len(per_image)))
    asked = [a for a in log.asked if a > 0]
    return {
        "labels_per_image_median": float(per_image.float().median()) if total else 0.0,
        "top10_share": int(per_image[:top].sum()) / total if total else None,
        "label_class_share": _shares(labels[labeled], num_classes),
        "pixel_class_share": _shares(truth[truth != IGNORE_INDEX], num_classes),
        "query_error_rate": log.wrong / log.answered if log.answered else None,
        "queries_per_iteration_max": max(asked, default=0),
        "queries_per_iteration_mean": statistics.fmean(asked) if asked else 0.0,
        "iterations_with_queries": len(asked),
    }


def _shares(values: torch.Tensor, num_classes: int) -> list[float]:
    counts = torch.bincount(values.long().flatten(), minlength=num_classes)[:num_classes]
    return [round(v, 5) for v in (counts.float() / counts.sum().clamp_min(1)).tolist()]


def plot_labels(results: list[dict[str, Any]], path: Path) -> None:
    """Top-10 % share of labels and the model's error where it asked, against the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    keys = ("top10_share", "query_error_rate")
    titles = ("share of labels in the top 10 % of images", "model error at queried pixels")
    for ax, key, title in zip(axes, keys, titles, strict=True):
        for strategy in dict.fromkeys(r["strategy"] for r in results):
            pts: dict[float, list[float]] = {}
            for r in results:
                value = (r.get("labels") or {}).get(key)
                if r["strategy"] == strategy and value is not None:
                    pts.setdefault(r["budget_rate"], []).append(value)
            if pts:
                xs = sorted(pts)
                ys = [100 * statistics.fmean(pts[x]) for x in xs]
                ax.plot([100 * x for x in xs], ys, marker="o", label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel("labeled target pixels (% of all)")
        ax.set_ylabel("%")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
