"""Safe extraction of a job's output zip, and reading the tail of its log.

Everything in the zip is hostile: names may climb out of the destination, point at
devices, repeat, lie about sizes or decompress to far more than they declare. The rules:
- nothing is ever written outside `dest`: a name is split into components (backslashes
  count as separators), and absolute paths, drive letters, `..`, control characters and
  over-long components are refused; an existing symlink is never followed;
- only regular files and folders are created, with fixed permissions: 0o755 for folders
  and for files the zip marks executable by their owner, 0o644 for the rest (never
  setuid, setgid, sticky or writable by others);
- bytes are counted as they are really written, in chunks, never trusting the sizes the
  zip declares; when a cap is reached the extraction stops and says which cap; the
  job's `*.log` files come first, so a cap never costs the log;
- a hostile entry is skipped with one short sentence naming it, and the rest go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from .errors import DownloadError
from .text import clean_terminal_text, format_limit, tail_text

CHUNK_SIZE = 1024 * 1024
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_PROBLEMS = 50
MAX_SHOWN_NAME = 80
MAX_JOB_DIR_NAME = 64
MAX_LOG_FILES_SCANNED = 10_000
BINARY_SNIFF_BYTES = 8192

FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755  # when the zip marks the file executable by its owner
DIR_MODE = 0o755

_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL  # with O_CREAT: never follows a symlink, even a dangling one
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

_ENCRYPTED_FLAG = 0x1
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_JOB_DIR_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# Errors the zipfile module raises for damaged or unsupported archives and entries.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    ValueError,  # includes UnicodeDecodeError for names flagged UTF-8 that are not
    NotImplementedError,  # compression methods we cannot read
    RuntimeError,  # encryption zipfile noticed before we did
    struct.error,
)


@dataclass(frozen=True)
class ExtractLimits:
    """Caps on one job's zip: bytes really written, and files and folders created."""

    max_bytes: int
    max_files: int = 10_000

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_files < 0:
            raise ValueError("extraction limits cannot be negative")


@dataclass
class ExtractReport:
    """What was extracted, and one sentence per entry that was not (or per cap hit)."""

    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    stopped: bool = False
    cap: str = ""  # which cap stopped it, for people: "the max-artifact-mb cap (512 MiB)"


class _CapReached(Exception):
    """Unwinds the extraction loop when a cap is hit; *cap* names it for people."""

    def __init__(self, message: str, cap: str) -> None:
        super().__init__(message)
        self.cap = cap


class _EntryRefused(Exception):
    """One entry cannot be extracted; the message completes '<name>: ...'."""


def shown_name(name: str) -> str:
    """A hostile name made safe to print: trimmed, quoted, non-printables escaped."""
    text = name if len(name) <= MAX_SHOWN_NAME else name[: MAX_SHOWN_NAME - 3] + "..."
    return repr(text)


def _entry_parts(name: str) -> list[str]:
    """The path components of a zip entry, or _EntryRefused if any could escape or hurt."""
    if not name:
        raise _EntryRefused("refused: the name is empty")
    text = name.replace("\\", "/")
    if text.startswith("/"):
        raise _EntryRefused("refused: the path is absolute")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _EntryRefused("refused: the path climbs out with '..'")
    for part in parts:
        if _DRIVE.match(part):
            raise _EntryRefused("refused: the path holds a drive letter")
        if _CONTROL.search(part):
            raise _EntryRefused("refused: the name holds control characters")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise _EntryRefused("refused: the name is not valid text") from None
        if size > MAX_COMPONENT_BYTES:
            raise _EntryRefused(f"refused: a name component is over {MAX_COMPONENT_BYTES} bytes")
    if len("/".join(parts).encode("utf-8")) > MAX_PATH_BYTES:
        raise _EntryRefused(f"refused: the path is over {MAX_PATH_BYTES} bytes")
    return parts


