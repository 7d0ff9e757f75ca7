"""The job summary: golden files, hostile names and logs, and the byte budget.

The run results are the JUnit tests' cases; regenerate the golden files with
`UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_junit.py tests/test_summary.py`.
"""

from __future__ import annotations

import re

import pytest

from ectf_action.models import JobStatus
from ectf_action.results import RunResult, RunStatus
from ectf_action.summary import (
    DEFAULT_BUDGET,
    MIN_BUDGET,
    md_text,
    render_summary,
)
from ectf_action.text import format_elapsed, format_size
from test_junit import (
    CASES,
    GOLDEN,
    HOSTILE_LOG,
    assert_golden,
    failed_then_canceled,
    hostile,
    outcome,
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    assert_golden(GOLDEN / "summary" / f"{case}.md", render_summary(CASES[case]()))


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ")]


# -- content ----------------------------------------------------------------------------


def test_header_rows_and_failed_log() -> None:
    markdown = render_summary(failed_then_canceled())
    assert markdown.startswith("## eCTF test flow: failed\n")
    assert "- Flow id: `3fa85f64-5717-4562-b3fc-2c963f66afa6`" in markdown
    assert "- Commit: `0123456789abcdef0123456789abcdef01234567`" in markdown
    rows = table_rows(markdown)
    assert rows[2] == "| pull-repo | succeeded | 10s | 1 file, 300 B | `ectf-artifacts/pull-repo` |"
    assert rows[3] == "| build | failed | 1m01s | 2 files, 4.0 KiB | `ectf-artifacts/build` |"
    assert rows[4] == "| test | canceled | 0s | none |  |"
    assert markdown.count("<details>") == 1
    assert "<details><summary>build: the last lines of its log</summary>" in markdown
    assert "make: *** [Makefile:12: build] Error 1\n```\n" in markdown
    assert "trimmed" not in markdown


def test_without_jobs_or_flow_id() -> None:
    result = RunResult(status=RunStatus.SKIPPED, flow_name="test", message="No token.")
    markdown = render_summary(result)
    assert "- Flow id: none (not queued)" in markdown
    assert "No job was reported." in markdown
    assert "| Job |" not in markdown


def test_warnings_from_the_run_and_the_jobs() -> None:
    result = failed_then_canceled()
    result.warnings.append("run warning")
    result.jobs[0].warnings.append("artifacts not downloaded: timeout")
    markdown = render_summary(result)
    assert "### Warnings\n\n- run warning\n- pull-repo: artifacts not downloaded: timeout\n" in (
        markdown
    )


def test_a_failed_job_without_a_log_says_so() -> None:
    result = failed_then_canceled()
    result.jobs[1].log_tail = ""
    assert "No log was found in the job's artifacts." in render_summary(result)


# -- hostile text -----------------------------------------------------------------------


def test_hostile_names_cannot_break_the_table_or_inject_html() -> None:
    markdown = render_summary(hostile())
    for row in table_rows(markdown):
        assert row.count("|") == 6, row
    outside_code = re.sub(r"(`{4,})text\n.*?\n\1\n", "", markdown, flags=re.S)
    assert "<script" not in outside_code
    assert "<img" not in outside_code
    assert "<b>" not in outside_code and "<marquee>" not in outside_code
    assert outside_code.count("<details>") == outside_code.count("</details>") == 1
    assert "\x1b" not in markdown and "\x00" not in markdown
    markdown.encode("utf-8")  # no lone surrogate survived


def test_log_fence_is_longer_than_any_backtick_run() -> None:
    markdown = render_summary(hostile())
    longest_inside = max(len(run) for run in re.findall(r"`+", HOSTILE_LOG))
    fence = re.search(r"^(`+)text$", markdown, re.M)
    assert fence is not None
    assert len(fence.group(1)) == longest_inside + 1
    closing = markdown.index("\n" + fence.group(1) + "\n", fence.end())
    block = markdown[fence.end() : closing]
    assert "</details><img src=x onerror=alert(1)>" in block  # literal, inside code
    assert all(len(run) < len(fence.group(1)) for run in re.findall(r"`+", block))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a|b", "a&#124;b"),
        ("<b>&</b>", "&lt;b&gt;&amp;&lt;/b&gt;"),
        ("`x`", "&#96;x&#96;"),
        ("a\nb\r\nc", "a b c"),
        ("*x* _y_ [l](u) ~s~ #h !i \\", "\\*x\\* \\_y\\_ \\[l\\](u) \\~s\\~ \\#h \\!i \\\\"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("12. item", "12\\. item"),
        ("3) item", "3\\) item"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("x" * 200, "x" * 117 + "..."),
    ],
)
def test_md_text(text: str, expected: str) -> None:
    assert md_text(text) == expected


def test_formatting_helpers() -> None:
    assert [format_elapsed(s) for s in (0, 14.4, 95, 3600, 5388)] == [
        "0s",
        "14s",
        "1m35s",
        "1h00m00s",
        "1h29m48s",
    ]
    assert [format_size(n) for n in (0, 1023, 1024, 3 * 1024 * 1024, 5 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "3.0 MiB",
        "5.0 GiB",
    ]


# -- the budget -------------------------------------------------------------------------


def assert_within(markdown: str, budget: int) -> None:
    data = markdown.encode("utf-8")
    assert len(data) <= budget
    data.decode("utf-8")  # whole characters only


def test_ten_thousand_failed_jobs_with_huge_logs_stay_under_budget() -> None:
    huge_log = ("é ` error: 💥 something broke\n" * 200_000)[:-1]  # about 6 MB, shared
    jobs = [
        outcome(f"job-{i:05d}-é", JobStatus.FAILED if i % 2 else JobStatus.SUCCEEDED, 1.0)
        for i in range(10_000)
    ]
    for job in jobs:
        job.log_tail = huge_log
    result = RunResult(status=RunStatus.FAILED, flow_name="test", jobs=jobs, flow_id="f")
    markdown = render_summary(result)
    assert_within(markdown, DEFAULT_BUDGET)
    assert "_This summary was trimmed to stay under 256.0 KiB: the logs of 5,000 failed jobs" in (
        markdown
    )
    assert "job rows left out" in markdown
    rows = table_rows(markdown)[2:]
    assert sum("| failed |" in row for row in rows) == 5000  # failed jobs are kept first
    assert 5000 < len(rows) < 10_000


def test_log_tails_are_trimmed_before_rows() -> None:
    jobs = [outcome(f"job{i}", JobStatus.SUCCEEDED, 1.0) for i in range(50)]
    jobs += [outcome(f"bad{i}", JobStatus.FAILED, 1.0, log="x" * 100_000) for i in range(3)]
    jobs[-1].log_tail = "first line\n" + "y" * 100_000 + "\nlast line"
    result = RunResult(status=RunStatus.FAILED, flow_name="test", jobs=jobs)
    markdown = render_summary(result, budget=64 * 1024)
    assert_within(markdown, 64 * 1024)
    assert len(table_rows(markdown)) == 2 + 53
    assert markdown.count("<details>") == 3
    assert "3 log tails shortened" in markdown
    assert "first line" not in markdown and "last line" in markdown  # the end is kept


@pytest.mark.parametrize("budget", [MIN_BUDGET, 10_000, 50_000, DEFAULT_BUDGET])
def test_any_budget_holds_for_multibyte_text(budget: int) -> None:
    jobs = [
        outcome("名前" * 50 + str(i), JobStatus.FAILED, 2.0, log="ログ🙂\n" * 20_000)
        for i in range(300)
    ]
    for job in jobs:
        job.warnings.append("警告 " * 100)
    result = RunResult(status=RunStatus.FAILED, flow_name="test", jobs=jobs, flow_id="f")
    assert_within(render_summary(result, budget=budget), budget)


def test_a_budget_too_small_is_refused() -> None:
    with pytest.raises(ValueError):
        render_summary(failed_then_canceled(), budget=MIN_BUDGET - 1)
