import torch

from trainer.constants import IGNORE_INDEX
from trainer.labelbank import LabelBank


def test_merge_stores_answers_and_counts_groups() -> None:
    bank = LabelBank(3, 4, 5)
    idx, ys, xs = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 0, 1])
    stored = bank.merge(idx, ys, xs, torch.tensor([3, IGNORE_INDEX, 1]), ["high", "high", "medium"])
    assert stored == 2
    assert bank.labels[0, 1, 4] == 3 and bank.labels[2, 3, 1] == 1
    assert bank.labels[0, 2, 0] == IGNORE_INDEX and bank.asked[0, 2, 0]  # asked, not answered
    assert bank.counts()["high"] == 1 and bank.counts()["medium"] == 1
    assert bank.num_labeled == 2 == int((bank.labels != IGNORE_INDEX).sum())


def test_correction_replaces_without_double_counting() -> None:
    bank = LabelBank(1, 2, 2)
    one = torch.tensor([0])
    bank.merge(one, one, one, torch.tensor([2]), "high")
    bank.merge(one, one, one, torch.tensor([5]), "medium")
    assert bank.labels[0, 0, 0] == 5
    assert bank.counts()["high"] == 0 and bank.counts()["medium"] == 1
    assert bank.num_labeled == 1


def test_state_dict_round_trip_restores_counts() -> None:
    bank = LabelBank(2, 3, 3)
    bank.merge(
        torch.tensor([1, 1]),
        torch.tensor([0, 2]),
        torch.tensor([1, 2]),
        torch.tensor([4, 0]),
        "medium",
    )
    other = LabelBank(2, 3, 3)
    other.load_state_dict({k: v.clone() for k, v in bank.state_dict().items()})
    assert other.counts() == bank.counts()
    assert torch.equal(other.asked, bank.asked)
