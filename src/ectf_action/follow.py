"""Following a flow until it ends: shared by `run` and `flows watch`.

The adaptive schedule polls often while a flow is young (most flows that fail, fail
early) and settles at one request per 10 s, which still notices completion within 10 s
while costing a hundred teams' worth of polling little on the shared server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .clock import Clock
from .errors import Cancelled, InvalidInput, ProtocolError, ServerError, TransportError
from .models import Flow, Job, JobStatus

# (flow age in seconds up to which it applies, seconds between polls)
AUTO_STEPS: tuple[tuple[float, float], ...] = ((20.0, 2.0), (60.0, 5.0))
AUTO_SETTLED = 10.0


class FlowReader(Protocol):
    def get_flow(self, flow: str, flow_id: str) -> Flow: ...


@dataclass(frozen=True)
class PollSchedule:
    """A fixed interval, or None for the adaptive one."""

    fixed: float | None = None

    @classmethod
    def parse(cls, text: str, *, name: str = "poll-interval") -> PollSchedule:
        value = text.strip().lower()
        if value in ("", "auto"):
            return cls()
        try:
            seconds = float(value)
        except ValueError:
            raise InvalidInput(
                name, f"{text!r} is not allowed; use auto or seconds (e.g. 15)"
            ) from None
        if not 0 < seconds <= 3600 or seconds != seconds:
            raise InvalidInput(name, f"{text!r} must be more than 0 and at most 3600 seconds")
        return cls(seconds)

    @property
    def is_auto(self) -> bool:
        return self.fixed is None

    def delay(self, elapsed: float) -> float:
        if self.fixed is not None:
            return self.fixed
        for limit, seconds in AUTO_STEPS:
            if elapsed < limit:
                return seconds
        return AUTO_SETTLED

    def __str__(self) -> str:
        return "auto" if self.fixed is None else f"{self.fixed:g}"


@dataclass(frozen=True)
class JobChange:
    job: Job
    previous: JobStatus | None  # None: seen for the first time
    elapsed: float


FollowReason = Literal["finished", "stopped", "timed-out", "canceled"]


@dataclass
class FollowResult:
    flow: Flow | None
    reason: FollowReason
    finished_at: dict[str, float] = field(default_factory=dict)  # job id -> seen finished


def diff_jobs(previous: Flow | None, current: Flow, elapsed: float) -> list[JobChange]:
    """Jobs that are new or whose status changed since the previous poll."""
    before = {j.id: j for j in previous.jobs} if previous else {}
    changes = []
    for job in current.jobs:
        old = before.get(job.id)
        if old is None:
            changes.append(JobChange(job, None, elapsed))
        elif old.status_text != job.status_text:
            changes.append(JobChange(job, old.status, elapsed))
    return changes


def follow_flow(
    client: FlowReader,
    flow: str,
    flow_id: str,
    *,
    clock: Clock,
    schedule: PollSchedule,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    on_update: Callable[[Flow, list[JobChange]], bool | None] | None = None,
    started: float | None = None,
    resume: FollowResult | None = None,
    tolerated_errors: int = 5,
) -> FollowResult:
    """Poll until the flow finishes, `on_update` returns True, the deadline passes or
    `cancel` is set. The last wait ends at the deadline and one more poll follows it, so
    a flow that ends right then is not called timed out. Errors from the client
    propagate, except passing trouble (unreachable, 5xx after the client's own retries,
    a reply that is not a flow, such as a proxy's page) that is tolerated
    `tolerated_errors` polls in a row: a long flow must not be lost to one bad minute
    of the server.

    *resume* continues a follow that `on_update` stopped (the caller acted on what it
    saw): the changes are counted from its last flow, and the next poll comes after
    the schedule's wait, as if it had never stopped.
    """
    start = clock.now() if started is None else started
    result = resume or FollowResult(flow=None, reason="finished")
    previous: Flow | None = result.flow
    errors_in_a_row = 0
    waiting = resume is not None and resume.flow is not None
    while True:
        if waiting:
            wait = schedule.delay(clock.now() - start)
            if deadline is not None:
                remaining = deadline - clock.now()
                if remaining <= 0:
                    result.reason = "timed-out"
                    return result
                wait = min(wait, remaining)
            if clock.wait(wait, cancel):
                result.reason = "canceled"
                return result
        waiting = True
        if cancel is not None and cancel.is_set():
            result.reason = "canceled"
            return result
        try:
            current = client.get_flow(flow, flow_id)
        except Cancelled:  # a signal came while the request was on its way
            result.reason = "canceled"
            return result
        except (TransportError, ServerError, ProtocolError):
            errors_in_a_row += 1
            if errors_in_a_row > tolerated_errors:
                raise
            if deadline is not None and clock.now() >= deadline:
                result.reason = "timed-out"
                return result
            continue
        errors_in_a_row = 0
        now = clock.now()
        changes = diff_jobs(previous, current, now - start)
        for change in changes:
            if change.job.status.finished:
                result.finished_at.setdefault(change.job.id, now)
        result.flow, previous = current, current
        stop = on_update(current, changes) if on_update is not None else None
        if current.finished:
            result.reason = "finished"
            return result
        if stop:
            result.reason = "stopped"
            return result
