"""What the command line prints: aligned tables for people, sorted JSON for scripts.

Every string that came from the server (names, statuses, times, params) is hostile: it
passes through `clean` before it reaches a terminal, so it cannot move the cursor, clear
the screen or fake a line of output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .models import Flow, Job, JobStatus
from .text import clean, log_stamp

MAX_NAME_WIDTH = 48
_COLUMN_GAP = "  "


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; no trailing spaces; ends with a newline."""
    cells = [list(headers), *([clean(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        _COLUMN_GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def render_json(data: Any) -> str:
    """One JSON document: sorted keys, indented, ASCII only (no raw control characters)."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def format_time(raw: str) -> str:
    """The server's ISO time as `YYYY-MM-DD HH:MM:SSZ` in UTC (naive times shown as given)."""
    if not raw:
        return "-"
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return clean(raw, limit=32)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def flow_json(flow: Flow) -> dict[str, Any]:
    """The server's flow, plus `status`: its worst job, the organizers' summary."""
    data = flow.to_json()
    data["status"] = flow.status.value
    return data


def newest_first(flows: Iterable[Flow]) -> list[Flow]:
    """Stable order for output: newest submit time first, then by id."""
    by_id = sorted(flows, key=lambda f: f.id)
    return sorted(by_id, key=lambda f: f.submit_time, reverse=True)


def _subject(flow: Flow) -> str:
    """What the flow is about: the commit it tests, or the team a remote flow attacks."""
    if flow.commit:
        return flow.commit
    target = flow.params.get("target_team")
    return f"target team {target}" if target else "-"


def _progress(flow: Flow) -> str:
    done = sum(1 for job in flow.jobs if job.status.finished)
    return f"{done}/{len(flow.jobs)}"


def flows_table(flows: Sequence[Flow]) -> str:
    headers = ("FLOW ID", "FLOW", "SUBMITTED", "STATUS", "DONE", "COMMIT")
    rows = [
        (
            flow.id,
            clean(flow.name, limit=16),
            format_time(flow.submit_time),
            flow.status.value,
            _progress(flow),
            clean(_subject(flow), limit=MAX_NAME_WIDTH),
        )
        for flow in flows
    ]
    return format_table(headers, rows)


def _job_status(job: Job) -> str:
    return clean(job.status_text, limit=16)


def jobs_table(jobs: Sequence[Job]) -> str:
    headers = ("JOB", "STATUS", "ARTIFACTS", "JOB ID")
    rows = [
        (
            clean(job.name, limit=MAX_NAME_WIDTH) + (" (private)" if job.private else ""),
            _job_status(job),
            {True: "yes", False: "no", None: "?"}[job.has_artifacts],
            job.id,
        )
        for job in jobs
    ]
    return format_table(headers, rows)


def flow_details(flow: Flow) -> str:
    """A flow's header lines and its jobs table, in the server's job order."""
    state = "finished" if flow.finished else "in progress"
    lines = [
        f"Flow:      {flow.id}",
        f"Type:      {clean(flow.name, limit=16) or '-'}",
        f"Submitted: {format_time(flow.submit_time)}",
        f"Status:    {flow.status.value} ({state})",
    ]
    for key, value in sorted(flow.params.items(), key=lambda item: str(item[0])):
        lines.append(f"  {clean(key, limit=32)}: {clean(value, limit=200)}")
    text = "\n".join(lines) + "\n\n"
    if not flow.jobs:
        return text + "No jobs yet.\n"
    return text + jobs_table(flow.jobs)


def job_change_line(elapsed: float, job: Job, previous: JobStatus | None) -> str:
    """One line of `flows watch`: when, which job, and what its status became."""
    status = _job_status(job)
    change = status if previous is None else f"{previous.value} -> {status}"
    return f"{log_stamp(elapsed)} {clean(job.name, limit=MAX_NAME_WIDTH)}: {change}"


def packages_table(names: Sequence[str]) -> str:
    return format_table(("PACKAGE",), [(clean(name, limit=200),) for name in sorted(names)])


def mapping_line(data: Mapping[str, Any]) -> str:
    """A small mapping as compact, single-line JSON, for confirmations."""
    return json.dumps(dict(data), sort_keys=True, ensure_ascii=True)
