"""The shared retry loop (arastory.llm.retry), deterministically: the sleep, clock and random source are injected and
the tests assert the waits it asked for, never wall-clock time."""

import random
from types import SimpleNamespace

import pytest

from arastory.llm.retry import RetriesExhausted, RetryPolicy, RetryStats, retry_after


class RateLimited(Exception):
    def __init__(self, headers=None):
        super().__init__("429")
        self.response = SimpleNamespace(headers=headers or {})


class Slow(Exception):
    pass


class Rejected(Exception):
    pass


RETRYABLE = {RateLimited: "rate_limited", Slow: "timeouts"}


def policy(**kw):
    waits = []
    kw = {"backoff_base": 1.0, "backoff_max": 4.0, "retry_after_max": 30.0, "rng": random.Random(0), **kw}
    return RetryPolicy(sleep=waits.append, clock=lambda: 1_000_000.0, **kw), waits


def scripted(*outcomes):
    """A `send` that raises or returns each outcome in turn, recording the timeout it was given."""
    timeouts, queue = [], list(outcomes)

    def send(timeout):
        timeouts.append(timeout)
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return send, timeouts


def test_retry_after_is_honoured_beyond_backoff_max_up_to_its_own_ceiling():
    retry, waits = policy()
    send, _ = scripted(
        RateLimited({"Retry-After": "10"}),
        RateLimited({"retry-after": "100"}),
        RateLimited({"retry-after-ms": "2500"}),
        "answer",
    )
    stats = RetryStats()
    done = retry.call(send, RETRYABLE, stats)
    assert done.value == "answer" and done.retries == 3
    assert waits == [10.0, 30.0, 2.5], "10 s over backoff_max=4 is honoured; 100 s is capped at retry_after_max=30"
    assert stats.requests == 4 and stats.retries == 3 and stats.rate_limited == 3 and stats.failed == 0


def test_backoff_is_exponential_with_full_jitter_under_backoff_max():
    retry, waits = policy(max_retries=5)
    send, _ = scripted(*[RateLimited()] * 5, "ok")
    retry.call(send, RETRYABLE, RetryStats())
    expected_rng = random.Random(0)
    assert waits == [expected_rng.uniform(0, cap) for cap in (1.0, 2.0, 4.0, 4.0, 4.0)]


def test_each_timeout_allows_the_next_attempt_longer_up_to_the_growth_cap():
    retry, _ = policy(timeout=10.0, timeout_growth=8, max_retries=6)
    send, timeouts = scripted(Slow(), Slow(), RateLimited(), Slow(), Slow(), "ok")
    stats = RetryStats()
    assert retry.call(send, RETRYABLE, stats).value == "ok"
    assert timeouts == [10.0, 20.0, 40.0, 40.0, 80.0, 80.0], "a rate limit does not grow the timeout; 8x at most"
    assert stats.timeouts == 4 and stats.rate_limited == 1


def test_gives_up_after_max_retries_and_does_not_sleep_after_the_last_attempt():
    retry, waits = policy(max_retries=2)
    send, _ = scripted(*[RateLimited({"Retry-After": "1"})] * 3)
    stats = RetryStats()
    with pytest.raises(RetriesExhausted, match="gave up after 3 attempts") as caught:
        retry.call(send, RETRYABLE, stats)
    assert caught.value.attempts == 3 and waits == [1.0, 1.0] and stats.requests == 3 and stats.retries == 2


def test_an_error_retrying_cannot_fix_propagates_at_once():
    retry, waits = policy()
    send, _ = scripted(Rejected("400"), "never")
    stats = RetryStats()
    with pytest.raises(Rejected):
        retry.call(send, RETRYABLE, stats)
    assert waits == [] and stats.requests == 1 and stats.retries == 0


def test_retry_after_header_forms():
    now = 1_000_000.0
    assert retry_after(RateLimited({"Retry-After": "0.2"})) == 0.2
    assert retry_after(RateLimited({"RETRY-AFTER-MS": "150"})) == 0.15
    date = "Mon, 12 Jan 1970 13:46:50 GMT"  # 1,000,010 s after the epoch: 10 s from `now`
    assert retry_after(RateLimited({"Retry-After": date}), clock=lambda: now) == pytest.approx(10.0)
    assert retry_after(RateLimited({"Retry-After": "soon"})) is None
    assert retry_after(RateLimited()) is None and retry_after(ValueError("no response")) is None
    retry, _ = policy()
    assert retry.wait(0, -5.0) == 0.0, "a date in the past means: retry now"
