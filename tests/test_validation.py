"""Local values are checked before any request, with messages that name the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ectf_action.errors import EXIT_INVALID_INPUT, InvalidInput
from ectf_action.validation import (
    check_upload,
    parse_bool,
    parse_commit,
    parse_flow_name,
    parse_git_url,
    parse_mapping,
    parse_positive_number,
    parse_uuid,
)


def test_flow_names() -> None:
    assert parse_flow_name(" submit ") == "submit"
    with pytest.raises(InvalidInput, match="flow: 'tests' is not a flow; use one of clone"):
        parse_flow_name("tests")


def test_uuid_shape() -> None:
    assert parse_uuid("3FA85F64-5717-4562-B3FC-2C963F66AFA6", name="FLOW_ID").islower()
    with pytest.raises(InvalidInput, match="FLOW_ID: '42' is not a UUID"):
        parse_uuid("42", name="FLOW_ID")


def test_commit_must_be_hex() -> None:
    assert parse_commit("ABCDEF1") == "abcdef1"
    for bad in ("main", "abc", "g" * 40, "HEAD~1"):
        with pytest.raises(InvalidInput, match="commit"):
            parse_commit(bad)


def test_git_url_must_be_ssh() -> None:
    assert parse_git_url("ssh://git@github.com/t/d.git") == "ssh://git@github.com/t/d.git"
    with pytest.raises(InvalidInput, match="clones over SSH"):
        parse_git_url("https://github.com/t/d.git")
    with pytest.raises(InvalidInput, match="not an ssh:// URL"):
        parse_git_url("git@github.com:t/d.git")


def test_mapping_accepts_yaml_and_json() -> None:
    assert parse_mapping('{"a": 1}', name="params") == {"a": 1}
    assert parse_mapping("a: 1\nb: x\n", name="params") == {"a": 1, "b": "x"}
    assert parse_mapping("  ", name="params") == {}
    with pytest.raises(InvalidInput, match="params: not valid YAML or JSON at line 1"):
        parse_mapping('{"a": ', name="params")
    with pytest.raises(InvalidInput, match="must be a mapping"):
        parse_mapping("- 1\n- 2\n", name="params")


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(InvalidInput):
        parse_mapping("a: !!python/object/apply:os.system ['true']", name="params")


def test_booleans_like_the_toolkit() -> None:
    assert parse_bool("TRUE", name="job-summary") is True
    assert parse_bool("false", name="job-summary") is False
    with pytest.raises(InvalidInput, match="job-summary: 'yes' is not a boolean"):
        parse_bool("yes", name="job-summary")


def test_numbers() -> None:
    assert parse_positive_number("1.5", name="timeout-minutes") == 1.5
    for bad in ("-1", "0", "soon", "nan", "inf"):
        with pytest.raises(InvalidInput, match="timeout-minutes"):
            parse_positive_number(bad, name="timeout-minutes")


def test_uploads_are_checked_by_suffix_and_magic(tmp_path: Path) -> None:
    png = tmp_path / "team.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nrest")
    assert check_upload(png, "png", name="FILE") == png
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a")
    with pytest.raises(InvalidInput, match="does not look like a PNG"):
        check_upload(fake, "png", name="FILE")
    with pytest.raises(InvalidInput, match=r"must be a \.pdf file"):
        check_upload(png, "pdf", name="FILE")
    with pytest.raises(InvalidInput, match="does not exist"):
        check_upload(tmp_path / "missing.pdf", "pdf", name="FILE")


def test_invalid_input_exits_2() -> None:
    assert InvalidInput("x", "y").exit_code == EXIT_INVALID_INPUT == 2
