"""Every report of a run, written from its result: the job logs and annotations on
stdout, JUnit, the job summary and the step's outputs.

Written for every result, so a failed or broken run still leaves its reports. The
workflow-command writer (`workflow.py`) escapes, fences and redacts; this module only
decides what is said where.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .artifacts import read_log_tail
from .errors import EXIT_OK
from .message import result_line
from .models import JobStatus
from .text import clean

if TYPE_CHECKING:
    from .results import RunResult
    from .settings import Settings
    from .verdict import RunOutcome
    from .workflow import WorkflowCommands

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
) -> None:
    """Logs, annotations, JUnit, summary and outputs, then the result's last word."""
    result = outcome.result
    write_job_logs(commands, settings, result)
    for warning in result.warnings:
        commands.warning(warning, title="eCTF run")
    junit_written = write_junit(commands, settings, result)
    if settings.job_summary:
        from .summary import render_summary

        commands.append_summary(render_summary(result))
    outputs = {
        "status": result.status.value,
        "message": result_line(result, commands.redact),
        "failed-jobs": ",".join(result.failed_jobs),
        "jobs": json.dumps([job.to_output_json() for job in result.jobs]),
        "junit-path": (
            settings.relative(settings.junit_path) if junit_written and settings.junit_path else ""
        ),
        "artifacts-path": settings.relative(settings.artifacts_path),
    }
    if result.flow_id is None:
        outputs = {"flow-id": "", **outputs}
    for name, value in outputs.items():
        commands.set_output(name, value)
    if not settings.in_actions:
        shown = {"flow-id": result.flow_id or "", **outputs}
        shown.pop("jobs")
        commands.info("outputs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if outcome.notice:
        commands.notice(outcome.notice, title=TITLES[result.status.value])
    if exit_code == EXIT_OK:
        if not outcome.notice:
            commands.info(result.message)
        return
    message = result.message
    if signal_name is not None and outcome.interrupted:
        message = f"{message} (received {signal_name})"
    commands.error(message, title=TITLES[result.status.value])


def write_job_logs(commands: WorkflowCommands, settings: Settings, result: RunResult) -> None:
    """Each job's log in a group of its own, and an annotation per failed job."""
    for job in result.jobs:
        name = clean(job.name)
        if job.artifacts_dir:
            log = read_log_tail(
                settings.workspace / job.artifacts_dir,
                max_lines=LOG_GROUP_LINES,
                max_bytes=LOG_GROUP_BYTES,
            )
            if log:
                with commands.group(f"eCTF job {name}: {clean(job.job.status_text, 20)}"):
                    commands.echo_untrusted(log)
        for warning in job.warnings:
            commands.warning(warning, title=f"eCTF job {name}")
        if job.status is JobStatus.FAILED:
            tail = job.log_tail or "No log was found in the job's artifacts."
            commands.error(tail, title=f"eCTF job {name} failed")


def write_junit(commands: WorkflowCommands, settings: Settings, result: RunResult) -> bool:
    if settings.junit_path is None:
        return False
    from .junit import render_junit

    path = settings.junit_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(commands.redact(render_junit(result)), encoding="utf-8")
    except OSError as exc:
        commands.warning(
            f"The JUnit report could not be written to {settings.relative(path)}: {exc.strerror}.",
            title="JUnit report not written",
        )
        return False
    return True
