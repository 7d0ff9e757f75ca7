"""Compiler, linker and build-tool diagnostics found in a job's log, in one pass.

What is recognised, after each line's ANSI colours and timestamp prefix are removed:
- GCC and Clang (arm-none-eabi-gcc too): `path:line[:col]: error|fatal error|warning|
  note: message [-Wflag]`, `In file included from path:line`, and the driver's own
  `gcc: error: ...`;
- GNU ld and collect2: `path:line: undefined reference to ...`, the `path:(.text+0x..)`
  form, `ld: warning: ...`, `ld: cannot find ...`, `collect2: error: ld returned 1`;
- rustc and cargo: `error[E0425]: message` or `warning: message`, then `--> path:L:C`;
- CMake: `CMake Error at path:line (command):` and the message on the lines below;
- make: `make[2]: *** [...] Error 1`, `Makefile:12: *** ...`, and `Entering directory` /
  `Leaving directory`, whose directory is kept with each diagnostic so that a relative
  path can be resolved later.

A note attaches to the diagnostic before it instead of standing alone. Lines that only
say an earlier step failed (make's `*** [...] Error 2`, collect2's `ld returned 1 exit
status`, cargo's `could not compile`) are kept as `follow_up` diagnostics: a report
shows them only when nothing better was found.

The log is read in chunks of bytes and only the lines that hold one of a few marker
words are decoded and matched, so that a build log of 100 MB takes about a second;
memory stays flat in the log's size (lines are cut at MAX_LINE_BYTES, a job keeps its
first diagnostics and counts the rest). Everything here came from the server: messages
and paths are plain one-line text, but still untrusted.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Final

from .artifacts import log_files, open_job_file
from .text import clean_terminal_text, strip_timestamp

CHUNK_BYTES: Final = 1024 * 1024
MAX_LINE_BYTES: Final = 8192
MAX_MESSAGE_CHARS: Final = 500
MAX_NOTES: Final = 3
MAX_KEPT: Final = 100  # diagnostics kept per job; the rest are counted
MAX_FOLLOW_UPS: Final = 5
CMAKE_MESSAGE_LINES: Final = 12  # lines below a CMake header looked at for its message
MAX_SCANNED_BYTES: Final = 1024**3  # of one job's log files, together

# Every line a rule below can match holds one of these. Each is a pass of `bytes.find`
# over the log, so they are few, and chosen not to hit a compiler's command line
# (`-Werror=...`), which a verbose build logs for every file. rustc's colours split
# `error` from its colon (`error\x1b[0m\x1b[1m: ...`).
_MARKERS: Final = (
    b"rror: ",  # error: (also fatal, internal compiler), Error: (CMake)
    b"error[",
    b"error\x1b",
    b"arning",
    b"note: ",
    b"--> ",
    b"ing directory",
    b"included from",
    b"undefined reference",
    b"multiple definition",
    b"ld: ",
    b"*** ",
    b"CMake ",
)
_MARKER = re.compile("|".join(re.escape(marker.decode()) for marker in _MARKERS))


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic as the tool logged it. `path` is the server's, unresolved."""

    severity: Severity
    message: str  # one line, without the `path:line:col: error:` prefix or the code
    tool: str  # gcc (GCC or Clang), ld, rustc, cmake, make, or log (a bare `error:`)
    path: str | None = None
    line: int | None = None
    column: int | None = None
    code: str | None = None  # `-Wunused-variable`, `E0425`
    directory: str | None = None  # make's directory in force when it was logged
    included_from: tuple[str, int] | None = None  # the `In file included from` site
    follow_up: bool = False  # only says that an earlier step failed
    notes: tuple[str, ...] = ()
    job: str = ""

    @property
    def text(self) -> str:
        """The message with its code, as the tool shows it: `unused variable 'x'
        [-Wunused-variable]`."""
        return f"{self.message} [{self.code}]" if self.code else self.message

    @property
    def where(self) -> str:
        """`path:line:col` as logged, as far as it is known; "" without a path."""
        if self.path is None:
            return ""
        parts = [self.path, *(str(n) for n in (self.line, self.column) if n is not None)]
        return ":".join(parts)


