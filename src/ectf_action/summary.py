"""The run as markdown for `$GITHUB_STEP_SUMMARY`.

What a person opening the workflow run wants first: the result, the flow and commit,
one table row per job, the warnings, and the end of each failed job's log (folded).
Server text (names, statuses, logs, warnings) is hostile: names are escaped so they
cannot break the table or inject HTML, and logs sit in a fenced block whose fence is
longer than any backtick run inside. GitHub drops a summary over 1 MiB, so the
markdown keeps to a byte budget: log tails are trimmed first, then job rows, and a
closing note says what was left out.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from .models import JobStatus
from .results import NO_LOG, JobOutcome, RunResult, RunStatus
from .text import clean_terminal_text, format_elapsed, format_size, plural, tail_text, watch_hint

DEFAULT_BUDGET = 256 * 1024
MIN_BUDGET = 4 * 1024
MAX_NAME_CHARS = 120
MAX_MESSAGE_CHARS = 1000
MAX_WARNING_CHARS = 500
MIN_LOG_BLOCK_BYTES = 1024
LOG_CUT_CHARS = 64 * 1024
NOTE_RESERVE_BYTES = 600

_TABLE_HEAD = (
    "### Jobs\n\n"
    "| Job | Status | Time observed | Artifacts | Folder |\n"
    "| --- | --- | --- | --- | --- |\n"
)
_NO_ROOM = "The log was left out: no room left in the summary."
_SAFE_CODE = re.compile(r"[A-Za-z0-9._/-]{1,200}")
# A link into the repository as annotations.blob_url builds it: nothing that could end
# the markdown link or start another.
_SAFE_URL = re.compile(r"https?://[A-Za-z0-9.:-]+/[A-Za-z0-9._~%/#-]+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;", "|": "&#124;"}
_BACKSLASHED = set("\\*_[]~#!")
_BLOCK_START = re.compile(r"^(\d+)([.)])")


def _size_of(text: str) -> int:
    return len(text.encode("utf-8"))


def _plain(text: str) -> str:
    """Server text as plain, encodable text: no escapes, controls or lone surrogates."""
    return clean_terminal_text(_LONE_SURROGATE.sub("\ufffd", text))


def _one_line(text: str, limit: int) -> str:
    line = " ".join(_plain(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def md_text(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """Server text as literal inline markdown: one line, HTML and table pipes turned
    into entities, markdown punctuation backslashed, no block syntax at its start."""
    escaped = "".join(
        _ENTITIES.get(char) or (f"\\{char}" if char in _BACKSLASHED else char)
        for char in _one_line(text, limit)
    )
    escaped = _BLOCK_START.sub(r"\1\\\2", escaped)
    if escaped[:1] in ("-", "+", "="):
        escaped = "\\" + escaped
    return escaped


def md_code(text: str) -> str:
    """An id or path in a code span when it is plainly safe; escaped text otherwise."""
    return f"`{text}`" if _SAFE_CODE.fullmatch(text) else md_text(text)


def _header(result: RunResult) -> str:
    lines = [f"## eCTF {md_text(result.flow_name)} flow: {result.status.value}", ""]
    if result.message:
        lines += [
            f"**Result: {result.status.value}.** {md_text(result.message, MAX_MESSAGE_CHARS)}",
            "",
        ]
    else:
        lines += [f"**Result: {result.status.value}.**", ""]
    lines.append(f"- Flow id: {md_code(result.flow_id) if result.flow_id else 'none (not queued)'}")
    if result.commit:
        lines.append(f"- Commit: {md_code(result.commit)}")
    lines.append(f"- Time: {format_elapsed(result.elapsed_seconds)}")
    lines += _how_to_follow(result)
    return "\n".join(lines) + "\n"


def _how_to_follow(result: RunResult) -> list[str]:
    """For a flow left running by `wait: false`: the two ways to pick it up again."""
    if result.status is not RunStatus.QUEUED or not result.flow_id:
        return []
    flow, flow_id = result.flow_name, result.flow_id
    if _SAFE_CODE.fullmatch(flow) and _SAFE_CODE.fullmatch(flow_id):
        command, inputs = f"`{watch_hint(flow, flow_id)}`", f"`flow: {flow}`, `flow-id: {flow_id}`"
    else:  # an id of the wrong shape came from the server: shown, never as code
        command = md_text(watch_hint(flow, flow_id), MAX_MESSAGE_CHARS)
        inputs = md_text(f"flow: {flow}, flow-id: {flow_id}", MAX_MESSAGE_CHARS)
    return [
        "",
        "### Following this flow",
        "",
        "It was left running on the server (`wait: false`); nothing was downloaded.",
        "",
        f"- From a terminal: {command}",
        f"- In a later job or workflow: this action with the inputs {inputs}",
    ]


def _row(outcome: JobOutcome) -> str:
    if outcome.artifacts_dir or outcome.artifact_files:
        artifacts = (
            f"{plural(outcome.artifact_files, 'file')}, {format_size(outcome.artifact_bytes)}"
        )
    else:
        artifacts = "none"
    folder = md_code(outcome.artifacts_dir) if outcome.artifacts_dir else ""
    cells = [
        md_text(outcome.name),
        md_text(outcome.job.status_text),
        format_elapsed(outcome.observed_seconds),
        artifacts,
        folder,
    ]
    return "| " + " | ".join(cells) + " |\n"


def _warnings(result: RunResult) -> list[str]:
    items = [f"- {md_text(warning, MAX_WARNING_CHARS)}\n" for warning in result.warnings]
    for outcome in result.jobs:
        items += [
            f"- {md_text(outcome.name)}: {md_text(warning, MAX_WARNING_CHARS)}\n"
            for warning in outcome.warnings
        ]
    return items


@dataclass
class _LogBlock:
    """A failed job's log, folded, after its first error (in the block's title, seen
    while folded) and the table of its diagnostics; `text` shrinks when the budget is
    tight."""

    name: str
    text: str
    fence: str
    cut: bool = False
    first_error: str = ""
    table: str = ""

    @classmethod
    def of(cls, outcome: JobOutcome, max_chars: int) -> _LogBlock:
        """The block of a failed job, its log cut to the last *max_chars* characters
        before any other work (a log tail should be small, but it came from outside)."""
        text = _plain(outcome.log_tail[-max_chars:]).strip("\n")
        longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
        name = _one_line(outcome.name, MAX_NAME_CHARS)
        fence = "`" * max(3, longest + 1)
        return cls(
            name,
            text,
            fence,
            cut=len(outcome.log_tail) > max_chars,
            first_error=_one_line(outcome.first_error, MAX_MESSAGE_CHARS),
            table=_diagnostics_table(outcome),
        )

    def render(self, text: str | None = None) -> str:
        body = self.text if text is None else text
        what = self.first_error or "the last lines of its log"
        summary = html.escape(f"{self.name}: {what}")
        if body:
            inner = f"{self.fence}text\n{body}\n{self.fence}"
        else:
            inner = NO_LOG if text is None or not self.text else _NO_ROOM
        return f"<details><summary>{summary}</summary>\n\n{self.table}{inner}\n\n</details>\n\n"

    def render_within(self, size: int) -> tuple[str, bool]:
        """The block in at most *size* bytes (the log's end kept); True if trimmed."""
        full = self.render()
        if _size_of(full) <= size:
            return full, self.cut
        frame = _size_of(self.render("")) + _size_of(self.fence) * 2 + len("text\n\n")
        return self.render(tail_text(self.text, 1_000_000, max(0, size - frame))), True


def _diagnostics_table(outcome: JobOutcome) -> str:
    """The job's diagnostics, each where it is (linked to the file at the tested commit
    when it was found in the workspace) and what it says; "" without any."""
    if not outcome.diagnostic_rows:
        return ""
    lines = ["| | Where | Diagnostic |", "| --- | --- | --- |"]
    for row in outcome.diagnostic_rows:
        where = md_text(row.get("location") or "", MAX_NAME_CHARS)
        url = row.get("url")
        if url and _SAFE_URL.fullmatch(url):
            where = f"[{where}]({url})"
        severity = md_text(row.get("severity") or "", 20)
        message = md_text(row.get("message") or "", MAX_WARNING_CHARS)
        lines.append(f"| {severity} | {where} | {message} |")
    table = "\n".join(lines) + "\n\n"
    if outcome.diagnostics_left_out:
        more = plural(outcome.diagnostics_left_out, "more diagnostic")
        table += f"_{more} in the log._\n\n"
    return table


def _share_out(sizes: list[int], total: int) -> list[int]:
    """Split *total* bytes among blocks wanting *sizes*: small ones get all they want,
    the large ones share what is left equally."""
    allowance = [0] * len(sizes)
    remaining = total
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for position, index in enumerate(order):
        fair = remaining // (len(sizes) - position)
        allowance[index] = min(sizes[index], fair)
        remaining -= allowance[index]
    return allowance


def _pick_rows(outcomes: list[JobOutcome], rows: list[str], room: int) -> list[int]:
    """Indexes of the rows to keep within *room* bytes: failed jobs first, then the
    other unfinished or unsuccessful ones, then the rest; shown in their own order."""
    order = sorted(range(len(outcomes)), key=lambda i: (-outcomes[i].status.severity, i))
    kept: list[int] = []
    used = 0
    for index in order:
        size = _size_of(rows[index])
        if used + size > room:
            break
        kept.append(index)
        used += size
    return sorted(kept)


def render_summary(result: RunResult, *, budget: int = DEFAULT_BUDGET) -> str:
    """The job summary of *result*, in at most *budget* bytes of UTF-8."""
    if budget < MIN_BUDGET:
        raise ValueError(f"a summary budget under {MIN_BUDGET} bytes is too small")
    room = budget - NOTE_RESERVE_BYTES
    notes: list[str] = []
    header = _header(result)
    room -= _size_of(header)

    warning_items = _warnings(result)
    warnings_room = budget // 8
    kept_warnings: list[str] = []
    warnings_size = 0
    for item in warning_items:
        warnings_size += _size_of(item)
        if warnings_size > warnings_room:
            break
        kept_warnings.append(item)
    if len(kept_warnings) < len(warning_items):
        notes.append(f"{plural(len(warning_items) - len(kept_warnings), 'warning')} left out")
    warnings_text = "### Warnings\n\n" + "".join(kept_warnings) + "\n" if kept_warnings else ""
    if result.annotations_note:
        warnings_text += f"_{md_text(result.annotations_note, MAX_WARNING_CHARS)}_\n\n"
    room -= _size_of(warnings_text)

    rows = [_row(outcome) for outcome in result.jobs]
    table_size = _size_of(_TABLE_HEAD) + sum(map(_size_of, rows))
    failed = [outcome for outcome in result.jobs if outcome.status is JobStatus.FAILED]
    logs_heading = "### Failed jobs\n\n"
    if table_size + _size_of(logs_heading) + MIN_LOG_BLOCK_BYTES * min(1, len(failed)) > room:
        if failed:
            notes.append(f"the logs of {plural(len(failed), 'failed job')} left out")
            failed = []
        kept_rows = _pick_rows(result.jobs, rows, room - _size_of(_TABLE_HEAD) - 1)
        if len(kept_rows) < len(rows):
            notes.append(f"{plural(len(rows) - len(kept_rows), 'job row')} left out")
        rows = [rows[index] for index in kept_rows]
        table_size = _size_of(_TABLE_HEAD) + sum(map(_size_of, rows))
    room -= table_size

    logs_text = ""
    if failed:
        room -= _size_of(logs_heading)
        shown = min(len(failed), max(1, room // MIN_LOG_BLOCK_BYTES))
        if shown < len(failed):
            notes.append(f"the logs of {plural(len(failed) - shown, 'failed job')} left out")
        cut = max(room // shown, min(room, LOG_CUT_CHARS))
        blocks = [_LogBlock.of(outcome, cut) for outcome in failed[:shown]]
        allowances = _share_out([_size_of(block.render()) for block in blocks], room)
        trimmed = 0
        rendered = []
        for block, allowance in zip(blocks, allowances, strict=True):
            text, was_trimmed = block.render_within(allowance)
            trimmed += was_trimmed
            rendered.append(text)
        if trimmed:
            notes.append(f"{plural(trimmed, 'log tail')} shortened")
        logs_text = logs_heading + "".join(rendered)

    parts = [header, "\n"]
    if result.jobs:
        parts += [_TABLE_HEAD, *rows, "\n"]
    else:
        parts.append("No job was reported.\n\n")
    parts += [warnings_text, logs_text]
    if notes:
        parts.append(
            f"_This summary was trimmed to stay under {format_size(budget)}: "
            f"{'; '.join(notes)}. The step's log and the artifacts have the rest._\n"
        )
    markdown = "".join(parts)
    encoded = markdown.encode("utf-8")
    if len(encoded) > budget:  # a last resort; the accounting above should prevent it
        markdown = encoded[:budget].decode("utf-8", "ignore")
    return markdown
