"""The one ignore label and the one group table, shared by the service, the bank and Eq. 1-3."""

from __future__ import annotations

import torch

from server import schemas
from trainer.constants import GROUP_CODES, IGNORE_INDEX, Group
from trainer.learning.labelbank import LabelBank
from trainer.selection.uncertainty import partition


def test_ignore_index_is_the_wire_contracts() -> None:
    assert IGNORE_INDEX == schemas.IGNORE_INDEX == 255


def test_group_table_round_trips_and_covers_the_wire_groups() -> None:
    assert list(GROUP_CODES) == ["low", "medium", "high", "random", "entropy", "ripu", "other"]
    for name, code in GROUP_CODES.items():
        assert Group(code).label == name
    assert set(schemas.GROUPS) <= set(GROUP_CODES)


def test_partition_and_label_bank_agree_that_code_2_is_high() -> None:
    groups = partition(torch.tensor([[[0.0, 0.5, 1.0]]]), pi_high=0.9, pi_low=0.1)
    assert groups.tolist() == [[[Group.LOW, Group.MEDIUM, Group.HIGH]]] == [[[0, 1, 2]]]
    bank = LabelBank(1, 1, 3)
    one = torch.tensor([0])
    bank.merge(one, torch.tensor([0]), torch.tensor([2]), torch.tensor([4]), "high")
    assert int(bank.batch(one)[1][0, 0, 2]) == int(groups[0, 0, 2]) == Group.HIGH