@dataclass(frozen=True)
class JobDiagnostics:
    """What one job's log held: its first diagnostics, and how many others."""

    job: str
    diagnostics: tuple[Diagnostic, ...] = ()
    errors: int = 0  # every error found (follow-ups and repeats not counted)
    warnings: int = 0
    left_out: int = 0  # diagnostics found past the limit, not kept
    complete: bool = True  # False when the log was longer than what is scanned

    def redacted(self, redact: Callable[[str], str]) -> JobDiagnostics:
        """These diagnostics with *redact* applied to every text from the log in them."""

        def maybe(text: str | None) -> str | None:
            return None if text is None else redact(text)

        def one(diagnostic: Diagnostic) -> Diagnostic:
            site = diagnostic.included_from
            return replace(
                diagnostic,
                message=redact(diagnostic.message),
                path=maybe(diagnostic.path),
                code=maybe(diagnostic.code),
                directory=maybe(diagnostic.directory),
                included_from=None if site is None else (redact(site[0]), site[1]),
                notes=tuple(redact(note) for note in diagnostic.notes),
                job=redact(diagnostic.job),
            )

        return replace(
            self, job=redact(self.job), diagnostics=tuple(one(d) for d in self.diagnostics)
        )


# -- line rules ---------------------------------------------------------------------------

_PATH = r"(?P<path>(?:[A-Za-z]:[\\/])?[^\s:][^:]*?)"
_CC = re.compile(
    _PATH + r":(?P<line>\d+):(?:(?P<col>\d+):)? ?"
    r"(?P<sev>fatal error|error|warning|note|internal compiler error):"
    r" (?P<msg>.*)"
)
_CODE = re.compile(r"(?P<msg>.*?)\s*\[(?P<code>-W[^\]\s]*|-fpermissive)\]")
_INCLUDED = re.compile(r"In file included from " + _PATH + r":(?P<line>\d+)(?::\d+)?[,:]?")
_RUST_HEAD = re.compile(
    r"(?P<sev>error|warning)(?:\[(?P<code>[A-Za-z0-9_:-]{1,64})\])?: (?P<msg>.+)"
)
_RUST_AT = re.compile(r"\s*--> " + _PATH + r":(?P<line>\d+):(?P<col>\d+)")
_RUST_NOTE = re.compile(r"\s*= note: (?P<msg>.+)")
_DRIVER = re.compile(
    r"(?:\S*/)?(?P<prog>collect2|cc1(?:plus)?|[\w.+-]*?(?:gcc|g\+\+|clang(?:\+\+)?|cc|c\+\+)"
    r"(?:-[\d.]+)?)(?:\.exe)?: (?P<sev>fatal error|error|warning): (?P<msg>.+)"
)
_LINK_REF = re.compile(
    r"(?:\S*\bld(?:\.\w+)?: )?" + _PATH + r"(?::(?P<line>\d+))?(?::\((?P<section>[^)]*)\))?: "
    r"(?P<msg>(?:undefined reference to|multiple definition of|relocation truncated) .+)"
)
_LINKER = re.compile(r"(?:\S*[/-])?ld(?:\.\w+)?: (?P<msg>.+)")
_MAKE_DIR = re.compile(
    r"(?:\S*/)?(?:g?make|ninja)(?:\[\d+\])?: (?P<verb>Entering|Leaving) directory "
    r"[`'\u2018\"](?P<dir>.+?)['\u2019\"]"
)
_MAKE_ERROR = re.compile(r"(?:\S*/)?g?make(?:\[\d+\])?: \*\*\* (?P<msg>.+)")
_MAKE_AT = re.compile(_PATH + r":(?P<line>\d+): \*\*\* (?P<msg>.+)")
_CMAKE_AT = re.compile(
    r"CMake (?P<sev>Error|Warning|Deprecation Error|Deprecation Warning)(?: \(dev\))? "
    r"(?:at|in) " + _PATH + r"(?::(?P<line>\d+))?(?: \((?P<cmd>[\w.-]+)\))?:"
)
_CMAKE_PLAIN = re.compile(r"CMake (?P<sev>Error|Warning)(?: \(dev\))?: (?P<msg>.+)")

