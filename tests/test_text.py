"""Names and durations for people."""

from __future__ import annotations

import pytest

from ectf_action.text import (
    and_list,
    clean,
    clean_line,
    format_elapsed,
    log_stamp,
    one_line,
    strip_timestamp,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "[ 0m00s]"),
        (65, "[ 1m05s]"),
        (599.9, "[ 9m59s]"),
        (3600, "[1h00m00s]"),
        (5025, "[1h23m45s]"),
        (-3, "[ 0m00s]"),
    ],
)
def test_log_stamp_has_one_width_below_100_minutes(seconds: float, text: str) -> None:
    assert log_stamp(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (14.4, "14s"), (95, "1m35s"), (3600, "1h00m00s")]
)
def test_format_elapsed_is_compact(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_clean_makes_server_text_one_harmless_line() -> None:
    assert clean("build\n\x1b[2J::error::x") == "build\\n\\x1b[2J::error::x"
    assert clean("a" * 50, 10) == "aaaaaaa..."


@pytest.mark.parametrize(
    ("items", "text"),
    [
        ([], ""),
        (["a"], "a"),
        (["a", "b"], "a and b"),
        (["1 error", "2 notices", "x"], "1 error, 2 notices and x"),
    ],
)
def test_and_list_says_a_few_items_in_a_sentence(items: list[str], text: str) -> None:
    assert and_list(items) == text


def test_one_line_joins_a_log_excerpt_and_clean_line_also_escapes_and_cuts() -> None:
    text = "\x1b[31merror:\x1b[0m  bad\r\nthing\u200b\there"
    assert one_line(text) == "error: bad thing\u200b here"
    assert clean_line(text, 100) == "error: bad thing\\u200b here"
    assert clean_line("word " * 20, 12) == "word word..."


@pytest.mark.parametrize(
    "line",
    [
        "2026-01-02T03:04:05.678Z make: Entering directory '/d'",
        "2026-01-02T03:04:05.1234567Z make: Entering directory '/d'",
        "2026-01-02T03:04:05+01:00 make: Entering directory '/d'",
        "2026-01-02 03:04:05 make: Entering directory '/d'",
        "2026-01-02 03:04:05,123 make: Entering directory '/d'",
        "[2026-01-02 03:04:05] make: Entering directory '/d'",
        "[12:34:56] make: Entering directory '/d'",
        "[12:34:56.789] make: Entering directory '/d'",
        "#12 3.456 make: Entering directory '/d'",
        "2026-01-02T03:04:05.678Z #12 3.456 make: Entering directory '/d'",
        "make: Entering directory '/d'",
    ],
)
def test_strip_timestamp_removes_the_common_prefixes(line: str) -> None:
    assert strip_timestamp(line) == "make: Entering directory '/d'"


def test_strip_timestamp_leaves_a_line_that_only_looks_like_one() -> None:
    assert strip_timestamp("12:34:56 is a time") == "12:34:56 is a time"
    assert strip_timestamp("src/a.c:12:5: error: x") == "src/a.c:12:5: error: x"
