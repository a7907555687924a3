"""The worker's link to the service against a fake server: the oracle (answers, skips, never
asking a pixel twice, reading back after a lost response) and one reader of the answer stream
(each answer enters the label bank once)."""

import json
from collections import Counter

import httpx
import numpy as np
import pytest
import torch

from client.api import ServiceClient
from client.retry import RetryPolicy
from trainer.constants import GROUP_CODES
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Batch
from trainer.loop.step import query_oracle
from trainer.worker.link import ServiceLink

BUDGET = {"expected": 10, "reserved": 0, "answered": 0, "skipped": 0, "remaining": 10, "groups": {}}
KEYS = ["t/a", "t/b"]  # bank rows 0, 1; image ids 1, 2


def error(status: int, code: str, message: str = "no") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeService:
    """Just enough of the server: images, queries (answered at once from ``gt``, void
    skipped), answers, budget."""

    def __init__(self, gt: dict[tuple[int, int, int], int], lose_first_response=False) -> None:
        self.gt, self.queries, self.answers, self.posted = gt, {}, [], []
        self.lose = lose_first_response

    def answer(self, qid: int, q: dict) -> None:
        pixel = (q["image_id"], q["y"], q["x"])
        if self.gt.get(pixel, 255) != 255:  # the annotator skips void
            self.answers.append(
                {
                    "id": len(self.answers) + 1,
                    "query_id": qid,
                    "image_id": pixel[0],
                    "y": pixel[1],
                    "x": pixel[2],
                    "class_id": self.gt[pixel],
                    "group": q.get("group", "other"),
                }
            )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1/runs/1")
        if path == "/images":
            images = [{"id": i + 1, "key": k, "width": 8, "height": 8} for i, k in enumerate(KEYS)]
            return httpx.Response(200, json={"images": images})
        if path == "/queries":
            batch = json.loads(request.content)["queries"]
            if self.posted and batch == self.posted[-1]:
                return error(409, "duplicate_pixel")
            self.posted.append(batch)
            ids = []
            for q in batch:
                ids.append(len(self.queries) + 1)
                self.queries[ids[-1]] = q
                self.answer(ids[-1], q)
            if self.lose:
                self.lose = False
                raise httpx.ReadError("stored, but the response was lost")
            return httpx.Response(201, json={"ids": ids})
        if path == "/budget":
            return httpx.Response(200, json=BUDGET)
        after = int(request.url.params["after"])
        page = [a for a in self.answers if a["id"] > after]
        return httpx.Response(
            200, json={"answers": page, "cursor": page[-1]["id"] if page else after}
        )


def link_to(service: FakeService, mode: str = "benchmark") -> ServiceLink:
    client = ServiceClient(
        "http://svc/",
        "tok",
        transport=httpx.MockTransport(service),
        retry=RetryPolicy(base_delay=0),
    )
    return ServiceLink(client, 1, KEYS, mode, timeout=5, poll=0)


def test_answers_skips_and_never_asks_twice() -> None:
    gt = {(1, 0, 0): 3, (1, 2, 5): 0, (2, 7, 7): 255}
    service = FakeService(gt)
    link = link_to(service)
    keys = ["t/a", "t/a", "t/b", "t/a"]
    out = link.answer(
        keys,
        torch.tensor([0, 2, 7, 0]),
        np.array([0, 5, 7, 0]),
        ["high", "low", "medium", "high"],
        torch.tensor([0.9, 0.1, 0.5, 0.9]),
    )
    np.testing.assert_array_equal(out, [3, 0, 255, 3])
    assert out.dtype == np.int64
    [batch] = service.posted
    assert [(q["image_id"], q["y"], q["x"], q["group"]) for q in batch] == [
        (1, 0, 0, "high"),
        (1, 2, 5, "other"),
        (2, 7, 7, "medium"),
    ]
    np.testing.assert_array_equal(link.answer(["t/a"], [2], [5], "medium"), [0])
    assert len(service.posted) == 1  # known pixel: answered from memory
    with pytest.raises(KeyError):
        link.answer(["t/zzz"], [0], [0])


def test_reads_answers_back_by_pixel_after_a_lost_response() -> None:
    service = FakeService({(1, 0, 0): 3, (2, 1, 1): 4}, lose_first_response=True)
    link = link_to(service)
    np.testing.assert_array_equal(link.answer(["t/a", "t/b"], [0, 1], [0, 1]), [3, 4])
    assert len(service.posted) == 1


def test_learns_earlier_answers_before_asking() -> None:
    service = FakeService({(1, 0, 0): 3})
    link_to(service).client.post_queries(1, [{"image_id": 1, "y": 0, "x": 0}])  # a past process
    link = link_to(service)
    np.testing.assert_array_equal(link.answer(["t/a"], [0], [0]), [3])
    assert len(service.posted) == 1


class CountingBank(LabelBank):
    """A label bank that counts how often each pixel's answer is merged."""

    def __init__(self, *shape: int) -> None:
        super().__init__(*shape)
        self.merges: Counter = Counter()

    def merge(self, index, ys, xs, classes, groups) -> int:
        classes = torch.as_tensor(classes)
        for r, y, x, c in zip(
            index.tolist(), ys.tolist(), xs.tolist(), classes.tolist(), strict=True
        ):
            if c != 255:
                self.merges[(r, y, x)] += 1
        return super().merge(index, ys, xs, classes, groups)


def step(link: ServiceLink, bank: LabelBank, pixels: list[tuple[int, int, int]]) -> None:
    """What one training step does with the link: query_oracle, then on_step's sync."""
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    for b, y, x in pixels:
        mask[b, y, x] = True
    empty = torch.empty(0)
    batch = Batch(empty, empty, empty, torch.tensor([0, 1]))
    query_oracle(mask, "high", torch.rand(2, 8, 8), batch, bank, link.ask)
    link.sync(bank)


def test_benchmark_mode_merges_each_answer_into_the_bank_once() -> None:
    gt = {(1, 0, 0): 3, (2, 4, 4): 1, (1, 5, 6): 2, (2, 1, 2): 255, (1, 7, 7): 4}
    service = FakeService(gt)
    link, bank = link_to(service), CountingBank(2, 8, 8)
    step(link, bank, [(0, 0, 0), (1, 4, 4), (1, 1, 2)])
    # an answer read on the way, not asked by this step (a predecessor's query answered late)
    service.answer(99, {"image_id": 1, "y": 7, "x": 7, "group": "medium"})
    step(link, bank, [(0, 5, 6)])
    step(link, bank, [])
    assert set(bank.merges) == {(0, 0, 0), (1, 4, 4), (0, 5, 6), (0, 7, 7)}
    assert set(bank.merges.values()) == {1}
    assert bank.num_labeled == 4 and link.cursor == len(service.answers) == 4
    groups = bank.batch(torch.arange(2))[1]
    assert groups[0, 7, 7] == GROUP_CODES["medium"]  # the group of its query
    assert groups[1, 4, 4] == GROUP_CODES["high"]


def test_human_mode_posts_everything_and_merges_answers_through_sync_once() -> None:
    service = FakeService({(1, 0, 0): 3, (2, 4, 4): 1})
    link, bank = link_to(service, "human"), CountingBank(2, 8, 8)
    step(link, bank, [(0, 0, 0), (1, 4, 4)])
    step(link, bank, [])
    assert len(service.posted) == 1 and dict(bank.merges) == {(0, 0, 0): 1, (1, 4, 4): 1}