_FOLLOW_UP = re.compile(
    r"could not compile|aborting due to|build failed|linker command failed"
    r"|ld returned \d+ exit status|generated \d+ warnings?|\d+ warnings? emitted"
    r"|\[[^\]]*\] Error \d+$"
)
_SEVERITIES: Final = {
    "fatal error": Severity.ERROR,
    "error": Severity.ERROR,
    "internal compiler error": Severity.ERROR,
    "warning": Severity.WARNING,
    "note": Severity.NOTE,
    "Error": Severity.ERROR,
    "Deprecation Error": Severity.ERROR,
    "Warning": Severity.WARNING,
    "Deprecation Warning": Severity.WARNING,
}
_MAKEFILE = re.compile(r"(?:^|[\\/])(?:GNU)?[Mm]akefile$|\.mk$")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _number(text: str | None) -> int | None:
    # Line numbers past a billion are noise, and int() of a huge digit run is slow.
    return int(text) if text and len(text) <= 9 else None


@dataclass
class _Open:
    """The diagnostic being read: notes (and rustc's location) may still follow."""

    diagnostic: Diagnostic
    notes: list[str] = field(default_factory=list)
    wants_location: bool = False
    cmake_lines: int = 0  # lines left to look at for CMake's indented message
    cmake_paragraphs: list[list[str]] = field(default_factory=list)


