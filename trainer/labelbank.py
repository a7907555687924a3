"""The sparse label bank: one label map per target image, ``IGNORE_INDEX`` (255) = unlabeled.

Every answered query is merged here; the bank can be rebuilt from the answers stored by the
server, so a restarted trainer never asks for a pixel twice and loses no label.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.constants import GROUP_CODES, IGNORE_INDEX, group_code

# Aliases kept for trainer/worker/link.py (it imports ``GROUP_CODES, IGNORE`` from here).
IGNORE = IGNORE_INDEX
__all__ = ["GROUP_CODES", "IGNORE", "LabelBank"]


class LabelBank:
    """Labels (N, H, W) uint8 and the group each labeled pixel was queried from.

    ``asked`` marks every pixel sent to the oracle, answered or not, so that no pixel is asked
    twice even when its answer was a skip.
    """

    def __init__(self, num_images: int, height: int, width: int) -> None:
        shape = (num_images, height, width)
        self.labels = torch.full(shape, IGNORE_INDEX, dtype=torch.uint8)
        self.groups = torch.full(shape, IGNORE_INDEX, dtype=torch.uint8)
        self.asked = torch.zeros(shape, dtype=torch.bool)
        self._counts = torch.zeros(256, dtype=torch.long)  # labeled pixels per group code

    @property
    def num_labeled(self) -> int:
        return int(self._counts.sum())

    def count(self, group: str) -> int:
        """Labeled pixels that were queried from ``group``."""
        return int(self._counts[group_code(group)])

    def counts(self) -> dict[str, int]:
        return {name: int(self._counts[code]) for name, code in GROUP_CODES.items()}

    def mark_asked(self, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
        """index, ys, xs: (K,) long. Marks pixels as asked (answered or not)."""
        self.asked[index, ys, xs] = True

    def merge(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        classes: torch.Tensor,
        groups: Sequence[str] | str,
    ) -> int:
        """Store answers; classes == 255 (no answer) are skipped. Returns the number stored.

        A later answer for the same pixel (a correction) overwrites the earlier one.
        """
        classes = torch.as_tensor(classes, dtype=torch.long)
        codes = _group_codes(groups, len(classes))
        self.asked[index, ys, xs] = True
        keep = classes != IGNORE_INDEX
        index, ys, xs, classes, codes = index[keep], ys[keep], xs[keep], classes[keep], codes[keep]
        was = self.labels[index, ys, xs] != IGNORE_INDEX  # corrections replace, not add
        self._counts -= torch.bincount(self.groups[index, ys, xs][was].long(), minlength=256)
        self.labels[index, ys, xs] = classes.to(torch.uint8)
        self.groups[index, ys, xs] = codes
        self._counts += torch.bincount(codes.long(), minlength=256)
        return int(keep.sum())

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Labels (B, H, W) long, groups (B, H, W) long and asked (B, H, W) bool of a batch."""
        return self.labels[index].long(), self.groups[index].long(), self.asked[index]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"labels": self.labels, "groups": self.groups, "asked": self.asked}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.labels, self.groups, self.asked = state["labels"], state["groups"], state["asked"]
        labeled = self.labels != IGNORE_INDEX
        self._counts = torch.bincount(self.groups[labeled].long(), minlength=256)


def _group_codes(groups: Sequence[str] | str, n: int) -> torch.Tensor:
    if isinstance(groups, str):
        return torch.full((n,), group_code(groups), dtype=torch.uint8)
    return torch.tensor([group_code(g) for g in groups], dtype=torch.uint8)
