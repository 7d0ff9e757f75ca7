"""Text for people: one-line names and durations, shared by the live log, the CLI and
the summary. Names come from the server, so they are made safe here once."""

from __future__ import annotations


def clean(text: object, limit: int | None = None) -> str:
    """One printable line: control characters (escape sequences, newlines) are shown as
    escapes instead of acting on the terminal; *limit* shortens long names."""
    raw = str(text)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in raw)
    if limit is not None and len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


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
