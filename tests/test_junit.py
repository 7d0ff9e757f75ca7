"""JUnit XML: golden files for each kind of run, and what the report readers rely on.

The run results below are shared with the summary tests. Regenerate the golden files
with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_junit.py tests/test_summary.py`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import assert_golden
from ectf_action.junit import render_junit
from ectf_action.models import Job, JobStatus
from ectf_action.results import JobOutcome, RunResult, RunStatus

GOLDEN = Path(__file__).parent / "golden"
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

BUILD_LOG = (
    "make: Entering directory '/design'\n"
    "arm-none-eabi-gcc -c src/main.c\n"
    "src/main.c:42:5: error: 'key' undeclared (first use in this function)\n"
    "make: *** [Makefile:12: build] Error 1"
)


def outcome(
    name: str,
    status: JobStatus,
    seconds: float,
    *,
    files: int = 0,
    size: int = 0,
    log: str = "",
    warnings: list[str] | None = None,
    raw_status: str = "",
) -> JobOutcome:
    job = Job(
        id=f"id-{name}",
        name=name,
        status=status,
        has_artifacts=files > 0,
        raw_status=raw_status,
    )
    return JobOutcome(
        job=job,
        observed_seconds=seconds,
        artifacts_dir=f"ectf-artifacts/{name}" if files else None,
        artifact_files=files,
        artifact_bytes=size,
        log_tail=log,
        warnings=list(warnings or []),
    )


def all_succeeded() -> RunResult:
    return RunResult(
        status=RunStatus.SUCCEEDED,
        flow_name="test",
        flow_id=FLOW_ID,
        commit=COMMIT,
        jobs=[
            outcome("pull-repo", JobStatus.SUCCEEDED, 14.2, files=1, size=512),
            outcome("build", JobStatus.SUCCEEDED, 95.0, files=12, size=3_145_728),
            outcome("test", JobStatus.SUCCEEDED, 240.5, files=3, size=20_480),
        ],
        elapsed_seconds=361.75,
        message="The flow succeeded.",
    )


def failed_then_canceled() -> RunResult:
    return RunResult(
        status=RunStatus.FAILED,
        flow_name="test",
        flow_id=FLOW_ID,
        commit=COMMIT,
        jobs=[
            outcome("pull-repo", JobStatus.SUCCEEDED, 10.0, files=1, size=300),
            outcome("build", JobStatus.FAILED, 61.25, files=2, size=4096, log=BUILD_LOG),
            outcome("test", JobStatus.CANCELED, 0.0),
            outcome("package", JobStatus.CANCELED, 0.0),
        ],
        elapsed_seconds=80.0,
        message="Job build failed: read its log in the job summary, fix the design, push again.",
    )


def pending() -> RunResult:
    return RunResult(
        status=RunStatus.PENDING,
        flow_name="submit",
        flow_id=FLOW_ID,
        commit=COMMIT,
        jobs=[
            outcome("pull-repo", JobStatus.SUCCEEDED, 9.0),
            outcome("build", JobStatus.SUCCEEDED, 120.0, files=4, size=65_536),
            outcome("team_approval", JobStatus.PENDING, 30.0),
            outcome("organizer_approval", JobStatus.QUEUED, 0.0),
        ],
        elapsed_seconds=170.0,
        message="The flow waits for your approval of job team_approval.",
    )


def timed_out() -> RunResult:
    return RunResult(
        status=RunStatus.TIMED_OUT,
        flow_name="test",
        flow_id=FLOW_ID,
        commit=COMMIT,
        jobs=[
            outcome("pull-repo", JobStatus.SUCCEEDED, 12.0),
            outcome("build", JobStatus.RUNNING, 5388.0),
            outcome("test", JobStatus.QUEUED, 0.0),
        ],
        elapsed_seconds=5400.0,
        message="The flow did not finish within 90 minutes; raise timeout-minutes.",
        warnings=["The flow is still running on the server; cancel it if you do not need it."],
    )


def error_empty() -> RunResult:
    return RunResult(
        status=RunStatus.ERROR,
        flow_name="test",
        flow_id=None,
        commit=COMMIT,
        jobs=[],
        elapsed_seconds=0.0,
        message="The token was rejected: check that it is your team's current token.",
    )


HOSTILE_NAME = "x | <script>alert(1)</script> `code` & *bold*\n## heading\x00\x1b[31m"
HOSTILE_LOG = (
    "before\x00nul \x1b[31mred\x1b[0m\n"
    "```\n</details><img src=x onerror=alert(1)>\n"
    "````` five backticks\n"
    "]]> cdata end & <tag>\n"
    "::error::injected \ud800 lone surrogate"
)


def hostile() -> RunResult:
    return RunResult(
        status=RunStatus.FAILED,
        flow_name="test",
        flow_id=FLOW_ID,
        commit=COMMIT,
        jobs=[
            outcome(
                HOSTILE_NAME,
                JobStatus.FAILED,
                3.0,
                files=1,
                size=10,
                log=HOSTILE_LOG,
                warnings=["artifacts not saved: '../x' | <b>refused</b>"],
            ),
            outcome("weird", JobStatus.UNKNOWN, 1.0, raw_status="paused|<i>"),
        ],
        elapsed_seconds=4.0,
        message="Job failed <b>",
        warnings=["server said: `oops` | <marquee>"],
    )


CASES: dict[str, Callable[[], RunResult]] = {
    "all_succeeded": all_succeeded,
    "failed_then_canceled": failed_then_canceled,
    "pending": pending,
    "timed_out": timed_out,
    "error_empty": error_empty,
    "hostile": hostile,
}


# -- golden files -----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    assert_golden(GOLDEN / "junit" / f"{case}.xml", render_junit(CASES[case]()))


def test_output_is_deterministic() -> None:
    assert render_junit(failed_then_canceled()) == render_junit(failed_then_canceled())


# -- structure, as the readers parse it -------------------------------------------------


def parse(result: RunResult) -> ET.Element:
    text = render_junit(result)
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n')
    return ET.fromstring(text.encode("utf-8"))  # noqa: S314 (our own output)


def counts(element: ET.Element) -> tuple[int, int, int, int]:
    tests, failures, errors, skipped = (
        int(element.get(key, "-1")) for key in ("tests", "failures", "errors", "skipped")
    )
    return tests, failures, errors, skipped


EXPECTED_COUNTS = {
    # tests, failures, errors, skipped
    "all_succeeded": (3, 0, 0, 0),
    "failed_then_canceled": (4, 1, 0, 2),
    "pending": (4, 0, 0, 2),
    "timed_out": (4, 1, 0, 2),
    "error_empty": (1, 0, 1, 0),
    "hostile": (2, 1, 0, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_counts_and_classic_schema(case: str) -> None:
    root = parse(CASES[case]())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert counts(root) == counts(suite) == EXPECTED_COUNTS[case]
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "0"))
    assert sum(1 for c in cases if c.find("failure") is not None) == counts(suite)[1]
    assert sum(1 for c in cases if c.find("error") is not None) == counts(suite)[2]
    assert sum(1 for c in cases if c.find("skipped") is not None) == counts(suite)[3]
    for test_case in cases:
        assert test_case.get("classname") == "ectf." + CASES[case]().flow_name
        assert float(test_case.get("time", "x")) >= 0
        assert test_case.get("name")
    assert float(suite.get("time", "x")) >= 0
    assert float(root.get("time", "x")) >= 0


def test_suite_name_and_properties() -> None:
    suite = parse(failed_then_canceled()).find("testsuite")
    assert suite is not None
    assert suite.get("name") == "ectf.test"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {"flow_id": FLOW_ID, "flow": "test", "commit": COMMIT, "status": "failed"}


def test_failed_job_carries_its_log_and_canceled_jobs_are_skipped() -> None:
    suite = parse(failed_then_canceled()).find("testsuite")
    assert suite is not None
    by_name = {c.get("name"): c for c in suite.findall("testcase")}
    failure = by_name["build"].find("failure")
    assert failure is not None
    assert failure.get("message") == "job build failed"
    assert failure.text == BUILD_LOG
    skipped = by_name["test"].find("skipped")
    assert skipped is not None and "canceled" in (skipped.get("message") or "")
    assert by_name["test"].get("time") == "0.000"
    assert list(by_name["pull-repo"]) == [by_name["pull-repo"].find("system-out")]


def test_failed_job_without_a_log_says_so() -> None:
    result = failed_then_canceled()
    result.jobs[1].log_tail = ""
    suite = parse(result).find("testsuite")
    assert suite is not None
    failure = suite.find("testcase[@name='build']/failure")
    assert failure is not None and failure.text == "No log was found in the job's artifacts."


def test_pending_and_unfinished_jobs_are_skipped_with_their_reason() -> None:
    suite = parse(pending()).find("testsuite")
    assert suite is not None
    reasons = {
        c.get("name"): next((s.get("message") for s in c.iter("skipped")), None)
        for c in suite.findall("testcase")
    }
    assert reasons["team_approval"] == "pending: waiting for input"
    assert reasons["organizer_approval"] == "never finished (last status: queued)"
    assert reasons["build"] is None


def test_timed_out_run_adds_a_failing_flow_case() -> None:
    suite = parse(timed_out()).find("testsuite")
    assert suite is not None
    flow = suite.find("testcase[@name='flow']/failure")
    assert flow is not None
    assert "timeout-minutes" in (flow.get("message") or "")


def test_error_without_jobs_is_still_a_valid_document() -> None:
    suite = parse(error_empty()).find("testsuite")
    assert suite is not None
    error = suite.find("testcase[@name='flow']/error")
    assert error is not None and "token was rejected" in (error.get("message") or "")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["flow_id"] == ""


@pytest.mark.parametrize(
    ("status", "element"),
    [
        (RunStatus.SKIPPED, "skipped"),
        (RunStatus.CANCELED, "skipped"),
        (RunStatus.FAILED, "failure"),
        (RunStatus.SUCCEEDED, None),
    ],
)
def test_runs_without_jobs_get_one_flow_case(status: RunStatus, element: str | None) -> None:
    result = RunResult(status=status, flow_name="clone")
    cases = parse(result).findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["flow"]
    assert [child.tag for child in cases[0]] == ([element] if element else [])


def test_hostile_text_is_kept_legal_and_literal() -> None:
    text = render_junit(hostile())
    for bad in ("\x00", "\x1b", "\ud800"):
        assert bad not in text
    suite = ET.fromstring(text.encode("utf-8")).find("testsuite")  # noqa: S314
    assert suite is not None
    failed = suite.findall("testcase")[0]
    assert failed.get("name") == "x | <script>alert(1)</script> `code` & *bold* ## heading"
    failure = failed.find("failure")
    assert failure is not None and failure.text is not None
    assert "</details><img src=x onerror=alert(1)>" in failure.text
    assert "]]> cdata end & <tag>" in failure.text
    assert "red" in failure.text


def test_huge_log_and_name_are_bounded() -> None:
    result = failed_then_canceled()
    result.jobs[1].log_tail = "line\n" * 1_000_000
    result.jobs[1].job = Job(id="b", name="n" * 10_000, status=JobStatus.FAILED)
    text = render_junit(result)
    assert len(text.encode("utf-8")) < 100 * 1024


def test_a_missing_golden_file_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    with pytest.raises(pytest.fail.Exception, match="UPDATE_GOLDEN=1"):
        assert_golden(tmp_path / "missing.xml", "text")
