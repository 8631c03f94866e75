"""Retrying a remote call: exponential backoff with full jitter, Retry-After honoured up to a ceiling, a longer timeout
after each timeout, and counted stats. Every client that retries (the chat client, Google Translate) uses this loop."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

T = TypeVar("T")

TIMEOUT_GROWTH = 8  # ours: the longest a retry after timeouts may take, as a multiple of `timeout`
RETRY_AFTER_MAX = 120.0  # ours: the longest wait a server's Retry-After can ask of us, in seconds


@dataclass
class RetryStats:
    """Counters a client keeps across calls (thread-safe): requests, retries and why, failures, tokens."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class RetriesExhausted(Exception):
    """Every attempt failed in a retryable way; `attempts` were made. Callers turn it into their own one-line error."""

    def __init__(self, attempts: int):
        super().__init__(f"gave up after {attempts} attempts")
        self.attempts = attempts


@dataclass
class Succeeded(Generic[T]):
    value: T
    retries: int  # attempts before the one that succeeded


@dataclass
class RetryPolicy:
    """How long to wait between attempts and how long each may take. `sleep`, `clock` and `rng` are injectable so
    tests can record the waits asked for instead of measuring them."""

    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0  # the cap of our own exponential backoff
    retry_after_max: float = RETRY_AFTER_MAX  # the cap of a wait the server asks for (Retry-After, retry-after-ms)
    timeout: float | None = None  # seconds per attempt; None leaves it to the client
    timeout_growth: int = TIMEOUT_GROWTH
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(backoff_max, base * 2^attempt)]."""
        return self.rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After when it sent one (at most `retry_after_max`), else our backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        return self.backoff(attempt)

    def timeout_for(self, timeouts: int) -> float | None:
        """A request that timed out may still be answered and billed by the server, so each retry after a timeout
        allows twice as long (up to `timeout_growth` x): a slow server is not asked, and paid, again and again."""
        if self.timeout is None:
            return None
        return self.timeout * min(self.timeout_growth, 2**timeouts)

    def call(
        self, send: Callable[[float | None], T], retryable: Mapping[type[BaseException], str], stats: RetryStats
    ) -> Succeeded[T]:
        """`send(timeout)` until it returns, retrying the exception types in `retryable` (each counted under its
        stats name; "timeouts" also grows the next timeout). Other exceptions propagate at once; RetriesExhausted
        after `max_retries` retries."""
        timeouts = 0
        for attempt in range(self.max_retries + 1):
            stats.add(requests=1)
            try:
                return Succeeded(send(self.timeout_for(timeouts)), attempt)
            except tuple(retryable) as error:
                counter = _counter(error, retryable)
                stats.add(**{counter: 1})
                if counter == "timeouts":
                    timeouts += 1
                wait = self.wait(attempt, retry_after(error, self.clock))
            if attempt < self.max_retries:
                stats.add(retries=1)
                self.sleep(wait)
        raise RetriesExhausted(self.max_retries + 1)


def _counter(error: BaseException, retryable: Mapping[type[BaseException], str]) -> str:
    """The stats name of the first matching type (so list subclasses before their bases)."""
    return next(name for kind, name in retryable.items() if isinstance(error, kind))


def retry_after(error: BaseException, clock: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, or `Retry-After` as seconds or an HTTP date), read
    from the error's HTTP response; None when it sent no usable header."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    headers = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after", "").strip()
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            return parsedate_to_datetime(value).timestamp() - clock()
    except (TypeError, ValueError):
        return None