class _Recogniser:
    """The line rules over one log file, with the little state they need: make's
    directories, a pending include site, and the diagnostic still being read."""

    def __init__(self, job: str, emit: Callable[[Diagnostic], None]) -> None:
        self.job = job
        self.emit = emit
        self.directories: list[str] = []
        self.include: tuple[str, int] | None = None
        self.open: _Open | None = None
        self._rules = self._line_rules()

    @property
    def wants_more(self) -> bool:
        """True while the next line belongs to the current diagnostic (CMake's message),
        marker or not."""
        return self.open is not None and self.open.cmake_lines > 0

    def feed(self, raw: str) -> None:
        if self.wants_more:
            self._cmake_message(raw)
            return
        if _MARKER.search(raw) is not None:
            self.feed_marked(raw)

    def feed_marked(self, raw: str) -> None:
        """`feed` for a line known to hold a marker."""
        if self.wants_more:
            self._cmake_message(raw)
        else:
            self._classify(strip_timestamp(clean_terminal_text(raw)).rstrip())

    def close(self) -> None:
        """The log ended: what is still being read is complete."""
        if self.wants_more:
            self._cmake_done()
        self._flush()

    # -- the rules ------------------------------------------------------------------------

    def _classify(self, text: str) -> None:
        for needed, rule, handle in self._rules:
            if needed in text:
                found = rule.fullmatch(text)
                if found:
                    handle(found)
                    return

    def _line_rules(
        self,
    ) -> tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], None]], ...]:
        """The line rules in the order they are tried (the first that matches wins), each
        with a piece of text that a line must hold for the rule to be tried at all: most
        marked lines (a compiler's command line with `-Werror=...`) are none of them."""
        cmake_plain: Callable[[re.Match[str]], None] = lambda found: self._start(  # noqa: E731
            _SEVERITIES[found["sev"]], found["msg"], "cmake"
        )
        return (
            ("--> ", _RUST_AT, self._rust_location),
            ("= note: ", _RUST_NOTE, lambda found: self._note(found["msg"])),
            (" directory ", _MAKE_DIR, self._make_directory),
            (
                ": *** ",
                _MAKE_ERROR,
                lambda found: self._start(Severity.ERROR, found["msg"], "make"),
            ),
            ("included from ", _INCLUDED, self._included),
            (": ", _CC, self._compiler),
            (": ", _DRIVER, self._driver),
            (" reference to ", _LINK_REF, lambda found: self._error_at(found, "ld")),
            (" definition of ", _LINK_REF, lambda found: self._error_at(found, "ld")),
            ("relocation truncated", _LINK_REF, lambda found: self._error_at(found, "ld")),
            ("ld", _LINKER, self._linker),
            (": *** ", _MAKE_AT, lambda found: self._error_at(found, "make")),
            ("CMake ", _CMAKE_AT, self._cmake_header),
            ("CMake ", _CMAKE_PLAIN, cmake_plain),
            (": ", _RUST_HEAD, self._rust_header),
        )

    def _error_at(self, found: re.Match[str], tool: str) -> None:
        self._start(
            Severity.ERROR, found["msg"], tool, path=found["path"], line=_number(found["line"])
        )

    def _included(self, found: re.Match[str]) -> None:
        line = _number(found["line"])
        self.include = (found["path"], line) if line is not None else None

    def _driver(self, found: re.Match[str]) -> None:
        tool = "ld" if found["prog"] == "collect2" else "gcc"
        self._start(_SEVERITIES[found["sev"]], found["msg"], tool)

    def _cmake_header(self, found: re.Match[str]) -> None:
        command = found["cmd"]
        severity = found["sev"]
        message = (
            f"CMake {severity.lower()} in {command}" if command else f"CMake {severity.lower()}"
        )
        self._start(
            _SEVERITIES[severity], message, "cmake", path=found["path"], line=_number(found["line"])
        )
        assert self.open is not None
        self.open.cmake_lines = CMAKE_MESSAGE_LINES

    def _rust_header(self, found: re.Match[str]) -> None:
        code = found["code"]
        tool = "rustc" if code and re.fullmatch(r"E\d{4}", code) else "log"
        self._start(_SEVERITIES[found["sev"]], found["msg"], tool, code=code)
        assert self.open is not None
        self.open.wants_location = not self.open.diagnostic.follow_up

    def _compiler(self, found: re.Match[str]) -> None:
        severity = _SEVERITIES[found["sev"]]
        message = found["msg"]
        code = None
        coded = _CODE.fullmatch(message)
        if coded:
            message, code = coded["msg"], coded["code"]
        if severity is Severity.NOTE:
            self.include = None
            self._note(f"{found['path']}:{found['line']}: {message}")
            return
        tool = "make" if _MAKEFILE.search(found["path"]) else "gcc"
        self._start(
            severity,
            message,
            tool,
            path=found["path"],
            line=_number(found["line"]),
            column=_number(found["col"]),
            code=code,
            included_from=self.include,
        )

    def _linker(self, found: re.Match[str]) -> None:
        message = found["msg"]
        if message.endswith(":") or ": in function " in message:
            return  # `ld: foo.o: in function `main':` only introduces the next line
        if message.startswith("warning: "):
            self._start(Severity.WARNING, message[len("warning: ") :], "ld")
        else:
            self._start(Severity.ERROR, message.removeprefix("error: "), "ld")

    def _rust_location(self, found: re.Match[str]) -> None:
        current = self.open
        if current is None or not current.wants_location:
            return  # a secondary span, or an arrow in someone's text
        current.wants_location = False
        current.diagnostic = replace(
            current.diagnostic,
            tool="rustc",
            path=found["path"],
            line=_number(found["line"]),
            column=_number(found["col"]),
        )

    def _make_directory(self, found: re.Match[str]) -> None:
        directory = found["dir"]
        if found["verb"] == "Entering":
            if len(self.directories) < 64:
                self.directories.append(directory)
            return
        if directory in self.directories:  # the innermost of that name
            index = len(self.directories) - 1 - self.directories[::-1].index(directory)
            del self.directories[index:]

    def _cmake_message(self, raw: str) -> None:
        """CMake puts its message on indented lines below the header: the first
        paragraph, and the next one's first line when the first ends with a colon
        (`Cannot find source file:` ... `src/missing.c`)."""
        current = self.open
        assert current is not None
        text = strip_timestamp(clean_terminal_text(raw)).rstrip()
        current.cmake_lines -= 1
        if text and not text.startswith("  "):
            current.cmake_lines = 0
            self._cmake_done()
            self.feed(raw)  # not CMake's message: a line of its own
            return
        paragraphs = current.cmake_paragraphs
        if not text:
            if paragraphs and paragraphs[-1]:
                paragraphs.append([])
        elif paragraphs:
            paragraphs[-1].append(text.strip())
        else:
            paragraphs.append([text.strip()])
        complete = [lines for lines in paragraphs if lines]
        first = " ".join(complete[0]) if complete else ""
        if len(complete) > 1 or (complete and not first.endswith(":") and not paragraphs[-1]):
            current.cmake_lines = 0
        if current.cmake_lines == 0:
            self._cmake_done()

    def _cmake_done(self) -> None:
        current = self.open
        assert current is not None
        complete = [lines for lines in current.cmake_paragraphs if lines]
        if complete:
            message = " ".join(complete[0])
            if message.endswith(":") and len(complete) > 1:
                message = f"{message} {complete[1][0]}"
            current.diagnostic = replace(current.diagnostic, message=_one_line(message))

    def _note(self, message: str) -> None:
        current = self.open
        if current is not None and len(current.notes) < MAX_NOTES:
            current.notes.append(_one_line(message))

    def _start(
        self,
        severity: Severity,
        message: str,
        tool: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        code: str | None = None,
        included_from: tuple[str, int] | None = None,
    ) -> None:
        self._flush()
        self.include = None
        message = _one_line(message)
        self.open = _Open(
            Diagnostic(
                severity=severity,
                message=message,
                tool=tool,
                path=path,
                line=line,
                column=column,
                code=code,
                directory=self.directories[-1] if self.directories else None,
                included_from=included_from,
                follow_up=severity is not Severity.NOTE and _FOLLOW_UP.search(message) is not None,
                job=self.job,
            )
        )

    def _flush(self) -> None:
        current, self.open = self.open, None
        if current is None:
            return
        diagnostic = current.diagnostic
        if current.notes:
            diagnostic = replace(diagnostic, notes=tuple(current.notes))
        self.emit(diagnostic)