def _entry_kind(info: zipfile.ZipInfo) -> str:
    """'dir', 'file', or _EntryRefused for links and special files (from the Unix mode)."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise _EntryRefused("skipped: symbolic links are not extracted")
    if kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _EntryRefused("skipped: it is a device, pipe or socket, not a file")
    if stat.S_ISDIR(mode) or info.filename.endswith(("/", "\\")):
        return "dir"
    return "file"


class _Extraction:
    """One pass over an open archive into a destination folder."""

    def __init__(
        self,
        archive: zipfile.ZipFile,
        root: Path,
        limits: ExtractLimits,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.redact = redact
        self.archive = archive
        self.root = root
        self.limits = limits
        self.report = ExtractReport()
        self.created_entries = 0
        self.seen_names: set[str] = set()
        self.safe_dirs: set[Path] = {root}
        self.written_inodes: set[tuple[int, int]] = set()

    def run(self) -> ExtractReport:
        # The job's logs first: a cap that is hit must never cost the log, which every
        # report shows (sorted() is stable, so the rest keep the zip's order). Problems
        # are told in the zip's order all the same.
        listed = self.archive.infolist()
        order = sorted(range(len(listed)), key=lambda i: not _is_log(listed[i].filename))
        refused: list[tuple[int, str]] = []
        stopped_at = ""
        for done, position in enumerate(order):
            info = listed[position]
            try:
                self._extract(info)
            except _EntryRefused as refusal:
                refused.append((position, f"{shown_name(info.orig_filename)}: {refusal}."))
            except _CapReached as cap:
                self.report.stopped = True
                self.report.cap = cap.cap
                stopped_at = (
                    f"{shown_name(info.orig_filename)}: extraction stopped here, {cap} "
                    f"({len(order) - done} entries not extracted)."
                )
                break
        refused.sort()
        self.report.problems = [sentence for _, sentence in refused[:MAX_PROBLEMS]]
        if stopped_at:
            self.report.problems.append(stopped_at)
        if len(refused) > MAX_PROBLEMS:
            self.report.problems.append(
                f"{len(refused) - MAX_PROBLEMS} more entries were skipped for similar reasons."
            )
        return self.report

    def _extract(self, info: zipfile.ZipInfo) -> None:
        if "\x00" in info.orig_filename:
            raise _EntryRefused("refused: the name holds a NUL byte")
        # A secret in a name is never written as a file name (its bytes are kept whole).
        parts = [self.redact(part) for part in _entry_parts(info.filename)]
        key = "/".join(parts)
        if key in self.seen_names:
            raise _EntryRefused("skipped: a duplicate of an earlier entry, which was kept")
        self.seen_names.add(key)
        kind = _entry_kind(info)
        if kind == "dir":
            self._ensure_dir(parts)
            return
        if not parts:
            raise _EntryRefused("refused: the name is empty")
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise _EntryRefused("skipped: it is encrypted")
        parent = self._ensure_dir(parts[:-1])
        self._write_file(info, parent / parts[-1])

    def _check_room_for_one_more(self) -> None:
        if self.created_entries >= self.limits.max_files:
            cap = f"the cap of {self.limits.max_files} files and folders"
            raise _CapReached(f"{cap} was reached", f"{cap} per job")

    def _ensure_dir(self, parts: list[str]) -> Path:
        """Create the folders of *parts* under root, refusing to pass through a symlink
        or a file that is in the way."""
        current = self.root
        for part in parts:
            current = current / part
            if current in self.safe_dirs:
                continue
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                self._check_room_for_one_more()
                try:
                    os.mkdir(current, DIR_MODE)
                except OSError as exc:
                    raise _EntryRefused(
                        f"not extracted: its folder could not be created ({exc.strerror})"
                    ) from None
                self.created_entries += 1
                self.safe_dirs.add(current)
                continue
            if stat.S_ISLNK(info.st_mode):
                raise _EntryRefused("refused: a symbolic link is already in its path")
            if not stat.S_ISDIR(info.st_mode):
                raise _EntryRefused("skipped: a file is where its folder should be")
            self.safe_dirs.add(current)
        return current

    def _write_file(self, info: zipfile.ZipInfo, target: Path) -> None:
        self._check_room_for_one_more()
        self._make_room(target)
        try:
            source = self.archive.open(info)
        except (*_ZIP_ERRORS, OSError) as exc:
            raise _EntryRefused(f"skipped: it cannot be read ({_why(exc)})") from None
        with source:
            try:
                fd = os.open(target, _OPEN_FLAGS, FILE_MODE)
            except OSError as exc:
                raise _EntryRefused(f"not extracted: {exc.strerror}") from None
            self.created_entries += 1
            out = os.fdopen(fd, "wb")
            try:
                identity = os.fstat(fd)
                written = self._copy(source, out)
                out.close()  # flushes: a full disk may show itself only here
                if _owner_executable(info):
                    os.chmod(target, EXECUTABLE_MODE)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    out.close()
                target.unlink(missing_ok=True)
                self.created_entries -= 1
                if isinstance(exc, OSError):  # this file's trouble, not the others'
                    raise _EntryRefused(
                        f"removed: writing it failed ({exc.strerror or exc})"
                    ) from None
                raise
        self.written_inodes.add((identity.st_dev, identity.st_ino))
        self.report.files += 1
        self.report.bytes += written

    def _make_room(self, target: Path) -> None:
        """Replace a regular file left by an earlier extraction; refuse anything else."""
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            raise _EntryRefused("refused: a symbolic link already exists at its place")
        if stat.S_ISDIR(info.st_mode):
            raise _EntryRefused("skipped: a folder of the same name is in the way")
        if not stat.S_ISREG(info.st_mode):
            raise _EntryRefused("refused: a special file already exists at its place")
        if (info.st_dev, info.st_ino) in self.written_inodes:
            raise _EntryRefused(
                "skipped: its name clashes with an extracted entry on this file system "
                "(names that differ only in case?)"
            )
        try:
            target.unlink()
        except OSError as exc:
            raise _EntryRefused(
                f"not extracted: an older file is in the way ({exc.strerror})"
            ) from None

    def _copy(self, source: IO[bytes], out: IO[bytes]) -> int:
        """Stream in chunks, counting real bytes against the cap before writing them."""
        written = 0
        while True:
            try:
                chunk = source.read(CHUNK_SIZE)
            except (*_ZIP_ERRORS, OSError) as exc:
                if "CRC" in str(exc):
                    raise _EntryRefused("removed: it failed its CRC check (damaged)") from None
                raise _EntryRefused(f"removed: it is damaged ({_why(exc)})") from None
            if not chunk:
                return written
            if self.report.bytes + written + len(chunk) > self.limits.max_bytes:
                cap = format_limit(self.limits.max_bytes)
                raise _CapReached(
                    f"the {cap} cap on extracted bytes was reached; "
                    "raise max-artifact-mb to extract everything",
                    f"the max-artifact-mb cap ({cap})",
                )
            try:
                out.write(chunk)
            except OSError as exc:
                raise _EntryRefused(f"removed: writing it failed ({exc.strerror})") from None
            written += len(chunk)


def _is_log(name: str) -> bool:
    return name.lower().endswith(".log")


def _owner_executable(info: zipfile.ZipInfo) -> bool:
    """The entry's Unix mode lets its owner run it (a script, a tool the build made).
    Only that bit is kept: never setuid, setgid, sticky or writable by others."""
    return info.create_system == 3 and bool((info.external_attr >> 16) & stat.S_IXUSR)


def _why(exc: BaseException) -> str:
    """The kind of failure, without echoing the (hostile) details zipfile quotes."""
    return type(exc).__name__


def extract_zip(
    zip_path: Path, dest: Path, limits: ExtractLimits, *, redact: Callable[[str], str] = str
) -> ExtractReport:
    """Extract *zip_path* into *dest* (created if missing) within *limits*.

    Never raises for a hostile entry: each is skipped and named in `problems`. Raises
    DownloadError only when the file is not a readable zip at all.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (*_ZIP_ERRORS, OSError) as exc:
        raise DownloadError(
            f"{zip_path.name} is not a readable zip archive ({_why(exc)}); "
            "download the job's output again."
        ) from None
    with archive:
        try:
            dest.mkdir(parents=True, exist_ok=True)
            root = dest.resolve(strict=True)
        except OSError as exc:
            return ExtractReport(
                problems=[f"The folder {dest} could not be created: {exc.strerror}."],
                stopped=True,
            )
        return _Extraction(archive, root, limits, redact).run()


