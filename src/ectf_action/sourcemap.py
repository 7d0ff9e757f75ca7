"""Where a path in the server's log is in the workspace.

The server builds its own checkout (`/design/firmware/src/uart.c`), from a make
directory (`src/uart.c` in `/design/firmware`), or prints paths relative to the package
(`src/main.rs`). The workspace is the team's checkout of the same repository, so the
file is the one whose path shares the longest suffix with the server's path (make's
directory joined first, so that it breaks ties between two `src/uart.c`). A path that
two files match equally, or none, is not located.

The workspace's files come from `git ls-files` when it is a git checkout (run through an
injected runner, with a timeout), else from a bounded walk that skips `.git` and the
folders given (the artifacts). The answer is always a relative posix path inside the
workspace: never `..`, never absolute, never through a link that leads outside it.
"""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .artifacts import list_files

MAX_FILES: Final = 100_000
MAX_PATH_CHARS: Final = 4096
MAX_CACHED: Final = 4096
GIT_TIMEOUT: Final = 10.0

# Runs `git <args>` in a folder and returns its stdout; raises OSError or
# subprocess.SubprocessError (a timeout included) when git cannot answer.
GitRunner = Callable[[Sequence[str], Path], bytes]


def run_git(args: Sequence[str], cwd: Path) -> bytes:
    """git as installed, bounded by GIT_TIMEOUT. The workspace may belong to another
    user (a container's checkout), which git refuses unless told it is safe."""
    command = [
        "git",
        "-c",
        f"safe.directory={cwd}",
        "-c",
        "core.fsmonitor=false",
        *args,
    ]
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        timeout=GIT_TIMEOUT,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout


def _listed_by_git(workspace: Path, git: GitRunner, limit: int) -> list[str] | None:
    try:
        out = git(["ls-files", "-z", "--recurse-submodules"], workspace)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [name for name in out.decode("utf-8", "surrogateescape").split("\0") if name]
    return names[:limit]


def _walked(workspace: Path, excluded: set[str], limit: int) -> list[str]:
    """The files and links under *workspace*, relative; `.git` and the *excluded*
    folders (real paths) are skipped."""

    def skip(entry: os.DirEntry[str]) -> bool:
        return entry.name == ".git" or entry.path in excluded

    return [name for name, _ in list_files(workspace, limit=limit, links=True, skip_folder=skip)]


@dataclass
class SourceIndex:
    """The workspace's files by name, to look server paths up in."""

    workspace: Path
    by_name: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    files: int = 0
    truncated: bool = False  # more files than were indexed
    _cache: dict[tuple[str, str | None], str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        workspace: Path,
        *,
        exclude: Sequence[Path] = (),
        git: GitRunner | None = run_git,
        max_files: int = MAX_FILES,
    ) -> SourceIndex:
        """Index *workspace* (nothing when it is not a folder: then nothing is found)."""
        try:
            root = workspace.resolve(strict=True)
        except OSError:
            return cls(workspace)
        if not root.is_dir():
            return cls(workspace)
        excluded = {os.path.realpath(path) for path in exclude}
        names = None
        if git is not None and (root / ".git").exists():
            names = _listed_by_git(root, git, max_files + 1)
        if names is None:
            names = _walked(root, excluded, max_files + 1)
        else:
            prefixes = _relative_prefixes(root, excluded)
            names = [name for name in names if not name.startswith(prefixes)]
        index = cls(root, truncated=len(names) > max_files)
        for name in names[:max_files]:
            parts = tuple(part for part in name.split("/") if part)
            if parts and ".." not in parts and ".git" not in parts:
                index.by_name.setdefault(parts[-1], []).append(parts)
                index.files += 1
        return index

    def locate(self, path: str, directory: str | None = None) -> str | None:
        """The workspace file that *path* (as logged; relative ones to make's
        *directory*) names: its relative posix path, or None when no file or more than
        one matches best, or the match is not a regular file inside the workspace."""
        key = (path, directory)
        if key in self._cache:
            return self._cache[key]
        found = self._locate(path, directory)
        if len(self._cache) < MAX_CACHED:
            self._cache[key] = found
        return found

    def _locate(self, path: str, directory: str | None) -> str | None:
        wanted = _server_parts(path, directory)
        if not wanted:
            return None
        best: list[tuple[str, ...]] = []
        best_length = 0
        for candidate in self.by_name.get(wanted[-1], ()):
            length = _common_suffix(candidate, wanted)
            if length > best_length:
                best, best_length = [candidate], length
            elif length == best_length:
                best.append(candidate)
        if len(best) > 1:
            # The server's checkout root is the workspace: a file matched to its top
            # beats one that only shares the same tail deeper down.
            whole = [candidate for candidate in best if len(candidate) == best_length]
            best = whole if len(whole) == 1 else []
        if len(best) != 1:
            return None
        relative = "/".join(best[0])
        return relative if self._is_safe_file(relative) else None

    def _is_safe_file(self, relative: str) -> bool:
        """A regular file whose real path is inside the workspace (a link may point
        anywhere; only one that stays inside is followed)."""
        target = self.workspace / relative
        try:
            real = Path(os.path.realpath(target))
            info = os.stat(real)
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(info.st_mode) and real.is_relative_to(self.workspace)


def _relative_prefixes(root: Path, folders: set[str]) -> tuple[str, ...]:
    """`folder/` for each of *folders* inside *root*, relative to it (posix)."""
    prefixes = []
    for folder in folders:
        path = Path(folder)
        if path.is_relative_to(root) and path != root:
            prefixes.append(path.relative_to(root).as_posix() + "/")
    return tuple(prefixes)


def _server_parts(path: str, directory: str | None) -> tuple[str, ...]:
    """The server's path as components, joined to make's directory when relative, `.`
    and `..` resolved by text (the server's file system is not ours to look at); a `..`
    above the start is dropped, as it cannot match anything of ours."""
    if not path or len(path) > MAX_PATH_CHARS or "\0" in path:
        return ()
    if directory and (len(directory) > MAX_PATH_CHARS or "\0" in directory):
        directory = None
    text = _posix(path)
    if directory and not text.startswith("/"):
        text = posixpath.join(_posix(directory), text)
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _posix(path: str) -> str:
    """Backslashes as separators, and no drive letter (a Windows build's paths)."""
    text = path.replace("\\", "/")
    if len(text) >= 2 and text[1] == ":" and text[0].isalpha():
        text = text[2:]
    return text


def _common_suffix(candidate: tuple[str, ...], wanted: tuple[str, ...]) -> int:
    length = 0
    for ours, theirs in zip(reversed(candidate), reversed(wanted), strict=False):
        if ours != theirs:
            break
        length += 1
    return length
