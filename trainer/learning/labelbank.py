"""The sparse label bank: one label map per target image, 255 = unlabeled.

Every answered query is merged here; the bank can be rebuilt from the answers stored by the
server, so a restarted trainer never asks for a pixel twice and loses no label.

Memory is proportional to the pixels asked, not to the images: each image keeps one sorted
tensor of packed entries ``offset << 11 | class << 3 | group`` (offset = y * W + x), one entry
per pixel sent to the oracle. An entry whose class is 255 was asked but not answered (a skip).
Images of up to 2**21 pixels (Cityscapes' 1024x2048) pack into int32, 4 bytes a pixel asked;
larger ones into int64. ``batch`` expands just the images of a batch into dense maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainer.constants import GROUP_CODES, IGNORE_INDEX

_SHIFT = 11  # 8 bits of class, 3 of group below the pixel offset
_NO_GROUP = 7  # the group field of an entry asked but not answered
_INT32_PIXELS = 1 << 21  # offset << 11 fits 32 bits (stored with a -2**31 bias)
if max(GROUP_CODES.values()) >= _NO_GROUP:
    raise ValueError("group codes must fit the label bank's 3-bit group field")


class LabelBank:
    """Labels (N, H, W) and the group each labeled pixel was queried from, stored sparsely.

    Every pixel sent to the oracle is marked asked, answered or not, so that no pixel is asked
    twice even when its answer was a skip.
    """

    def __init__(self, num_images: int, height: int, width: int) -> None:
        self._reset((num_images, height, width))

    def _reset(self, shape: tuple[int, int, int]) -> None:
        self.shape = shape
        wide = shape[1] * shape[2] > _INT32_PIXELS
        self._dtype = torch.int64 if wide else torch.int32
        self._bias = 0 if wide else 1 << 31
        self._entries = [torch.empty(0, dtype=self._dtype) for _ in range(shape[0])]
        self._counts = torch.zeros(256, dtype=torch.long)  # labeled pixels per group code

    @property
    def num_pixels(self) -> int:
        """Pixels of all target images together, labeled or not (N * H * W)."""
        n, h, w = self.shape
        return n * h * w

    @property
    def num_labeled(self) -> int:
        return int(self._counts.sum())

    @property
    def num_asked(self) -> int:
        """Pixels sent to the oracle, answered or not."""
        return sum(len(e) for e in self._entries)

    def nbytes(self) -> int:
        """Bytes held by the bank's entries (the per-image tensor headers not counted)."""
        return sum(e.numel() * e.element_size() for e in self._entries)

    def count(self, group: str) -> int:
        """Labeled pixels that were queried from ``group``."""
        return int(self._counts[GROUP_CODES[group]])

    def counts(self) -> dict[str, int]:
        return {name: int(self._counts[code]) for name, code in GROUP_CODES.items()}

    def labeled_per_image(self) -> torch.Tensor:
        """(N,) long: labeled pixels of each image (skips not counted)."""
        return torch.tensor(
            [int((((e >> 3) & 0xFF) != IGNORE_INDEX).sum()) for e in self._entries],
            dtype=torch.long,
        )

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """(num_classes,) long: labeled pixels of each class, all images together."""
        counts = torch.zeros(num_classes, dtype=torch.long)
        for e in self._entries:
            cls = (e >> 3) & 0xFF
            counts += torch.bincount(cls[cls != IGNORE_INDEX].long(), minlength=num_classes)
        return counts

    def mark_asked(self, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
        """index, ys, xs: (K,) long. Marks pixels as asked (answered or not)."""
        classes = torch.full((len(torch.as_tensor(index)),), IGNORE_INDEX, dtype=torch.long)
        self.merge(index, ys, xs, classes, "other")

    def unmark(self, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> int:
        """Forget that pixels were asked (a query withdrawn before anyone answered it), so that
        they may be asked again. A labeled pixel keeps its label. Returns the pixels unmarked."""
        images, offsets = self._pixels(index, ys, xs)
        removed = 0
        for row in torch.unique(images).tolist():
            old = self._entries[row]
            if not len(old):
                continue
            off, cls, _ = self._decode(old)
            drop = torch.isin(off, offsets[images == row]) & (cls == IGNORE_INDEX)
            removed += int(drop.sum())
            self._entries[row] = old[~drop]
        return removed

    def merge(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        classes: torch.Tensor,
        groups: Sequence[str] | str,
    ) -> int:
        """Store answers; classes == 255 (no answer) are skipped. Returns the number stored.

        Every pixel is marked asked. A later answer for the same pixel (a correction, also
        within one call) overwrites the earlier one; a skip never erases a label.
        """
        classes = torch.as_tensor(classes, dtype=torch.long).cpu()
        codes = _group_codes(groups, len(classes)).long()
        images, offsets = self._pixels(index, ys, xs)
        if not len(images) == len(classes) == len(codes):
            raise ValueError("index, ys, xs, classes and groups must have one entry per pixel")
        if len(classes) and not 0 <= int(classes.min()) <= int(classes.max()) <= IGNORE_INDEX:
            raise ValueError(f"classes must be 0..{IGNORE_INDEX} ({IGNORE_INDEX} = no answer)")
        answered = classes != IGNORE_INDEX
        stored = int(answered.sum())
        keep = _latest_per_pixel(images * (self.shape[1] * self.shape[2]) + offsets, answered)
        if keep is not None:
            images, offsets, classes, codes, answered = (
                t[keep] for t in (images, offsets, classes, codes, answered)
            )
        codes = torch.where(answered, codes, _NO_GROUP)
        self._counts += torch.bincount(codes[answered], minlength=256)
        key = offsets << _SHIFT
        new = (key | (classes << 3) | codes).sub_(self._bias).to(self._dtype)
        probe = key.sub_(self._bias).to(self._dtype)  # the lowest entry of each pixel
        rows, sizes = torch.unique_consecutive(images, return_counts=True)
        sizes = sizes.tolist()
        parts = zip(new.split(sizes), probe.split(sizes), answered.split(sizes), strict=True)
        for row, part in zip(rows.tolist(), parts, strict=True):
            self._merge_image(row, *part)
        return stored

    def _pixels(
        self, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (K,) and offsets y * W + x (K,) long; IndexError for a pixel outside the bank."""
        n, h, w = self.shape
        index, ys, xs = (torch.as_tensor(t, dtype=torch.long).cpu() for t in (index, ys, xs))
        if not len(index) == len(ys) == len(xs):
            raise ValueError("index, ys and xs must have the same length")
        for name, t, size in (("index", index, n), ("ys", ys, h), ("xs", xs, w)):
            if len(t) and not 0 <= int(t.min()) <= int(t.max()) < size:
                raise IndexError(f"{name} outside the label bank's shape {self.shape}")
        return index, ys * w + xs

    def _merge_image(
        self, row: int, new: torch.Tensor, probe: torch.Tensor, answered: torch.Tensor
    ) -> None:
        """One image's packed answers, sorted by pixel, unique: overwrite or insert entries."""
        old = self._entries[row]
        if not len(old):
            self._entries[row] = new.clone()  # not a view of the whole merge's tensor
            return
        pos = torch.searchsorted(old, probe)
        found = (old[pos.clamp(max=len(old) - 1)] | 0x7FF) == (probe | 0x7FF)  # same offset
        if bool(found.any()):
            replace = pos[found & answered]
            self._counts -= _group_counts(old[replace])
            old[replace] = new[found & answered]
            new, pos = new[~found], pos[~found]
        if len(new):  # insert at pos: an O(old + new) merge of two sorted tensors
            at = pos + torch.arange(len(pos))
            merged = torch.empty(len(old) + len(new), dtype=self._dtype)
            is_new = torch.zeros(len(merged), dtype=torch.bool)
            is_new[at] = True
            merged[at] = new
            merged[~is_new] = old
            self._entries[row] = merged

    def batch(
        self, index: torch.Tensor, dtype: torch.dtype = torch.long
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Labels (B, H, W), groups (B, H, W) (both ``dtype``, long unless asked otherwise) and
        asked (B, H, W) bool of the images ``index`` (B,), dense, on the CPU."""
        parts = [self._entries[row] for row in torch.as_tensor(index).reshape(-1).tolist()]
        _, h, w = self.shape
        shape = (len(parts), h, w)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.uint8)
        groups = torch.full(shape, IGNORE_INDEX, dtype=torch.uint8)
        asked = torch.zeros(shape, dtype=torch.bool)
        if parts:
            lengths = torch.tensor([len(p) for p in parts])
            off, cls, code = self._decode(torch.cat(parts))
            flat = off + torch.arange(len(parts)).repeat_interleave(lengths) * (h * w)
            labels.view(-1)[flat] = cls.to(torch.uint8)
            code = torch.where(cls == IGNORE_INDEX, IGNORE_INDEX, code)  # a skip: no group
            groups.view(-1)[flat] = code.to(torch.uint8)
            asked.view(-1)[flat] = True
        return labels.to(dtype), groups.to(dtype), asked

    def labeled_counts(self, index: torch.Tensor, group: str = "high") -> tuple[int, int]:
        """Labeled pixels of the images ``index`` (a row as often as it occurs) queried from
        ``group``, and the other labeled ones: host integers, read from the entries."""
        rows = torch.as_tensor(index).reshape(-1).tolist()
        if not rows:
            return 0, 0
        _, cls, code = self._decode(torch.cat([self._entries[row] for row in rows]))
        answered = cls != IGNORE_INDEX
        mine = int((answered & (code == GROUP_CODES[group])).sum())
        return mine, int(answered.sum()) - mine

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``entries`` (M,) packed, ``lengths`` (N,) entries per image, ``shape`` (3,)."""
        return {
            "entries": torch.cat(self._entries),
            "lengths": torch.tensor([len(e) for e in self._entries], dtype=torch.long),
            "shape": torch.tensor(self.shape, dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a ``state_dict``; also the dense one of older versions (labels, groups and
        asked (N, H, W)), converted. The bank takes the shape of the state."""
        if "labels" in state:
            self._load_dense(state["labels"], state["groups"], state["asked"])
            return
        shape = tuple(int(v) for v in state["shape"])
        lengths = state["lengths"].tolist()
        if len(shape) != 3 or len(lengths) != shape[0] or sum(lengths) != len(state["entries"]):
            raise ValueError("label bank state: shape, lengths and entries do not agree")
        self._reset(shape)  # type: ignore[arg-type]
        entries = state["entries"].to(self._dtype)
        self._entries = [part.clone() for part in entries.split(lengths)]
        for chunk in entries.split(1 << 24):
            self._counts += _group_counts(chunk)

    def _load_dense(self, labels: torch.Tensor, groups: torch.Tensor, asked: torch.Tensor) -> None:
        if not labels.dim() == 3 or not labels.shape == groups.shape == asked.shape:
            raise ValueError("dense label bank state: labels, groups and asked must be (N, H, W)")
        self._reset(tuple(labels.shape))  # type: ignore[arg-type]
        for row in range(labels.shape[0]):
            cls, code = labels[row].reshape(-1).long(), groups[row].reshape(-1).long()
            off = (asked[row].reshape(-1) | (cls != IGNORE_INDEX)).nonzero().squeeze(1)
            cls, code = cls[off], code[off]
            labeled = cls != IGNORE_INDEX
            if bool((code[labeled] >= _NO_GROUP).any()):
                raise ValueError("dense label bank state: a labeled pixel has no group code")
            code = torch.where(labeled, code, _NO_GROUP)
            self._entries[row] = self._encode(off, cls, code)
            self._counts += torch.bincount(code[labeled], minlength=256)

    def _encode(self, off: torch.Tensor, cls: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return ((off << _SHIFT) | (cls << 3) | code).sub_(self._bias).to(self._dtype)

    def _decode(self, entries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Offsets, classes and group codes (long) of packed entries."""
        value = entries.long() + self._bias
        return value >> _SHIFT, (value >> 3) & 0xFF, value & 0x7


def _latest_per_pixel(flat: torch.Tensor, answered: torch.Tensor) -> torch.Tensor | None:
    """Positions that sort ``flat`` with one per pixel: its last answer, or a skip if it has
    none; None when ``flat`` is sorted and unique already."""
    if len(flat) < 2 or bool((flat[1:] > flat[:-1]).all()):
        return None
    order = torch.sort(flat * 2 + answered.long(), stable=True).indices
    flat = flat[order]
    last = torch.ones(len(flat), dtype=torch.bool)
    last[:-1] = flat[1:] != flat[:-1]
    return order[last]


def _group_counts(entries: torch.Tensor) -> torch.Tensor:
    """(256,) long: labeled entries per group code (the bias leaves the low bits alone)."""
    labeled = ((entries >> 3) & 0xFF) != IGNORE_INDEX
    return torch.bincount(entries[labeled] & 0x7, minlength=256)


def _group_codes(groups: Sequence[str] | str, n: int) -> torch.Tensor:
    if isinstance(groups, str):
        return torch.full((n,), GROUP_CODES[groups], dtype=torch.uint8)
    return torch.tensor([GROUP_CODES[g] for g in groups], dtype=torch.uint8)
