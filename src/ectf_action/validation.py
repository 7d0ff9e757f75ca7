"""Checks of local values, done before any request so that a mistake costs nothing.

Each check raises `InvalidInput(name, problem)` whose message names the value and what is
allowed; `name` is the flag or input the user typed, so the message points at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import InvalidInput
from .models import FLOW_NAMES, is_uuid

_HEX_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


def parse_flow_name(value: str, *, name: str = "flow") -> str:
    text = value.strip()
    if text not in FLOW_NAMES:
        raise InvalidInput(name, f"{value!r} is not a flow; use one of {', '.join(FLOW_NAMES)}")
    return text


def parse_uuid(value: str, *, name: str) -> str:
    text = value.strip()
    if not is_uuid(text):
        raise InvalidInput(
            name, f"{value!r} is not a UUID (expected e.g. 3fa85f64-5717-4562-b3fc-2c963f66afa6)"
        )
    return text.lower()


def parse_commit(value: str, *, name: str = "commit") -> str:
    text = value.strip()
    if not _HEX_COMMIT.match(text):
        raise InvalidInput(name, f"{value!r} is not a commit hash (7 to 64 hex digits)")
    return text.lower()


def parse_git_url(value: str, *, name: str = "git-url") -> str:
    """The server clones over SSH only; catch the common https mistake here."""
    text = value.strip()
    if text.startswith(("http://", "https://")):
        raise InvalidInput(
            name,
            f"{text!r} is an http(s) URL; the testing server clones over SSH: use "
            "ssh://git@<host>/<owner>/<repo>.git and share the repo with the organizers",
        )
    if not text.startswith("ssh://") or "/" not in text[len("ssh://") :]:
        raise InvalidInput(
            name, f"{text!r} is not an ssh:// URL (expected ssh://git@<host>/<owner>/<repo>.git)"
        )
    return text


def parse_mapping(text: str, *, name: str) -> dict[str, Any]:
    """A YAML or JSON mapping (JSON is YAML); empty text is an empty mapping."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInput(name, f"not valid YAML or JSON{where}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput(name, f"must be a mapping (key: value), got a {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def parse_bool(value: str, *, name: str) -> bool:
    """Booleans as the Actions toolkit accepts them, and nothing else."""
    text = value.strip()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput(name, f"{value!r} is not a boolean; use true or false")


def parse_positive_number(
    value: str, *, name: str, allow_zero: bool = False, maximum: float | None = None
) -> float:
    """A finite number above zero (or zero, when allowed), at most *maximum*."""
    try:
        number = float(value.strip())
    except ValueError:
        raise InvalidInput(name, f"{value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidInput(name, f"{value!r} is not a finite number")
    if number < 0 or (number == 0 and not allow_zero):
        raise InvalidInput(name, f"{value!r} must be {'>= 0' if allow_zero else '> 0'}")
    if maximum is not None and number > maximum:
        raise InvalidInput(name, f"{value!r} is more than the largest value allowed, {maximum:g}")
    return number


def parse_choice(value: str, *, name: str, choices: tuple[str, ...]) -> str:
    text = value.strip()
    if text not in choices:
        raise InvalidInput(name, f"{value!r} is not allowed; use one of {', '.join(choices)}")
    return text


def check_upload(path: Path, kind: Literal["png", "pdf"], *, name: str) -> Path:
    """The server accepts only real png/pdf files; check suffix and magic bytes."""
    if path.suffix.lower() != f".{kind}":
        raise InvalidInput(name, f"{str(path)!r} must be a .{kind} file")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_MAGIC[kind]))
    except FileNotFoundError:
        raise InvalidInput(name, f"{str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(name, f"{str(path)!r} is a directory, not a .{kind} file") from None
    except OSError as exc:
        raise InvalidInput(name, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if head != _MAGIC[kind]:
        raise InvalidInput(name, f"{str(path)!r} does not look like a {kind.upper()} file")
    return path
