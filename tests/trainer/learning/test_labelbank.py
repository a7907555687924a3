import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.constants import GROUP_CODES, IGNORE_INDEX
from trainer.learning.labelbank import LabelBank


def _dense(bank: LabelBank) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return bank.batch(torch.arange(bank.shape[0]))


class DenseBank:
    """The reference: the dense bank of earlier versions, one pixel at a time."""

    def __init__(self, n: int, h: int, w: int) -> None:
        self.labels = torch.full((n, h, w), IGNORE_INDEX, dtype=torch.long)
        self.groups = torch.full((n, h, w), IGNORE_INDEX, dtype=torch.long)
        self.asked = torch.zeros((n, h, w), dtype=torch.bool)

    def mark_asked(self, index, ys, xs) -> None:  # noqa: ANN001
        self.asked[index, ys, xs] = True

    def merge(self, index, ys, xs, classes, groups) -> int:  # noqa: ANN001
        for k, (i, y, x, c) in enumerate(zip(index, ys, xs, classes, strict=True)):
            self.asked[i, y, x] = True
            if c != IGNORE_INDEX:
                self.labels[i, y, x] = c
                self.groups[i, y, x] = GROUP_CODES[groups if isinstance(groups, str) else groups[k]]
        return int((torch.as_tensor(classes) != IGNORE_INDEX).sum())

    def counts(self) -> dict[str, int]:
        labeled = self.groups[self.labels != IGNORE_INDEX]
        return {name: int((labeled == code).sum()) for name, code in GROUP_CODES.items()}


def test_merge_stores_answers_and_counts_groups() -> None:
    bank = LabelBank(3, 4, 5)
    idx, ys, xs = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 0, 1])
    stored = bank.merge(idx, ys, xs, torch.tensor([3, IGNORE_INDEX, 1]), ["high", "high", "medium"])
    assert stored == 2
    labels, groups, asked = _dense(bank)
    assert labels.dtype == groups.dtype == torch.long and asked.dtype == torch.bool
    assert labels[0, 1, 4] == 3 and labels[2, 3, 1] == 1
    assert labels[0, 2, 0] == IGNORE_INDEX and asked[0, 2, 0]  # asked, not answered
    assert groups[0, 1, 4] == GROUP_CODES["high"] and groups[0, 2, 0] == IGNORE_INDEX
    assert bank.counts()["high"] == 1 and bank.counts()["medium"] == 1
    assert bank.num_labeled == 2 == int((labels != IGNORE_INDEX).sum())
    assert bank.num_asked == 3 == int(asked.sum()) and bank.num_pixels == 60


def test_correction_replaces_without_double_counting() -> None:
    bank = LabelBank(1, 2, 2)
    one = torch.tensor([0])
    bank.merge(one, one, one, torch.tensor([2]), "high")
    bank.merge(one, one, one, torch.tensor([5]), "medium")
    assert _dense(bank)[0][0, 0, 0] == 5
    assert bank.counts()["high"] == 0 and bank.counts()["medium"] == 1
    assert bank.num_labeled == 1


def test_a_pixel_twice_in_one_merge_counts_once_and_the_last_answer_wins() -> None:
    bank = LabelBank(1, 2, 2)
    zeros = torch.zeros(3, dtype=torch.long)
    bank.merge(zeros, zeros, zeros, torch.tensor([2, 5, IGNORE_INDEX]), ["high", "medium", "low"])
    labels, groups, _ = _dense(bank)
    assert (
        labels[0, 0, 0] == 5 and groups[0, 0, 0] == GROUP_CODES["medium"]
    )  # a skip erases nothing
    assert bank.num_labeled == 1 and bank.counts()["medium"] == 1 and bank.counts()["high"] == 0


def test_state_dict_round_trip_restores_counts() -> None:
    bank = LabelBank(2, 3, 3)
    bank.merge(
        torch.tensor([1, 1]),
        torch.tensor([0, 2]),
        torch.tensor([1, 2]),
        torch.tensor([4, 0]),
        "medium",
    )
    bank.mark_asked(torch.tensor([0]), torch.tensor([2]), torch.tensor([2]))
    other = LabelBank(2, 3, 3)
    other.load_state_dict({k: v.clone() for k, v in bank.state_dict().items()})
    assert other.counts() == bank.counts()
    for got, want in zip(_dense(other), _dense(bank), strict=True):
        assert torch.equal(got, want)


def test_loads_the_dense_state_of_older_versions() -> None:
    old = DenseBank(2, 3, 4)
    old.merge([0, 1, 1], [0, 2, 1], [3, 1, 0], [7, IGNORE_INDEX, 0], ["high", "low", "ripu"])
    old.mark_asked(torch.tensor([0]), torch.tensor([1]), torch.tensor([1]))
    state = {
        "labels": old.labels.to(torch.uint8),
        "groups": old.groups.to(torch.uint8),
        "asked": old.asked,
    }
    bank = LabelBank(1, 1, 1)
    bank.load_state_dict(state)
    assert bank.shape == (2, 3, 4) and bank.counts() == old.counts()
    labels, groups, asked = _dense(bank)
    assert torch.equal(labels, old.labels) and torch.equal(groups, old.groups)
    assert torch.equal(asked, old.asked) and bank.num_asked == 4


