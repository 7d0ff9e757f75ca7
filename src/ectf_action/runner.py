"""One run of the action: acquire the flow, follow it, collect its artifacts, decide.

The runner only decides; it talks to the server through an injected client, waits
through an injected clock, hears signals through a cancel event and writes its live
log through a callable. Finding or queueing the flow is `acquire.py`'s, downloads are
`downloads.py`'s, and the verdict is `verdict.py`'s pure functions. A failed eCTF job
is a result; only trouble of our own (the server refusing us, an unreachable server)
ends a run with status `error`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .acquire import NOTHING_QUEUED_INTERRUPTED as NOTHING_QUEUED
from .acquire import Acquirer, QueueClient, Stop
from .artifacts import ExtractLimits
from .clock import Clock
from .downloads import DOWNLOAD_WORKERS, Downloads, wants_artifacts
from .errors import (
    EXIT_FLOW_FAILED,
    BadRequest,
    Cancelled,
    EctfError,
    NotFound,
    RunAborted,
    unexpected_problem,
)
from .follow import FollowResult, JobChange, follow_flow
from .livelog import LiveLog
from .models import Flow, Job, JobStatus
from .results import RunStatus
from .settings import Settings
from .text import cancel_hint, clean
from .verdict import (
    RunOutcome,
    Timing,
    build_result,
    exit_code_for,
    interrupted_message,
    not_found_message,
    pending_message,
    queued_message,
    status_of,
    timed_out_message,
    verdict_message,
)

URGENT_CANCEL_SECONDS = 5.0  # the runner kills the container 10 s after the first signal

__all__ = ["DOWNLOAD_WORKERS", "FlowClient", "RunOutcome", "Runner"]


class FlowClient(QueueClient, Protocol):
    """The part of `client.EctfClient` a run uses (so tests can pass a small fake)."""

    api_url: str

    def download_job_output(
        self, flow: str, job_id: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Any: ...

    def send_job_input(self, flow: str, job_id: str, data: Mapping[str, Any]) -> None: ...


@runtime_checkable
class RunBound(Protocol):
    """A client that can tie its requests to the run (`EctfClient.bind`): the deadline,
    the cancel event, and the live log for retries and slow replies."""

    def bind(
        self,
        *,
        seconds: float | None = None,
        cancel: threading.Event | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None: ...


class CancelGuard:
    """From the moment the flow is ours until the run is decided: a thread that cancels
    it on the server as soon as a signal comes, even while the main thread waits on
    HTTP. `stop` ends its watch; `outcome` says what came of a cancel it made."""

    def __init__(self, cancel: threading.Event, cancel_remote: Callable[[str], str]) -> None:
        self._cancel = cancel
        self._cancel_remote = cancel_remote
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: str | None = None

    def start(self, flow_id: str) -> None:
        self._thread = threading.Thread(
            target=self._watch, args=(flow_id,), name="ectf-cancel", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def outcome(self, timeout: float) -> str | None:
        """What the cancel came to ("was cancelled on the server ..."), waiting at most
        *timeout* seconds for it; None when it did not end in time (or never ran)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._done

    def _watch(self, flow_id: str) -> None:
        while not self._stopped.is_set():
            if self._cancel.wait(0.1):
                self._done = self._cancel_remote(flow_id)
                return


