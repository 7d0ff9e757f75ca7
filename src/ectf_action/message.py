"""The `message` output: a run's result in one line, for a chat notification.

Status, flow, failed jobs and the first error, in at most `MAX_MESSAGE_CHARS`
characters. Job names and log lines come from the server: each piece is redacted
while still raw (a cut could otherwise leave half a secret that no mask matches),
then made one plain line, then cut.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import JobStatus
from .results import JobOutcome, RunResult, RunStatus
from .text import clean, clean_line, clean_terminal_text

MAX_MESSAGE_CHARS = 500
MAX_NAME_CHARS = 40
MAX_NAMES = 5  # failed jobs named; the rest are counted
MAX_ERROR_CHARS = 240
# Results whose sentence is the news (what happened, what to do); a success or a
# failure says more through its jobs, and a flow left queued needs only its id.
_TOLD_BY_MESSAGE = frozenset(RunStatus) - {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.QUEUED}
LEFT_QUEUED = "left running on the server, not followed (wait: false)"


def _keep(text: str) -> str:
    return text


def first_error_line(job: JobOutcome) -> str:
    """The job's first error line when one was found, else its log's last non-empty
    line (a failing build usually ends on its error); raw server text."""
    if job.first_error.strip():
        return job.first_error
    lines = clean_terminal_text(job.log_tail).splitlines()
    return next((line for line in reversed(lines) if line.strip()), "")


def result_line(result: RunResult, redact: Callable[[str], str] = _keep) -> str:
    """One line saying how the run ended; *redact* removes secrets from raw text."""
    flow_id = result.flow_id or "(none)"
    parts = [f"eCTF {result.flow_name} flow {flow_id}: {result.status.value}"]
    if result.status is RunStatus.SUCCEEDED and result.jobs:
        parts[0] += f" ({len(result.jobs)} jobs)"
    failed = [job for job in result.jobs if job.status is JobStatus.FAILED]
    if failed:
        names = ", ".join(
            clean_line(redact(job.name), MAX_NAME_CHARS) for job in failed[:MAX_NAMES]
        )
        more = f" and {len(failed) - MAX_NAMES} more" if len(failed) > MAX_NAMES else ""
        parts.append(f"failed jobs: {names}{more}")
    for job in failed:
        error = first_error_line(job)
        if error.strip():
            name = clean_line(redact(job.name), MAX_NAME_CHARS)
            parts.append(f"first error ({name}): {clean_line(redact(error), MAX_ERROR_CHARS)}")
            break
    if result.status is RunStatus.QUEUED:
        parts.append(LEFT_QUEUED)
    if result.status in _TOLD_BY_MESSAGE and result.message:
        parts.append(clean_line(redact(result.message), MAX_MESSAGE_CHARS))
    return clean("; ".join(parts), MAX_MESSAGE_CHARS)


def invalid_input_line(problem: str, redact: Callable[[str], str] = _keep) -> str:
    """The line of a run stopped by an input error, before anything was sent."""
    text = clean_line(redact(problem), MAX_MESSAGE_CHARS)
    return clean(f"eCTF run: error; invalid input, nothing was sent; {text}", MAX_MESSAGE_CHARS)
