"""The pixels of the MCUs (III-C1) from one forward pass, for
:func:`trainer.learning.contrast.mcu_loss`.

Candidates are the labelled (and pseudo-labelled) pixels of every image, anchors the
misclassified ones, centres the G_l pixels; all are capped per image and class by one capped
draw (:func:`trainer.ops.draws.sample_per_group`), and their embeddings are read at full
resolution from the low-resolution embedding map by one bilinear ``grid_sample``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.config import CenterPixels, TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.learning.centres import every_pixel_sums
from trainer.learning.contrast import PixelBatch
from trainer.nets.output import SegOutput
from trainer.ops.draws import sample_per_group, sample_per_group_padded


def gather_batch_embeddings(
    emb: torch.Tensor,
    image: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Bilinear embeddings (P,D) of the maps emb (B,D,h,w) at full-res pixels (P,) of images
    image (P,), not normalised (the MCU losses normalise).

    One grid_sample call: the maps are stacked vertically with a zero row after each, so a
    sample near an image's edge reads zeros there, as grid_sample's zero padding does.
    """
    n, d, h, w = emb.shape
    stacked = F.pad(emb, (0, 0, 0, 1)).transpose(0, 1).reshape(1, d, n * (h + 1), w)
    gx = (xs.float() + 0.5) / size[1] * 2 - 1
    # y in the input's pixel units (align_corners=False), moved to its image's slot
    py = (ys.float() + 0.5) / size[0] * h - 0.5 + image * (h + 1)
    gy = (2 * py + 1) / (n * (h + 1)) - 1
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(emb.dtype)
    out = F.grid_sample(stacked, grid, mode="bilinear", align_corners=False)  # (1, D, 1, P)
    return out[0, :, 0].t().float()


def _draw(
    group: torch.Tensor,
    pick: torch.Tensor,
    wrong: torch.Tensor,
    caps: list[int],
    images: int,
    num_classes: int,
    gen: torch.Generator,
    padded: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Candidates and anchors capped per (image, class): indices, anchor flags, and (padded)
    which slots are used and whether the draw came out short."""
    if not padded:
        idx, (_, anchor) = sample_per_group(group, [pick, wrong], caps, images * 256, gen)
        return idx, anchor, None, None
    idx, (_, anchor), inexact = sample_per_group_padded(
        group, [pick, wrong], caps, images * 256, images * num_classes, gen
    )
    used = idx < group.numel()
    return idx.clamp(max=max(group.numel() - 1, 0)), anchor, used, inexact


@dataclass(frozen=True)
class PixelSetInputs:
    """The MCU's inputs from one forward pass over ``n_src`` source then target images.

    ``out``: the network's outputs (its embedding map); ``source_y`` / ``target_y``: (B,H,W)
    labels (255: none; target's from the label bank); ``target_pred``: the target rows' argmax
    (pseudo labels); ``target_low`` / ``source_low``: G_l masks (pseudo labels and centres);
    ``pred``: the argmax of every row; ``size``: (H, W); ``num_classes``: C."""

    out: SegOutput
    n_src: int
    source_y: torch.Tensor
    target_y: torch.Tensor
    target_pred: torch.Tensor
    target_low: torch.Tensor
    source_low: torch.Tensor
    pred: torch.Tensor
    size: tuple[int, int]
    num_classes: int


def build_pixel_sets(
    inputs: PixelSetInputs,
    cfg: TrainConfig,
    gen: torch.Generator,
    padded: bool = False,
) -> PixelBatch:
    """Pixels of the MCUs (III-C), all images at once: source anchors are misclassified source
    pixels, target anchors misclassified labeled pixels; centres come from G_l (pseudo labels
    on target). Candidates are every labelled (or pseudo-labelled) pixel, capped at
    ``2 * max_samples_per_class`` per image and class, plus the anchors: misclassified
    candidates capped at ``max_anchors_per_class`` per image and true class. Both caps are
    independent uniform draws without replacement within each (image, class).

    Labels are expected in ``[0, 255)`` (255: none). At full resolution (millions of labelled
    pixels) only element-wise passes touch every pixel: :func:`sample_per_group` thins the
    candidates before it sorts, so the sort sees O(images * classes * cap) pixels.

    ``padded``: fixed sizes, no host sync (:func:`sample_per_group_padded`): the batch has
    ``images * num_classes * (2 * max_samples + max_anchors)`` entries, the unused ones
    labelled 255 (they take part in nothing), only labels below ``num_classes`` are
    candidates, and ``inexact`` tells whether the capped draw came out short."""
    src_y, tgt_y, size, num_classes = (
        inputs.source_y,
        inputs.target_y,
        inputs.size,
        inputs.num_classes,
    )
    valid = torch.cat([src_y != IGNORE_INDEX, tgt_y != IGNORE_INDEX])  # true labels
    low = inputs.target_low & (tgt_y == IGNORE_INDEX)
    label = torch.cat([src_y, torch.where(low, inputs.target_pred, tgt_y)])
    lab = label.reshape(-1)
    per_image = size[0] * size[1]
    image_id = torch.arange(label.shape[0], device=label.device).view(-1, 1, 1)
    group = (image_id * 256 + label.clamp(0, 255)).reshape(-1)
    top = num_classes if padded else IGNORE_INDEX  # padded: max_groups = images x classes
    pick = (lab >= 0) & (lab < top)
    wrong = valid.reshape(-1) & (inputs.pred.reshape(-1) != lab) & (lab >= 0) & (lab < num_classes)
    caps = [2 * cfg.max_samples_per_class, cfg.max_anchors_per_class]
    idx, anchor, used, inexact = _draw(
        group, pick, wrong, caps, label.shape[0], num_classes, gen, padded
    )
    center_map = torch.cat([inputs.source_low & (src_y != IGNORE_INDEX), low])
    center = center_map.reshape(-1)[idx]
    image = torch.div(idx, per_image, rounding_mode="floor")
    pix = idx - image * per_image
    ys, xs = torch.div(pix, size[1], rounding_mode="floor"), pix % size[1]
    return PixelBatch(
        emb=gather_batch_embeddings(inputs.out.embedding, image, ys, xs, size),
        label=lab[idx] if used is None else torch.where(used, lab[idx], IGNORE_INDEX),
        anchor=anchor,
        center=center if used is None else center & used,
        image=image,
        domains=[0] * inputs.n_src + [1] * tgt_y.shape[0],
        inexact=inexact,
        centres=_every_centre(inputs, cfg, center_map, label),
    )


def _every_centre(
    inputs: PixelSetInputs, cfg: TrainConfig, center_map: torch.Tensor, label: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``center_pixels = "every"`` (III-C1): the (image, class) sums and counts of every G_l
    pixel's embedding, not only the drawn ones'; None: the drawn pixels (ours)."""
    if cfg.center_pixels != CenterPixels.EVERY:
        return None
    c = inputs.num_classes
    cls = torch.where(center_map & (label >= 0) & (label < c), label, c)
    return every_pixel_sums(inputs.out.embedding.float(), cls, c, inputs.size)