# -- scanning -----------------------------------------------------------------------------


def scan_lines(lines: Iterable[str], *, job: str = "") -> Iterator[Diagnostic]:
    """The diagnostics of *lines* (one log, in order), as they are recognised. Nothing
    is dropped or counted here: `scan_job_log` keeps a job's first ones."""
    found: list[Diagnostic] = []
    recogniser = _Recogniser(job, found.append)
    for line in lines:
        recogniser.feed(line[:MAX_LINE_BYTES])
        if found:
            yield from found
            found.clear()
    recogniser.close()
    yield from found


class _Collector:
    """A job's first diagnostics without repeats (a header's warning shows once per file
    that includes it), and counts of the rest."""

    def __init__(self, job: str, limit: int) -> None:
        self.job = job
        self.limit = limit
        self.kept: list[Diagnostic] = []
        self.seen: set[tuple[object, ...]] = set()
        self.follow_ups = 0
        self.errors = 0
        self.warnings = 0
        self.left_out = 0
        self.complete = True

    def add(self, diagnostic: Diagnostic) -> None:
        if diagnostic.follow_up:
            if self.follow_ups < MAX_FOLLOW_UPS:
                self.follow_ups += 1
                self.kept.append(diagnostic)
            return
        key = (
            diagnostic.severity,
            diagnostic.path,
            diagnostic.line,
            diagnostic.column,
            diagnostic.message,
            diagnostic.code,
        )
        if key in self.seen:
            return
        if diagnostic.severity is Severity.ERROR:
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.seen) >= self.limit:
            self.left_out += 1
            return
        self.seen.add(key)
        self.kept.append(diagnostic)

    def result(self) -> JobDiagnostics:
        return JobDiagnostics(
            job=self.job,
            diagnostics=tuple(self.kept),
            errors=self.errors,
            warnings=self.warnings,
            left_out=self.left_out,
            complete=self.complete,
        )


