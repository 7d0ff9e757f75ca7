"""Planning the step's annotations within GitHub's limits, the first error line, and
the summary's diagnostics rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ectf_action.annotations import (
    Annotation,
    AnnotationPlan,
    JobFindings,
    Located,
    blob_url,
    diagnostic_rows,
    first_error_line,
    locate,
    plan_annotations,
)
from ectf_action.diagnostics import Diagnostic, JobDiagnostics, Severity, scan_lines
from ectf_action.sourcemap import SourceIndex

VERDICT = Annotation("error", "eCTF flow failed", "The test flow failed: build.")
ERROR = Severity.ERROR
WARNING = Severity.WARNING


def diag(
    severity: Severity = ERROR,
    message: str = "boom",
    path: str | None = "/design/src/a.c",
    line: int | None = 1,
    **extra: object,
) -> Diagnostic:
    return Diagnostic(severity, message, "gcc", path=path, line=line, **extra)  # type: ignore[arg-type]


def located(d: Diagnostic, file: str | None = "src/a.c") -> Located:
    return Located(d, file, d.line if file else None, d.column if file else None)


def job(name: str, *items: Located, failed: bool = True, tail: str = "") -> JobFindings:
    return JobFindings(name, failed, tuple(items), log_tail=tail)


def kinds(plan: AnnotationPlan) -> list[str]:
    return [annotation.kind for annotation in plan.annotations]


def test_verdict_then_failed_jobs_then_others_then_errors_then_warnings() -> None:
    build = job(
        "build",
        located(diag(WARNING, "w1", line=3)),
        located(diag(ERROR, "e1", line=5, column=2, code="-Wimplicit-function-declaration")),
        located(diag(ERROR, "e2", line=9)),
        tail="the log tail",
    )
    tests = job(
        "test",
        located(diag(WARNING, "w2", path="/design/src/b.c", line=7), "src/b.c"),
        failed=False,
    )
    other = Annotation("warning", "eCTF run", "artifacts of test not downloaded")
    plan = plan_annotations(VERDICT, [build, tests], other=[other])
    assert [(a.kind, a.title, a.file, a.line, a.column) for a in plan.annotations] == [
        ("error", "eCTF flow failed", None, None, None),
        ("error", "eCTF job build failed", None, None, None),
        ("warning", "eCTF run", None, None, None),
        ("error", "eCTF build: e1 [-Wimplicit-function-declaration]", "src/a.c", 5, 2),
        ("error", "eCTF build: e2", "src/a.c", 9, None),
        ("warning", "eCTF build: w1", "src/a.c", 3, None),
        ("warning", "eCTF test: w2", "src/b.c", 7, None),
    ]
    job_message = plan.annotations[1].message
    assert job_message == "src/a.c:5:2: error: e1 [-Wimplicit-function-declaration]\n\nthe log tail"
    assert (
        plan.annotations[3].message
        == "e1 [-Wimplicit-function-declaration]\ngcc, logged at /design/src/a.c:5:2"
    )
    assert plan.note is None


def test_every_failed_job_is_named_when_there_are_more_than_the_slots() -> None:
    failed = [job(f"job-{i:02d}", tail=f"log {i}") for i in range(30)]
    plan = plan_annotations(VERDICT, failed)
    assert kinds(plan) == ["error"] * 10
    text = " ".join(f"{a.title} {a.message}" for a in plan.annotations)
    assert all(f"job-{i:02d}" in text for i in range(30))
    assert plan.annotations[-1].title == "eCTF: 22 more jobs failed"
    assert (plan.left_out_errors, plan.left_out_warnings) == (0, 0)


def test_hundreds_of_diagnostics_fill_the_budget_and_count_the_rest() -> None:
    jobs = []
    for number in range(3):
        items = [located(diag(ERROR, f"e{number}-{i}", line=i + 1)) for i in range(100)]
        items += [located(diag(WARNING, f"w{number}-{i}", line=i + 1)) for i in range(70)]
        jobs.append(job(f"build{number}", *items))
    jobs.append(
        job("ok", *[located(diag(WARNING, f"late{i}", line=i + 1)) for i in range(5)], failed=False)
    )
    plan = plan_annotations(VERDICT, jobs)
    assert kinds(plan).count("error") == 10 and kinds(plan).count("warning") == 10
    sources = [a for a in plan.annotations if a.file]
    assert [a.title for a in sources[:6]] == [f"eCTF build0: e0-{i}" for i in range(6)]
    assert [a.title for a in sources[6:]] == [f"eCTF build0: w0-{i}" for i in range(10)]
    assert (plan.left_out_errors, plan.left_out_warnings) == (294, 205)
    assert plan.note == (
        "294 more errors and 205 more warnings were not annotated "
        "(GitHub shows 10 of each kind per step)."
    )


def test_errors_of_a_job_that_succeeded_are_not_annotated_but_its_warnings_are() -> None:
    passed = job(
        "test", located(diag(ERROR, "printed by a test")), located(diag(WARNING, "w")), failed=False
    )
    plan = plan_annotations(None, [passed])
    assert [(a.kind, a.title) for a in plan.annotations] == [("warning", "eCTF test: w")]


def test_only_located_diagnostics_with_a_line_are_annotated_each_once() -> None:
    build = job(
        "build",
        located(diag(ERROR, "nowhere"), None),
        located(diag(ERROR, "no line", line=None)),
        located(diag(ERROR, "once", line=4)),
        located(diag(ERROR, "once", line=4)),
    )
    again = job("build-release", located(diag(ERROR, "once", line=4)))
    plan = plan_annotations(None, [build, again])
    assert [a.title for a in plan.annotations if a.file] == ["eCTF build: once"]


def test_source_annotations_can_be_turned_off() -> None:
    build = job("build", *[located(diag(ERROR, f"e{i}", line=i + 1)) for i in range(40)])
    plan = plan_annotations(VERDICT, [build], source_annotations=False)
    assert [a.title for a in plan.annotations] == ["eCTF flow failed", "eCTF job build failed"]
    assert plan.note is None


def test_hostile_names_and_messages_become_plain_lines() -> None:
    nasty = diag(ERROR, "x\x1b[31m\n::error::y")
    plan = plan_annotations(None, [job("bu\x1b]0;t\x07ild\n::warning::z", located(nasty))])
    for annotation in plan.annotations:
        assert "\x1b" not in annotation.title and "\n" not in annotation.title
    job_title, source_title = (annotation.title for annotation in plan.annotations)
    assert job_title == r"eCTF job bu\x1b]0;t\x07ild\n::warning::z failed"
    assert source_title == r"eCTF bu\x1b]0;t\x07ild\n::warning::z: x ::error::y"


@pytest.mark.parametrize(
    ("items", "tail", "expected"),
    [
        (
            [located(diag(WARNING, "w")), located(diag(ERROR, "e", column=3))],
            "",
            "src/a.c:1:3: error: e",
        ),
        ([Located(diag(ERROR, "e"))], "", "/design/src/a.c:1: error: e"),
        (
            [Located(Diagnostic(ERROR, "[Makefile:42: all] Error 2", "make", follow_up=True))],
            "",
            "make: error: [Makefile:42: all] Error 2",
        ),
        (
            [
                Located(Diagnostic(ERROR, "ld returned 1 exit status", "ld", follow_up=True)),
                Located(Diagnostic(ERROR, "cannot find -lfoo", "ld")),
            ],
            "",
            "ld: error: cannot find -lfoo",
        ),
        (
            [],
            "2026-01-29T14:53:48.335Z [TEST] list ... PASSED\n"
            "2026-01-29T14:53:49.000Z     AssertionError: pin_check: got 'ERR 0x3'\n"
            "2026-01-29T14:53:50.000Z 8 passed, 1 failed\n",
            "AssertionError: pin_check: got 'ERR 0x3'",
        ),
        ([], "Cloning...\n\x1b[1mdone\x1b[0m\n", "done"),
        ([], "\n\n", None),
    ],
)
def test_first_error_line(items: list[Located], tail: str, expected: str | None) -> None:
    assert first_error_line(items, tail) == expected


def test_first_located_error_is_what_junit_points_at() -> None:
    findings = job(
        "build",
        located(diag(WARNING, "w", line=2)),
        located(diag(ERROR, "not here"), None),
        located(diag(ERROR, "here", line=8)),
    )
    first = findings.first_located_error
    assert first is not None and (first.file, first.line, first.diagnostic.message) == (
        "src/a.c",
        8,
        "here",
    )
    assert findings.first_error == "/design/src/a.c:1: error: not here"


def test_locate_falls_back_to_the_include_site(tmp_path: Path) -> None:
    (tmp_path / "firmware" / "src").mkdir(parents=True)
    (tmp_path / "firmware" / "src" / "uart.c").write_text("x\n")
    index = SourceIndex.build(tmp_path, git=None)
    lines = [
        "In file included from /design/firmware/src/uart.c:14:",
        "/opt/toolchain/include/stdint.h:3:1: error: broken toolchain header",
        "/design/firmware/src/uart.c:20:5: warning: direct",
        "/elsewhere/x.c:1:1: warning: nowhere",
    ]
    found = list(locate(scan_lines(lines), index))
    assert [(item.file, item.line, item.column) for item in found] == [
        ("firmware/src/uart.c", 14, None),
        ("firmware/src/uart.c", 20, 5),
        (None, None, None),
    ]
    assert [item.file for item in locate(scan_lines(lines), None)] == [None, None, None]


def test_findings_of_a_scan_carry_its_counts(tmp_path: Path) -> None:
    scanned = JobDiagnostics("build", (diag(ERROR, "e"),), errors=3, warnings=4, left_out=2)
    findings = JobFindings.of(scanned, None, failed=True, log_tail="tail")
    assert (findings.name, findings.errors, findings.warnings, findings.left_out) == (
        "build",
        3,
        4,
        2,
    )
    assert findings.diagnostics == (Located(diag(ERROR, "e")),)


def test_diagnostic_rows_link_to_the_tested_commit() -> None:
    items = [
        located(diag(ERROR, "e <b>|x</b>", line=12, code="-Wfoo"), "firmware/src/my uart.c"),
        Located(diag(WARNING, "not located", path="/design/x.c", line=3)),
        Located(Diagnostic(ERROR, "[all] Error 2", "make", follow_up=True)),
        located(diag(WARNING, "file only", line=None), "firmware/src/commands.c"),
    ]
    rows = diagnostic_rows(
        JobFindings("build", True, tuple(items), left_out=5),
        server_url="https://github.com",
        repository="team/design",
        commit="badc0de123456789abcdef0123456789abcdef01",
        limit=2,
    )
    assert rows.rows == (
        {
            "severity": "error",
            "location": "firmware/src/my uart.c:12",
            "url": "https://github.com/team/design/blob/badc0de123456789abcdef0123456789abcdef01/"
            "firmware/src/my%20uart.c#L12",
            "message": "e <b>|x</b> [-Wfoo]",
        },
        {"severity": "warning", "location": "/design/x.c:3", "url": None, "message": "not located"},
    )
    assert rows.left_out == 1 + 5  # the row past the limit, and those the scan did not keep


def test_rows_of_a_job_that_succeeded_leave_out_its_errors() -> None:
    items = (located(diag(ERROR, "e")), located(diag(WARNING, "w")))
    rows = diagnostic_rows(
        JobFindings("test", False, items), server_url="", repository="", commit=""
    )
    assert [row["message"] for row in rows.rows] == ["w"] and rows.rows[0]["url"] is None


@pytest.mark.parametrize(
    ("server", "repository", "commit"),
    [
        ("javascript:alert(1)//", "team/design", "abcdef1"),
        ("https://github.com/evil?", "team/design", "abcdef1"),
        ("https://github.com", "team/design/../../x", "abcdef1"),
        ("https://github.com", "team/design", "main"),
        ("https://github.com", "", "abcdef1"),
    ],
)
def test_blob_urls_are_only_made_from_what_github_gives(
    server: str, repository: str, commit: str
) -> None:
    assert blob_url(server, repository, commit, "a.c", 1) is None


def test_blob_url_of_a_server_with_a_port() -> None:
    assert blob_url("http://ghe.local:8443/", "o/r", "abcdef1", "a b/c#.c", None) == (
        "http://ghe.local:8443/o/r/blob/abcdef1/a%20b/c%23.c"
    )
