"""The verdict of a run, as pure functions: what the flow's jobs say, the sentence for
people, the exit code, and the one result every report reads.

Nothing here does I/O or keeps state, so each rule is tested on its own and decided in
one place; the runner only gathers what these functions need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .downloads import JobArtifacts
from .errors import EXIT_FLOW_FAILED, EXIT_OK, EXIT_SERVER
from .models import Flow, Job, JobStatus
from .results import JobOutcome, RunResult, RunStatus
from .text import answer_hint, cancel_hint, clean, watch_hint

_STATUS_BY_JOB_STATUS = {
    JobStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    JobStatus.FAILED: RunStatus.FAILED,
    JobStatus.CANCELED: RunStatus.CANCELED,
    JobStatus.PENDING: RunStatus.PENDING,
}


@dataclass(frozen=True)
class RunOutcome:
    """A run's result and how the step should end.

    `exit_code` is the result's (`exit_code_for`); when `interrupted`, the entry point
    ends with the signal's code instead: it alone knows which signal came. `notice` is
    shown as a `::notice::` (a flow left waiting for a person).
    """

    result: RunResult
    exit_code: int
    interrupted: bool = False
    notice: str | None = None


def exit_code_for(status: RunStatus, fail_on: frozenset[RunStatus]) -> int:
    """0 unless the result is in `fail-on` (1); our own trouble is 3."""
    if status is RunStatus.ERROR:
        return EXIT_SERVER
    return EXIT_FLOW_FAILED if status in fail_on else EXIT_OK


def status_of(flow: Flow | None) -> RunStatus:
    """A finished flow's result: its worst job; no job at all is an error."""
    if flow is None or not flow.jobs:
        return RunStatus.ERROR
    return _STATUS_BY_JOB_STATUS.get(flow.status, RunStatus.ERROR)


def verdict_message(
    flow_name: str, flow_id: str | None, status: RunStatus, flow: Flow | None
) -> str:
    """One sentence on how a finished flow ended, and what to do next."""
    what = f"The {flow_name} flow {flow_id}"
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


def pending_message(flow_name: str, flow_id: str, job: Job, *, cancelled: str | None) -> str:
    """Why the run stopped at a pending job. *cancelled* says what came of cancelling
    the flow (`on-pending: fail`), None when the flow is left for a person."""
    name = clean(job.name, 80)
    where = f"The {flow_name} flow {flow_id}"
    if job.private:
        return (
            f"{where} waits for the organizers (job {name}); it is left running, and "
            "nothing is needed from the team."
        )
    if cancelled is not None:
        return (
            f"{where} stopped on the pending job {name}, which pending-inputs does not "
            f"answer (on-pending: fail), and {cancelled}. Add it to pending-inputs, e.g. "
            f"`{{{name}: {{approve: true}}}}`, or set on-pending to exit or wait."
        )
    return (
        f"{where} waits for input to job {name}; it is left running. Answer it with "
        f"`{answer_hint(flow_name, job)}`, or name the job in pending-inputs to answer it "
        "automatically."
    )


def queued_message(flow_name: str, flow_id: str) -> str:
    """Where a flow left running by `wait: false` is, and the two ways to follow it."""
    return (
        f"The {flow_name} flow {flow_id} is on the server and was left running (wait: "
        f"false). Follow it with `{watch_hint(flow_name, flow_id)}`, or collect it in a later "
        f"job with the inputs `flow: {flow_name}` and `flow-id: {flow_id}`."
    )


def not_found_message(flow_name: str, flow_id: str) -> str:
    """The flow named by the flow-id input is not the team's flow of this type."""
    return (
        f"The {flow_name} flow {flow_id} was not found on the server (404): check that the "
        "flow input matches the flow's type, and the id."
    )


def timed_out_message(flow_name: str, flow_id: str, minutes: float, cancelled: str) -> str:
    return (
        f"The {flow_name} flow {flow_id} did not finish within {minutes:g} minutes "
        f"(timeout-minutes) and {cancelled}. Raise timeout-minutes if it needs longer."
    )


def interrupted_message(flow_name: str, flow_id: str, cancelled: str | None) -> str:
    """*cancelled*: what came of the cancel the signal started, None if unconfirmed."""
    done = cancelled or (
        "was not confirmed cancelled in time; the post step cancels it, or run "
        f"`{cancel_hint(flow_name, flow_id)}`"
    )
    return f"The run was interrupted, and the {flow_name} flow {flow_id} {done}."


@dataclass(frozen=True)
class Timing:
    """When the run started and ended, and when each job was first seen running and
    seen finished (clock seconds), for the time each job was observed."""

    start: float
    end: float
    started_at: Mapping[str, float]
    finished_at: Mapping[str, float]

    def observed(self, job_id: str) -> float:
        started = self.started_at.get(job_id)
        if started is None:
            return 0.0
        return max(0.0, self.finished_at.get(job_id, self.end) - started)


def build_result(
    status: RunStatus,
    message: str,
    *,
    flow_name: str,
    flow_id: str | None,
    flow: Flow | None,
    commit: str | None,
    api_url: str,
    timing: Timing,
    artifacts: Mapping[str, JobArtifacts],
    relative: Callable[[Path], str],
) -> RunResult:
    """The result every report reads: one outcome per job the flow reported, with the
    artifacts its download produced (*relative* turns folders into workspace paths)."""
    outcomes = []
    for job in flow.jobs if flow is not None else ():
        outcome = JobOutcome(job=job, observed_seconds=timing.observed(job.id))
        outcome.not_followed = status is RunStatus.QUEUED
        found = artifacts.get(job.id)
        if found is not None:
            if found.directory is not None:
                outcome.artifacts_dir = relative(found.directory)
            outcome.artifact_files = found.files
            outcome.artifact_bytes = found.size
            outcome.log_tail = found.log_tail
            outcome.warnings.extend(found.warnings)
            outcome.diagnostics = found.diagnostics
        outcomes.append(outcome)
    return RunResult(
        status=status,
        flow_name=flow_name,
        flow_id=flow_id,
        commit=(flow.commit if flow is not None and flow.commit else commit) or "",
        jobs=outcomes,
        elapsed_seconds=timing.end - timing.start,
        message=message,
        api_url=api_url,
    )
