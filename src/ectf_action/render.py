"""The step as a person sees it on GitHub, drawn in a terminal.

`GitHubView` is a text stream: whatever is written to it is read line by line as the
runner reads a step's stdout (a line ends at CR, LF or CRLF), its workflow commands are
parsed and carried out as the runner carries them out, and what the web page would show
is written to another stream as it comes: plain lines, job log groups (a header, then
the lines indented, long groups folded to their last lines), `Error:` / `Warning:` /
`Notice:` lines, every registered secret as `***`. `finish()` then lists the
annotations as the run's page does, within GitHub's per-step limits.

The rules are the runner's own (actions/runner `ActionCommandManager`, `ActionCommand`,
`ExecutionContext.AddIssue`), so the view never shows what the runner would not:

- `::name k=v,k=v::data` after leading whitespace, or the legacy `##[name k=v;k=v]data`
  anywhere in a line; command names compared without case; unknown names are text;
- `::stop-commands::TOKEN` turns every line into text until a command named TOKEN;
- data unescapes `%0D`, `%0A`, `%25`; properties also `%3A` and `%2C`;
- 10 errors, 10 warnings and 10 notices per step become annotations, the rest are only
  in the log; an annotation's message keeps its first 4096 characters;
- `::add-mask::` of a blank value is refused with a warning.

`debug` lines are hidden (as without debug logging), and `echo`, `set-output`,
`save-state`, `set-env`, `add-path` and the matcher commands are consumed without a
trace: the action sends none of them, and GitHub's answers to them (the echo of
commands, the refusal of `set-env`) are not drawn. The view prints none of the markers
(`::group::`, stop tokens, resume lines, masks).

`render_markdown` draws a job summary for a terminal: headings, aligned tables, folded
`<details>` blocks as labelled sections, no markdown escapes left. Everything from
either source is hostile: no escape sequence or control character from the input
reaches the output, only the view's own colours, and only when asked for.
"""

from __future__ import annotations

import html
import io
import os
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .masking import Redactor
from .text import RUNNER_LINE_BREAK, and_list, clean, clean_terminal_text, plural

DEFAULT_FOLD_LINES = 8
DEFAULT_WIDTH = 100
MIN_WIDTH = 40
MAX_WIDTH = 200
ANNOTATIONS_PER_KIND = 10  # GitHub's limit per step, for each of error, warning, notice
MAX_MESSAGE_CHARS = 4096
LISTED_MESSAGE_LINES = 4  # lines of a message in the folded annotation list

RUNNER_COMMANDS = frozenset(
    {
        "stop-commands",
        "add-mask",
        "group",
        "endgroup",
        "error",
        "warning",
        "notice",
        "debug",
        "echo",
        "set-output",
        "save-state",
        "set-env",
        "add-path",
        "add-matcher",
        "remove-matcher",
    }
)
ANNOTATION_KINDS = ("error", "warning", "notice")
_LABELS = {"error": "Error", "warning": "Warning", "notice": "Notice"}

# SGR codes: the only escape sequences the view ever writes.
BOLD = "1"
DIM = "2"
ITALIC = "3"
_KIND_STYLES = {"error": "1;31", "warning": "1;33", "notice": "1;36"}


def paint(text: str, style: str, color: bool) -> str:
    """*text* in an SGR *style*, or as it is without colour."""
    return f"\x1b[{style}m{text}\x1b[0m" if color and style and text else text


def inert(text: str) -> str:
    """One line of hostile text safe for a terminal: escape sequences and bidi controls
    dropped, tabs expanded, any other control character shown as an escape."""
    return clean(clean_terminal_text(text).expandtabs(8))


# -- where colour and width are decided ----------------------------------------------------


def use_color(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Colour only on a terminal, and never when `NO_COLOR` has a value (no-color.org)
    or the terminal says it is dumb."""
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def terminal_width(stream: TextIO, env: Mapping[str, str]) -> int:
    """Columns to lay text out in: `COLUMNS`, else the terminal's, else 100."""
    columns = env.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else 0
    if not width:
        try:
            if stream.isatty():
                width = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            width = 0
    return min(MAX_WIDTH, max(MIN_WIDTH, width or DEFAULT_WIDTH))


# -- the runner's parser -------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowCommand:
    """A parsed command line: its name and property names lower-cased, values unescaped."""

    name: str
    data: str
    properties: Mapping[str, str] = field(default_factory=dict)


def _unescape(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for escaped, char in pairs:
        text = text.replace(escaped, char)
    return text


_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_LEGACY = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))


