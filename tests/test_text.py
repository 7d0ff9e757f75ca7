"""Names and durations for people."""

from __future__ import annotations

import pytest

from ectf_action.text import clean, format_elapsed, log_stamp


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
