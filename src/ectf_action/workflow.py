"""GitHub workflow commands: annotations, groups, masks, and the runner's file commands.

Everything here follows the conventions of actions/toolkit `packages/core`. The writer
is built over injected streams and paths, so it works (and is tested) outside Actions.

Two defences apply to every byte written:
- text that came from the server can never issue a workflow command: command payloads
  are escaped, and free text goes through `info` / `echo_untrusted`, which fence
  anything that could parse as a command inside `::stop-commands::`;
- every value registered with `add_mask` is replaced by `***` in whatever we write
  (stdout, outputs, state, summary), in case the runner's own masking misses it.

Outside Actions (a file path is None) `set_output`, `save_state` and `append_summary`
do nothing: the command-line client prints its own results instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .masking import Redactor
from .text import RUNNER_LINE_BREAK

# GitHub drops a step summary over 1 MiB (keeping only an annotation); refuse to grow
# the file past it, so that what was already written stays visible.
SUMMARY_FILE_LIMIT = 1024 * 1024

# The runner reads its output with .NET's ReadLine, which ends a line at "\r", "\n" or
# "\r\n", and takes a line for a command when it starts, after leading whitespace, with
# "::name ...::" (current form), or when it holds "##[name ...]" anywhere (legacy form).
_COMMAND_LIKE = re.compile(r"^\s*::|##\[")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def escape_data(value: object) -> str:
    """Escape a command's message so that it stays on one line and round-trips."""
    return str(value).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: object) -> str:
    """Escape a command property's value (also `:` and `,`, which separate properties)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _check_name(name: str) -> None:
    """A file-command name is ours, never the server's: a bad one is a programming error."""
    if not name or any(bad in name for bad in ("\n", "\r", "=", "<<")):
        raise ValueError(f"invalid file-command name: {name!r}")


def new_stop_token() -> str:
    """An unguessable token for `::stop-commands::`."""
    return secrets.token_hex(16)


def new_delimiter() -> str:
    """A file-command delimiter in the runner's own style."""
    return f"ghadelimiter_{uuid.uuid4()}"


def _lines(text: str) -> list[str]:
    """Split as the runner does, so a lone CR cannot start a line we did not check."""
    return RUNNER_LINE_BREAK.split(text)


