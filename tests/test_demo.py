"""`ectf-action demo`, a newcomer's first command: the step as GitHub shows it (golden
files of a succeeding and a failing commit), `--raw` with the protocol as the runner
reads it (golden), colour on a terminal only and never with `NO_COLOR`, and the other
flows.

Golden files (tests/golden/demo/) are normalised for what changes from run to run:
ids, times, ports, temporary paths, tokens. Regenerate them, when the action's output
changes on purpose, with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_demo.py`.
"""

from __future__ import annotations

import argparse
import io
import os
import pty
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from conftest import FAST_SCALE, UUID_RE, assert_golden
from ectf_action.demo import FAILING_COMMIT, add_demo_arguments, demo_command

GOLDEN = Path(__file__).parent / "golden" / "demo"
VARYING = (
    (re.compile(r"[^\s(]*ectf-demo-[^/\s;]+"), "<root>"),
    (UUID_RE, "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z"), "<timestamp>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<stop-token>"),
    (re.compile(r"demo-[0-9a-f]{24}"), "<token>"),
    (re.compile(r"\[[ \d]\dm\d\ds\]"), "[<stamp>]"),
    # Whole seconds, as wide as the usual one digit so that columns stay aligned; the
    # `(0.38s)` of a test log does not change.
    (re.compile(r"(?<![\d.])\d+s\b"), "Ns"),
)


def normalise(text: str, root: Path | None = None) -> str:
    """*text* without what varies. Between the live log's first line and its verdict,
    which status changes a poll catches, and when each download ends, depend on timing:
    those lines become one."""
    if root is not None:
        text = text.replace(str(root), "<root>")
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    lines = text.split("\n")
    live = [number for number, line in enumerate(lines) if line.startswith("[<stamp>] ")]
    if len(live) > 2:
        middle = "[<stamp>] (the jobs' status changes and downloads, as polled)"
        lines[live[0] + 1 : live[-1]] = [middle]
    return "\n".join(lines)


def demo_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    return parser.parse_args(["--time-scale", str(FAST_SCALE), *argv])


def run_demo(*argv: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    stdout = io.StringIO()
    code = demo_command(demo_args(*argv), stdout=stdout, stderr=io.StringIO(), env=env or {})
    return code, stdout.getvalue()


def run_on_a_terminal(*argv: str, env: Mapping[str, str]) -> tuple[int, str]:
    """The demo with a pseudo-terminal as its stdout, and everything the terminal got."""
    master, slave = pty.openpty()
    received: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as terminal:
            code = demo_command(demo_args(*argv), stdout=terminal, stderr=io.StringIO(), env=env)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return code, b"".join(received).decode("utf-8")


# -- what a newcomer sees ------------------------------------------------------------------


def test_the_demo_shows_the_step_as_github_does(tmp_path: Path) -> None:
    code, text = run_demo("--workspace", str(tmp_path))
    assert code == 0, text
    assert_golden(GOLDEN / "success.txt", normalise(text, tmp_path))
    assert "\x1b" not in text  # not a terminal: no colour
    assert not re.search(r"demo-[0-9a-f]{24}", text)  # the token: masked, never shown
    for marker in ("::add-mask::", "::group::", "::stop-commands::", "\\_", "| ---", "**"):
        assert marker not in text
    assert "> eCTF job build: succeeded" in text
    assert "Job              Status     Time observed" in text  # the summary's table, aligned
    assert (tmp_path / "workspace/ectf-junit.xml").exists()
    assert (tmp_path / "workspace/ectf-artifacts/build/build.log").exists()


def test_the_failing_demo_lists_its_annotations_and_removes_its_workspace() -> None:
    code, text = run_demo("--commit", FAILING_COMMIT, "--no-keep")
    assert code == 1
    assert_golden(GOLDEN / "failed.txt", normalise(text))
    # the verdict first, the failed job, then the build's errors on the demo's own sources
    assert "\nAnnotations: 4 errors and 1 warning\n  Error: eCTF flow failed: " in text
    assert "\n  Error: eCTF job build failed: firmware/inc/uart.h:14:43: error: " in text
    assert "\n  Error: firmware/src/uart.c#L290 - eCTF build: implicit declaration" in text
    assert "Result: failed (the step's exit code: 1)" in text and "failed-jobs: build" in text
    removed = next(line for line in text.splitlines() if line.startswith("(removed "))
    assert not Path(removed[len("(removed ") :].split(";")[0]).exists()


def test_raw_prints_the_protocol_the_runner_reads(tmp_path: Path) -> None:
    code, text = run_demo("--workspace", str(tmp_path), "--raw")
    assert code == 0, text
    assert_golden(GOLDEN / "raw-success.txt", normalise(text, tmp_path))
    lines = text.splitlines()
    assert lines[4].startswith("::add-mask::demo-")
    assert "::group::eCTF job build: succeeded" in lines
    assert "## eCTF test flow: succeeded" in lines  # the summary's markdown source


def test_expand_shows_every_line_of_each_group(tmp_path: Path) -> None:
    code, text = run_demo("--workspace", str(tmp_path), "--flow", "clone", "--expand")
    assert code == 0, text
    assert "hidden" not in text
    assert "  " + "Cloning into '/design'..." in normalise(text).replace("<timestamp> ", "")


# -- colour --------------------------------------------------------------------------------


def test_a_terminal_gets_colour(tmp_path: Path) -> None:
    code, text = run_on_a_terminal("--workspace", str(tmp_path), "--flow", "clone", env={})
    assert code == 0, text
    assert "\x1b[1m> eCTF job pull-repo: succeeded\x1b[0m" in text
    assert "\x1b[1meCTF clone flow: succeeded\x1b[0m" in text  # the summary's heading


def test_no_color_turns_colour_off_even_on_a_terminal(tmp_path: Path) -> None:
    code, text = run_on_a_terminal(
        "--workspace", str(tmp_path), "--flow", "clone", env={"NO_COLOR": "1"}
    )
    assert code == 0, text
    assert "> eCTF job pull-repo: succeeded" in text
    assert "\x1b" not in text


# -- the other flows -----------------------------------------------------------------------


def test_the_submit_demo_is_approved_and_completes(tmp_path: Path) -> None:
    code, text = run_demo("--flow", "submit", "--workspace", str(tmp_path))
    assert code == 0, text
    assert "jobs[] organizer_approval: succeeded" in text
