"""Queue a flow, follow it to the end, fetch its artifacts: one run of the action.

The runner only decides; it talks to the server through an injected client, waits
through an injected clock, hears signals through a cancel event and writes its live
log through a callable. A failed eCTF job is a result; only trouble of our own (the
server refusing us, an unreachable server) ends a run with status `error`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .artifacts import ExtractLimits, extract_zip, job_dir_name, read_log_tail
from .clock import Clock
from .errors import (
    EXIT_FLOW_FAILED,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_SIGINT,
    ApiError,
    BadRequest,
    Cancelled,
    Conflict,
    DownloadError,
    EctfError,
    NotFound,
    ServerError,
    TransportError,
)
from .follow import JobChange, follow_flow
from .models import Flow, Job, JobStatus
from .results import JobOutcome, RunResult, RunStatus
from .settings import Settings
from .text import clean, format_size, log_stamp, plural

DOWNLOAD_WORKERS = 4
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF = 2.0  # seconds before the second attempt; doubled for each next one
DOWNLOAD_STOP_SECONDS = 2.0  # how long an interrupted run waits for downloads to stop
URGENT_CANCEL_SECONDS = 5.0  # the runner kills the container 10 s after the first signal
SLOT_FREE_SECONDS = 60.0  # how long a cancelled flow may keep the slot before we give up
CONFLICT_RETRY_SECONDS = 2.0
MAX_NAME_WIDTH = 24

_STATUS_BY_JOB_STATUS = {
    JobStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    JobStatus.FAILED: RunStatus.FAILED,
    JobStatus.CANCELED: RunStatus.CANCELED,
    JobStatus.PENDING: RunStatus.PENDING,
}


class FlowClient(Protocol):
    """The part of `client.EctfClient` a run uses (so tests can pass a small fake)."""

    api_url: str

    def find_active_flow(self, flow: str, commit: str | None = None) -> Flow | None: ...

    def queue_flow(self, flow: str, body: Mapping[str, Any]) -> str: ...

    def get_flow(self, flow: str, flow_id: str) -> Flow: ...

    def cancel_flow(self, flow: str, flow_id: str) -> None: ...

    def download_job_output(
        self, flow: str, job_id: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Any: ...

    def send_job_input(self, flow: str, job_id: str, data: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class RunOutcome:
    """A run's result and how the step should end.

    `exit_code` follows `fail-on` (and `on-pending: fail`); when `interrupted`, the
    entry point replaces it with 130 or 143 for the signal it caught. `notice` is shown
    as a `::notice::` (a flow left waiting for a person).
    """

    result: RunResult
    exit_code: int
    interrupted: bool = False
    notice: str | None = None


@dataclass
class _Artifacts:
    """What one job's download produced; built in a worker thread."""

    directory: Path | None = None
    files: int = 0
    size: int = 0
    log_tail: str = ""
    warnings: list[str] = field(default_factory=list)


