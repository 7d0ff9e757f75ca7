"""The `message` output: one bounded line, redacted before it is cut."""

from __future__ import annotations

import pytest

from ectf_action.masking import REDACTED
from ectf_action.message import MAX_MESSAGE_CHARS, invalid_input_line, result_line
from ectf_action.models import Job, JobStatus
from ectf_action.results import JobOutcome, RunResult, RunStatus

FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
TOKEN = "tok-0123456789abcdef-secret"


def outcome(name: str, status: str, log: str = "", first_error: str = "") -> JobOutcome:
    job = Job(id=f"id-{name}", name=name, status=JobStatus.parse(status))
    return JobOutcome(job=job, log_tail=log, first_error=first_error)


def result(status: RunStatus, *jobs: JobOutcome, message: str = "") -> RunResult:
    return RunResult(status, "test", FLOW_ID, jobs=list(jobs), message=message)


def redact(text: str) -> str:
    return text.replace(TOKEN, REDACTED)


def test_a_success_names_the_flow_and_its_jobs() -> None:
    line = result_line(result(RunStatus.SUCCEEDED, outcome("build", "succeeded")))
    assert line == f"eCTF test flow {FLOW_ID}: succeeded (1 jobs)"


def test_a_failure_names_the_failed_jobs_and_the_last_line_of_the_first_ones_log() -> None:
    build = outcome("build", "failed", "\x1b[31mcompiling\nmain.c:3: error: 'x' undeclared\n\n")
    tests = outcome("tests", "failed", "assert failed\n")
    line = result_line(result(RunStatus.FAILED, outcome("pull", "succeeded"), build, tests))
    assert line == (
        f"eCTF test flow {FLOW_ID}: failed; failed jobs: build, tests; "
        "first error (build): main.c:3: error: 'x' undeclared"
    )


def test_a_first_error_found_in_the_log_wins_over_its_last_line() -> None:
    build = outcome("build", "failed", "make: *** Error 2\n", first_error="main.c:3: error: bad")
    line = result_line(result(RunStatus.FAILED, build))
    assert line.endswith("first error (build): main.c:3: error: bad")


def test_a_failed_job_without_a_log_is_still_named() -> None:
    line = result_line(result(RunStatus.FAILED, outcome("build", "failed")))
    assert line == f"eCTF test flow {FLOW_ID}: failed; failed jobs: build"


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (RunStatus.PENDING, "The submit flow waits for input to job team_approval."),
        (RunStatus.ERROR, "GET /api/flow/test/ -> 500: boom."),
        (RunStatus.TIMED_OUT, "The test flow did not finish within 1 minutes."),
        (RunStatus.SKIPPED, "Skipped: the token input is empty."),
    ],
)
def test_other_results_carry_their_sentence(status: RunStatus, sentence: str) -> None:
    line = result_line(result(status, message=sentence))
    assert line == f"eCTF test flow {FLOW_ID}: {status.value}; {sentence}"


def test_a_queued_flow_says_it_was_left_running() -> None:
    line = result_line(result(RunStatus.QUEUED, outcome("build", "queued"), message="long text"))
    assert line == (
        f"eCTF test flow {FLOW_ID}: queued; left running on the server, not followed (wait: false)"
    )


def test_hostile_text_makes_one_bounded_line() -> None:
    name = "evil\r\n::error::x\u202e" + "n" * 300
    jobs = [outcome(f"{name}{i}", "failed", "x" * 5000 + "\n" + "\x07y" * 3000) for i in range(20)]
    line = result_line(result(RunStatus.FAILED, *jobs))
    assert len(line) <= MAX_MESSAGE_CHARS
    assert line.isprintable()
    assert line.startswith(f"eCTF test flow {FLOW_ID}: failed; failed jobs: evil ::error::xnnn")
    assert "nnn... and 15 more; first error (evil ::error::xnnn" in line


@pytest.mark.parametrize("offset", [0, 100, 230, 236, 238, 400, 480, 490])
def test_a_secret_is_redacted_before_any_cut(offset: int) -> None:
    """Cut first, and a secret across the cut would keep a prefix no mask matches."""
    log = "e" * offset + TOKEN + "\n"
    sentence = "m" * offset + TOKEN
    for line in (
        result_line(result(RunStatus.FAILED, outcome("build", "failed", log)), redact),
        result_line(result(RunStatus.ERROR, message=sentence), redact),
        invalid_input_line(sentence, redact),
    ):
        assert TOKEN[:6] not in line, line
        assert len(line) <= MAX_MESSAGE_CHARS


def test_an_input_error_says_nothing_was_sent() -> None:
    assert invalid_input_line("flow-id: 'x' is not a UUID") == (
        "eCTF run: error; invalid input, nothing was sent; flow-id: 'x' is not a UUID"
    )
