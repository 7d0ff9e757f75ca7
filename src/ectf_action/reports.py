"""Every report of a run, written from its result: the job logs and annotations on
stdout, JUnit, the job summary and the step's outputs.

Written for every result, so a failed or broken run still leaves its reports. The
workflow-command writer (`workflow.py`) escapes, fences and redacts; this module only
decides what is said where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .annotations import Annotation, JobFindings, diagnostic_rows, plan_annotations
from .artifacts import read_log_tail
from .errors import EXIT_OK
from .message import result_line
from .models import JobStatus
from .sourcemap import SourceIndex
from .text import clean

if TYPE_CHECKING:
    from .results import JobOutcome, RunResult
    from .settings import Settings
    from .verdict import RunOutcome
    from .workflow import WorkflowCommands

JOBS_OUTPUT_BUDGET = 256 * 1024  # of GitHub's 1 MB of outputs per job; the rest is small
LOG_GROUP_LINES = 400  # the tail of a job's log echoed in its `::group::`
LOG_GROUP_BYTES = 128 * 1024

TITLES = {
    "succeeded": "eCTF flow succeeded",
    "failed": "eCTF flow failed",
    "canceled": "eCTF flow canceled",
    "pending": "eCTF flow waits for input",
    "timed-out": "eCTF flow timed out",
    "skipped": "eCTF flow skipped",
    "error": "eCTF run failed",
    "queued": "eCTF flow queued",
}


def write_reports(
    commands: WorkflowCommands,
    settings: Settings,
    outcome: RunOutcome,
    exit_code: int,
    *,
    signal_name: str | None,
) -> str | None:
    """The outputs first (later steps depend on them), then JUnit, the job logs, the
    annotations (the verdict first, within GitHub's limits), the summary, and the
    result's last word. Every writer turns its own trouble into a warning, so one
    report that cannot be written costs no other. Returns the summary's markdown
    (None when it is turned off), for a terminal to show it."""
    result, findings = with_findings(outcome.result.redacted(commands.redactor.redact), settings)
    junit = settings.relative(settings.junit_path) if settings.junit_path else ""
    jobs, trimmed = jobs_output(result)
    if trimmed:
        result.warnings.append(trimmed)
    outputs = step_outputs(result, settings, junit, jobs)
    for name, value in outputs.items():
        commands.set_output(name, value)
    if not write_junit(commands, settings, result) and junit:
        commands.set_output("junit-path", "")  # a later record of an output replaces it
        outputs["junit-path"] = ""
    write_job_logs(commands, settings, result)
    message = result.message
    if signal_name is not None and outcome.interrupted:
        message = f"{message} (received {signal_name})"
    title = TITLES[result.status.value]
    verdict = Annotation("error", title, message) if exit_code != EXIT_OK else None
    plan = plan_annotations(
        verdict,
        findings,
        other=_other_annotations(result, outcome.notice, title),
        source_annotations=settings.source_annotations,
    )
    for annotation in plan.annotations:
        _annotate(commands, annotation)
    for annotation in plan.rest:  # past GitHub's limits: in the log all the same
        where = f"{annotation.file}:{annotation.line}: " if annotation.file else ""
        commands.info(f"{annotation.kind} (not annotated): {annotation.title}: {where}")
        commands.echo_untrusted(annotation.message)
    result.annotations_note = plan.note
    summary = None
    if settings.job_summary:
        from .summary import render_summary

        summary = render_summary(result)
        commands.append_summary(summary)
    if not settings.in_actions:
        shown = {"flow-id": result.flow_id or "", **outputs}
        shown.pop("jobs")
        commands.info("outputs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if exit_code == EXIT_OK and not outcome.notice:
        commands.info(result.message)
    return summary


def with_findings(result: RunResult, settings: Settings) -> tuple[RunResult, list[JobFindings]]:
    """The diagnostics of each job's log located in the workspace (the repository the
    step checked out), and the result with each failed job's first error, where it is,
    and the rows of its table in the summary."""
    scanned = [job.diagnostics for job in result.jobs if job.diagnostics is not None]
    index = None
    if any(found.diagnostics for found in scanned):
        index = SourceIndex.build(settings.workspace, exclude=[settings.artifacts_path])
    findings: list[JobFindings] = []
    jobs: list[JobOutcome] = []
    for job in result.jobs:
        failed = job.status is JobStatus.FAILED
        if job.diagnostics is None:
            found = JobFindings(name=job.name, failed=failed, log_tail=job.log_tail)
        else:
            found = JobFindings.of(job.diagnostics, index, failed=failed, log_tail=job.log_tail)
        findings.append(found)
        if not failed:
            jobs.append(job)
            continue
        located = found.first_located_error
        rows = diagnostic_rows(
            found,
            server_url=settings.server_url,
            repository=settings.repository,
            commit=result.commit,
        )
        jobs.append(
            dataclasses.replace(
                job,
                first_error=found.first_error or job.first_error,
                error_file=located.file if located else None,
                error_line=located.line if located else None,
                diagnostic_rows=rows.rows,
                diagnostics_left_out=rows.left_out,
            )
        )
    return dataclasses.replace(result, jobs=jobs), findings


def _other_annotations(result: RunResult, notice: str | None, title: str) -> list[Annotation]:
    """The warnings of the run and of each job, and a notice (a flow left waiting)."""
    found = [Annotation("warning", "eCTF run", warning) for warning in result.warnings]
    for job in result.jobs:
        name = clean(job.name)
        found += [Annotation("warning", f"eCTF job {name}", warning) for warning in job.warnings]
    if notice:
        found.append(Annotation("notice", title, notice))
    return found


def _annotate(commands: WorkflowCommands, annotation: Annotation) -> None:
    location: dict[str, str | int] = {}
    if annotation.file and annotation.line:
        location = {"file": annotation.file, "line": annotation.line}
        if annotation.column:
            location["col"] = annotation.column
    if annotation.kind == "error":
        commands.error(annotation.message, annotation.title, location=location)
    elif annotation.kind == "warning":
        commands.warning(annotation.message, annotation.title, location=location)
    else:
        commands.notice(annotation.message, annotation.title)


def step_outputs(
    result: RunResult, settings: Settings, junit_path: str, jobs: str
) -> dict[str, str]:
    """The step's outputs (the flow id is written as soon as it is known, by the run)."""
    outputs = {
        "status": result.status.value,
        "message": result_line(result),  # the result is redacted already
        "failed-jobs": ",".join(result.failed_jobs),
        "jobs": jobs,
        "junit-path": junit_path,
        "artifacts-path": settings.relative(settings.artifacts_path),
    }
    return {"flow-id": "", **outputs} if result.flow_id is None else outputs


