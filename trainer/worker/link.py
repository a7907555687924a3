"""The worker's link to the labeling service: its oracle (``ask``), budget (``spent``) and
label sync (``sync``, ``rebuild``) over one run.

One reader of the run's answers: one cursor over the answer stream and one image-id map.
Every answer read is remembered by pixel (so a pixel answered before is answered from memory
and never posted twice) and enters the label bank exactly once: the answers ``ask`` returns are
merged by the caller (``trainer.loop.step.query_oracle``); every other answer read on the way (late
ones after a timeout, corrections, answers to a predecessor's queries) waits for ``sync``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from client.api import BudgetExceeded, DuplicatePixel, ServiceClient, ServiceError
from server.schemas import GROUPS, IGNORE_INDEX, Region
from trainer.constants import GROUP_CODES
from trainer.learning.labelbank import LabelBank

log = logging.getLogger("adamcu.worker")

Pixel = tuple[int, int, int]  # (image_id, y, x)


def _as_array(values: Any, dtype: type) -> np.ndarray:
    """(K,) array from a tensor (any device), an array or a list."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1)


class ServiceLink:
    """The worker's side of one run: image ids, the oracle, budget and label sync.

    ``keys``: the target images' keys in bank-row order. ``mode="benchmark"``: ``ask`` blocks
    until the annotators answer (or ``timeout``); ``"human"``: it posts and returns no labels,
    and the answers arrive through ``sync``.
    """

    def __init__(
        self,
        client: ServiceClient,
        run_id: int,
        keys: Sequence[str],
        mode: str = "benchmark",
        timeout: float = 120.0,
        poll: float = 0.2,
    ) -> None:
        self.client, self.run_id, self.mode = client, run_id, mode
        self.timeout, self.poll = timeout, poll
        self.keys = list(keys)
        self.row = {key: i for i, key in enumerate(self.keys)}
        self.cursor = 0  # the id of the last answer read
        self._image_ids: dict[str, int] = {}  # key -> image id
        self._rows_by_id: dict[int, int] = {}  # image id -> bank row
        self._known: dict[Pixel, int] = {}  # every answer read: pixel -> class id
        self._unmerged: dict[Pixel, dict] = {}  # read, not yet in the bank (latest wins)
        self.posted: dict[int, Pixel] = {}  # query id -> pixel of the last post

    # -- image ids -------------------------------------------------------------------------
    def image_id(self, key: str) -> int:
        if key not in self._image_ids:
            self._load_images()
        if key not in self._image_ids:
            raise KeyError(f"image {key!r} is not registered in run {self.run_id}")
        return self._image_ids[key]

    def bank_row(self, image_id: int) -> int:
        """The label bank's row of the server's image ``image_id`` (its key's place in ``keys``)."""
        if image_id not in self._rows_by_id:
            self._load_images()
        return self._rows_by_id[image_id]

    def _load_images(self) -> None:
        rows = self.client.list_images(self.run_id)
        self._image_ids = {row["key"]: row["id"] for row in rows}
        self._rows_by_id = {
            row["id"]: self.row[row["key"]] for row in rows if row["key"] in self.row
        }

    # -- the oracle ------------------------------------------------------------------------
    def ask(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        group: str,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        """The training step's oracle: class ids (K,) of bank rows ``index`` at ``(ys, xs)``
        (255: no answer; always 255 in human mode). A batch the budget refuses gets 255s."""
        keys = [self.keys[i] for i in index.tolist()]
        try:
            if self.mode == "human":
                self._post(keys, ys, xs, group, scores)
                return torch.full((len(keys),), IGNORE_INDEX, dtype=torch.long)
            classes = self.answer(keys, ys, xs, group, scores)
        except BudgetExceeded as exc:
            log.warning("budget refused a batch of %d: %s", len(keys), exc)
            return torch.full((len(keys),), IGNORE_INDEX, dtype=torch.long)
        return torch.as_tensor(classes, dtype=torch.long)

    def answer(
        self,
        keys: Sequence[str],
        ys: Any,
        xs: Any,
        groups: Sequence[str] | str = "other",
        scores: Any = None,
    ) -> np.ndarray:
        """Class ids (K,) int64 for pixels ``(keys[k], ys[k], xs[k])``; 255 = no answer.

        Posts the pixels not answered before and waits until they are answered, nothing is in
        flight (skips) or ``timeout``. The answers returned are the caller's to merge.
        ys, xs: (K,) ints (tensor, array or list). groups: one name per pixel or one for all
        (names outside the API's, e.g. "low", are sent as "other"). scores: (K,) or None.
        Raises ``BudgetExceeded`` when the batch would overspend the run's budget.
        """
        pixels, new = self._post(keys, ys, xs, groups, scores, skip_known=True)
        if new:
            self.cursor = self.client.poll_answers(
                self.run_id,
                self._remember,
                lambda: all(p in self._known for p in new),
                self.timeout,
                self.poll,
                self.cursor,
            )
        for p in pixels:
            self._unmerged.pop(p, None)  # the caller merges these
        return np.array([self._known.get(p, IGNORE_INDEX) for p in pixels], dtype=np.int64)

    def _post(
        self,
        keys: Sequence[str],
        ys: Any,
        xs: Any,
        groups: Sequence[str] | str,
        scores: Any,
        skip_known: bool = False,
        regions: Sequence[Region] | None = None,
    ) -> tuple[list[Pixel], list[Pixel]]:
        """Post the pixels as queries (with ``skip_known``, only those never answered, each
        once); returns every pixel and the ones posted. ``regions``: one per pixel, each a
        region query whose pixel is the region's first (``trainer.worker.regions``)."""
        ys, xs = _as_array(ys, np.int64), _as_array(xs, np.int64)
        n = len(keys)
        groups = [groups] * n if isinstance(groups, str) else list(groups)
        scores = np.zeros(n) if scores is None else _as_array(scores, np.float64)
        if not len(ys) == len(xs) == len(groups) == len(scores) == n:
            raise ValueError("keys, ys, xs, groups and scores must have the same length")
        pixels = [(self.image_id(k), int(y), int(x)) for k, y, x in zip(keys, ys, xs, strict=True)]
        first: dict[Pixel, int] = {}
        if skip_known:
            self._read()
            for i, p in enumerate(pixels):
                if p not in self._known:
                    first.setdefault(p, i)
        else:
            first = {p: i for i, p in enumerate(pixels)}
        if not first:
            return pixels, []
        queries = [
            {
                "image_id": p[0],
                "y": p[1],
                "x": p[2],
                "score": float(scores[i]),
                "group": wire_group(groups[i]),
            }
            | ({} if regions is None else {"region": regions[i].model_dump()})
            for p, i in first.items()
        ]
        try:
            ids = self.client.post_queries(self.run_id, queries)
            self.posted = dict(zip(ids, first, strict=True))
        except DuplicatePixel as error:
            if not error.maybe_stored:
                raise  # asked before this object existed: a caller's bookkeeping bug
            self.posted = {}  # stored, ids unknown: ``post`` reads them back
        return pixels, list(first)

    def post(
        self,
        rows: Sequence[int],
        ys: Any,
        xs: Any,
        group: str,
        scores: Any,
        regions: Sequence[Region] | None = None,
    ) -> dict[int, Pixel]:
        """Post pixels of bank ``rows`` as queries now (the session's rounds), or with
        ``regions`` region queries (each at its region's first pixel ``ys, xs``); returns
        query id -> pixel. Raises ``BudgetExceeded`` when the round would overspend."""
        self.posted = {}
        keys = [self.keys[i] for i in rows]
        _, new = self._post(keys, ys, xs, group, scores, regions=regions)
        if new and not self.posted:  # the response was lost
            self.posted = self._ids_of(set(new))
        return self.posted

    def _ids_of(self, pixels: set[Pixel]) -> dict[int, Pixel]:
        """Query ids of ``pixels`` read back from the record (after a lost response)."""
        found = {}
        for q in self.client.iter_queries(self.run_id):
            pixel = (q["image_id"], q["y"], q["x"])
            if pixel in pixels and q.get("status") != "withdrawn":
                found[int(q["id"])] = pixel
        return found

    def withdraw(self, ids: Sequence[int]) -> tuple[list[int], dict[int, str]]:
        """Withdraw pending queries (their reservations released on the server); returns the
        ids withdrawn and the status of each one kept (leased, answered, skipped...)."""
        if not ids:
            return [], {}
        try:
            out = self.client.withdraw(self.run_id, list(ids))
        except ServiceError as error:
            if error.code != "not_withdrawable":
                raise
            return [], {int(i): "unknown" for i in ids}  # none pending: all claimed or done
        kept = {int(k["id"]): str(k["status"]) for k in out.get("kept", [])}
        return [int(i) for i in out["withdrawn"]], kept

    # -- the answer stream -----------------------------------------------------------------
    def _read(self) -> None:
        """Read the answers that arrived since the cursor (late ones, corrections)."""
        for answer in self.client.iter_answers_since(self.run_id, self.cursor):
            self.cursor = max(self.cursor, int(answer["id"]))
            self._remember(answer)

    def _remember(self, answer: dict) -> None:
        pixel = (answer["image_id"], answer["y"], answer["x"])
        self._known[pixel] = int(answer["class_id"])
        self._unmerged[pixel] = answer

    def sync(self, bank: LabelBank, on_answers: Callable[[list[dict]], None] | None = None) -> int:
        """Merge every answer read or arrived since the last merge into the bank (each answer
        once; a correction wins). ``on_answers`` sees them first. Returns the labels stored."""
        self._read()
        if not self._unmerged:
            return 0
        answers = list(self._unmerged.values())
        self._unmerged = {}
        if on_answers is not None:
            on_answers(answers)
        (rows, ys, xs), sizes = self._cells(answers)
        names = [a["group"] if a["group"] in GROUP_CODES else "other" for a in answers]
        groups = [g for g, n in zip(names, sizes.tolist(), strict=True) for _ in range(n)]
        classes = torch.tensor([a["class_id"] for a in answers]).repeat_interleave(sizes)
        return bank.merge(rows, ys, xs, classes, groups)

    def rebuild(
        self, bank: LabelBank, on_answers: Callable[[list[dict]], None] | None = None
    ) -> list[dict]:
        """After a restart: every pixel asked (and not withdrawn) is marked asked, every answer
        merged. Returns the run's queries that still stand (withdrawn ones left out)."""
        queries = [
            q for q in self.client.iter_queries(self.run_id) if q.get("status") != "withdrawn"
        ]
        if queries:
            bank.mark_asked(*self._cells(queries)[0])
        self.cursor, self._known, self._unmerged = 0, {}, {}
        self.sync(bank, on_answers)
        return queries

    # -- budget ----------------------------------------------------------------------------
    def spent(self) -> dict[str, int]:
        """Budget spent per group as the server counts it: reserved + answered."""
        groups = self.groups()
        return {g: int(v.get("reserved", 0)) + int(v.get("answered", 0)) for g, v in groups.items()}

    def groups(self) -> dict[str, dict[str, Any]]:
        """The budget per group as the server counts it: ``reserved`` and ``answered`` pixels
        and the seconds (:func:`spent_seconds`)."""
        return self.client.budget(self.run_id)["groups"]

    def pace(self) -> dict[str, Any]:
        """The run's pace as the server measures it (answers per minute, pending, budget left):
        the session's rounds are sized by it."""
        return self.client.pace(self.run_id)

    def drain(self, timeout: float, poll: float = 0.2) -> None:
        """Wait until nothing of the run is in flight (reserved == 0) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.client.budget(self.run_id)["reserved"] > 0:
            if time.monotonic() >= deadline:
                log.warning("queries still in flight after %.0f s; finishing anyway", timeout)
                return
            time.sleep(poll)

    def _cells(
        self, items: list[dict]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """Bank rows, ys, xs of every pixel that queries or answers cover (a region's every
        pixel, row-major), and (K,) how many each item covers."""
        cells = [
            [(i["y"], i["x"])] if i.get("region") is None else region_cells(i["region"])
            for i in items
        ]
        return flatten_cells([self.bank_row(i["image_id"]) for i in items], cells)


def flatten_cells(
    rows: Sequence[int], cells: Sequence[Sequence[tuple[int, int]]]
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Items of bank ``rows``, each covering the pixels ``cells`` (``(y, x)``; one for a pixel
    query, a region's every pixel for a region query), as bank rows, ys, xs of every pixel, and
    (K,) how many pixels each item covers."""
    sizes = torch.tensor([len(c) for c in cells], dtype=torch.long)
    flat_rows = torch.tensor(list(rows), dtype=torch.long).repeat_interleave(sizes)
    flat = torch.tensor([yx for c in cells for yx in c], dtype=torch.long).view(-1, 2)
    return (flat_rows, flat[:, 0], flat[:, 1]), sizes


def wire_group(name: str) -> str:
    """A group as the wire names it (``server.schemas.GROUPS``): a phase or selection name
    the server does not know is ``other``."""
    return name if name in GROUPS else "other"


def region_cells(region: dict | Region) -> list[tuple[int, int]]:
    """``(y, x)`` of every pixel of a region (``server.schemas.Region`` or its JSON)."""
    return Region.model_validate(region).cells()


def spent_seconds(group: dict[str, Any]) -> float:
    """The annotators' seconds a group of ``/budget`` spent: its ``spent_seconds`` (answers'
    and skips' lead times), or from a server before skips carried their time (revision 0008
    and older) its ``answered_seconds``."""
    return float(group.get("spent_seconds", group.get("answered_seconds", 0.0)))
