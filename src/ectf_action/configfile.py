"""`~/.ectf-config`, written as the organizers' `ectf config` writes it, so that both
tools share one setup; and what `config show` reports about the settings in effect.

The organizers' client writes `yaml.safe_dump({"token": ..., "git_url": ..., "api_url":
...})` (PyYAML's defaults: keys sorted, block style, quoting only where YAML needs it)
and reads back all three keys, so all three are always written, the same way. Unlike
it, the file is created with mode 0600 from the first byte, and replaced atomically: the
token is never readable by others, and a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE_NAME, Config

FILE_MODE = 0o600
SHOWN_TOKEN_CHARACTERS = 4
MIN_TOKEN_TO_SHOW_ANY = 16  # below this, 4 characters would be too large a share


@dataclass(frozen=True)
class FileState:
    path: Path
    exists: bool
    mode: int | None = None  # permission bits, when it exists

    @property
    def shared(self) -> bool:
        """Readable or writable by users other than its owner."""
        return self.mode is not None and bool(self.mode & 0o077)


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE_NAME


def render_config(token: str, git_url: str, api_url: str) -> str:
    """The file's text, byte for byte what the organizers' client writes for these values."""
    import yaml

    return yaml.safe_dump({"token": token, "git_url": git_url, "api_url": api_url})


def write_config(path: Path, text: str) -> None:
    """Replace *path* with *text*: a new file created 0600 (never wider, even for a
    moment) beside it, synced, then renamed over it."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def file_state(path: Path) -> FileState:
    try:
        info = path.stat()
    except OSError:
        return FileState(path, exists=False)
    return FileState(path, exists=True, mode=stat.S_IMODE(info.st_mode))


def mask_token(token: str) -> str:
    """Enough to tell two tokens apart, never enough to use: `...c0de` (its last 4
    characters) for a token of 16 characters or more, `***` for a shorter one."""
    if not token:
        return ""
    if len(token) < MIN_TOKEN_TO_SHOW_ANY:
        return "***"
    return "..." + token[-SHOWN_TOKEN_CHARACTERS:]


def describe(config: Config, state: FileState) -> dict[str, Any]:
    """The data of `config show`: each value (the token masked) and where it came from
    (`--token`, `ECTF_TOKEN`, `input token`, `~/.ectf-config`, `default`), and the file."""
    shown = {
        "token": mask_token(config.token),
        "git_url": config.git_url or "",
        "api_url": config.api_url,
    }
    return {
        "values": {
            key: {"value": value or None, "source": config.sources.get(key, "not set")}
            for key, value in shown.items()
        },
        "config_file": {
            "path": str(state.path),
            "exists": state.exists,
            "mode": None if state.mode is None else f"{state.mode:04o}",
            "shared": state.shared,
        },
    }