def _properties(text: str, separator: str, pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in text.split(separator):
        key, _, value = item.partition("=")
        if key and value:
            found[key.lower()] = _unescape(value, pairs)
    return found


def parse_command(line: str, known: Set[str] = RUNNER_COMMANDS) -> WorkflowCommand | None:
    """The command the runner reads in *line*, if any; *known* holds the lower-cased
    names it processes (the stop token joins them while commands are stopped)."""
    text = line.lstrip()
    if text.startswith("::"):
        end = text.find("::", 2)
        if end >= 0:
            name, space, rest = text[2:end].partition(" ")
            if name.lower() in known:
                properties = _properties(rest.strip(), ",", _PROPERTY) if space else {}
                data = _unescape(text[end + 2 :], _DATA)
                return WorkflowCommand(name.lower(), data, properties)
    start = line.find("##[")
    close = line.find("]", start) if start >= 0 else -1
    if close < 0:
        return None
    name, space, rest = line[start + 3 : close].partition(" ")
    if name.lower() not in known:
        return None
    properties = _properties(rest, ";", _LEGACY) if space else {}
    return WorkflowCommand(name.lower(), _unescape(line[close + 1 :], _LEGACY), properties)


# -- annotations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """An error, warning or notice as GitHub keeps it (masked, message capped)."""

    kind: str
    message: str
    title: str = ""
    file: str = ""
    line: int | None = None
    end_line: int | None = None

    @classmethod
    def of(cls, command: WorkflowCommand, mask: Callable[[str], str]) -> Annotation:
        props = command.properties
        line = _number(props.get("line")) or _number(props.get("endline"))
        end_line = _number(props.get("endline"))
        return cls(
            kind=command.name,
            message=mask(command.data)[:MAX_MESSAGE_CHARS],
            title=mask(props.get("title", "")),
            file=mask(props.get("file", "")),
            line=line,
            end_line=end_line if line and end_line and end_line > line else None,
        )

    def location(self) -> str:
        """`path#L12` or `path#L12-L14`, as the run's page links a file annotation."""
        if not self.file:
            return ""
        if self.line is None:
            return self.file
        lines = f"#L{self.line}" + (f"-L{self.end_line}" if self.end_line else "")
        return self.file + lines


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and int(value) else None


# -- the live view -------------------------------------------------------------------------


@dataclass
class _Group:
    title: str
    lines: list[str] = field(default_factory=list)


class GitHubView(io.TextIOBase, TextIO):
    """A writable text stream that shows the runner protocol written to it as GitHub's
    step log shows it, on *out*; `finish()` (or `close()`) ends the step and prints the
    annotation list. *fold* keeps that many last lines of each long group and message
    (None shows every line). *out* is flushed after each line and never closed."""

    def __init__(
        self, out: TextIO, *, color: bool = False, fold: int | None = DEFAULT_FOLD_LINES
    ) -> None:
        super().__init__()
        if fold is not None and fold < 1:
            raise ValueError("fold must keep at least one line")
        self._out = out
        self._color = color
        self._fold = fold
        self._pending = ""
        self._known = set(RUNNER_COMMANDS)
        self._stopped = False
        self._stop_token = ""
        self._masks = Redactor()
        self._group: _Group | None = None
        self._annotations: list[Annotation] = []
        self._unlisted = dict.fromkeys(ANNOTATION_KINDS, 0)
        self._finished = False
        self._lock = threading.RLock()

    @property
    def annotations(self) -> list[Annotation]:
        """The annotations GitHub keeps for the step so far, in order."""
        return list(self._annotations)

    def writable(self) -> bool:
        return True

    def __del__(self) -> None:
        """A view dropped unfinished prints nothing: ending the step is the caller's act."""

    def write(self, text: str, /) -> int:
        with self._lock:
            if self._finished:
                raise ValueError("write to a finished GitHubView")
            buffered = self._pending + text
            held = ""
            if buffered.endswith("\r"):  # maybe the first half of a CRLF
                buffered, held = buffered[:-1], "\r"
            *complete, rest = RUNNER_LINE_BREAK.split(buffered)
            self._pending = rest + held
            for line in complete:
                self._read(line)
            if complete:
                self._out.flush()
        return len(text)

    def flush(self) -> None:
        if not self.closed:
            self._out.flush()

    def finish(self) -> None:
        """End of the step: its last unfinished line is read, an open group closed, and
        the annotations listed. Later calls do nothing."""
        with self._lock:
            if self._finished:
                return
            if self._pending:
                self._read(self._pending.removesuffix("\r"))
                self._pending = ""
            self._end_group()
            self._emit(self._annotation_list())
            self._finished = True
            self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self.finish()
        super().close()

    # -- reading the protocol --------------------------------------------------------------

    def _read(self, line: str) -> None:
        command = parse_command(line, self._known)
        if self._stopped:
            if command and self._stop_token and command.name == self._stop_token.lower():
                self._known.discard(self._stop_token.lower())
                self._stopped = False
            else:
                self._show([inert(self._masks.redact(line))])
            return
        if command is None:
            self._show([inert(self._masks.redact(line))])
        elif command.name == "stop-commands":
            self._stopped = True
            self._stop_token = command.data
            self._known.add(command.data.lower())
        elif command.name == "add-mask":
            if command.data.strip():
                self._masks.add(command.data)
            else:
                message = "Can't add secret mask for empty string in ##[add-mask] command."
                self._annotate(Annotation("warning", message))
        elif command.name == "group":
            self._end_group()
            self._group = _Group(inert(self._masks.redact(command.data)))
            self._emit([paint(f"> {self._group.title}", BOLD, self._color)])
        elif command.name == "endgroup":
            self._end_group()
        elif command.name in ANNOTATION_KINDS:
            self._annotate(Annotation.of(command, self._masks.redact))

    def _annotate(self, annotation: Annotation) -> None:
        if sum(a.kind == annotation.kind for a in self._annotations) >= ANNOTATIONS_PER_KIND:
            self._unlisted[annotation.kind] += 1
        else:
            self._annotations.append(annotation)
        if not annotation.message:
            return  # the runner writes no log line for an empty message
        label = _LABELS[annotation.kind] + ": "
        first, *more = [inert(part) for part in RUNNER_LINE_BREAK.split(annotation.message)]
        shown = [paint(label, _KIND_STYLES[annotation.kind], self._color) + first]
        shown += self._folded([" " * len(label) + part for part in more], " " * len(label))
        self._show(shown)

    # -- writing the view ------------------------------------------------------------------

    def _show(self, lines: list[str]) -> None:
        """Lines of the log: into the open group, or out at once."""
        if self._group is None:
            self._emit(lines)
        elif self._fold is None:
            self._emit(["  " + line for line in lines])
        else:
            self._group.lines.extend(lines)

    def _end_group(self) -> None:
        group, self._group = self._group, None
        if group is not None and self._fold is not None:
            self._emit(["  " + line for line in self._folded(group.lines, "")])

    def _folded(self, lines: list[str], indent: str) -> list[str]:
        """The last lines of a long run, after a line counting the ones left out (never
        a count standing in for a single line)."""
        if self._fold is None or len(lines) <= self._fold + 1:
            return lines
        hidden = len(lines) - self._fold
        note = paint(f"... {plural(hidden, 'earlier line')} hidden", DIM, self._color)
        return [indent + note, *lines[-self._fold :]]

    def _annotation_list(self) -> list[str]:
        counts = {kind: sum(a.kind == kind for a in self._annotations) for kind in _LABELS}
        named = [plural(n, kind) for kind, n in counts.items() if n]
        if not named:
            return []
        lines = ["", paint("Annotations", BOLD, self._color) + f": {and_list(named)}"]
        for annotation in self._annotations:
            lines += self._listed(annotation)
        for kind, count in self._unlisted.items():
            if count:
                lines.append(
                    f"  ... {plural(count, 'more ' + kind)} only in the log: GitHub lists "
                    f"{ANNOTATIONS_PER_KIND} {kind}s per step"
                )
        return lines

    def _listed(self, annotation: Annotation) -> list[str]:
        """`Error: path#L3 - title: message`, the message's further lines below it."""
        label = paint(_LABELS[annotation.kind] + ":", _KIND_STYLES[annotation.kind], self._color)
        head = [inert(part) for part in (annotation.location(), annotation.title) if part]
        parts = [inert(part) for part in RUNNER_LINE_BREAK.split(annotation.message)]
        first = " - ".join(head)
        if first and parts[0]:
            first += ": " if annotation.title else " - "
        lines = [f"  {label} {first}{parts[0]}".rstrip()]
        more = parts[1:]
        if self._fold is not None and len(more) > LISTED_MESSAGE_LINES:
            left = len(more) - LISTED_MESSAGE_LINES + 1
            more = more[: LISTED_MESSAGE_LINES - 1]
            more.append(paint(f"... {plural(left, 'more line')}", DIM, self._color))
        return lines + ["    " + part for part in more]

    def _emit(self, lines: list[str]) -> None:
        for line in lines:
            self._out.write(line.rstrip() + "\n")


# -- markdown for a terminal ---------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_DELIMITER_ROW = re.compile(r"^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$")
_LIST_ITEM = re.compile(r"^( {0,3})([-+*]|\d{1,9}[.)])[ \t]+(.*)$")
_DETAILS_OPEN = re.compile(r"^\s*<details(?:\s[^>]*)?>\s*(?:<summary>(.*?)</summary>)?\s*$", re.I)
_SUMMARY = re.compile(r"^\s*<summary>(.*?)</summary>\s*$", re.I)
_DETAILS_CLOSE = re.compile(r"^\s*</details>\s*$", re.I)
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# `[text](url)` with no bracket or parenthesis inside: what the summary's tables link.
_LINK = re.compile(r"\[(?P<text>(?:\\.|[^\[\]\\])*)\]\((?P<url>[^()\s]*)\)")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

Span = tuple[str, str]  # text and its SGR style ("" for none)


def render_markdown(text: str, *, width: int, color: bool) -> str:
    """*text* (GitHub-flavoured markdown, as the job summary writes it) drawn for a
    terminal *width* columns wide, in colour or not; ends with one newline."""
    out: list[str] = []
    _Markdown(text, max(MIN_WIDTH, width), color, out).run()
    while out and not out[-1]:
        out.pop()
    return "".join(line.rstrip() + "\n" for line in out)


def render_summary_file(path: Path, *, width: int, color: bool) -> str:
    """The step summary file at *path*, drawn as `render_markdown` draws it."""
    return render_markdown(path.read_text("utf-8", errors="replace"), width=width, color=color)


class _Markdown:
    """One pass over the lines: each block is drawn as soon as it is complete."""

    def __init__(self, text: str, width: int, color: bool, out: list[str]) -> None:
        self.lines = text.splitlines()
        self.index = 0
        self.width = width
        self.color = color
        self.out = out
        self.indent = ""

    def run(self) -> None:
        paragraph: list[str] = []
        while self.index < len(self.lines):
            line = self.lines[self.index]
            if not self._block(line):
                paragraph.append(line.strip())
                self.index += 1
                continue
            self._paragraph(paragraph)
            paragraph = []
            self._block(line, draw=True)
        self._paragraph(paragraph)

    def _block(self, line: str, *, draw: bool = False) -> bool:
        """Whether *line* starts a block other than a paragraph; with *draw*, draw it."""
        following = self.lines[self.index + 1] if self.index + 1 < len(self.lines) else ""
        handlers = (
            (not line.strip(), self._blank),
            (bool(_FENCE.match(line)), self._fence),
            (bool(_HEADING.match(line)), self._heading),
            ("|" in line and bool(_DELIMITER_ROW.match(following)), self._table),
            (bool(_LIST_ITEM.match(line)), self._list_item),
            (bool(_DETAILS_OPEN.match(line) or _SUMMARY.match(line)), self._details),
            (bool(_DETAILS_CLOSE.match(line)), self._details_end),
        )
        for applies, handler in handlers:
            if applies:
                if draw:
                    handler()
                return True
        return False

    def _emit(self, line: str = "") -> None:
        if line or (self.out and self.out[-1]):  # never two blank lines in a row
            self.out.append(self.indent + line if line else "")

    def _blank(self) -> None:
        self.index += 1

    def _paragraph(self, lines: list[str]) -> None:
        if lines:
            for row in _wrap(_inline(" ".join(lines)), self.width - len(self.indent)):
                self._emit(_styled(row, self.color))
            self._emit()

    def _fence(self) -> None:
        opening = _FENCE.match(self.lines[self.index])
        assert opening is not None
        marker = opening.group(1)
        closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
        self.index += 1
        while self.index < len(self.lines) and not closing.match(self.lines[self.index]):
            self._emit("  " + inert(self.lines[self.index]))
            self.index += 1
        self.index += 1
        self._emit()

    def _heading(self) -> None:
        match = _HEADING.match(self.lines[self.index])
        assert match is not None
        self.index += 1
        title = _plain(_inline(match.group(2) or ""))
        rule = ("=" if len(match.group(1)) <= 2 else "-") * min(_width(title), self.width)
        self._emit()
        self._emit(paint(title, BOLD, self.color))
        self._emit(rule)
        self._emit()

    def _list_item(self) -> None:
        match = _LIST_ITEM.match(self.lines[self.index])
        assert match is not None
        self.index += 1
        parts = [match.group(3)]
        while self.index < len(self.lines) and self.lines[self.index].startswith("  "):
            if self._block(self.lines[self.index].strip()):
                break
            parts.append(self.lines[self.index].strip())
            self.index += 1
        marker = "-" if match.group(2) in "-+*" else match.group(2)
        rows = _wrap(_inline(" ".join(parts)), self.width - len(self.indent) - len(marker) - 3)
        for number, row in enumerate(rows or [[]]):
            lead = f"  {marker} " if number == 0 else " " * (len(marker) + 3)
            self._emit(lead + _styled(row, self.color))
        if self.index >= len(self.lines) or not _LIST_ITEM.match(self.lines[self.index]):
            self._emit()

    def _details(self) -> None:
        """`<details>` indents what follows; its summary is the label above it."""
        line = self.lines[self.index]
        self.index += 1
        match = _DETAILS_OPEN.match(line)
        if match:
            self.indent += "  "
        else:
            match = _SUMMARY.match(line)
        assert match is not None
        label = inert(html.unescape(_TAG.sub("", match.group(1) or "")))
        if label:
            inner, self.indent = self.indent, self.indent[:-2]
            self._emit(paint(f"> {label}", BOLD, self.color))
            self.indent = inner

    def _details_end(self) -> None:
        self.index += 1
        self.indent = self.indent[:-2]
        self._emit()

    def _table(self) -> None:
        head = _cells(self.lines[self.index])
        aligns = [_alignment(cell) for cell in _cells(self.lines[self.index + 1])]
        self.index += 2
        rows: list[list[str]] = []
        while self.index < len(self.lines) and "|" in self.lines[self.index]:
            rows.append(_cells(self.lines[self.index]))
            self.index += 1
        columns = len(head)
        aligns = (aligns + ["<"] * columns)[:columns]
        table = [[_plain(_inline(cell)) for cell in head]]
        table += [
            [_plain(_inline(cell)) for cell in (row + [""] * columns)[:columns]] for row in rows
        ]
        room = self.width - len(self.indent)
        widths = _fit([max(_width(row[i]) for row in table) for i in range(columns)], room)
        for number, row in enumerate(table):
            cells = [
                _pad(_cut(cell, w), w, a) for cell, w, a in zip(row, widths, aligns, strict=True)
            ]
            line = "  ".join(cells)
            self._emit(paint(line.rstrip(), BOLD, self.color) if number == 0 else line)
            if number == 0:
                self._emit("  ".join("-" * w for w in widths))
        self._emit()


def _cells(line: str) -> list[str]:
    """A table row's cells, split at every pipe not escaped with a backslash."""
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") and not text.endswith("\\|") else text
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", text)]


def _alignment(cell: str) -> str:
    if cell.startswith(":") and cell.endswith(":"):
        return "^"
    return ">" if cell.endswith(":") else "<"


def _fit(widths: list[int], room: int) -> list[int]:
    """Column widths within *room* (two spaces between columns): the widest column
    gives way first, down to a few characters."""
    widths = list(widths)
    while sum(widths) + 2 * (len(widths) - 1) > room and max(widths) > 6:
        widths[widths.index(max(widths))] -= 1
    return widths


def _width(text: str) -> int:
    """Columns *text* takes in a terminal: wide East Asian characters two, combining
    marks none."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def _cut(text: str, width: int) -> str:
    if _width(text) <= width:
        return text
    while text and _width(text) > width - 3:
        text = text[:-1]
    return text + "..."


def _pad(text: str, width: int, align: str) -> str:
    room = width - _width(text)
    if align == ">":
        return " " * room + text
    if align == "^":
        return " " * (room // 2) + text + " " * (room - room // 2)
    return text + " " * room


# -- inline markdown -----------------------------------------------------------------------


@dataclass
class _Piece:
    text: str
    delimiter: str = ""  # "*" or "_" for a run that may open or close emphasis
    opens: bool = False
    closes: bool = False
    styles: list[str] = field(default_factory=list)


def _inline(source: str) -> list[Span]:
    """Inline markdown as styled text: code spans without their backticks, emphasis
    markers removed (bold, italic), backslash escapes and entities resolved, raw HTML
    tags dropped."""
    pieces = list(_scan(source))
    _match_emphasis(pieces)
    spans: list[Span] = []
    for piece in pieces:
        text = inert(piece.text)
        if text:
            spans.append((text, ";".join(piece.styles)))
    return spans


def _scan(source: str) -> Iterator[_Piece]:
    index = 0
    literal: list[str] = []

    def flush() -> Iterator[_Piece]:
        if literal:
            yield _Piece("".join(literal))
            literal.clear()

    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and source[index + 1] in _PUNCTUATION:
            literal.append(source[index + 1])
            index += 2
        elif char == "&" and (entity := _ENTITY.match(source, index)):
            literal.append(html.unescape(entity.group()))
            index = entity.end()
        elif char == "<" and (tag := _TAG.match(source, index)):
            index = tag.end()  # raw HTML: GitHub shows what it encloses, not the tag
        elif char == "[" and (link := _LINK.match(source, index)):
            yield from flush()
            yield from _scan(link.group("text"))  # a link shows its text, as GitHub does
            index = link.end()
        elif char == "`":
            run = len(source) - index - len(source[index:].lstrip("`"))
            end = _closing_backticks(source, index + run, run)
            if end < 0:
                literal.append("`" * run)
                index += run
                continue
            yield from flush()
            code = source[index + run : end]
            if code.startswith(" ") and code.endswith(" ") and code.strip():
                code = code[1:-1]
            yield _Piece(code)
            index = end + run
        elif char in "*_":
            run = len(source) - index - len(source[index:].lstrip(char))
            yield from flush()
            before = source[index - 1] if index else " "
            after = source[index + run] if index + run < len(source) else " "
            yield _delimiter(char * run, before, after)
            index += run
        else:
            literal.append(char)
            index += 1
    yield from flush()


def _closing_backticks(source: str, start: int, run: int) -> int:
    """Where a backtick run of exactly *run* backticks begins after *start*, or -1."""
    for match in re.finditer(r"`+", source[start:]):
        if len(match.group()) == run:
            return start + match.start()
    return -1


def _delimiter(run: str, before: str, after: str) -> _Piece:
    """A `*` or `_` run, with whether it may open or close emphasis (CommonMark's
    flanking rules; `_` never inside a word)."""
    left = not after.isspace() and (
        after not in _PUNCTUATION or before.isspace() or before in _PUNCTUATION
    )
    right = not before.isspace() and (
        before not in _PUNCTUATION or after.isspace() or after in _PUNCTUATION
    )
    if run[0] == "_":
        return _Piece(
            run,
            "_",
            opens=left and (not right or before in _PUNCTUATION),
            closes=right and (not left or after in _PUNCTUATION),
        )
    return _Piece(run, "*", opens=left, closes=right)


def _match_emphasis(pieces: list[_Piece]) -> None:
    """Pair runs of the same marker and length; what they enclose is bold (two) or
    italic (one) and the markers vanish. Unpaired runs stay text."""
    openers: list[int] = []
    for index, piece in enumerate(pieces):
        if not piece.delimiter or len(piece.text) > 2:
            continue
        partner = (
            next(
                (position for position in reversed(openers) if pieces[position].text == piece.text),
                None,
            )
            if piece.closes
            else None
        )
        if partner is not None:
            style = BOLD if len(piece.text) == 2 else ITALIC
            for inner in pieces[partner + 1 : index]:
                inner.styles.append(style)
            pieces[partner].text = piece.text = ""
            openers = [position for position in openers if position < partner]
        elif piece.opens:
            openers.append(index)


def _plain(spans: list[Span]) -> str:
    return "".join(text for text, _ in spans)


def _styled(spans: list[Span], color: bool) -> str:
    return "".join(paint(text, style, color) for text, style in spans)


def _wrap(spans: list[Span], width: int) -> list[list[Span]]:
    """Styled text broken into lines of at most *width* columns, at spaces; a word
    longer than a line keeps a line of its own."""
    words: list[list[Span]] = [[]]
    for text, style in spans:
        for number, part in enumerate(re.split(r"\s+", text)):
            if number:
                words.append([])
            if part:
                words[-1].append((part, style))
    rows: list[list[Span]] = []
    row: list[Span] = []
    used = 0
    for word in (word for word in words if word):
        size = sum(_width(text) for text, _ in word)
        if row and used + 1 + size > width:
            rows.append(row)
            row, used = [], 0
        if row:
            row.append((" ", ""))
            used += 1
        row.extend(word)
        used += size
    if row:
        rows.append(row)
    return rows