def job_dir_name(job_name: str) -> str:
    """One safe, stable path component for a job's artifacts.

    A plain name (letters, digits, `.`, `_`, `-`) is kept as it is; any other gets the
    unsafe characters replaced and a short hash of the original appended, so that two
    names that clean up alike still get different folders.
    """
    cleaned = _JOB_DIR_UNSAFE.sub("_", job_name).lstrip(".")[:MAX_JOB_DIR_NAME]
    if cleaned and cleaned == job_name:
        return cleaned
    digest = hashlib.sha256(job_name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned or 'job'}-{digest}"


# -- log tails ---------------------------------------------------------------------------


def list_files(
    root: Path,
    *,
    limit: int,
    links: bool = False,
    skip_folder: Callable[[os.DirEntry[str]], bool] | None = None,
) -> list[tuple[str, str]]:
    """(relative posix path, path) of the regular files under *root* (and the links,
    with *links*, for the caller to check), sorted, at most *limit*. Folders are never
    entered through a link, nor those *skip_folder* refuses. Directory entries say what
    they are, so no file is stat'ed: a job can leave thousands."""
    found: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = [("", str(root))]
    while pending and len(found) < limit:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if skip_folder is None or not skip_folder(entry):
                            pending.append((f"{prefix}{entry.name}/", entry.path))
                    elif entry.is_file(follow_symlinks=False) or (links and entry.is_symlink()):
                        found.append((prefix + entry.name, entry.path))
        except OSError:
            continue
    found.sort()
    return found[:limit]


