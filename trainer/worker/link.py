"""The worker's link to the labeling service: the trainer's oracle interface (``HttpOracle``)
and the run's budget and label sync (``ServiceLink``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from client.api import BudgetExceeded, DuplicatePixel, ServiceClient
from trainer.labelbank import GROUP_CODES, IGNORE, LabelBank
from trainer.train import Data

log = logging.getLogger("adamcu.worker")


API_GROUPS = frozenset({"high", "medium", "random", "entropy", "ripu", "other"})
NO_ANSWER = 255


def _as_array(values: Any, dtype: type) -> np.ndarray:
    """(K,) array from a tensor (any device), an array or a list."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1)


class HttpOracle:
    """The trainer's oracle interface answered through the service (benchmark mode).

    ``answer`` posts the pixels as queries and blocks until annotators (people or
    ``adamcu-oracle`` processes) answer them, nothing is left in flight (skips), or
    ``timeout`` seconds. Every answer of the run read on the way is remembered, so a pixel
    answered earlier (or late, after a timeout) is answered from memory and never posted
    twice. Raises ``BudgetExceeded`` when the batch would overspend the run's budget.
    """

    def __init__(
        self, client: ServiceClient, run_id: int, *, timeout: float = 300.0, poll: float = 0.2
    ) -> None:
        self.client, self.run_id, self.timeout, self.poll = client, run_id, timeout, poll
        self._image_ids: dict[str, int] = {}
        self._known: dict[tuple[int, int, int], int] = {}  # (image_id, y, x) -> class id
        self._cursor = 0

    def image_id(self, key: str) -> int:
        if key not in self._image_ids:
            images = self.client.list_images(self.run_id)
            self._image_ids = {row["key"]: row["id"] for row in images}
        if key not in self._image_ids:
            raise KeyError(f"image {key!r} is not registered in run {self.run_id}")
        return self._image_ids[key]

    def answer(
        self,
        keys: Sequence[str],
        ys: Any,
        xs: Any,
        groups: Sequence[str] | str = "other",
        scores: Any = None,
    ) -> np.ndarray:
        """Class ids (K,) int64 for pixels ``(keys[k], ys[k], xs[k])``; 255 = no answer.

        ys, xs: (K,) ints (tensor, array or list). groups: one name per pixel or one for all
        (names outside the API's, e.g. "low", are sent as "other"). scores: (K,) or None.
        """
        ys, xs = _as_array(ys, np.int64), _as_array(xs, np.int64)
        n = len(keys)
        groups = [groups] * n if isinstance(groups, str) else list(groups)
        scores = np.zeros(n) if scores is None else _as_array(scores, np.float64)
        if not len(ys) == len(xs) == len(groups) == len(scores) == n:
            raise ValueError("keys, ys, xs, groups and scores must have the same length")
        pixels = [(self.image_id(k), int(y), int(x)) for k, y, x in zip(keys, ys, xs, strict=True)]
        self.sync()
        first: dict[tuple[int, int, int], int] = {}
        for i, p in enumerate(pixels):
            if p not in self._known:
                first.setdefault(p, i)
        if first:
            queries = [
                {
                    "image_id": p[0],
                    "y": p[1],
                    "x": p[2],
                    "score": float(scores[i]),
                    "group": groups[i] if groups[i] in API_GROUPS else "other",
                }
                for p, i in first.items()
            ]
            try:
                self.client.post_queries(self.run_id, queries)
            except DuplicatePixel as error:
                if not error.maybe_stored:
                    raise  # asked before this object existed: a caller's bookkeeping bug
            self._cursor = self.client.poll_answers(
                self.run_id,
                self._remember,
                lambda: all(p in self._known for p in first),
                self.timeout,
                self.poll,
                self._cursor,
            )
        return np.array([self._known.get(p, NO_ANSWER) for p in pixels], dtype=np.int64)

    def sync(self) -> None:
        """Read the answers that arrived since the last call (late ones included)."""
        for answer in self.client.iter_answers_since(self.run_id, self._cursor):
            self._cursor = max(self._cursor, int(answer["id"]))
            self._remember(answer)

    def _remember(self, answer: dict) -> None:
        self._known[(answer["image_id"], answer["y"], answer["x"])] = int(answer["class_id"])