class WorkflowCommands:
    """Writes workflow commands to *stdout* and file commands to the runner's files.

    Every write is flushed at once: the runner interleaves stdout and stderr as it reads
    them, and a `::add-mask::` must reach it before the secret could.
    """

    def __init__(
        self,
        stdout: TextIO,
        *,
        output_file: Path | None,
        state_file: Path | None,
        summary_file: Path | None,
        stop_tokens: Callable[[], str] = new_stop_token,
        delimiters: Callable[[], str] = new_delimiter,
    ) -> None:
        self._stdout = stdout
        self._new_stop_token = stop_tokens
        self._new_delimiter = delimiters
        self._output_file = output_file
        self._state_file = state_file
        self._summary_file = summary_file
        self.redactor = Redactor()
        self._lock = threading.RLock()
        self._unwritable_files: set[Path] = set()

    # -- masking -----------------------------------------------------------------------

    def add_mask(self, value: str) -> None:
        """Ask the runner to mask *value*, and redact it ourselves from now on.

        Call it before anything else is printed. Blank values are ignored (masking
        whitespace would garble every line), and so are values already masked. Each
        line of a multi-line secret is also registered, as the runner masks line by line.
        """
        with self._lock:
            if self.redactor.add(value):
                self._write_raw(f"::add-mask::{escape_data(value)}")

    def redact(self, text: str) -> str:
        """*text* with every registered secret replaced by `***`, and any lone surrogate
        (JSON can carry one; UTF-8 cannot encode it) replaced by U+FFFD."""
        return _LONE_SURROGATE.sub("\ufffd", self.redactor.redact(text))

    # -- commands on stdout ------------------------------------------------------------

    def error(
        self,
        message: str,
        title: str | None = None,
        *,
        location: Mapping[str, str | int] | None = None,
    ) -> None:
        """An error annotation; *location* holds `file`, `line`, `col` when it points at
        a file of the workspace."""
        self._command("error", message, title, location)

    def warning(
        self,
        message: str,
        title: str | None = None,
        *,
        location: Mapping[str, str | int] | None = None,
    ) -> None:
        self._command("warning", message, title, location)

    def notice(self, message: str, title: str | None = None) -> None:
        self._command("notice", message, title)

    def info(self, line: str) -> None:
        """Print our own text. Should it hold a line that the runner would take for a
        command (it may quote a server's name), it is echoed inside stop-commands."""
        text = self.redact(line)
        if any(_COMMAND_LIKE.search(part) for part in _lines(text)):
            self.echo_untrusted(text)
            return
        with self._lock:
            for part in _lines(text):
                self._write_raw(part)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A collapsible group in the log; the end marker is written even on error."""
        self._write_raw(f"::group::{escape_data(self.redact(title))}")
        try:
            yield
        finally:
            self._write_raw("::endgroup::")

    def echo_untrusted(self, text: str) -> None:
        """Print text from the server with command processing switched off around it.

        The resume token is random and absent from the text (compared without case, as
        the runner does), so the text can neither resume processing nor issue commands.
        Every line break, a lone CR included, becomes a newline.
        """
        text = self.redact(text)
        if not text:
            return
        lines = _lines(text)
        folded = text.lower()
        token = self._new_stop_token()
        while token.lower() in folded:
            token = self._new_stop_token()
        with self._lock:
            self._write_raw(f"::stop-commands::{token}")
            for line in lines:
                self._write_raw(line)
            self._write_raw(f"::{token}::")

    # -- file commands -----------------------------------------------------------------

    def set_output(self, name: str, value: str) -> bool:
        """Append an output to `$GITHUB_OUTPUT`; nothing outside Actions. False (after a
        warning) when it could not be written."""
        return self._file_command(self._output_file, name, value)

    def save_state(self, name: str, value: str) -> bool:
        """Append a state to `$GITHUB_STATE` (a post step reads `STATE_<name>`);
        nothing outside Actions. False (after a warning) when it could not be written."""
        return self._file_command(self._state_file, name, value)

    def append_summary(self, markdown: str) -> bool:
        """Append markdown to `$GITHUB_STEP_SUMMARY`; nothing outside Actions.

        Markdown that would take the file past GitHub's 1 MiB cap is not written (GitHub
        would drop the whole summary); a warning says so instead.
        """
        if self._summary_file is None:
            return True
        text = self.redact(markdown)
        if not text.endswith("\n"):
            text += "\n"
        size = len(text.encode("utf-8"))
        with self._lock:
            try:
                existing = self._summary_file.stat().st_size
            except OSError:
                existing = 0
            if existing + size > SUMMARY_FILE_LIMIT:
                self.warning(
                    f"The job summary was not written: {size} bytes would take it past "
                    "GitHub's 1 MiB limit.",
                    title="Job summary too large",
                )
                return False
            return self._append_whole(self._summary_file, text, "job summary")

    # -- internals ---------------------------------------------------------------------

    def _command(
        self,
        name: str,
        message: str,
        title: str | None,
        location: Mapping[str, str | int] | None = None,
    ) -> None:
        properties = {**(location or {}), **({"title": title} if title else {})}
        shown = ",".join(
            f"{key}={escape_property(self.redact(str(value)))}" for key, value in properties.items()
        )
        self._write_raw(
            f"::{name}{' ' + shown if shown else ''}::{escape_data(self.redact(message))}"
        )

    def _file_command(self, path: Path | None, name: str, value: str) -> bool:
        """`name<<delimiter`, the value, the delimiter: safe for any value, one line or
        many; the delimiter is random and never part of the value."""
        _check_name(name)
        if path is None:
            return True
        text = self.redact(str(value))
        delimiter = self._new_delimiter()
        while delimiter in text:
            delimiter = self._new_delimiter()
        what = "outputs" if path == self._output_file else "state"
        with self._lock:
            return self._append_whole(path, f"{name}<<{delimiter}\n{text}\n{delimiter}\n", what)

    def _append_whole(self, path: Path, text: str, what: str) -> bool:
        """Append *text* to the runner's file whole or not at all: after a failed write
        (a full disk) the file is cut back to where it was, so the runner never reads
        half a record. A file that cannot be written is a warning, once, never a crash."""
        data = text.encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC, 0o644)
        except OSError as exc:
            self._unwritable(path, what, exc)
            return False
        try:
            start = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            self._unwritable(path, what, exc)
            return False
        finally:
            os.close(fd)
        return True

    def _unwritable(self, path: Path, what: str, exc: OSError) -> None:
        if path in self._unwritable_files:
            return
        self._unwritable_files.add(path)
        self.warning(
            f"The step's {what} could not be written to {path} ({exc.strerror or exc}); "
            "what it would have held is in this log.",
            title="Report not written",
        )

    def _write_raw(self, line: str) -> None:
        """One line, exactly as given (callers have escaped and redacted it), flushed."""
        with self._lock:
            self._stdout.write(line + "\n")
            self._stdout.flush()
