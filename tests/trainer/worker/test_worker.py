"""The worker's label sync: answers since a cursor merged into the bank, corrections win."""

import torch

from trainer.constants import IGNORE_INDEX
from trainer.learning.labelbank import LabelBank
from trainer.worker.link import ServiceLink


class FakeClient:
    """Just the reads ServiceLink.sync and rebuild make."""

    def __init__(self, answers: list[dict], queries: list[dict]) -> None:
        self.answers, self.queries = answers, queries

    def list_images(self, run_id: int) -> list[dict]:
        return [{"id": 10, "key": "t/0"}, {"id": 11, "key": "t/1"}]

    def iter_answers_since(self, run_id: int, after: int = 0):
        return (a for a in self.answers if a["id"] > after)

    def iter_queries(self, run_id: int, after: int = 0):
        return iter(self.queries)


def _link(client: FakeClient) -> ServiceLink:
    return ServiceLink(client, 1, ["t/0", "t/1"], "human", timeout=1.0)


def _answer(i: int, image: int, y: int, x: int, cls: int, group: str = "high") -> dict:
    return {"id": i, "image_id": image, "y": y, "x": x, "class_id": cls, "group": group}


def test_sync_merges_new_answers_and_the_latest_correction_wins() -> None:
    client = FakeClient(
        [_answer(1, 10, 0, 0, 3), _answer(2, 11, 2, 4, 1, "medium"), _answer(3, 10, 0, 0, 5)], []
    )  # 3 corrects 1
    bank, link = LabelBank(2, 4, 5), _link(client)
    assert link.sync(bank) == 2
    labels = bank.batch(torch.arange(2))[0]
    assert labels[0, 0, 0] == 5 and labels[1, 2, 4] == 1
    assert bank.counts()["high"] == 1 and bank.counts()["medium"] == 1
    assert link.cursor == 3
    client.answers.append(_answer(4, 11, 3, 3, 2, "entropy"))
    assert link.sync(bank) == 1 and link.cursor == 4 and bank.num_labeled == 3


def test_rebuild_marks_every_asked_pixel_even_unanswered() -> None:
    client = FakeClient(
        [_answer(7, 11, 1, 1, 4)],
        [{"image_id": 11, "y": 1, "x": 1}, {"image_id": 10, "y": 3, "x": 2}],
    )
    bank, link = LabelBank(2, 4, 5), _link(client)
    link.rebuild(bank)
    labels, _, asked = bank.batch(torch.arange(2))
    assert asked[1, 1, 1] and asked[0, 3, 2]
    assert labels[0, 3, 2] == IGNORE_INDEX and labels[1, 1, 1] == 4
    assert int(asked.sum()) == 2 == bank.num_asked


# a 2 x 3 box at (1, 1) whose rows are 110 and 011: pixels (1,1) (1,2) (2,2) (2,3)
REGION = {"top": 1, "left": 1, "height": 2, "width": 3, "runs": [0, 2, 2, 2]}
REGION_CELLS = [(1, 1), (1, 2), (2, 2), (2, 3)]


def test_a_region_answer_labels_every_pixel_of_its_region_with_its_class() -> None:
    region = {**_answer(1, 11, 1, 1, 2, "random"), "region": REGION}
    client = FakeClient([region, _answer(2, 10, 0, 4, 3)], [])
    bank, link = LabelBank(2, 4, 5), _link(client)
    assert link.sync(bank) == len(REGION_CELLS) + 1
    labels, groups, asked = bank.batch(torch.arange(2))
    ys, xs = torch.tensor(REGION_CELLS).T
    assert (labels[1, ys, xs] == 2).all() and int((labels[1] != IGNORE_INDEX).sum()) == 4
    assert labels[0, 0, 4] == 3 and bank.counts()["random"] == 4
    assert bank.num_labeled == 5


def test_rebuild_marks_every_pixel_of_a_region_query_asked() -> None:
    client = FakeClient([], [{"image_id": 10, "y": 1, "x": 1, "region": REGION}])
    bank, link = LabelBank(2, 4, 5), _link(client)
    link.rebuild(bank)
    asked = bank.batch(torch.arange(2))[2]
    ys, xs = torch.tensor(REGION_CELLS).T
    assert asked[0, ys, xs].all() and bank.num_asked == 4
