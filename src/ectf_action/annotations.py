"""What the reports say about the diagnostics in the jobs' logs: the step's annotations
planned within GitHub's limits, a failed job's first error line, and the rows of the
summary's diagnostics table.

GitHub shows 10 error, 10 warning and 10 notice annotations per step and drops the
rest, so the plan spends them in order of use: the flow's verdict first, then every
failed job named at least once (the last slot lists the rest when they are many), then
the caller's other annotations, then the compiler's and linker's diagnostics located in
the workspace, in log order, errors before warnings. Errors are read from failed jobs
only; warnings from every job. What does not fit is counted, for the summary.

Pure: data in, data out. Printing the workflow commands (and escaping and redacting
their text) is the workflow writer's; the messages here are plain text from the
server, cleaned to printable lines but still untrusted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from .diagnostics import Diagnostic, JobDiagnostics, Severity
from .results import NO_LOG
from .sourcemap import SourceIndex
from .text import and_list, clean, clean_line, clean_terminal_text, plural, strip_timestamp

MAX_ERRORS: Final = 10
MAX_WARNINGS: Final = 10
MAX_NOTICES: Final = 10
MAX_TITLE_CHARS: Final = 120
MAX_LINE_CHARS: Final = 300
MAX_NAME_CHARS: Final = 80
MAX_TABLE_ROWS: Final = 20

_KINDS: Final = ("error", "warning", "notice")
_ERRORISH = re.compile(r"(?i)error|fatal|panic|exception|traceback|failed|failure")
_HEX_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class Located:
    """A diagnostic and where it is in the workspace (`file` None: not found there).
    When only the site that includes a header is found, that site is the location."""

    diagnostic: Diagnostic
    file: str | None = None  # relative posix path inside the workspace
    line: int | None = None
    column: int | None = None

    @property
    def where(self) -> str:
        """`file:line:col` in the workspace when located, else as the server logged it."""
        if self.file is None:
            return self.diagnostic.where
        numbers = [str(n) for n in (self.line, self.column) if n is not None]
        return ":".join([self.file, *numbers])


def locate(diagnostics: Iterable[Diagnostic], index: SourceIndex | None) -> Iterator[Located]:
    """Each diagnostic with its workspace file, when *index* finds one (None: no
    checkout, nothing is located)."""
    for diagnostic in diagnostics:
        path = diagnostic.path
        if index is None or path is None:
            yield Located(diagnostic)
            continue
        found = index.locate(path, diagnostic.directory)
        if found is not None:
            yield Located(diagnostic, found, diagnostic.line, diagnostic.column)
            continue
        site = diagnostic.included_from
        found = index.locate(site[0], diagnostic.directory) if site else None
        yield Located(diagnostic, found, site[1] if site and found else None)


@dataclass(frozen=True)
class JobFindings:
    """One job as the reports see its diagnostics."""

    name: str
    failed: bool
    diagnostics: tuple[Located, ...] = ()
    errors: int = 0  # every error its log held (follow-ups and repeats not counted)
    warnings: int = 0
    left_out: int = 0  # found in the log past what the scan keeps
    log_tail: str = ""

    @classmethod
    def of(
        cls,
        scanned: JobDiagnostics,
        index: SourceIndex | None,
        *,
        failed: bool,
        log_tail: str = "",
    ) -> JobFindings:
        return cls(
            name=scanned.job,
            failed=failed,
            diagnostics=tuple(locate(scanned.diagnostics, index)),
            errors=scanned.errors,
            warnings=scanned.warnings,
            left_out=scanned.left_out,
            log_tail=log_tail,
        )

    @property
    def first_error(self) -> str | None:
        return first_error_line(self.diagnostics, self.log_tail)

    @property
    def first_located_error(self) -> Located | None:
        """The first error with a file and line in the workspace (JUnit's `file` and
        `line` of the test case)."""
        return next(
            (
                item
                for item in self.diagnostics
                if item.diagnostic.severity is Severity.ERROR and item.file and item.line
            ),
            None,
        )


def describe(item: Located) -> str:
    """One line, as the tool would say it with our path: `firmware/src/uart.c:12:5:
    error: message [-Wflag]`, `ld: error: ld returned 1 exit status`."""
    diagnostic = item.diagnostic
    where = item.where or (diagnostic.tool if diagnostic.tool != "log" else "")
    head = f"{where}: " if where else ""
    return clean_line(f"{head}{diagnostic.severity.value}: {diagnostic.text}", MAX_LINE_CHARS)


def first_error_line(diagnostics: Iterable[Located], log_tail: str) -> str | None:
    """The line that says why a job failed, for JUnit's failure message, the summary
    and the `message` output: its first error diagnostic; else the first line that
    only says a step failed (make's `*** [all] Error 2`); else the first line of the
    log's tail that reads like an error; else the tail's last line; None without a log."""
    follow_up: Located | None = None
    for item in diagnostics:
        if item.diagnostic.severity is not Severity.ERROR:
            continue
        if not item.diagnostic.follow_up:
            return describe(item)
        follow_up = follow_up or item
    if follow_up is not None:
        return describe(follow_up)
    lines = [strip_timestamp(line).strip() for line in clean_terminal_text(log_tail).split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return None
    line = next((line for line in lines if _ERRORISH.search(line)), lines[-1])
    return clean_line(line, MAX_LINE_CHARS)


# -- annotations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One annotation to print: `::<kind> file=...,line=...,col=...,title=...::message`."""

    kind: str  # error | warning | notice
    title: str
    message: str
    file: str | None = None  # relative posix path in the workspace; with `line` only
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class AnnotationLimits:
    """GitHub's limits on one step's annotations, per kind."""

    errors: int = MAX_ERRORS
    warnings: int = MAX_WARNINGS
    notices: int = MAX_NOTICES


DEFAULT_LIMITS: Final = AnnotationLimits()


@dataclass(frozen=True)
class AnnotationPlan:
    annotations: tuple[Annotation, ...]
    left_out_errors: int = 0  # annotations that did not fit, for the summary's note
    left_out_warnings: int = 0
    left_out_notices: int = 0
    # What did not fit, in order: said in the log as plain lines, so nothing is lost.
    rest: tuple[Annotation, ...] = ()

    @property
    def note(self) -> str | None:
        """`3 more errors and 12 more warnings were not annotated (GitHub shows 10 of each
        per step).` or None when everything fit."""
        parts = [
            plural(count, f"more {word}")
            for count, word in (
                (self.left_out_errors, "error"),
                (self.left_out_warnings, "warning"),
                (self.left_out_notices, "notice"),
            )
            if count
        ]
        if not parts:
            return None
        listed = and_list(parts)
        verb = "was" if len(parts) == 1 and listed.startswith("1 ") else "were"
        return f"{listed} {verb} not annotated (GitHub shows 10 of each kind per step)."


class _Budget:
    def __init__(self, limits: AnnotationLimits) -> None:
        self.room = {"error": limits.errors, "warning": limits.warnings, "notice": limits.notices}
        self.left_out = dict.fromkeys(_KINDS, 0)
        self.planned: list[Annotation] = []
        self.rest: list[Annotation] = []

    def add(self, annotation: Annotation) -> None:
        kind = annotation.kind if annotation.kind in self.room else "notice"
        if self.room[kind] > 0:
            self.room[kind] -= 1
            self.planned.append(annotation)
        else:
            self.left_out[kind] += 1
            self.rest.append(annotation)

    def plan(self) -> AnnotationPlan:
        return AnnotationPlan(
            tuple(self.planned),
            left_out_errors=self.left_out["error"],
            left_out_warnings=self.left_out["warning"],
            left_out_notices=self.left_out["notice"],
            rest=tuple(self.rest),
        )


def _name(job: JobFindings) -> str:
    """A job's name from the server, control characters shown as escapes."""
    return clean(job.name, MAX_NAME_CHARS)


def _job_annotation(job: JobFindings) -> Annotation:
    """A failed job: its first error line first (what the annotation list shows), then
    the end of its log, without the loggers' time stamps."""
    name = _name(job)
    lines = [strip_timestamp(line) for line in clean_terminal_text(job.log_tail).split("\n")]
    tail = "\n".join(lines).strip("\n") or NO_LOG
    first = job.first_error
    message = f"{first}\n\n{tail}" if first else tail
    return Annotation("error", f"eCTF job {name} failed", message)


def _rest_failed(jobs: Sequence[JobFindings]) -> Annotation:
    names = ", ".join(_name(job) for job in jobs)
    return Annotation(
        "error",
        f"eCTF: {plural(len(jobs), 'more job')} failed",
        f"Also failed: {names}. Their logs are in the job summary and the artifacts.",
    )


def _source_annotation(job: JobFindings, item: Located) -> Annotation:
    diagnostic = item.diagnostic
    kind = "error" if diagnostic.severity is Severity.ERROR else "warning"
    # The title names the job and the message; the message says it whole (the log shows
    # only the message), then the notes and where the server logged it.
    prefix = f"eCTF {_name(job)}: "
    said = clean_line(diagnostic.text, max(20, MAX_TITLE_CHARS - len(prefix)))
    title = clean(prefix + said, MAX_TITLE_CHARS)
    lines = [clean_line(diagnostic.text, MAX_LINE_CHARS)]
    lines += [clean_line(f"note: {note}", MAX_LINE_CHARS) for note in diagnostic.notes]
    if diagnostic.path is not None:
        lines.append(clean_line(f"{diagnostic.tool}, logged at {diagnostic.where}", MAX_LINE_CHARS))
    return Annotation(kind, title, "\n".join(lines), item.file, item.line, item.column)


def _source_items(jobs: Sequence[JobFindings]) -> Iterator[tuple[JobFindings, Located]]:
    """The located diagnostics worth an annotation: errors of failed jobs, then every
    job's warnings, each in log order, each place and message once."""
    seen: set[tuple[object, ...]] = set()
    for wanted in (Severity.ERROR, Severity.WARNING):
        for job in jobs:
            if wanted is Severity.ERROR and not job.failed:
                continue
            for item in job.diagnostics:
                diagnostic = item.diagnostic
                if diagnostic.severity is not wanted or not item.file or not item.line:
                    continue
                key = (wanted, item.file, item.line, item.column, diagnostic.text)
                if key not in seen:
                    seen.add(key)
                    yield job, item


def plan_annotations(
    verdict: Annotation | None,
    jobs: Sequence[JobFindings],
    *,
    other: Sequence[Annotation] = (),
    source_annotations: bool = True,
    limits: AnnotationLimits = DEFAULT_LIMITS,
) -> AnnotationPlan:
    """The annotations of the step, in the order to print them, within *limits*.
    *verdict* is the flow's result, the first annotation of the step."""
    budget = _Budget(limits)
    if verdict is not None:
        budget.add(verdict)
    failed = [job for job in jobs if job.failed]
    room = budget.room["error"]
    if len(failed) > room > 0:
        for job in failed[: room - 1]:
            budget.add(_job_annotation(job))
        budget.add(_rest_failed(failed[room - 1 :]))
    else:
        for job in failed:
            budget.add(_job_annotation(job))
    for annotation in other:
        budget.add(annotation)
    if source_annotations:
        for job, item in _source_items(jobs):
            budget.add(_source_annotation(job, item))
    return budget.plan()


# -- the summary's table ------------------------------------------------------------------


@dataclass(frozen=True)
class DiagnosticRows:
    """Rows of a job's diagnostics table, as plain data for the summary to escape:
    `severity`, `location` (`file:line`, or the server's path when not located),
    `url` (the file at the tested commit on GitHub, or None), `message`."""

    rows: tuple[dict[str, str | None], ...]
    left_out: int = 0  # diagnostics of the job not in the rows


def blob_url(
    server_url: str, repository: str, commit: str, path: str, line: int | None
) -> str | None:
    """`{server_url}/{repository}/blob/{commit}/{path}#L{line}`, or None when any part
    does not look like what GitHub gives (the summary must not link elsewhere)."""
    server = server_url.rstrip("/")
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?", server):
        return None
    if not _REPOSITORY.fullmatch(repository) or not _HEX_COMMIT.fullmatch(commit):
        return None
    url = f"{server}/{repository}/blob/{commit}/{quote(path, safe='/')}"
    return f"{url}#L{line}" if line else url


def diagnostic_rows(
    job: JobFindings,
    *,
    server_url: str,
    repository: str,
    commit: str,
    limit: int = MAX_TABLE_ROWS,
) -> DiagnosticRows:
    """The first *limit* diagnostics of *job* (errors, in a failed job, and warnings;
    not the follow-ups), in log order."""
    shown = [
        item
        for item in job.diagnostics
        if not item.diagnostic.follow_up
        and (job.failed or item.diagnostic.severity is not Severity.ERROR)
    ]
    rows = []
    for item in shown[:limit]:
        located = item.file is not None
        location = f"{item.file}:{item.line}" if located and item.line else item.where
        rows.append(
            {
                "severity": item.diagnostic.severity.value,
                "location": clean_line(location, MAX_LINE_CHARS) if location else "",
                "url": (
                    blob_url(server_url, repository, commit, item.file, item.line)
                    if item.file is not None
                    else None
                ),
                "message": clean_line(item.diagnostic.text, MAX_LINE_CHARS),
            }
        )
    return DiagnosticRows(tuple(rows), left_out=max(0, len(shown) - limit) + job.left_out)
