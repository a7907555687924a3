"""The retry policy: capped exponential backoff with jitter, bounded in each wait and in all."""

import random

import pytest

from client.retry import DEFAULT_RETRY, RetryPolicy


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_delays_are_bounded_by_the_capped_exponential(jitter) -> None:
    policy = RetryPolicy(max_tries=12, base_delay=0.1, max_delay=2.0, jitter=jitter)
    rng = random.Random(0)
    for attempt in range(policy.retries):
        cap = min(2.0, 0.1 * 2**attempt)
        for _ in range(50):
            d = policy.delay(attempt, rng)
            assert (0.0 if jitter == "full" else cap / 2) <= d <= cap


def test_jitter_spreads_clients_that_failed_together() -> None:
    """Ten clients retrying after one outage do not wait the same: not in lockstep."""
    policy = RetryPolicy()
    for attempt in (0, 3, 10):
        waits = {policy.delay(attempt, random.Random(seed)) for seed in range(10)}
        assert len(waits) == 10
    rng = random.Random(1)
    assert len({policy.delay(8, rng) for _ in range(10)}) == 10  # capped, still spread


def test_no_jitter_is_the_plain_capped_exponential() -> None:
    policy = RetryPolicy(max_tries=5, base_delay=1.0, max_delay=3.0, jitter="none")
    assert [policy.delay(a) for a in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert policy.total_bounds() == (9.0, 9.0)


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_total_wait_of_a_run_of_retries_is_within_the_bounds(jitter) -> None:
    policy = RetryPolicy(jitter=jitter)
    least, most = policy.total_bounds()
    for seed in range(20):
        rng = random.Random(seed)
        total = sum(policy.delay(a, rng) for a in range(policy.retries))
        assert least <= total <= most


def test_the_default_rides_out_a_server_restart_and_gives_up_within_a_minute() -> None:
    least, most = DEFAULT_RETRY.total_bounds()
    assert 30 <= least and most <= 65


@pytest.mark.parametrize("kw", [{"max_tries": 0}, {"base_delay": -1.0}, {"jitter": "decorrelated"}])
def test_a_bad_policy_is_refused(kw) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kw)
