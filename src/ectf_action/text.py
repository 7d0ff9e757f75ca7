"""Text for people: one-line names, sizes and durations, and server output made plain,
shared by the live log, the CLI and every report. Names and logs come from the server,
so they are made safe here once."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

PROG = "ectf-action"
# Where the GitHub runner ends a line of a step's output (.NET's ReadLine): CR, LF or
# CRLF. The workflow-command writer, the masks (registered line by line, as the runner
# keeps them) and the terminal view all split on it.
RUNNER_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _NamedJob(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


def clean(text: object, limit: int | None = None) -> str:
    """One printable line: control characters (escape sequences, newlines) are shown as
    escapes instead of acting on the terminal; *limit* shortens long names."""
    raw = str(text)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in raw)
    if limit is not None and len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


def cancel_hint(flow: str, flow_id: str) -> str:
    """The command that cancels a flow by hand."""
    return f"{PROG} flows cancel {flow} {flow_id}"


def watch_hint(flow: str, flow_id: str) -> str:
    """The command that follows a flow from a terminal."""
    return f"{PROG} flows watch {flow} {flow_id}"


def answer_hint(flow: str, job: _NamedJob) -> str:
    """The command that answers a pending job by hand."""
    if job.name == "team_approval":
        return f"{PROG} jobs input {flow} {job.id} --approve (or --reject)"
    return f"{PROG} jobs input {flow} {job.id} --data '<YAML or JSON mapping>'"


def format_elapsed(seconds: float) -> str:
    """Durations people read at a glance: `7s`, `3m05s`, `1h02m03s`."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def log_stamp(seconds: float) -> str:
    """The time since the start at the head of a live-log line: `[ 1m05s]`, one width
    below 100 minutes so that the lines align."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"[{hours}h{minutes:02d}m{secs:02d}s]"
    return f"[{minutes:2d}m{secs:02d}s]"


def format_size(size: int) -> str:
    """A size at a glance: `999 B`, `121.7 KiB`, `3.0 MiB`, `1.2 GiB`."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def format_limit(size: int) -> str:
    """A limit the user set, stated exactly (`512 MiB`, `1,000 bytes`): a rounded figure
    would not say which value to raise."""
    mib = 1024 * 1024
    return f"{size // mib} MiB" if size and size % mib == 0 else f"{size:,} bytes"


def plural(count: int, word: str) -> str:
    """`1 file`, `2 files`, `1,024 files`."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def and_list(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`: a few counts or names in a sentence."""
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# -- terminal output from the server ------------------------------------------------------

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_UNPRINTABLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def clean_terminal_text(text: str) -> str:
    """Terminal output made plain: ANSI escapes removed, carriage-return overwrites
    resolved as a terminal would show them, control and bidi characters dropped
    (newline and tab kept)."""
    if text.isascii() and text.isprintable():
        return text  # nothing to remove: the common case, checked at C speed
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    if "\r" in text:
        text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    return _UNPRINTABLE.sub("", text)


def one_line(text: str) -> str:
    """Server output as one plain line: `clean_terminal_text`, then every run of
    whitespace (line breaks too) one space."""
    return " ".join(clean_terminal_text(text).split())


def clean_line(text: str, limit: int) -> str:
    """`one_line`, shown safely and shortened to *limit* as `clean` does: what a report
    quotes from a log or a job's name."""
    return clean(one_line(text), limit)


# Prefixes that loggers put before each line of a tool's output: ISO-8601 stamps
# (`2026-01-02T03:04:05.678Z `, the form docker logs and GitHub use, with an offset or
# nanoseconds too), `2026-01-02 03:04:05,678 `, `[12:34:56] ` / `[2026-01-02 03:04:05] `,
# and BuildKit's `#12 3.456 ` step prefix. At most two are removed (a stamp, then a step).
_TIMESTAMP = re.compile(
    r"(?:\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?\]?"
    r"|\[\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?\]"
    r"|#\d{1,6} \d{1,6}\.\d{1,3})[ \t]"
)


def strip_timestamp(line: str) -> str:
    """*line* without the timestamp (and build-step) prefixes a logger put before it."""
    for _ in range(2):
        found = _TIMESTAMP.match(line)
        if found is None:
            break
        line = line[found.end() :]
    return line


def tail_text(text: str, max_lines: int, max_bytes: int) -> str:
    """The last *max_lines* lines of *text*, within *max_bytes* of UTF-8, never cut
    inside a character. A last line longer than *max_bytes* keeps its end."""
    if max_lines <= 0 or max_bytes <= 0:
        return ""
    lines = text.split("\n")[-max_lines:]
    kept: list[str] = []
    size = -1  # no newline before the first line kept
    for line in reversed(lines):
        size += len(line.encode("utf-8")) + 1
        if size > max_bytes:
            break
        kept.append(line)
    if not kept:
        return lines[-1].encode("utf-8")[-max_bytes:].decode("utf-8", "ignore")
    return "\n".join(reversed(kept))
