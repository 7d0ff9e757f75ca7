"""A small, strict `multipart/form-data` parser (RFC 7578) for the flag uploads.

The standard library's `cgi` module is gone from Python 3.13, and `email`'s parser is
lenient in ways that hide malformed bodies. This parser works on a body already read
and size-capped by the server, and raises `MultipartError` for anything it cannot
parse unambiguously, which the server answers with 400 like the real one.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

MAX_PARTS: Final = 64
MAX_HEADER_BYTES: Final = 16 * 1024
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split `type/subtype; key=value; key="quoted"` into the lowercased value and params.

    Parameter names are lowercased; quoted values lose their quotes and backslash
    escapes; `key*=charset''percent-encoded` (RFC 5987) is decoded and wins over `key`.
    """
    pieces = _split_params(value)
    main = pieces[0].strip().lower() if pieces else ""
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for piece in pieces[1:]:
        if not piece.strip():
            continue
        key, sep, raw = piece.partition("=")
        key = key.strip().lower()
        if not sep or not _TOKEN_RE.fullmatch(key.rstrip("*")):
            raise MultipartError(f"malformed header parameter {piece.strip()!r}")
        raw = raw.strip()
        if key.endswith("*"):
            extended[key[:-1]] = _decode_extended(raw)
        else:
            params[key] = _unquote(raw)
    params.update(extended)
    return main, params


def _split_params(value: str) -> list[str]:
    """Split on `;` outside quoted strings."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == ";" and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise MultipartError("unterminated quoted string in a header")
    pieces.append("".join(current))
    return pieces


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        inner = raw[1:-1]
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return raw


def _decode_extended(raw: str) -> str:
    charset, sep, rest = raw.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not sep or not sep2:
        raise MultipartError(f"malformed extended parameter {raw!r}")
    try:
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError) as exc:
        raise MultipartError(f"cannot decode extended parameter {raw!r}") from exc


def boundary_of(content_type: str) -> str:
    """The boundary of a `multipart/form-data` Content-Type; MultipartError otherwise."""
    media, params = parse_header_value(content_type)
    if media != "multipart/form-data":
        raise MultipartError(f"not multipart/form-data: {media or 'no content type'}")
    boundary = params.get("boundary", "")
    if not _BOUNDARY_RE.match(boundary):
        raise MultipartError("missing or invalid multipart boundary")
    return boundary


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """The parts of *body*, in order. Every part must be a `form-data` part with a name."""
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        first = body.find(b"\r\n" + delimiter)
        if first < 0:
            raise MultipartError("no multipart boundary found in the body")
        position = first + 2 + len(delimiter)
    parts: list[Part] = []
    while True:
        if body[position : position + 2] == b"--":
            return parts  # the close delimiter; anything after it is epilogue
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed multipart delimiter line")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise MultipartError("multipart body ends without a closing boundary")
        parts.append(_parse_part(body[start:end]))
        if len(parts) > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        position = end + 2 + len(delimiter)


def _parse_part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        head, data = b"", raw[2:]
    else:
        split = raw.find(b"\r\n\r\n")
        if split < 0:
            raise MultipartError("a part has no blank line after its headers")
        head, data = raw[:split], raw[split + 4 :]
    if len(head) > MAX_HEADER_BYTES:
        raise MultipartError("a part's headers are too long")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n") if head else []:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name.decode("latin-1")):
            raise MultipartError("malformed part header")
        headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace").strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("a part has no Content-Disposition header")
    kind, params = parse_header_value(disposition)
    if kind != "form-data" or "name" not in params:
        raise MultipartError("a part is not form-data with a name")
    return Part(
        name=params["name"],
        filename=params.get("filename"),
        content_type=headers.get("content-type"),
        data=data,
    )
