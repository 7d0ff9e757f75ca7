"""The one retry policy: how many calls, how long between them, and which failures
leave the outcome of a request unknown.

Every loop that makes a call again lives in the client and asks this policy; nothing
above the client retries, and the session under it retries nothing either (urllib3's
own retries cannot see the run's deadline). The policy stops early when the caller's
time runs out or a signal came, and says each retry through a callback, so a person
watching the live log can tell a server that does not answer from a flow that runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import Cancelled, EctfError

T = TypeVar("T")

RETRY_STATUSES = (429, 500, 502, 503, 504)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A server error or a dropped connection may come after the server did the work; a 429
# is a refusal before any work.
_UNKNOWN_OUTCOME_STATUSES = frozenset({500, 502, 503, 504})


def is_transient(status: int) -> bool:
    """A status worth another try (the server is busy or had trouble)."""
    return status in RETRY_STATUSES


def leaves_outcome_unknown(status: int | None) -> bool:
    """Whether the request may have done its work although it failed: a 5xx, or no reply
    at all (None: the connection dropped). A non-idempotent call must then look before
    it acts again."""
    return status is None or status in _UNKNOWN_OUTCOME_STATUSES


@dataclass
class Attempt:
    """What one call of a retried operation knows about the calls before it."""

    number: int = 1
    outcome_unknown: bool = False  # an earlier call may already have done the work


class TryAgain(Exception):
    """Raised by one call of an operation: worth another call, unless the policy's
    attempts (or the caller's time) are used up, in which case `error` is raised."""

    def __init__(
        self,
        error: EctfError,
        *,
        outcome_unknown: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome_unknown = outcome_unknown
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently requests are tried again.

    `attempts` bounds the loops for calls that change something (queueing, cancelling,
    answering a job); `read_attempts` bounds idempotent requests and downloads, whose
    failures (no connection, a busy server, a body cut short) cost little to repeat.
    """

    attempts: int = 4
    read_attempts: int = 6
    backoff: float = 1.0  # seconds before the second call; doubled for each next one
    backoff_max: float = 30.0
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.read_attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")

    @classmethod
    def from_counts(cls, retries: int, attempts: int, backoff: float) -> RetryPolicy:
        """The policy the client's constructor arguments describe: an idempotent request
        or a download is tried 1 + *retries* times, other loops *attempts* times."""
        return cls(
            attempts=max(1, attempts),
            read_attempts=1 + max(0, retries),
            backoff=max(0.0, backoff),
        )

    def delay(
        self,
        failures: int,
        retry_after: float | None = None,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the *failures*-th failed call: the server's Retry-After
        (capped: a hostile one cannot stall a run) when it gave one, else exponential
        backoff with up to half the base step of jitter, so that many clients do not
        come back in step."""
        if retry_after is not None:
            return max(0.0, min(self.retry_after_max, retry_after))
        base = min(self.backoff_max, self.backoff * 2.0 ** max(0, failures - 1))
        return float(base + self.backoff / 2 * jitter())

    def call(
        self,
        operation: Callable[[Attempt], T],
        *,
        sleep: Callable[[float], None],
        attempts: int | None = None,
        cancelled: Callable[[], bool] | None = None,
        remaining: Callable[[], float | None] | None = None,
        on_retry: Callable[[EctfError, int, int, float], None] | None = None,
        out_of_time: Callable[[EctfError], EctfError] | None = None,
    ) -> T:
        """Call *operation* until it returns or raises anything but TryAgain. The last
        TryAgain's error is raised when the attempts are used up, or when the next call
        could not start within *remaining()* seconds (then as *out_of_time(error)* says
        it, so that the message names what ended the tries). *on_retry(error, next
        attempt, attempts, delay)* hears of each retry; a cancel ends the waiting
        between calls."""
        limit = self.attempts if attempts is None else max(1, attempts)
        attempt = Attempt()
        while True:
            try:
                return operation(attempt)
            except TryAgain as again:
                if attempt.number >= limit:
                    raise again.error from None
                wait = self.delay(attempt.number, again.retry_after)
                left = remaining() if remaining is not None else None
                if left is not None and wait >= left:
                    raise (out_of_time or _as_it_was)(again.error) from None
                attempt.outcome_unknown = attempt.outcome_unknown or again.outcome_unknown
                if on_retry is not None:
                    on_retry(again.error, attempt.number + 1, limit, wait)
                sleep(wait)
                if cancelled is not None and cancelled():
                    raise Cancelled("stopped retrying: the run was interrupted") from None
                attempt.number += 1


def _as_it_was(error: EctfError) -> EctfError:
    return error
