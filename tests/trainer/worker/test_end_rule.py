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
    rule.evaluated(50.0, now=0.0)
    assert rule.check(_standing({**DONE, "answered": 9, "reserved": 1}), now=10.0) is None
    assert rule.check(_standing(fresh=True), now=10.0) is None  # labels not yet trained on
    assert rule.check(_standing(), now=20.0) is None  # every label in: an evaluation first
    rule.evaluated(49.0, now=25.0)
    assert rule.check(_standing(), now=70.0) is None  # 50 s since the labels were in
    assert rule.check(_standing(), now=81.0) == "plateau"
    rule.evaluated(51.0, now=90.0)  # a gain: the plateau clock starts again
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
    rule.evaluated(50.0, now=1.0)
    assert rule.check(_standing(), now=61.0) == "cooldown" and rule.cooldown.start == 40
    # poly decay over the 5 cooldown iterations: 4 in, (1 - 4/5)^0.9 of the base
    assert rule.lr(0.01, 40, 0.9) == 0.01
    assert math.isclose(rule.lr(0.01, 44, 0.9), 0.01 * 0.2**0.9, rel_tol=1e-12)
    assert rule.check(_standing(), now=70.0) is None and not rule.cooled(44)
    assert rule.cooled(45)
    assert rule.check(_standing(fresh=True), now=71.0) is None  # an answer came in
    assert rule.cooldown.start is None and rule.lr(0.01, 44, 0.9) == 0.01
    assert rule.check(_standing(), now=100.0) is None  # every label in again
    rule.evaluated(50.0, now=105.0)
    rule.restart(None, now=120.0)  # a resume: the plateau clock starts again
    assert rule.check(_standing(), now=170.0) is None  # 70 s since every label, 50 since resumed
    assert rule.check(_standing(), now=181.0) == "cooldown" and rule.cooling_from == 40
    rule.restart(rule.cooling_from, now=200.0)  # resumed while cooling: still cooling
    assert rule.cooled(45) and rule.check(_standing(), now=300.0) is None


def _replay(rule: EndRule, history: list[float], every: float = 10.0) -> float | None:
    """Every label in from the start, target-val ``history`` (mIoU %) one evaluation each
    ``every`` seconds, the status read between them: when the rule ends the session."""
    for i, miou in enumerate(history):
        rule.evaluated(miou, now=i * every)
        if rule.check(_standing(), now=i * every + every / 2) == "plateau":
            return i * every + every / 2
    return None


def test_a_slowly_rising_average_ends_and_a_real_rise_keeps_the_session_going() -> None:
    # a weight average after the last label: a new best at every evaluation, 0.05 points each
    creeping = [50.0 + 0.05 * i for i in range(40)]
    # with every new best restarting the clock (gain 0, the old rule) it never ends
    assert _replay(EndRule(plateau_minutes=1, cooldown_iterations=0), creeping) is None
    # 0.5 points over the clock's start: 0.05 a 10 s evaluation is 0.3 a minute, so it ends
    # a minute after the first evaluation
    assert _replay(EndRule(1, 0, plateau_gain=0.5), creeping) == 65.0
    # a real rise (0.2 points an evaluation, 1.2 a minute) restarts the clock each 0.5 points
    rising = [50.0 + 0.2 * i for i in range(40)]
    assert _replay(EndRule(1, 0, plateau_gain=0.5), rising) is None
    # the gain counts from the clock's start, not from the previous best: three steps of 0.2
    rule = EndRule(1, 0, plateau_gain=0.5)
    for t, miou in ((0.0, 50.0), (10.0, 50.2), (20.0, 50.4)):
        rule.evaluated(miou, now=t)
    assert rule.best_at == 0.0
    rule.evaluated(50.6, now=30.0)
    assert rule.best_at == 30.0 and rule.mark == 50.6
    rule.evaluated(40.0, now=40.0)  # a drop never restarts it
    assert rule.best_at == 30.0
    with pytest.raises(ValueError, match="plateau_gain"):
        EndRule(1, 0, plateau_gain=-0.1)
    with pytest.raises(ValueError, match="plateau_gain"):
        SessionOptions(plateau_gain=-0.1)
