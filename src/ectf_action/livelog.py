"""The step's live log: one line per event, stamped with the time since the start, so a
person watching the step sees the flow move (and, when nothing moves, why)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .annotations import first_error_line, locate
from .clock import Clock
from .downloads import JobArtifacts
from .follow import JobChange
from .models import Flow, Job, JobStatus
from .settings import Settings
from .text import clean, format_size, log_stamp, plural

MAX_NAME_WIDTH = 24


class LiveLog:
    """Writes stamped lines through *write*; job names are aligned as they come."""

    def __init__(self, write: Callable[[str], None], clock: Clock) -> None:
        self._write = write
        self._clock = clock
        self._start = clock.now()
        self._names_width = 8

    def line(self, text: str) -> None:
        self._write(f"{log_stamp(self._clock.now() - self._start)} {text}")

    def started(self, settings: Settings) -> None:
        """The run's first line; the stamps count from here."""
        self._start = self._clock.now()
        if settings.flow_id is not None:
            what = f"{settings.flow_id} (the flow-id input)"
        elif settings.flow == "remote":
            what = f"against team {clean(settings.target_team or '', 80)}"
        else:
            what = f"for commit {settings.commit} of {settings.git_url}"
        self.line(
            f"eCTF {settings.flow} flow {what} on {settings.api_url} "
            f"(timeout {settings.timeout_seconds / 60:g} min, polling {settings.poll_schedule})"
        )

    def changes(self, flow: Flow, changes: list[JobChange]) -> None:
        if not changes:
            return
        widest = max(len(clean(job.name, MAX_NAME_WIDTH)) for job in flow.jobs)
        self._names_width = max(self._names_width, widest)
        for change in changes:
            name = clean(change.job.name, MAX_NAME_WIDTH).ljust(self._names_width)
            now = clean(change.job.status_text, 20)
            if change.previous is None:
                self.line(f"{name}  {now}")
            else:
                self.line(f"{name}  {change.previous.value} -> {now}")

    def artifacts(self, job: Job, found: JobArtifacts, where: Callable[[Path], str]) -> None:
        """A finished download: its warnings, what was extracted where, and for a failed
        job the line that says why it failed (as logged: the workspace is not looked at
        yet)."""
        name = clean(job.name, 80)
        for warning in found.warnings:
            self.line(f"{name}: {warning}")
        if found.directory is not None:
            files, size = plural(found.files, "file"), format_size(found.size)
            self.line(f"{name}: {files}, {size} -> {where(found.directory)}")
        if job.status is JobStatus.FAILED:
            diagnostics = found.diagnostics.diagnostics if found.diagnostics else ()
            first = first_error_line(locate(diagnostics, None), found.log_tail)
            if first:
                self.line(f"{name} failed: {first}")