class ServiceLink:
    """The worker's side of the service: run, image keys, oracle, budget and label sync."""

    def __init__(
        self, client: ServiceClient, run_id: int, data: Data, mode: str, timeout: float
    ) -> None:
        self.client, self.run_id, self.mode = client, run_id, mode
        self.keys = data.target.ids
        self.row = {key: i for i, key in enumerate(self.keys)}
        self.oracle = HttpOracle(client, run_id, timeout=timeout)
        self.cursor = 0
        self._rows_by_id: dict[int, int] | None = None

    def ask(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        group: str,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        """The engine's oracle: post the queries; in benchmark mode wait for the answers."""
        keys = [self.keys[i] for i in index.tolist()]
        if self.mode == "human":
            ids = [self.oracle.image_id(k) for k in keys]
            queries = [
                {"image_id": i, "y": int(y), "x": int(x), "group": group, "score": float(s)}
                for i, y, x, s in zip(ids, ys.tolist(), xs.tolist(), scores.tolist(), strict=True)
            ]
            try:
                self.client.post_queries(self.run_id, queries)
            except BudgetExceeded as exc:
                log.warning("budget refused a batch of %d: %s", len(queries), exc)
            return torch.full((len(keys),), IGNORE, dtype=torch.long)
        try:
            classes = self.oracle.answer(keys, ys, xs, group, scores)
        except BudgetExceeded as exc:
            log.warning("budget refused a batch of %d: %s", len(keys), exc)
            return torch.full((len(keys),), IGNORE, dtype=torch.long)
        return torch.as_tensor(classes, dtype=torch.long)

    def spent(self) -> dict[str, int]:
        """Budget spent per group as the server counts it: reserved + answered."""
        groups = self.client.budget(self.run_id)["groups"]
        return {g: int(v.get("reserved", 0)) + int(v.get("answered", 0)) for g, v in groups.items()}

    def sync(self, bank: LabelBank) -> int:
        """Merge every answer after the cursor (late answers, corrections) into the bank."""
        answers = list(self.client.iter_answers_since(self.run_id, self.cursor))
        if not answers:
            return 0
        self.cursor = max(self.cursor, max(int(a["id"]) for a in answers))
        latest = {(a["image_id"], a["y"], a["x"]): a for a in answers}  # a correction wins
        answers = list(latest.values())
        rows, ys, xs = self._pixels(answers)
        groups = [a["group"] if a["group"] in GROUP_CODES else "other" for a in answers]
        classes = torch.tensor([a["class_id"] for a in answers])
        return bank.merge(rows, ys, xs, classes, groups)

    def rebuild(self, bank: LabelBank) -> None:
        """After a restart: every pixel ever asked is marked asked, every answer merged."""
        queries = list(self.client.iter_queries(self.run_id))
        if queries:
            bank.mark_asked(*self._pixels(queries))
        self.cursor = 0
        self.sync(bank)

    def drain(self, timeout: float, poll: float = 0.2) -> None:
        """Wait until nothing of the run is in flight (reserved == 0) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.client.budget(self.run_id)["reserved"] > 0:
            if time.monotonic() >= deadline:
                log.warning("queries still in flight after %.0f s; finishing anyway", timeout)
                return
            time.sleep(poll)

    def _pixels(self, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bank rows, ys, xs (K,) of queries or answers (which carry image_id, y, x)."""
        if self._rows_by_id is None:
            self._rows_by_id = {
                row["id"]: self.row[row["key"]] for row in self.client.list_images(self.run_id)
            }
        rows = torch.tensor([self._rows_by_id[i["image_id"]] for i in items])
        return rows, torch.tensor([i["y"] for i in items]), torch.tensor([i["x"] for i in items])
