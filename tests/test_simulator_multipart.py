"""The simulator's multipart/form-data parser: what clients send, and what it refuses."""

from __future__ import annotations

import pytest
import requests

from ectf_action.simulator.multipart import (
    MultipartError,
    boundary_of,
    parse_header_value,
    parse_multipart,
)


def encoded(files: dict[str, object]) -> tuple[bytes, str]:
    prepared = requests.Request("POST", "http://x/", files=files).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, prepared.headers["Content-Type"]


def test_what_requests_sends() -> None:
    body, content_type = encoded(
        {"team_photo": ("us.png", b"\x89PNG\r\n\x1a\n\r\n--tricky\r\n"), "note": (None, "hi")}
    )
    photo, note = parse_multipart(body, boundary_of(content_type))
    assert (photo.name, photo.filename, photo.data) == (
        "team_photo",
        "us.png",
        b"\x89PNG\r\n\x1a\n\r\n--tricky\r\n",
    )
    assert (note.name, note.filename, note.data) == ("note", None, b"hi")


def test_preamble_epilogue_quoting_and_extended_filenames() -> None:
    body = (
        b"preamble to ignore\r\n"
        b"--b0undary \t\r\n"
        b'Content-Disposition: form-data; name="design_doc"; filename="my \\"doc\\".pdf"; '
        b"filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n"
        b"Content-Type: application/pdf\r\n"
        b"\r\n"
        b"%PDF-1.7\r\n"
        b"--b0undary\r\n"
        b"Content-Disposition: form-data; name=empty\r\n"
        b"\r\n"
        b"\r\n"
        b"--b0undary--\r\n"
        b"epilogue"
    )
    doc, empty = parse_multipart(body, boundary_of('multipart/form-data; boundary="b0undary"'))
    assert doc.filename == "résumé.pdf" and doc.content_type == "application/pdf"
    assert doc.data == b"%PDF-1.7"
    assert empty.name == "empty" and empty.data == b""


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary at all",
        b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nnever closed",
        b"--b\r\nContent-Disposition: form-data; name=x\r\nno blank line\r\n--b--",
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
        b"--b\r\nbroken header line\r\n\r\nx\r\n--b--",
        b"--bjunk\r\nContent-Disposition: form-data; name=x\r\n\r\nx\r\n--b--",
        b'--b\r\nContent-Disposition: form-data; name="x\r\n\r\nx\r\n--b--',
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(body, "b")


def test_too_many_parts() -> None:
    part = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n"
    with pytest.raises(MultipartError, match="parts"):
        parse_multipart(part * 65 + b"--b--", "b")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "x" * 71,
        "multipart/mixed; boundary=abc",
    ],
)
def test_content_types_without_a_usable_boundary(content_type: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(content_type)


def test_header_values() -> None:
    assert parse_header_value('Form-Data; Name="a;b"; filename=x.png') == (
        "form-data",
        {"name": "a;b", "filename": "x.png"},
    )
    with pytest.raises(MultipartError):
        parse_header_value("form-data; =x")