def jobs_output(result: RunResult) -> tuple[str, str | None]:
    """The `jobs` output within its budget (GitHub keeps 1 MB of outputs per job), and
    the warning that says how many jobs were left out, if any: failed jobs are kept
    first, the rest in order while they fit."""
    entries = [job.to_output_json() for job in result.jobs]
    text = json.dumps(entries)
    if len(text.encode("utf-8")) <= JOBS_OUTPUT_BUDGET:
        return text, None
    order = sorted(
        range(len(entries)), key=lambda i: (result.jobs[i].status is not JobStatus.FAILED, i)
    )
    kept: set[int] = set()
    used = 2  # the brackets
    for index in order:
        size = len(json.dumps(entries[index]).encode("utf-8")) + 2
        if used + size > JOBS_OUTPUT_BUDGET:
            continue
        kept.add(index)
        used += size
    warning = (
        f"The jobs output lists {len(kept)} of {len(entries)} jobs: all of them would take it "
        f"past its {JOBS_OUTPUT_BUDGET // 1024} KiB budget (GitHub keeps 1 MB of outputs per "
        "job). The JUnit report and the summary list every job."
    )
    return json.dumps([entries[i] for i in sorted(kept)]), warning


def write_job_logs(commands: WorkflowCommands, settings: Settings, result: RunResult) -> None:
    """Each job's log in a group of its own (the annotations are planned apart)."""
    for job in result.jobs:
        if not job.artifacts_dir:
            continue
        log = read_log_tail(
            settings.workspace / job.artifacts_dir,
            max_lines=LOG_GROUP_LINES,
            max_bytes=LOG_GROUP_BYTES,
        )
        if log:
            title = f"eCTF job {clean(job.name)}: {clean(job.job.status_text, 20)}"
            with commands.group(title):
                commands.echo_untrusted(log)


def write_junit(commands: WorkflowCommands, settings: Settings, result: RunResult) -> bool:
    """The JUnit report, written whole or not at all (a temporary file renamed into
    place), so a later step never parses half a report."""
    if settings.junit_path is None:
        return False
    from .junit import render_junit

    path = settings.junit_path
    try:
        write_atomically(path, commands.redact(render_junit(result)))
    except OSError as exc:
        commands.warning(
            f"The JUnit report could not be written to {settings.relative(path)}: "
            f"{exc.strerror or exc}.",
            title="JUnit report not written",
        )
        return False
    return True


def write_atomically(path: Path, text: str) -> None:
    """*text* in *path*, whole or not at all: written beside it, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
