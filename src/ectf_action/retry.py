"""The one retry policy: how many calls, how long between them, and which failures
leave the outcome of a request unknown.

Every loop that makes a call again lives in the client and asks this policy; nothing
above the client retries. urllib3's `Retry`, mounted on the session, keeps what it does
well (connection errors and transient statuses of idempotent requests, before a body
is read), built from the same numbers (`session_retry`). The client's own loops cover
what urllib3 cannot: POST and PATCH whose outcome may be unknown, replies whose body
broke off after the headers, and downloads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from urllib3.util.retry import Retry

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


class BoundedRetry(Retry):
    """urllib3's Retry with `Retry-After` capped, so a hostile header cannot stall a run."""

    MAX_RETRY_AFTER = 60.0

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.MAX_RETRY_AFTER)


@dataclass
class Attempt:
    """What one call of a retried operation knows about the calls before it."""

    number: int = 1
    outcome_unknown: bool = False  # an earlier call may already have done the work


class TryAgain(Exception):
    """Raised by one call of an operation: worth another call, unless the policy's
    attempts are used up, in which case `error` is raised."""

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

    `attempts` bounds the client's own loops for calls that change something (queueing,
    cancelling, answering a job); `body_attempts` bounds reading a reply whose body broke
    off after its headers (a status reply, a download), which a congested server often
    does and which costs little to repeat; `session_retries` is urllib3's count for
    idempotent requests.
    """

    attempts: int = 4
    body_attempts: int = 6
    session_retries: int = 5
    backoff: float = 1.0  # seconds before the second call; doubled for each next one
    backoff_max: float = 30.0
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.body_attempts < 1 or self.session_retries < 0:
            raise ValueError("a retry policy needs at least one attempt")

    @classmethod
    def from_counts(cls, retries: int, attempts: int, backoff: float) -> RetryPolicy:
        """The policy the client's constructor arguments describe: *retries* for the
        session and for bodies that broke off (read 1 + *retries* times)."""
        retries = max(0, retries)
        return cls(
            attempts=max(1, attempts),
            body_attempts=1 + retries,
            session_retries=retries,
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
        (capped) when it gave one, else exponential backoff with up to half the base
        step of jitter, so that many clients do not come back in step."""
        if retry_after is not None:
            return max(0.0, min(self.retry_after_max, retry_after))
        base = min(self.backoff_max, self.backoff * 2.0 ** max(0, failures - 1))
        return float(base + self.backoff / 2 * jitter())

    def session_retry(self) -> Retry:
        """urllib3's Retry for the session: idempotent methods only, same backoff."""
        retries = self.session_retries
        return BoundedRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff / 2,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )

    def call(
        self,
        operation: Callable[[Attempt], T],
        *,
        sleep: Callable[[float], None],
        attempts: int | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> T:
        """Call *operation* until it returns, raises anything but TryAgain, or the
        attempts are used up (then the last TryAgain's error is raised). A cancel
        stops the waiting between calls."""
        limit = self.attempts if attempts is None else max(1, attempts)
        attempt = Attempt()
        while True:
            try:
                return operation(attempt)
            except TryAgain as again:
                if attempt.number >= limit:
                    raise again.error from None
                attempt.outcome_unknown = attempt.outcome_unknown or again.outcome_unknown
                sleep(self.delay(attempt.number, again.retry_after))
                if cancelled is not None and cancelled():
                    raise Cancelled("stopped retrying: cancel requested") from None
                attempt.number += 1


def make_retry(retries: int, backoff_factor: float) -> Retry:
    """urllib3's Retry for *retries* and *backoff_factor* (see `RetryPolicy.session_retry`)."""
    return RetryPolicy.from_counts(retries, 1, backoff_factor).session_retry()