def _decode(data: bytes) -> str:
    return data[:MAX_LINE_BYTES].decode("utf-8", "replace").rstrip("\r")


def _candidate_starts(buffer: bytes, end: int) -> list[int]:
    """Where the lines of `buffer[:end]` that hold a marker start, in order. Found with
    `bytes.find`, which runs at memory speed; Python sees only these lines."""
    starts: set[int] = set()
    find, rfind = buffer.find, buffer.rfind
    for marker in _MARKERS:
        position = find(marker, 0, end)
        while position >= 0:
            starts.add(rfind(b"\n", 0, position) + 1)
            newline = find(b"\n", position, end)
            if newline < 0:
                break
            position = find(marker, newline + 1, end)
    return sorted(starts)


def _scan_buffer(buffer: bytes, end: int, recogniser: _Recogniser) -> None:
    """Feed the marked lines of `buffer[:end]` (whole lines), and the lines a
    diagnostic asks for after them."""
    cursor = 0

    def feed_wanted() -> None:
        nonlocal cursor
        while recogniser.wants_more and cursor < end:
            newline = buffer.find(b"\n", cursor, end)
            recogniser.feed(_decode(buffer[cursor:newline]))
            cursor = newline + 1

    feed_wanted()
    for start in _candidate_starts(buffer, end):
        if start < cursor:
            continue
        newline = buffer.find(b"\n", start, end)
        recogniser.feed_marked(_decode(buffer[start:newline]))
        cursor = newline + 1
        feed_wanted()


def _scan_stream(stream: BinaryIO, recogniser: _Recogniser, max_bytes: int) -> int:
    """Scan up to *max_bytes* of *stream*; return the bytes read. A line longer than
    MAX_LINE_BYTES is cut there and the rest of it skipped without being kept."""
    read = 0
    carry = b""
    skipping = False  # inside an over-long line: drop bytes up to its newline
    while read < max_bytes:
        chunk = stream.read(min(CHUNK_BYTES, max_bytes - read))
        if not chunk:
            break
        read += len(chunk)
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            chunk, skipping = chunk[newline + 1 :], False
        buffer = carry + chunk if carry else chunk
        end = buffer.rfind(b"\n") + 1
        _scan_buffer(buffer, end, recogniser)
        carry = buffer[end:]
        if len(carry) > MAX_LINE_BYTES:
            recogniser.feed(_decode(carry))
            carry, skipping = b"", True
    if carry and not skipping:
        recogniser.feed(_decode(carry))
    recogniser.close()
    return read


def scan_job_log(
    job_dir: Path, job: str, *, limit: int = MAX_KEPT, max_bytes: int = MAX_SCANNED_BYTES
) -> JobDiagnostics:
    """The diagnostics of a job's log: the same files the reports read as its log
    (`artifacts.log_files`), in name order, each scanned on its own (make's directories
    do not carry from one file to the next). Unreadable files are skipped; past
    *max_bytes* in all the result says it is not complete."""
    collector = _Collector(job, limit)
    remaining = max_bytes
    for _relative, path in log_files(job_dir):
        try:
            with open_job_file(path) as stream:
                if remaining <= 0:
                    collector.complete = not stream.read(1)
                    if not collector.complete:
                        break
                    continue
                remaining -= _scan_stream(stream, _Recogniser(job, collector.add), remaining)
                if remaining <= 0 and stream.read(1):
                    collector.complete = False
        except OSError:
            continue
    return collector.result()