def test_bad_input_raises_and_changes_nothing() -> None:
    bank = LabelBank(2, 3, 4)
    one = torch.tensor([1])
    with pytest.raises(IndexError, match="xs"):
        bank.merge(one, one, torch.tensor([4]), torch.tensor([1]), "high")
    with pytest.raises(IndexError, match="index"):
        bank.mark_asked(torch.tensor([2]), one, one)
    with pytest.raises(ValueError, match="classes"):
        bank.merge(one, one, one, torch.tensor([256]), "high")
    with pytest.raises(ValueError, match="one entry per pixel"):
        bank.merge(one, one, one, torch.tensor([1, 2]), "high")
    with pytest.raises(ValueError, match="agree"):
        bank.load_state_dict({**bank.state_dict(), "lengths": torch.tensor([1, 0])})
    assert bank.num_asked == 0 and bank.num_labeled == 0 and bank.shape == (2, 3, 4)


def test_images_over_two_million_pixels_use_wide_entries() -> None:
    bank = LabelBank(2, 1, (1 << 21) + 5)
    idx, ys, xs = (
        torch.tensor([1, 1, 0]),
        torch.zeros(3, dtype=torch.long),
        torch.tensor([0, (1 << 21) + 4, 9]),
    )
    bank.merge(idx, ys, xs, torch.tensor([254, 3, IGNORE_INDEX]), ["other", "low", "low"])
    labels, groups, asked = bank.batch(torch.tensor([1, 0]), dtype=torch.uint8)
    assert (
        labels.dtype == torch.uint8 and labels[0, 0, (1 << 21) + 4] == 3 and labels[0, 0, 0] == 254
    )
    assert (
        asked[1, 0, 9]
        and int(asked.sum()) == 3
        and bank.state_dict()["entries"].dtype == torch.int64
    )


_N, _H, _W = 3, 4, 5
_pixels = st.tuples(st.integers(0, _N - 1), st.integers(0, _H - 1), st.integers(0, _W - 1))
_answer = st.tuples(
    _pixels,
    st.one_of(st.just(IGNORE_INDEX), st.integers(0, 254)),
    st.sampled_from(sorted(GROUP_CODES)),
)
_op = st.one_of(
    st.tuples(st.just("ask"), st.lists(_pixels, max_size=8)),
    st.tuples(st.just("merge"), st.lists(_answer, max_size=12)),
    st.tuples(st.just("round trip"), st.none()),
)


def _coords(pixels: list[tuple[int, int, int]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor([p[d] for p in pixels], dtype=torch.long) for d in range(3))


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, max_size=12), st.booleans())
def test_equals_the_dense_bank_for_any_sequence(ops, one_group) -> None:  # noqa: ANN001
    bank, ref = LabelBank(_N, _H, _W), DenseBank(_N, _H, _W)
    for kind, arg in ops:
        if kind == "ask":
            index, ys, xs = _coords(arg)
            bank.mark_asked(index, ys, xs)
            ref.mark_asked(index, ys, xs)
        elif kind == "merge":
            index, ys, xs = _coords([p for p, _, _ in arg])
            classes = torch.tensor([c for _, c, _ in arg], dtype=torch.long)
            groups = "entropy" if one_group else [g for _, _, g in arg]
            stored = bank.merge(index, ys, xs, classes, groups)
            assert stored == ref.merge(index, ys, xs, classes, groups)
        else:
            state = bank.state_dict()
            bank = LabelBank(1, 1, 1)
            bank.load_state_dict({k: v.clone() for k, v in state.items()})
        labels, groups_, asked = _dense(bank)
        assert torch.equal(labels, ref.labels) and torch.equal(groups_, ref.groups)
        assert torch.equal(asked, ref.asked)
        assert bank.counts() == ref.counts() and bank.num_labeled == sum(ref.counts().values())
        assert bank.num_asked == int(ref.asked.sum())


def test_unmark_forgets_asked_pixels_but_never_a_label() -> None:
    """A withdrawn query's pixel may be asked again; an answered pixel keeps its label."""
    bank = LabelBank(2, 4, 5)
    bank.mark_asked(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    bank.merge(torch.tensor([1]), torch.tensor([0]), torch.tensor([0]), torch.tensor([3]), "high")
    removed = bank.unmark(torch.tensor([0, 1, 1]), torch.tensor([1, 3, 0]), torch.tensor([1, 4, 0]))
    labels, _, asked = _dense(bank)
    assert removed == 2 and bank.num_asked == 2 and bank.num_labeled == 1
    assert not asked[0, 1, 1] and not asked[1, 3, 4] and asked[0, 2, 2]
    assert labels[1, 0, 0] == 3 and bank.count("high") == 1
    bank.mark_asked(torch.tensor([0]), torch.tensor([1]), torch.tensor([1]))  # asked again
    assert bank.batch(torch.tensor([0]))[2][0, 1, 1]
    assert bank.unmark(torch.tensor([0]), torch.tensor([3]), torch.tensor([4])) == 0


@pytest.mark.parametrize("size", [(4, 8), (1024, 2048 + 8)])  # int32 and int64 entries
def test_labels_per_image_and_per_class_leave_out_skips(size) -> None:  # noqa: ANN001
    bank = LabelBank(3, *size)
    t = torch.tensor
    bank.merge(
        t([0, 0, 2, 2, 2]), t([0, 1, 0, 0, 3]), t([0, 1, 2, 3, 3]), t([4, 4, 1, 255, 0]), "high"
    )
    bank.merge(t([0]), t([0]), t([0]), t([2]), "medium")  # a correction: still one label
    assert bank.labeled_per_image().tolist() == [2, 0, 2]
    assert bank.class_counts(5).tolist() == [1, 1, 1, 0, 1]