def _regular_files(job_dir: Path) -> list[tuple[str, str]]:
    return list_files(job_dir, limit=MAX_LOG_FILES_SCANNED)


def open_job_file(path: str) -> BinaryIO:
    """A file of a job's artifacts, opened for reading without following a link (one
    could have replaced the file since it was listed)."""
    return os.fdopen(os.open(path, _READ_FLAGS), "rb")


def _read_head(path: str, size: int) -> bytes:
    with open_job_file(path) as handle:
        return handle.read(size)


def _read_end(path: str, max_bytes: int) -> str:
    """The last *max_bytes* of a file, from the start of a line when it was cut."""
    with open_job_file(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        start = max(0, size - max_bytes)
        handle.seek(start)
        data = handle.read(max_bytes)
    if start > 0 and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", "replace")


def _text_files(files: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """The files that look like text (no NUL byte in their first bytes), sniffed one at
    a time as the caller asks for them."""
    for relative, path in files:
        try:
            head = _read_head(path, BINARY_SNIFF_BYTES)
        except OSError:
            continue
        if head and b"\x00" not in head:
            yield relative, path


def log_files(job_dir: Path, *, last_first: bool = False) -> Iterator[tuple[str, str]]:
    """(relative posix path, path) of the files that make a job's log, in name order or
    *last_first*: its `*.log` files, else its other text files. Every report reads the
    job's log through this one choice. Text files are sniffed lazily: sniffing every
    file of a job that left thousands would cost more than the rest of the report."""
    if not job_dir.is_dir():
        return iter(())
    files = _regular_files(job_dir)
    if last_first:
        files.reverse()
    logs = [entry for entry in files if _is_log(entry[0])]
    return iter(logs) if logs else _text_files(files)


def read_log_tail(job_dir: Path, *, max_lines: int = 40, max_bytes: int = 8192) -> str:
    """The tail of a job's log (see `log_files`), the files concatenated in name order.
    Only the end of each file is read. When several files are shown, each starts with a
    `==> name <==` line, as `tail` does. Returns "" when there is none."""
    if max_lines <= 0 or max_bytes <= 0:
        return ""
    chosen = log_files(job_dir, last_first=True)
    last_two = list(itertools.islice(chosen, 2))
    labelled = len(last_two) > 1
    pieces: list[str] = []
    used = 0
    for relative, path in itertools.chain(last_two, chosen):
        if used >= max_bytes:
            break
        try:
            text = clean_terminal_text(_read_end(path, max_bytes - used)).rstrip("\n")
        except OSError:
            continue
        if labelled:
            text = f"==> {clean_terminal_text(relative)} <==\n{text}"
        pieces.append(text)
        used += len(text.encode("utf-8")) + 1
    return tail_text("\n".join(reversed(pieces)), max_lines, max_bytes)
