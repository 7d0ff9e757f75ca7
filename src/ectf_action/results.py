"""What a run found, in one shape that every report (outputs, JUnit, summary) reads."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .models import Job, JobStatus

if TYPE_CHECKING:
    from .diagnostics import JobDiagnostics


# What every report (JUnit, the summary, the annotations) says of a failed job whose
# artifacts hold no log.
NO_LOG = "No log was found in the job's artifacts."


class RunStatus(enum.StrEnum):
    """The `status` output (contract)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PENDING = "pending"
    TIMED_OUT = "timed-out"
    SKIPPED = "skipped"
    ERROR = "error"
    QUEUED = "queued"  # `wait: false`: the flow was left running, not followed


@dataclass
class JobOutcome:
    """One job as the run saw it at the end."""

    job: Job
    observed_seconds: float = 0.0
    artifacts_dir: str | None = None  # relative to the workspace, posix separators
    artifact_files: int = 0
    artifact_bytes: int = 0
    log_tail: str = ""  # untrusted text from the server; reports must escape it
    warnings: list[str] = field(default_factory=list)
    # The job's first error line, once something has found one in its log; the
    # `message` output falls back to the log's last non-empty line.
    first_error: str = ""
    not_followed: bool = False  # `wait: false`: the run left before the job ended
    diagnostics: JobDiagnostics | None = None  # what its log said, when it was scanned
    error_file: str | None = None  # the first error located in the workspace (JUnit)
    error_line: int | None = None
    # The summary's table of its diagnostics (plain data; the summary escapes it), and
    # how many more there were.
    diagnostic_rows: tuple[dict[str, str | None], ...] = ()
    diagnostics_left_out: int = 0

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def skip_reason(self) -> str | None:
        """Why JUnit marks this job skipped; None for jobs that ran to a verdict."""
        status = self.job.status
        if self.not_followed:
            return f"not followed (wait: false); {self.job.status_text} when the step ended"
        if status is JobStatus.CANCELED:
            return "canceled (a job it depends on did not succeed, or the flow was canceled)"
        if status is JobStatus.PENDING:
            return "pending: waiting for input"
        if status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return f"never finished (last status: {self.job.status_text})"
        return None

    def to_output_json(self) -> dict[str, Any]:
        """One element of the `jobs` output (contract shape)."""
        return {
            "id": self.job.id,
            "name": self.job.name,
            "status": self.job.status_text,
            "has_artifacts": self.job.has_artifacts,
            "private": self.job.private,
            "artifacts_dir": self.artifacts_dir,
        }


@dataclass
class RunResult:
    status: RunStatus
    flow_name: str
    flow_id: str | None = None
    commit: str = ""
    jobs: list[JobOutcome] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    message: str = ""  # one sentence for people: what happened and what to do
    warnings: list[str] = field(default_factory=list)
    api_url: str = ""
    annotations_note: str | None = None  # what GitHub's per-step limits left unannotated

    @property
    def failed_jobs(self) -> list[str]:
        return [o.name for o in self.jobs if o.status is JobStatus.FAILED]

    def redacted(self, redact: Callable[[str], str]) -> RunResult:
        """This result with *redact* applied to every text in it: run once on the raw
        text before any report escapes, cuts or serialises it."""

        def maybe(text: str | None) -> str | None:
            return None if text is None else redact(text)

        def job(outcome: JobOutcome) -> JobOutcome:
            raw = outcome.job
            return dataclasses.replace(
                outcome,
                job=dataclasses.replace(
                    raw, id=redact(raw.id), name=redact(raw.name), raw_status=redact(raw.raw_status)
                ),
                artifacts_dir=maybe(outcome.artifacts_dir),
                log_tail=redact(outcome.log_tail),
                first_error=redact(outcome.first_error),
                warnings=[redact(warning) for warning in outcome.warnings],
            )

        return dataclasses.replace(
            self,
            flow_id=maybe(self.flow_id),
            commit=redact(self.commit),
            jobs=[job(outcome) for outcome in self.jobs],
            message=redact(self.message),
            warnings=[redact(warning) for warning in self.warnings],
        )
