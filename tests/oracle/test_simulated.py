import numpy as np
import pytest

from oracle.simulated import SKIP, SimulatedAnnotator


def annotator(classes=range(5), seed=0, **kw) -> SimulatedAnnotator:
    return SimulatedAnnotator(list(classes), rng=np.random.default_rng(seed), **kw)


def test_noise_zero_returns_ground_truth() -> None:
    gt = np.array([0, 1, 2, 3, 4, 4, 0])
    np.testing.assert_array_equal(annotator(noise=0.0).decide(gt), gt)


def test_noise_one_with_two_classes_always_gives_the_other() -> None:
    gt = np.array([0, 1, 1, 0])
    np.testing.assert_array_equal(annotator(classes=[0, 1], noise=1.0).decide(gt), [1, 0, 0, 1])


def test_noise_one_never_gives_ground_truth_and_covers_every_other_class() -> None:
    classes = [0, 3, 7, 9]  # ids need not be contiguous
    gt = np.full(4000, 3)
    out = annotator(classes=classes, noise=1.0).decide(gt)
    assert not np.any(out == 3)
    values, counts = np.unique(out, return_counts=True)
    assert values.tolist() == [0, 7, 9]
    np.testing.assert_allclose(counts / len(gt), 1 / 3, atol=0.04)  # uniform over the others


def test_noise_rate_matches_its_probability() -> None:
    gt = np.random.default_rng(1).integers(0, 5, size=20_000)
    out = annotator(noise=0.3).decide(gt)
    assert abs(np.mean(out != gt) - 0.3) < 0.02
    assert set(np.unique(out)) <= set(range(5))


def test_single_class_cannot_be_flipped() -> None:
    np.testing.assert_array_equal(annotator(classes=[2], noise=1.0).decide([2, 2]), [2, 2])


def test_void_is_skipped_and_unknown_class_counts_as_void() -> None:
    out = annotator(noise=1.0).decide(np.array([255, 19, 255]))
    np.testing.assert_array_equal(out, [SKIP, SKIP, SKIP])


def test_void_without_skipping_is_a_guess_among_the_classes() -> None:
    out = annotator(skip_ignore=0.0).decide(np.full(1000, 255))
    assert set(np.unique(out)) == set(range(5))


def test_skip_probability_for_void_pixels() -> None:
    out = annotator(skip_ignore=0.25).decide(np.full(20_000, 255))
    assert abs(np.mean(out == SKIP) - 0.25) < 0.02


def test_same_seed_same_answers() -> None:
    gt = np.random.default_rng(2).integers(0, 5, size=500)
    a = annotator(noise=0.5, seed=7).decide(gt)
    b = annotator(noise=0.5, seed=7).decide(gt)
    np.testing.assert_array_equal(a, b)
    assert annotator(noise=0.5, seed=7).decide_one(4) in range(5)


@pytest.mark.parametrize("kw", [{"noise": -0.1}, {"noise": 1.5}, {"skip_ignore": 2.0}])
def test_rejects_bad_probabilities(kw: dict) -> None:
    with pytest.raises(ValueError):
        annotator(**kw)
