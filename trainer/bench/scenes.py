"""Score maps that look like a network's, at any size, for the selection benchmark and the
dry run (:mod:`trainer.bench.dryrun`); no network runs.

What a segmentation network's outputs look like, and what these maps copy: its logits come
from a stride-8 head and are upsampled bilinearly, so the uncertainty sits on class borders
and in blobs of about 8 pixels and more, never on single pixels; its errors are whole cells
of the coarse map. :func:`network_like` makes 19-class logits that way: the true class gets a
margin of ``margin`` over the others at 1/8 of the size, every logit there gets Gaussian
noise (``noise``), the result is upsampled bilinearly; the aux head's logits are the same plus
more upsampled noise (its KL to the main head is Eq. 1's second term).

The class layout (the ground truth the oracle answers from) is a bundled street scene
(:func:`trainer.data.synth_layout.sample_layout`, target statistics) drawn at the size asked:
road, sidewalk, buildings, sky, vegetation, poles, signs, cars and persons (9 of the 19
classes; the others appear only as the noise's wrong argmax). The ego-vehicle hood, which the
bundled data marks ignore, is labelled car here, so that every asked pixel is answered.
A :class:`SceneCache` holds a handful of such scenes, each also flipped left-right, and
serves image ``i`` of a target set of any size as scene ``i mod n``, flipped or not (seeded)
and shifted cyclically along x by a seeded offset: 2,975 images cost the memory of the
handful (at 512x1024 and 19 classes, 80 MiB of softmax a scene).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.constants import IGNORE_INDEX
from trainer.data.synth_layout import CAR, sample_layout
from trainer.selection.uncertainty import uncertainty_score


def network_like(
    layout: torch.Tensor,
    classes: int,
    gen: torch.Generator,
    margin: float = 4.0,
    noise: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Main and aux logits (1,C,H,W) of a stride-8 head for the class layout (H,W) long."""
    h, w = layout.shape
    small = F.interpolate(layout[None, None].float(), size=(h // 8, w // 8), mode="nearest")
    low = margin * F.one_hot(small[:, 0].long(), classes).permute(0, 3, 1, 2).float()
    low = low + noise * torch.randn(low.shape, generator=gen)
    logits = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    extra = torch.randn(low.shape, generator=gen)
    aux = logits + F.interpolate(extra, size=(h, w), mode="bilinear", align_corners=False)
    return logits, aux


def blocky_layout(h: int, w: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    """(H,W) long: random classes in 64x64 blocks (the selection benchmark's layout)."""
    layout = torch.randint(0, classes, (1, 1, h // 64, w // 64), generator=gen).float()
    return F.interpolate(layout, size=(h, w), mode="nearest").long()[0, 0]


def scene_layout(h: int, w: int, classes: int, seed: int) -> torch.Tensor:
    """(H,W) long: a bundled street scene's classes (hood as car, ids folded into ``classes``)."""
    labels = sample_layout(np.random.default_rng(seed), h, w, "target").labels.copy()
    labels[labels == IGNORE_INDEX] = CAR
    return torch.from_numpy(labels).long() % classes


@dataclass
class SceneCache:
    """Scene variants at (H,W), each scene as drawn and flipped left-right: ``prob``
    (2n,C,H,W) softmax, ``score`` (2n,H,W) S (Eq. 1), ``label`` (2n,H,W) uint8 ground truth,
    ``pred`` (2n,H,W) uint8 argmax; for each of the target images, its ``variant`` and its
    ``shift`` (a cyclic shift along x, to the right)."""

    prob: torch.Tensor
    score: torch.Tensor
    label: torch.Tensor
    pred: torch.Tensor
    variant: torch.Tensor
    shift: torch.Tensor

    @staticmethod
    def build(images: int, h: int, w: int, classes: int, scenes: int, seed: int) -> SceneCache:
        gen = torch.Generator().manual_seed(seed)
        parts = []
        for k in range(scenes):
            layout = scene_layout(h, w, classes, seed * 1000 + k)
            logits, aux = network_like(layout, classes, gen)
            score = uncertainty_score(logits, aux)
            parts.append((logits.softmax(1)[0], score[0], layout, logits[0].argmax(0)))
        maps = [torch.stack([p[i] for p in parts]) for i in range(4)]
        prob, score, label, pred = (torch.cat([t, t.flip(-1)]) for t in maps)
        flip = torch.randint(0, 2, (images,), generator=gen)
        return SceneCache(
            prob,
            score,
            label.to(torch.uint8),
            pred.to(torch.uint8),
            torch.arange(images) % scenes + scenes * flip,
            torch.randint(0, w, (images,), generator=gen),
        )

    def batch(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """prob (B,C,H,W), score (B,H,W), pred (B,H,W) long, label (B,H,W) long of ``images``:
        two contiguous copies per map and image."""
        rows, w = images.tolist(), self.label.shape[-1]
        out = []
        for t in (self.prob, self.score, self.pred, self.label):
            view = torch.empty((len(rows), *t.shape[1:]), dtype=t.dtype)
            for k, i in enumerate(rows):
                base, s = t[int(self.variant[i])], int(self.shift[i])
                view[k, ..., s:] = base[..., : w - s]
                view[k, ..., :s] = base[..., w - s :]
            out.append(view)
        prob, score, pred, label = out
        return prob, score, pred.long(), label.long()

    def ask(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        group: str,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        """The oracle: the ground truth of image ``index`` at (ys, xs), through its variant
        and shift (the :class:`trainer.loop.bundles.Ask` signature)."""
        w = self.label.shape[-1]
        return self.label[self.variant[index], ys, (xs - self.shift[index]) % w].long()
