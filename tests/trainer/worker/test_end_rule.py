"""When a session ends: the plateau once every label is in and trained on, after a cooldown
with the rate decayed to 0; new labels call both off."""

import math

import pytest

from trainer.worker.end_rule import Cooldown, EndRule, Standing
from trainer.worker.rounds import SessionOptions

DONE = {"answered": 10, "expected": 10, "reserved": 0}


def _standing(budget: dict = DONE, fresh: bool = False, exhausted: bool = False) -> Standing:
    return Standing(budget, exhausted, fresh, iteration=40)


def test_the_cooldown_decays_the_rate_to_zero_on_the_poly_schedule() -> None:
    cool = Cooldown(10)
    assert cool.lr(0.01, 500, 0.9) == 0.01 and not cool.done(500)  # not cooling: constant
    cool.start = 500
    assert cool.lr(0.01, 500, 0.9) == 0.01
    assert cool.lr(0.01, 505, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert not cool.done(509) and cool.lr(0.01, 509, 0.9) == pytest.approx(0.01 * 0.1**0.9)
    assert cool.done(510) and cool.lr(0.01, 510, 0.9) == 0.0
    cool.cancel()  # new answers: back to the constant rate
    assert cool.lr(0.01, 510, 0.9) == 0.01 and not cool.done(510)
    with pytest.raises(ValueError, match="cooldown"):
        SessionOptions(cooldown_iterations=-1)


def test_the_plateau_needs_every_label_in_one_evaluation_and_no_gain() -> None:
    rule = EndRule(plateau_minutes=1, cooldown_iterations=0)
    rule.evaluated(improved=True, now=0.0)
    assert rule.check(_standing({**DONE, "answered": 9, "reserved": 1}), now=10.0) is None
    assert rule.check(_standing(fresh=True), now=10.0) is None  # labels not yet trained on
    assert rule.check(_standing(), now=20.0) is None  # every label in: an evaluation first
    rule.evaluated(improved=False, now=25.0)
    assert rule.check(_standing(), now=70.0) is None  # 50 s since the labels were in
    assert rule.check(_standing(), now=81.0) == "plateau"
    rule.evaluated(improved=True, now=90.0)  # a gain: the plateau clock starts again
    assert rule.check(_standing(), now=140.0) is None
    assert rule.check(_standing(), now=151.0) == "plateau"


def test_nothing_left_to_ask_counts_as_answered_once_nothing_is_in_flight() -> None:
    short = {"answered": 7, "expected": 10, "reserved": 0}
    assert _standing(short, exhausted=True).answered
    assert not _standing(short).answered
    assert not _standing({**short, "reserved": 1}, exhausted=True).answered


def test_the_cooldown_begins_at_the_plateau_ends_the_run_and_new_labels_call_it_off() -> None:
    rule = EndRule(plateau_minutes=1, cooldown_iterations=5)
    rule.check(_standing(), now=0.0)
    rule.evaluated(improved=False, now=1.0)
    assert rule.check(_standing(), now=61.0) == "cooldown" and rule.cooldown.start == 40
    # poly decay over the 5 cooldown iterations: 4 in, (1 - 4/5)^0.9 of the base
    assert rule.lr(0.01, 40, 0.9) == 0.01
    assert math.isclose(rule.lr(0.01, 44, 0.9), 0.01 * 0.2**0.9, rel_tol=1e-12)
    assert rule.check(_standing(), now=70.0) is None and not rule.cooled(44)
    assert rule.cooled(45)
    assert rule.check(_standing(fresh=True), now=71.0) is None  # an answer came in
    assert rule.cooldown.start is None and rule.lr(0.01, 44, 0.9) == 0.01
    assert rule.check(_standing(), now=100.0) is None  # every label in again
    rule.evaluated(improved=False, now=105.0)
    rule.restart(None, now=120.0)  # a resume: the plateau clock starts again
    assert rule.check(_standing(), now=170.0) is None  # 70 s since every label, 50 since resumed
    assert rule.check(_standing(), now=181.0) == "cooldown" and rule.cooling_from == 40
    rule.restart(rule.cooling_from, now=200.0)  # resumed while cooling: still cooling
    assert rule.cooled(45) and rule.check(_standing(), now=300.0) is None
