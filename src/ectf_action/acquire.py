"""Getting the flow a run follows: one already active for this commit, or a new one
queued under the `on-conflict` policy.

The team has one slot per flow type. A flow for the same commit (a re-run, a second
workflow) is followed instead of queueing another; another commit's flow is waited
for, cancelled or refused, as the policy says. Every wait here is bounded by the run's
deadline and ended by its cancel event.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import Clock
from .errors import BadRequest, Cancelled, Conflict, EctfError, NotFound, RunAborted
from .follow import follow_flow
from .models import Flow
from .results import RunStatus
from .settings import Settings
from .text import PROG, cancel_hint, clean

SLOT_FREE_SECONDS = 60.0  # how long a cancelled flow may keep the slot before we give up
CONFLICT_RETRY_SECONDS = 2.0
EMPTY_CONFLICTS_TOLERATED = 10  # 409s that name no active flow before the 409 is reported
NOTHING_QUEUED_INTERRUPTED = (
    "The run was interrupted before a flow was queued; nothing was left running."
)


class QueueClient(Protocol):
    def find_active_flow(self, flow: str, commit: str | None = None) -> Flow | None: ...

    def queue_flow(self, flow: str, body: Mapping[str, Any]) -> str: ...

    def get_flow(self, flow: str, flow_id: str) -> Flow: ...

    def cancel_flow(self, flow: str, flow_id: str) -> None: ...


class Stop(Exception):
    """Ends a run before its flow finished: timed out, interrupted, refused by policy, or
    trouble with the server. *flow* is the last state seen, if any."""

    def __init__(
        self,
        status: RunStatus,
        message: str,
        *,
        interrupted: bool = False,
        flow: Flow | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.interrupted = interrupted
        self.flow = flow


def same_active_flow(client: QueueClient, settings: Settings) -> Flow | None:
    """The team's active flow that this run's queue request asks for (the same commit;
    for remote, the same target team), if there is one: the run follows it instead of
    queueing another, and a post step that has no flow id cancels it."""
    commit = None if settings.flow == "remote" else settings.commit
    active = client.find_active_flow(settings.flow, commit)
    return active if active is not None and active.matches(settings.queue_body()) else None


@dataclass
class Acquirer:
    """Finds or queues the run's flow; `acquire` returns its id or raises Stop."""

    settings: Settings
    client: QueueClient
    clock: Clock
    cancel: threading.Event
    deadline: float
    log: Callable[[str], None]

    @property
    def _request(self) -> dict[str, Any]:
        return self.settings.queue_body()

    def acquire(self) -> str:
        settings = self.settings
        same = same_active_flow(self.client, self.settings)
        if same is not None:
            self.log(f"following the active {settings.flow} flow {same.id} for this commit")
            return same.id
        cancelled: dict[str, float] = {}
        empty_conflicts = 0
        while True:
            self._check_stop(None)
            try:
                flow_id = self.client.queue_flow(settings.flow, self._request)
            except Cancelled:
                return self._queued_as_interrupted()
            except RunAborted:  # a second signal: no time for a look at what the server made
                raise Stop(
                    RunStatus.CANCELED,
                    self._maybe_queued("a second signal ended the run before the server answered"),
                    interrupted=True,
                ) from None
            except Conflict as conflict:
                active = self._active_flow(conflict.active_flow_id)
                if active is None:
                    empty_conflicts += 1
                    if empty_conflicts > EMPTY_CONFLICTS_TOLERATED:
                        raise
                    self._pause(CONFLICT_RETRY_SECONDS)
                    continue
                if active.matches(self._request):
                    self.log(
                        f"following the active {settings.flow} flow {active.id} for this commit"
                    )
                    return active.id
                self._resolve_conflict(active, cancelled)
                continue
            self.log(f"queued {settings.flow} flow {flow_id}")
            return flow_id

    def _queued_as_interrupted(self) -> str:
        """A signal came while the queue request was on its way and its reply did not come
        in time: the server may have made the flow. One last look for it, so that it is
        cancelled like a flow we know, instead of being left holding the slot."""
        try:
            made = same_active_flow(self.client, self.settings)
        except EctfError as exc:
            raise Stop(
                RunStatus.CANCELED,
                self._maybe_queued(f"the server did not say whether it made it ({exc.title})"),
                interrupted=True,
            ) from None
        if made is None:
            raise Stop(RunStatus.CANCELED, NOTHING_QUEUED_INTERRUPTED, interrupted=True)
        self.log(f"the {self.settings.flow} flow {made.id} was queued as the run was interrupted")
        return made.id

    def _maybe_queued(self, why: str) -> str:
        """The truth about a queue request a signal cut short: a flow may exist."""
        flow = self.settings.flow
        return (
            f"The run was interrupted while the {flow} flow was being queued, and {why}. If it "
            f"made the flow, the post step cancels it; check with `{PROG} flows list {flow}`."
        )

    def _active_flow(self, flow_id: str | None) -> Flow | None:
        """The flow that holds the slot, if it is still unfinished."""
        if flow_id:
            try:
                flow = self.client.get_flow(self.settings.flow, flow_id)
            except NotFound:
                return None
            return None if flow.finished else flow
        return self.client.find_active_flow(self.settings.flow)

    def _resolve_conflict(self, active: Flow, cancelled: dict[str, float]) -> None:
        settings = self.settings
        other = f"{settings.flow} flow {active.id}" + (
            f" (commit {clean(active.commit, 12)})" if active.commit else ""
        )
        if active.id in cancelled:
            if self.clock.now() - cancelled[active.id] > SLOT_FREE_SECONDS:
                raise Stop(
                    RunStatus.ERROR,
                    f"The server still counts the cancelled {other} as active after "
                    f"{SLOT_FREE_SECONDS:g} s, so no new flow can be queued. Retry later.",
                )
            self._pause(CONFLICT_RETRY_SECONDS)
            return
        if settings.on_conflict == "fail":
            raise Stop(
                RunStatus.ERROR,
                f"The team already has an active {other}, and on-conflict is fail. Wait for it "
                f"to end, cancel it ({cancel_hint(settings.flow, active.id)}), or "
                "set on-conflict to wait or cancel.",
            )
        if settings.on_conflict == "cancel":
            self.log(f"cancelling the team's active {other} (on-conflict: cancel)")
            with contextlib.suppress(BadRequest, NotFound):
                self.client.cancel_flow(settings.flow, active.id)
            cancelled[active.id] = self.clock.now()
            return
        self.log(f"waiting for the team's active {other} to end (on-conflict: wait)")
        try:
            waited = follow_flow(
                self.client,
                settings.flow,
                active.id,
                clock=self.clock,
                schedule=settings.poll_schedule,
                cancel=self.cancel,
                deadline=self.deadline,
            )
        except NotFound:
            return  # it is gone: the slot is free
        if waited.reason == "canceled":
            self._check_stop(None)
        if waited.reason == "timed-out":
            self._check_stop(f"while the team's active {other} was still running")
        self.log(f"the {other} ended; queueing")

    def _check_stop(self, what: str | None) -> None:
        if self.cancel.is_set():
            raise Stop(RunStatus.CANCELED, NOTHING_QUEUED_INTERRUPTED, interrupted=True)
        if self.clock.now() >= self.deadline:
            minutes = f"{self.settings.timeout_seconds / 60:g}"
            raise Stop(
                RunStatus.TIMED_OUT,
                f"No {self.settings.flow} flow could be queued within {minutes} minutes "
                f"(timeout-minutes){' ' + what if what else ''}. Nothing of ours was left "
                "running; raise timeout-minutes or use on-conflict: cancel.",
            )

    def _pause(self, seconds: float) -> None:
        remaining = self.deadline - self.clock.now()
        self.clock.wait(max(0.0, min(seconds, remaining)), self.cancel)