class _Stop(Exception):
    """Ends the queueing phase early: timed out, interrupted, or refused by policy."""

    def __init__(self, status: RunStatus, message: str, *, interrupted: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.interrupted = interrupted


def exit_code_for(status: RunStatus, fail_on: frozenset[RunStatus]) -> int:
    if status is RunStatus.ERROR:
        return EXIT_SERVER
    return EXIT_FLOW_FAILED if status in fail_on else EXIT_OK


def answer_command(flow: str, job: Job) -> str:
    """The command a person runs to answer a pending job."""
    answer = "--approve" if job.name == "team_approval" else "--data '<YAML or JSON mapping>'"
    return f"ectf-action jobs input {flow} {job.id} {answer}"


def _json_one_line(data: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(data), separators=(", ", ": "), default=str)


class Runner:
    """One run: queue (under the conflict policy), follow, download, summarise."""

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
    ) -> None:
        self.settings = settings
        self.client = client
        self.clock = clock
        self.cancel = cancel
        self._log = log
        self._on_flow_id = on_flow_id
        self._workers = max(1, download_workers)
        self._urgent_seconds = urgent_cancel_seconds
        self._start = 0.0
        self._deadline = 0.0
        self._flow_id: str | None = None
        self._answered: set[str] = set()
        self._refused: set[str] = set()
        self._started_at: dict[str, float] = {}  # first seen past `queued`
        self._waiting_job: Job | None = None
        self._names_width = 8
        self._executor: ThreadPoolExecutor | None = None
        self._downloads: dict[str, Future[_Artifacts]] = {}
        self._dir_names: dict[str, str] = {}
        self._download_names: dict[str, str] = {}  # job id -> job name
        self._logged: set[str] = set()  # downloads already reported in the log
        self._temp_dir: Path | None = None
        self._guard: threading.Thread | None = None
        self._guard_stop = threading.Event()
        self._signal_cancel_done = ""

    # -- the run ---------------------------------------------------------------------

    def run(self) -> RunOutcome:
        self._start = self.clock.now()
        self._deadline = self._start + self.settings.timeout_seconds
        self._log_start()
        try:
            try:
                flow_id = self._acquire_flow()
            except _Stop as stop:
                return self._finish(
                    self._result(stop.status, None, stop.message), interrupted=stop.interrupted
                )
            return self._follow(flow_id)
        except EctfError as exc:
            return self._finish(self._result(RunStatus.ERROR, None, str(exc)))
        finally:
            self._guard_stop.set()
            self._close_downloads()

    def _follow(self, flow_id: str) -> RunOutcome:
        settings = self.settings
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="ectf-artifacts")
        last: Flow | None = None

        def on_update(flow: Flow, changes: list[JobChange]) -> bool:
            nonlocal last
            last = flow
            now = self.clock.now()
            for job in flow.jobs:
                if job.status is not JobStatus.QUEUED:
                    self._started_at.setdefault(job.id, now)
            self._log_changes(flow, changes)
            self._start_downloads(flow)
            self._log_downloads()
            return self._handle_pending(flow)

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
            )
        except NotFound as exc:
            if exc.method != "GET":  # an answer to a pending job, not the flow itself
                message = f"{exc} The {settings.flow} flow {flow_id} may still be running."
            else:
                message = (
                    f"The {settings.flow} flow {flow_id} disappeared from the server while it "
                    "was followed (404 Not Found): it was deleted, or the server lost it. Run "
                    "the workflow again, and tell the organizers if it persists."
                )
            return self._finish(self._result(RunStatus.ERROR, last, message))
        except EctfError as exc:
            message = f"{exc} The {settings.flow} flow {flow_id} may still be running."
            return self._finish(self._result(RunStatus.ERROR, last, message))
        flow = followed.flow
        # A signal that came while a status request was on its way: that reply may show
        # the flow our guard just cancelled, "finished"; the run was still interrupted.
        if followed.reason == "canceled" or self.cancel.is_set():
            message = self._interrupted_message(flow_id)
            return self._finish(
                self._result(RunStatus.CANCELED, flow, message),
                interrupted=True,
            )
        self._guard_stop.set()
        if followed.reason == "timed-out":
            done = self._cancel_remote(flow_id)
            flow = self._refetch(flow_id, flow)
            minutes = f"{settings.timeout_seconds / 60:g}"
            message = (
                f"The {settings.flow} flow {flow_id} did not finish within {minutes} minutes "
                f"(timeout-minutes) and {done}. Raise timeout-minutes if it needs longer."
            )
            result = self._result(RunStatus.TIMED_OUT, flow, message, followed.finished_at)
            return self._finish(result)
        if followed.reason == "stopped" and self._waiting_job is not None:
            return self._stopped_on_pending(flow, followed.finished_at)
        status = self._status_of(flow)
        result = self._result(status, flow, self._verdict(status, flow), followed.finished_at)
        return self._finish(result)

    # -- queueing --------------------------------------------------------------------

    def _acquire_flow(self) -> str:
        """The id of the flow to follow: one already active for this commit, or a new one
        queued under the `on-conflict` policy."""
        settings = self.settings
        same = self._same_active_flow()
        if same is not None:
            self._log_line(f"following the active {settings.flow} flow {same.id} for this commit")
            return self._adopt(same.id)
        cancelled: dict[str, float] = {}
        empty_conflicts = 0
        while True:
            self._check_stop(None)
            try:
                flow_id = self.client.queue_flow(settings.flow, settings.queue_body())
            except Conflict as conflict:
                active = self._active_flow(conflict.active_flow_id)
                if active is None:
                    empty_conflicts += 1
                    if empty_conflicts > 10:
                        raise
                    self._pause(CONFLICT_RETRY_SECONDS)
                    continue
                if self._matches(active):
                    self._log_line(
                        f"following the active {settings.flow} flow {active.id} for this commit"
                    )
                    return self._adopt(active.id)
                self._resolve_conflict(active, cancelled)
                continue
            self._log_line(f"queued {settings.flow} flow {flow_id}")
            return self._adopt(flow_id)

    def _resolve_conflict(self, active: Flow, cancelled: dict[str, float]) -> None:
        settings = self.settings
        other = f"{settings.flow} flow {active.id}" + (
            f" (commit {clean(active.commit, 12)})" if active.commit else ""
        )
        if active.id in cancelled:
            if self.clock.now() - cancelled[active.id] > SLOT_FREE_SECONDS:
                raise _Stop(
                    RunStatus.ERROR,
                    f"The server still counts the cancelled {other} as active after "
                    f"{SLOT_FREE_SECONDS:g} s, so no new flow can be queued. Retry later.",
                )
            self._pause(CONFLICT_RETRY_SECONDS)
            return
        if settings.on_conflict == "fail":
            raise _Stop(
                RunStatus.ERROR,
                f"The team already has an active {other}, and on-conflict is fail. Wait for it "
                f"to end, cancel it (ectf-action flows cancel {settings.flow} {active.id}), or "
                "set on-conflict to wait or cancel.",
            )
        if settings.on_conflict == "cancel":
            self._log_line(f"cancelling the team's active {other} (on-conflict: cancel)")
            with contextlib.suppress(BadRequest, NotFound):
                self.client.cancel_flow(settings.flow, active.id)
            cancelled[active.id] = self.clock.now()
            return
        self._log_line(f"waiting for the team's active {other} to end (on-conflict: wait)")
        try:
            waited = follow_flow(
                self.client,
                settings.flow,
                active.id,
                clock=self.clock,
                schedule=settings.poll_schedule,
                cancel=self.cancel,
                deadline=self._deadline,
            )
        except NotFound:
            return  # it is gone: the slot is free
        if waited.reason == "canceled":
            self._check_stop(None)
        if waited.reason == "timed-out":
            self._check_stop(f"while the team's active {other} was still running")
        self._log_line(f"the {other} ended; queueing")

    def _same_active_flow(self) -> Flow | None:
        settings = self.settings
        if settings.flow == "remote":
            active = self.client.find_active_flow(settings.flow)
        else:
            active = self.client.find_active_flow(settings.flow, settings.commit)
        return active if active is not None and self._matches(active) else None

    def _active_flow(self, flow_id: str | None) -> Flow | None:
        """The flow that holds the slot, if it is still unfinished."""
        if flow_id:
            try:
                flow = self.client.get_flow(self.settings.flow, flow_id)
            except NotFound:
                return None
            return None if flow.finished else flow
        return self.client.find_active_flow(self.settings.flow)

    def _matches(self, flow: Flow) -> bool:
        """The active flow is the one we would queue: same commit (or same target)."""
        settings = self.settings
        if settings.flow == "remote":
            return str(flow.params.get("target_team", "")) == settings.target_team
        mine, theirs = (settings.commit or "").lower(), flow.commit.lower()
        return bool(theirs) and (mine.startswith(theirs) or theirs.startswith(mine))

    def _adopt(self, flow_id: str) -> str:
        """From here on the flow is ours: save its id for the post step and later steps,
        and make a signal cancel it."""
        self._flow_id = flow_id
        if self._on_flow_id is not None:
            self._on_flow_id(flow_id)
        self._guard = threading.Thread(
            target=self._cancel_on_signal, args=(flow_id,), name="ectf-cancel", daemon=True
        )
        self._guard.start()
        if self.cancel.is_set():
            raise _Stop(RunStatus.CANCELED, self._interrupted_message(flow_id), interrupted=True)
        return flow_id

    def _check_stop(self, what: str | None) -> None:
        if self.cancel.is_set():
            raise _Stop(
                RunStatus.CANCELED,
                "The run was interrupted before a flow was queued; nothing was left running.",
                interrupted=True,
            )
        if self.clock.now() >= self._deadline:
            minutes = f"{self.settings.timeout_seconds / 60:g}"
            raise _Stop(
                RunStatus.TIMED_OUT,
                f"No {self.settings.flow} flow could be queued within {minutes} minutes "
                f"(timeout-minutes){' ' + what if what else ''}. Nothing of ours was left "
                "running; raise timeout-minutes or use on-conflict: cancel.",
            )

    def _pause(self, seconds: float) -> None:
        remaining = self._deadline - self.clock.now()
        self.clock.wait(max(0.0, min(seconds, remaining)), self.cancel)

    # -- pending jobs ----------------------------------------------------------------

    def _handle_pending(self, flow: Flow) -> bool:
        """Answer pending jobs named in pending-inputs (once each); True stops following
        because a pending job waits for someone else and on-pending is not `wait`."""
        settings = self.settings
        for job in flow.jobs:
            if job.status is not JobStatus.PENDING:
                continue
            answer = None if job.private else settings.pending_inputs.get(job.name)
            if answer is not None and job.id not in self._answered:
                self._answered.add(job.id)
                try:
                    self.client.send_job_input(settings.flow, job.id, answer)
                except BadRequest as exc:
                    # Looked at again on the next poll: still pending means refused.
                    self._refused.add(job.id)
                    self._log_line(f"{clean(job.name, 80)}: the answer was refused ({exc})")
                    continue
                self._log_line(f"{clean(job.name, 80)}: answered with {_json_one_line(answer)}")
                continue
            if job.id in self._answered and job.id not in self._refused:
                continue  # answered; the server moves it on shortly
            if settings.on_pending == "wait":
                continue
            self._waiting_job = job
            return True
        return False

    def _stopped_on_pending(self, flow: Flow | None, finished_at: dict[str, float]) -> RunOutcome:
        settings = self.settings
        job = self._waiting_job
        assert job is not None and self._flow_id is not None
        name = clean(job.name, 80)
        where = f"The {settings.flow} flow {self._flow_id}"
        if job.private:
            message = (
                f"{where} waits for the organizers (job {name}); it is left running, and "
                "nothing is needed from the team."
            )
            result = self._result(RunStatus.PENDING, flow, message, finished_at)
            return self._finish(result, notice=message)
        if settings.on_pending == "fail":
            done = self._cancel_remote(self._flow_id)
            flow = self._refetch(self._flow_id, flow)
            message = (
                f"{where} stopped on the pending job {name}, which pending-inputs does not "
                f"answer (on-pending: fail), and {done}. Add it to pending-inputs, e.g. "
                f"`{{{name}: {{approve: true}}}}`, or set on-pending to exit or wait."
            )
            result = self._result(RunStatus.PENDING, flow, message, finished_at)
            return self._finish(result, exit_code=EXIT_FLOW_FAILED)
        reject = " (or --reject)" if job.name == "team_approval" else ""
        message = (
            f"{where} waits for input to job {name}; it is left running. Answer it with "
            f"`{answer_command(settings.flow, job)}`{reject}, or name the job in "
            "pending-inputs to answer it automatically."
        )
        result = self._result(RunStatus.PENDING, flow, message, finished_at)
        return self._finish(result, notice=message)

    # -- cancelling ------------------------------------------------------------------

    def _cancel_on_signal(self, flow_id: str) -> None:
        """Watch for a signal from the moment the flow is ours, in a thread of its own,
        so the remote cancel happens at once even while the main thread waits on HTTP."""
        while not self._guard_stop.is_set():
            if self.cancel.wait(0.1):
                self._signal_cancel_done = self._cancel_remote(flow_id)
                return

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
                f"`ectf-action flows cancel {settings.flow} {flow_id}`"
            )
        self._log_line(f"cancelled {settings.flow} flow {flow_id} on the server")
        return "was cancelled on the server to free the team's slot"

    def _refetch(self, flow_id: str, flow: Flow | None) -> Flow | None:
        """The flow once more after cancelling it, so reports show the final statuses."""
        try:
            return self.client.get_flow(self.settings.flow, flow_id)
        except EctfError:
            return flow

    def _interrupted_message(self, flow_id: str) -> str:
        guard = self._guard
        if guard is not None:
            guard.join(self._urgent_seconds)
        done = self._signal_cancel_done or (
            "was not confirmed cancelled in time; the post step cancels it, or run "
            f"`ectf-action flows cancel {self.settings.flow} {flow_id}`"
        )
        return f"The run was interrupted, and the {self.settings.flow} flow {flow_id} {done}."

    # -- artifacts -------------------------------------------------------------------

    def _wants_artifacts(self, job: Job) -> bool:
        mode = self.settings.download_artifacts
        # A job whose reply leaves out has_artifacts is tried: the server answers 400
        # when there is nothing, and a silently lost log would be worse.
        if mode == "none" or job.private or job.has_artifacts is False:
            return False
        if not job.status.finished:
            return False
        return mode == "all" or job.status is JobStatus.FAILED

    def _start_downloads(self, flow: Flow) -> None:
        """Start each finished job's download at once, so downloads overlap the flow."""
        if self._executor is None:
            return
        for job in flow.jobs:
            if job.id in self._downloads or not self._wants_artifacts(job):
                continue
            self._temp()  # made here, in one thread, before any worker needs it
            dest = self.settings.artifacts_path / self._dir_name(job)
            self._downloads[job.id] = self._executor.submit(self._fetch, job, dest)
            self._download_names[job.id] = job.name

    def _log_downloads(self) -> None:
        """One line per finished download, as it finishes (they overlap the flow)."""
        for job_id, future in self._downloads.items():
            if job_id in self._logged or not future.done() or future.cancelled():
                continue
            self._logged.add(job_id)
            found, name = future.result(), clean(self._download_names[job_id], 80)
            for warning in found.warnings:
                self._log_line(f"{name}: {warning}")
            if found.directory is not None:
                where = self.settings.relative(found.directory)
                files, size = plural(found.files, "file"), format_size(found.size)
                self._log_line(f"{name}: {files}, {size} -> {where}")

    def _dir_name(self, job: Job) -> str:
        """`job_dir_name`, made unique should two jobs share a name."""
        if job.id not in self._dir_names:
            name = job_dir_name(job.name)
            taken = set(self._dir_names.values())
            if name in taken:
                name = f"{name}-{job_dir_name(job.id)[:8]}"
            self._dir_names[job.id] = name
        return self._dir_names[job.id]

    def _fetch(self, job: Job, dest: Path) -> _Artifacts:
        """Download (retried when truncated or damaged) and extract one job's zip."""
        found = _Artifacts()
        zip_path = self._temp() / f"{job_dir_name(job.id)}.zip"
        try:
            for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
                try:
                    self.client.download_job_output(
                        self.settings.flow, job.id, zip_path, cancel=self.cancel
                    )
                    if self.cancel.is_set():  # the run is being reported without it
                        raise Cancelled("extraction skipped: the run was interrupted")
                    _clear(dest)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    report = extract_zip(
                        zip_path, dest, ExtractLimits(max_bytes=self.settings.max_artifact_bytes)
                    )
                except (DownloadError, TransportError, ServerError) as exc:
                    if attempt == DOWNLOAD_ATTEMPTS or self.cancel.is_set():
                        found.warnings.append(
                            f"artifacts not downloaded after {attempt} attempts: {exc}"
                        )
                        return found
                    if self.clock.wait(DOWNLOAD_BACKOFF * 2 ** (attempt - 1), self.cancel):
                        found.warnings.append("artifacts not downloaded: the run was interrupted")
                        return found
                    continue
                break
            found.directory, found.files, found.size = dest, report.files, report.bytes
            found.warnings.extend(report.problems)
            if report.stopped:
                cap = self.settings.max_artifact_bytes / (1024 * 1024)
                found.warnings.append(
                    f"extraction stopped at the max-artifact-mb cap ({cap:g} MB); the folder "
                    "holds only part of the job's output"
                )
            found.log_tail = read_log_tail(dest)
        except Cancelled:
            found.warnings.append("artifacts not downloaded: the run was interrupted")
        except BadRequest as exc:
            if job.has_artifacts is not None:  # said it had some, then had none
                found.warnings.append(f"artifacts not downloaded: {exc}")
        except ApiError as exc:
            found.warnings.append(f"artifacts not downloaded: {exc}")
        except (EctfError, OSError) as exc:
            found.warnings.append(f"artifacts not saved: {exc}")
        except Exception as exc:  # one job's hostile zip must never cost the run its report
            found.warnings.append(f"artifacts not saved: {type(exc).__name__}: {exc}")
        finally:
            for leftover in (zip_path, zip_path.with_name(zip_path.name + ".part")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
        return found

    def _temp(self) -> Path:
        """A private folder for the zips, outside the artifacts folder."""
        if self._temp_dir is None:
            root = self.settings.temp_root
            self._temp_dir = Path(tempfile.mkdtemp(prefix="ectf-action-", dir=root))
        return self._temp_dir

    def _collect_downloads(self) -> dict[str, _Artifacts]:
        if self.cancel.is_set():
            return {
                job_id: future.result()
                for job_id, future in self._downloads.items()
                if future.done() and not future.cancelled()
            }
        wait_futures(list(self._downloads.values()))
        return {job_id: future.result() for job_id, future in self._downloads.items()}

    def _close_downloads(self) -> None:
        """Stop the downloads, then remove their folder. When interrupted, downloads in
        progress notice the cancel within moments; they get a short while to clean up
        their partial files before the folder goes, so none is left behind."""
        if self._executor is not None:
            interrupted = self.cancel.is_set()
            self._executor.shutdown(wait=not interrupted, cancel_futures=interrupted)
            if interrupted:
                wait_futures(list(self._downloads.values()), timeout=DOWNLOAD_STOP_SECONDS)
            self._executor = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # -- the result ------------------------------------------------------------------

    def _status_of(self, flow: Flow | None) -> RunStatus:
        if flow is None or not flow.jobs:
            return RunStatus.ERROR
        return _STATUS_BY_JOB_STATUS.get(flow.status, RunStatus.ERROR)

    def _verdict(self, status: RunStatus, flow: Flow | None) -> str:
        settings = self.settings
        flow_id = self._flow_id
        what = f"The {settings.flow} flow {flow_id}"
        if flow is None or not flow.jobs:
            return f"{what} ended without any job. Retry, and tell the organizers if it persists."
        if status is RunStatus.SUCCEEDED:
            return f"{what} succeeded ({len(flow.jobs)} jobs)."
        if status is RunStatus.FAILED:
            names = ", ".join(clean(j.name, 40) for j in flow.jobs if j.status is JobStatus.FAILED)
            return (
                f"{what} failed: {names}. Read the failed jobs' logs (annotations and "
                "summary) and their artifacts, fix the design, and push again."
            )
        if status is RunStatus.CANCELED:
            return (
                f"{what} was canceled on the server (by the team or the organizers). "
                "Run the workflow again to test this commit."
            )
        if status is RunStatus.PENDING:
            return f"{what} ended with a job still pending. Check it on the server."
        unfinished = ", ".join(
            f"{clean(j.name, 40)} ({clean(j.status_text, 20)})"
            for j in flow.jobs
            if not j.status.finished
        )
        return (
            f"{what} was marked completed while jobs had not finished: {unfinished}. "
            "Retry, and tell the organizers if it persists."
        )

    def _result(
        self,
        status: RunStatus,
        flow: Flow | None,
        message: str,
        finished_at: Mapping[str, float] | None = None,
    ) -> RunResult:
        settings = self.settings
        end = self.clock.now()
        finished_at = finished_at or {}
        fetched = self._collect_downloads()
        self._log_downloads()
        outcomes = []
        for job in flow.jobs if flow is not None else ():
            started = self._started_at.get(job.id)
            outcome = JobOutcome(
                job=job,
                observed_seconds=(
                    max(0.0, finished_at.get(job.id, end) - started) if started else 0.0
                ),
            )
            artifacts = fetched.get(job.id)
            if artifacts is not None:
                if artifacts.directory is not None:
                    outcome.artifacts_dir = settings.relative(artifacts.directory)
                outcome.artifact_files = artifacts.files
                outcome.artifact_bytes = artifacts.size
                outcome.log_tail = artifacts.log_tail
                outcome.warnings.extend(artifacts.warnings)
            outcomes.append(outcome)
        return RunResult(
            status=status,
            flow_name=settings.flow,
            flow_id=self._flow_id,
            commit=(flow.commit if flow is not None and flow.commit else settings.commit) or "",
            jobs=outcomes,
            elapsed_seconds=end - self._start,
            message=message,
            api_url=settings.api_url,
        )

    def _finish(
        self,
        result: RunResult,
        *,
        interrupted: bool = False,
        exit_code: int | None = None,
        notice: str | None = None,
    ) -> RunOutcome:
        if exit_code is None:
            exit_code = (
                EXIT_SIGINT if interrupted else exit_code_for(result.status, self.settings.fail_on)
            )
        failed = result.failed_jobs
        detail = f" (failed: {', '.join(clean(n, 40) for n in failed)})" if failed else ""
        flow = f" flow {result.flow_id}" if result.flow_id else ""
        self._log_line(f"{self.settings.flow}{flow}: {result.status.value}{detail}")
        return RunOutcome(result, exit_code, interrupted=interrupted, notice=notice)

    # -- the live log ----------------------------------------------------------------

    def _log_start(self) -> None:
        settings = self.settings
        what = (
            f"against team {clean(settings.target_team or '', 80)}"
            if settings.flow == "remote"
            else f"for commit {settings.commit} of {settings.git_url}"
        )
        self._log_line(
            f"eCTF {settings.flow} flow {what} on {_public_url(settings.api_url)} "
            f"(timeout {settings.timeout_seconds / 60:g} min, polling {settings.poll_schedule})"
        )

    def _log_changes(self, flow: Flow, changes: list[JobChange]) -> None:
        if not changes:
            return
        widest = max(len(clean(job.name, MAX_NAME_WIDTH)) for job in flow.jobs)
        self._names_width = max(self._names_width, widest)
        for change in changes:
            name = clean(change.job.name, MAX_NAME_WIDTH).ljust(self._names_width)
            now = clean(change.job.status_text, 20)
            if change.previous is None:
                self._log_line(f"{name}  {now}")
            else:
                self._log_line(f"{name}  {change.previous.value} -> {now}")

    def _log_line(self, text: str) -> None:
        self._log(f"{log_stamp(self.clock.now() - self._start)} {text}")


def _clear(dest: Path) -> None:
    """Empty a job's folder before extracting into it, without following a symlink."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)


def _public_url(url: str) -> str:
    """The URL without any user:password part, for the log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