class Runner:
    """One run: acquire (under the conflict policy), follow, collect, decide."""

    def __init__(
        self,
        settings: Settings,
        client: FlowClient,
        *,
        clock: Clock,
        cancel: threading.Event,
        log: Callable[[str], None],
        on_flow_id: Callable[[str], None] | None = None,
        download_workers: int = DOWNLOAD_WORKERS,
        urgent_cancel_seconds: float = URGENT_CANCEL_SECONDS,
        redact: Callable[[str], str] = str,
        on_left_running: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.cancel = cancel
        self._log = LiveLog(log, clock)
        self._on_flow_id = on_flow_id
        self._on_left_running = on_left_running
        self._workers = download_workers
        self._urgent_seconds = urgent_cancel_seconds
        self._redact = redact  # for the text read from the jobs' artifacts
        self._guard = CancelGuard(cancel, self._cancel_remote)
        self._start = 0.0
        self._deadline = 0.0
        self._flow_id: str | None = None
        self._last: Flow | None = None  # the newest state of the flow seen
        self._started_at: dict[str, float] = {}  # first seen past `queued`
        self._answered: set[str] = set()
        self._refused: set[str] = set()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> RunOutcome:
        self._start = self.clock.now()
        self._deadline = self._start + self.settings.timeout_seconds
        self._log.started(self.settings)
        settings = self.settings
        downloads = Downloads(
            self.client,
            settings.flow,
            artifacts_path=settings.artifacts_path,
            limits=ExtractLimits(max_bytes=settings.max_artifact_bytes),
            cancel=self.cancel,
            temp_root=settings.temp_root,
            workers=self._workers,
            redact=self._redact,
        )
        if isinstance(self.client, RunBound):
            self.client.bind(
                seconds=settings.timeout_seconds, cancel=self.cancel, notify=self._log_line
            )
        with downloads:
            try:
                flow_id = self._acquire()
                if not settings.wait:
                    return self._leave_queued(flow_id, downloads)
                followed = self._follow(flow_id, downloads)
                return self._decide(flow_id, followed, downloads)
            except Stop as stop:
                return self._end(
                    stop.status, stop.flow, stop.message, downloads, interrupted=stop.interrupted
                )
            except (Cancelled, RunAborted):  # a request abandoned, or a second signal
                return self._end(
                    RunStatus.CANCELED,
                    self._last,
                    self._interrupted(self._flow_id) if self._flow_id else NOTHING_QUEUED,
                    downloads,
                    interrupted=True,
                )
            except EctfError as exc:
                return self._end(RunStatus.ERROR, None, str(exc), downloads)
            except Exception as exc:  # a bug: end in error, and free the team's slot
                message = unexpected_problem(exc)
                if self._flow_id is not None and not self.cancel.is_set():
                    done = self._cancel_remote(self._flow_id)
                    message = f"{message} The {settings.flow} flow {self._flow_id} {done}."
                return self._end(RunStatus.ERROR, self._last, message, downloads)
            finally:
                self._guard.stop()

    def _acquire(self) -> str:
        """The flow's id (the flow-id input's, or one found or queued); from here on it
        is ours: saved for the post step and later steps, and cancelled on a signal."""
        flow_id = self.settings.flow_id or self._find_or_queue()
        self._flow_id = flow_id
        if self._on_flow_id is not None:
            try:
                self._on_flow_id(flow_id)
            except EctfError as exc:
                # Without its id saved, no post step could cancel the flow should the run
                # be cancelled: cancel it now rather than leave it holding the slot.
                done = self._cancel_remote(flow_id)
                raise Stop(
                    RunStatus.ERROR,
                    f"{exc} The {self.settings.flow} flow {flow_id} {done}, rather than left "
                    "running where nothing could cancel it.",
                ) from None
        self._guard.start(flow_id)
        if self.cancel.is_set():
            raise Stop(RunStatus.CANCELED, self._interrupted(flow_id), interrupted=True)
        return flow_id

    def _find_or_queue(self) -> str:
        acquirer = Acquirer(
            settings=self.settings,
            client=self.client,
            clock=self.clock,
            cancel=self.cancel,
            deadline=self._deadline,
            log=self._log_line,
        )
        return acquirer.acquire()

    def _leave_queued(self, flow_id: str, downloads: Downloads) -> RunOutcome:
        """`wait: false`: from this moment the flow is left running on purpose, so a
        signal no longer cancels it, and neither does the post step."""
        self._guard.stop()
        if self.cancel.is_set():  # the signal came first: the flow was still ours
            raise Stop(RunStatus.CANCELED, self._interrupted(flow_id), interrupted=True)
        self._left_running(RunStatus.QUEUED)
        flow = self._refetch(flow_id, None)  # its jobs, for the reports
        message = queued_message(self.settings.flow, flow_id)
        return self._end(RunStatus.QUEUED, flow, message, downloads, notice=message)

    def _left_running(self, status: RunStatus) -> None:
        if self._on_left_running is not None:
            self._on_left_running(status.value)

    def _follow(self, flow_id: str, downloads: Downloads) -> FollowResult:
        """Poll until the flow ends (or times out, is interrupted, or stops at a pending
        job nobody here answers), starting each finished job's download at once and
        answering the pending jobs that pending-inputs names."""
        settings = self.settings
        followed: FollowResult | None = None
        to_answer: list[Job] = []

        def on_update(flow: Flow, changes: list[JobChange]) -> bool:
            self._seen(flow, changes, downloads)
            to_answer[:] = self._unanswered(flow)
            return bool(to_answer) or self._waiting_job(flow) is not None

        while True:
            to_answer.clear()
            try:
                followed = follow_flow(
                    self.client,
                    settings.flow,
                    flow_id,
                    clock=self.clock,
                    schedule=settings.poll_schedule,
                    cancel=self.cancel,
                    deadline=self._deadline,
                    on_update=on_update,
                    started=self._start,
                    resume=followed,
                )
            except NotFound:
                if self._last is None and settings.flow_id is not None:
                    raise Stop(RunStatus.ERROR, not_found_message(settings.flow, flow_id)) from None
                raise Stop(
                    RunStatus.ERROR,
                    f"The {settings.flow} flow {flow_id} disappeared from the server while it "
                    "was followed (404 Not Found): it was deleted, or the server lost it. Run "
                    "the workflow again, and tell the organizers if it persists.",
                    flow=self._last,
                ) from None
            except Cancelled:
                raise
            except EctfError as exc:
                raise self._trouble(exc, flow_id) from None
            if followed.reason != "stopped" or not to_answer:
                return followed
            for job in to_answer:
                self._answer(flow_id, job)

    def _decide(self, flow_id: str, followed: FollowResult, downloads: Downloads) -> RunOutcome:
        flow = followed.flow
        settings = self.settings
        # A signal that came while a status request was on its way: that reply may show
        # the flow our guard just cancelled, "finished"; the run was still interrupted.
        if followed.reason == "canceled" or self.cancel.is_set():
            message = self._interrupted(flow_id)
            return self._end(
                RunStatus.CANCELED, flow, message, downloads, followed, interrupted=True
            )
        self._guard.stop()
        if followed.reason == "timed-out":
            done = self._cancel_remote(flow_id)
            flow = self._refetch(flow_id, flow)
            minutes = settings.timeout_seconds / 60
            message = timed_out_message(settings.flow, flow_id, minutes, done)
            return self._end(RunStatus.TIMED_OUT, flow, message, downloads, followed)
        waiting = self._waiting_job(flow) if followed.reason == "stopped" and flow else None
        if waiting is not None:
            return self._stopped_on_pending(flow_id, waiting, flow, downloads, followed)
        status = status_of(flow)
        message = verdict_message(settings.flow, flow_id, status, flow)
        return self._end(status, flow, message, downloads, followed)

    def _end(
        self,
        status: RunStatus,
        flow: Flow | None,
        message: str,
        downloads: Downloads,
        followed: FollowResult | None = None,
        *,
        interrupted: bool = False,
        notice: str | None = None,
        exit_code: int | None = None,
    ) -> RunOutcome:
        """Collect the downloads and build the outcome; the live log's last line."""
        settings = self.settings
        artifacts = downloads.collect()
        self._log_downloads(downloads)
        timing = Timing(
            start=self._start,
            end=self.clock.now(),
            started_at=self._started_at,
            finished_at=followed.finished_at if followed is not None else {},
        )
        result = build_result(
            status,
            message,
            flow_name=settings.flow,
            flow_id=self._flow_id,
            flow=flow,
            commit=settings.commit,
            api_url=settings.api_url,
            timing=timing,
            artifacts=artifacts,
            relative=settings.relative,
        )
        failed = result.failed_jobs
        detail = f" (failed: {', '.join(clean(n, 40) for n in failed)})" if failed else ""
        shown = f" flow {result.flow_id}" if result.flow_id else ""
        self._log_line(f"{settings.flow}{shown}: {status.value}{detail}")
        code = exit_code_for(status, settings.fail_on) if exit_code is None else exit_code
        return RunOutcome(result, code, interrupted=interrupted, notice=notice)

    # -- following -------------------------------------------------------------------

    def _seen(self, flow: Flow, changes: list[JobChange], downloads: Downloads) -> None:
        """A new state of the flow: note the times, log the changes, start downloads."""
        self._last = flow
        now = self.clock.now()
        for job in flow.jobs:
            if job.status is not JobStatus.QUEUED:
                self._started_at.setdefault(job.id, now)
        self._log.changes(flow, changes)
        for job in flow.jobs:
            if wants_artifacts(job, self.settings.download_artifacts):
                downloads.start(job)
        self._log_downloads(downloads)

    def _unanswered(self, flow: Flow) -> list[Job]:
        """Pending jobs that pending-inputs answers and that were not answered yet."""
        answers = self.settings.pending_inputs
        return [
            job
            for job in flow.jobs
            if job.status is JobStatus.PENDING
            and not job.private
            and job.name in answers
            and job.id not in self._answered
        ]

    def _waiting_job(self, flow: Flow) -> Job | None:
        """A pending job that waits for someone else, when on-pending is not `wait`: one
        pending-inputs does not answer, or whose answer was refused."""
        if self.settings.on_pending == "wait":
            return None
        answers = self.settings.pending_inputs
        for job in flow.jobs:
            if job.status is not JobStatus.PENDING:
                continue
            if job.id in self._answered:
                if job.id not in self._refused:
                    continue  # answered: the server moves it on shortly
            elif job.name in answers and not job.private:
                continue  # answered next
            return job
        return None

    def _answer(self, flow_id: str, job: Job) -> None:
        """Send pending-inputs' answer to *job*, once; a refusal is looked at again on
        the next poll (still pending means refused)."""
        answer = self.settings.pending_inputs[job.name]
        self._answered.add(job.id)
        name = clean(job.name, 80)
        try:
            self.client.send_job_input(self.settings.flow, job.id, answer)
        except BadRequest as exc:
            self._refused.add(job.id)
            self._log_line(f"{name}: the answer was refused ({exc})")
            return
        except Cancelled:
            raise
        except EctfError as exc:
            raise self._trouble(exc, flow_id) from None
        self._log_line(f"{name}: answered with {_json_one_line(answer)}")

    def _trouble(self, exc: EctfError, flow_id: str) -> Stop:
        """Our trouble with the server while the flow runs: the run ends in error, and
        the message says the flow may still be running."""
        message = f"{exc} The {self.settings.flow} flow {flow_id} may still be running."
        return Stop(RunStatus.ERROR, message, flow=self._last)

    def _stopped_on_pending(
        self,
        flow_id: str,
        job: Job,
        flow: Flow | None,
        downloads: Downloads,
        followed: FollowResult,
    ) -> RunOutcome:
        settings = self.settings
        if job.private or settings.on_pending == "exit":
            self._left_running(RunStatus.PENDING)
            message = pending_message(settings.flow, flow_id, job, cancelled=None)
            return self._end(RunStatus.PENDING, flow, message, downloads, followed, notice=message)
        # on-pending: fail cancels the flow and fails the step, whatever fail-on says
        done = self._cancel_remote(flow_id)
        flow = self._refetch(flow_id, flow)
        message = pending_message(settings.flow, flow_id, job, cancelled=done)
        return self._end(
            RunStatus.PENDING, flow, message, downloads, followed, exit_code=EXIT_FLOW_FAILED
        )

    # -- cancelling ------------------------------------------------------------------

    def _cancel_remote(self, flow_id: str) -> str:
        """Cancel the flow to free the team's slot; say what came of it ("... and <it>")."""
        settings = self.settings
        try:
            self.client.cancel_flow(settings.flow, flow_id)
        except BadRequest:
            return "had already ended"
        except EctfError as exc:
            self._log_line(f"could not cancel flow {flow_id}: {exc}")
            return (
                f"could not be cancelled ({exc.title}): cancel it by hand with "
                f"`{cancel_hint(settings.flow, flow_id)}`"
            )
        self._log_line(f"cancelled {settings.flow} flow {flow_id} on the server")
        return "was cancelled on the server to free the team's slot"

    def _refetch(self, flow_id: str, flow: Flow | None) -> Flow | None:
        """The flow once more after cancelling it, so reports show the final statuses."""
        try:
            return self.client.get_flow(self.settings.flow, flow_id)
        except EctfError:
            return flow

    def _interrupted(self, flow_id: str) -> str:
        cancelled = self._guard.outcome(self._urgent_seconds)
        return interrupted_message(self.settings.flow, flow_id, cancelled)

    def _log_downloads(self, downloads: Downloads) -> None:
        """One line per finished download, as it finishes (they overlap the flow)."""
        for job, found in downloads.newly_finished():
            self._log.artifacts(job, found, self.settings.relative)

    def _log_line(self, text: str) -> None:
        self._log.line(text)


def _json_one_line(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), separators=(", ", ": "), default=str)
