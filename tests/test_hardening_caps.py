"""Caps and names that tell the truth: the cap a zip really hit, job folders that never
collide, numbers too big for any cap, the verdict before the per-job errors, and the
`jobs` output within its budget. Through the real entry point (`python -m ectf_action
run`) against the scripted server, which serves the exact flows and zips each needs.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import ActionEnv, Completed, SecretScanner, distinctive_token, make_scenario
from ectf_action.simulator import Simulator
from hardening_support import (
    FLOW_ID,
    FakeServer,
    Reply,
    Request,
    ScriptedApi,
    assert_no_leak,
    detail,
    flow_doc,
    json_reply,
    zip_of,
)

pytestmark = pytest.mark.e2e

ENTRY_CAP = 10_000  # files and folders per job (artifacts.ExtractLimits.max_files)
JOBS_OUTPUT_BUDGET = 256 * 1024  # bytes (reports.JOBS_OUTPUT_BUDGET)
GITHUB_OUTPUTS_LIMIT = 1024 * 1024  # what GitHub keeps of a job's outputs


def run_checked(environment: ActionEnv) -> Completed:
    done = environment.run(timeout=120)
    assert environment.scanner is not None
    assert_no_leak(environment.scanner, environment.root, environment.token)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def failed_build_with(artifacts: bytes, token: str) -> ScriptedApi:
    polls = [flow_doc({"build": "running"}), flow_doc({"build": "failed"}, artifacts=["build"])]
    return ScriptedApi(token, polls, {"build": artifacts})


def entries_then_log(count: int) -> bytes:
    """*count* one-byte files, then the job's log as the very last entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"many/f{index:06d}.txt", b"x")
        archive.writestr("build.log", "compiling\nmain.c:7:1: error: expected ';'\n")
    return buffer.getvalue()


def test_a_zip_over_the_entry_cap_names_that_cap_and_still_gives_the_log(tmp_path: Path) -> None:
    """12,000 entries with the log last: the warning names the 10,000 files-and-folders
    cap (not max-artifact-mb, which was nowhere near), and the log is extracted first,
    so the failed job's annotation shows it."""
    token = distinctive_token()
    with FakeServer(failed_build_with(entries_then_log(12_000), token)) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 1, done.stdout + done.stderr
    said = [w for w in done.commands("warning") if "extraction stopped" in w]
    assert said, done.commands("warning")
    assert all(f"{ENTRY_CAP} files and folders" in w for w in said), said
    assert not any("max-artifact-mb" in w for w in said), said
    folder = environment.workspace / "ectf-artifacts" / "build"
    assert "expected ';'" in (folder / "build.log").read_text()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) < ENTRY_CAP, len(files)
    (failed,) = [e for e in done.commands("error") if "title=eCTF job build failed" in e]
    assert "expected ';'" in failed, failed


# -- job folders ------------------------------------------------------------------------------


class NamedJobs:
    """One test flow whose jobs have the given (name, id) pairs, each failed, each with
    a zip of its own log."""

    def __init__(self, token: str, jobs: Sequence[tuple[str, str]]) -> None:
        self.token = token
        self.jobs = list(jobs)
        self.queued = False

    def doc(self, status: str) -> dict[str, Any]:
        doc = flow_doc([])
        doc["completed"] = status == "failed"
        doc["jobs"] = [
            {"id": job, "name": name, "status": status, "has_artifacts": status == "failed",
             "private": False}
            for name, job in self.jobs
        ]  # fmt: skip
        return doc

    def __call__(self, request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return detail(401, "Invalid token")
        rest = [part for part in request.path.split("/") if part][3:]
        if request.method == "GET" and not rest:
            return json_reply(200, [self.doc("running")] if self.queued else [])
        if request.method == "POST" and not rest:
            self.queued = True
            return json_reply(201, FLOW_ID)
        if request.method == "GET" and rest == [FLOW_ID]:
            return json_reply(200, self.doc("failed"))
        if request.method == "GET" and len(rest) == 2 and rest[0] == "job":
            return Reply(200, zip_of({"job.log": f"log of job {rest[1]}\n"}), "application/zip")
        if request.method == "POST" and rest[1:] == ["cancel"]:
            return detail(400, "Flow already completed")
        return detail(404, "Not Found")


def test_jobs_whose_folder_names_collide_get_three_folders(tmp_path: Path) -> None:
    """`build-00000000`, `build` and `build` again, the last with an id starting with
    00000000: the id-prefix rule alone would give it the first job's folder."""
    token = distinctive_token()
    jobs = [
        ("build-00000000", "9b3c0e4a-1111-4c1a-9d55-000000000001"),
        ("build", "5d2f7c1e-2222-4d2b-8e66-000000000002"),
        ("build", "00000000-3333-4e3c-9f77-000000000003"),
    ]
    with FakeServer(NamedJobs(token, jobs)) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 1, done.stdout + done.stderr
    listed = json.loads(environment.outputs()["jobs"])
    folders = [job["artifacts_dir"] for job in listed]
    assert None not in folders and len(set(folders)) == 3, folders
    for job, folder in zip(listed, folders, strict=True):
        log = (environment.workspace / folder / "job.log").read_text()
        assert log == f"log of job {job['id']}\n", (folder, log)


# -- numbers too big for any cap -----------------------------------------------------------


@pytest.mark.parametrize("name", ["max-artifact-mb", "timeout-minutes"])
def test_a_number_too_big_for_any_cap_is_an_input_error(tmp_path: Path, name: str) -> None:
    token = distinctive_token()
    with Simulator(make_scenario().with_token(token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, SecretScanner())
        environment.set_inputs(**{name: "1e308"})
        done = run_checked(environment)
        sent = list(simulator.requests)
    assert done.returncode == 2, done.stdout + done.stderr
    (error,) = done.commands("error")
    assert name in error and "title=Invalid input" in error, error
    assert sent == []


# -- many failed jobs, many jobs ---------------------------------------------------------------


def many_jobs(token: str, statuses: Mapping[str, str]) -> ScriptedApi:
    running = flow_doc({name: "running" for name in statuses})
    return ScriptedApi(token, [running, flow_doc(statuses)])


def test_with_more_than_ten_failed_jobs_the_verdict_is_the_first_error(tmp_path: Path) -> None:
    """GitHub shows ten error annotations per step: the flow's verdict must be one of
    them, so it comes first."""
    token = distinctive_token()
    statuses = {f"test_{index:02d}": "failed" for index in range(12)}
    with FakeServer(many_jobs(token, statuses)) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = done.commands("error")
    assert errors[0].startswith("::error title=eCTF flow failed::"), errors[:3]
    # within GitHub's ten, every failed job named at least once (the last lists the rest)
    assert len(errors) == 10, errors
    assert all(any(name in error for error in errors) for name in statuses)
    assert errors[-1].startswith("::error title=eCTF%3A 4 more jobs failed::Also failed: test_08")


def test_the_jobs_output_of_200_long_named_jobs_stays_within_its_budget(tmp_path: Path) -> None:
    """200 jobs with 5,000-character names would make a 1 MB `jobs` output (GitHub keeps
    1 MB of outputs per job): it is trimmed to its budget, failed jobs first, and a
    warning says so; every output is still there."""
    token = distinctive_token()
    statuses = {
        f"job-{index:03d}-{'long-name-' * 500}": "failed" if index % 50 == 0 else "succeeded"
        for index in range(200)
    }
    with FakeServer(many_jobs(token, statuses)) as server:
        environment = ActionEnv(tmp_path, token, server.url, SecretScanner())
        done = run_checked(environment)
    assert done.returncode == 1, done.stdout + done.stderr
    outputs = environment.outputs()
    listed = json.loads(outputs["jobs"])
    assert len(outputs["jobs"].encode()) <= JOBS_OUTPUT_BUDGET
    assert environment.output_file.stat().st_size < GITHUB_OUTPUTS_LIMIT
    assert 0 < len(listed) < 200
    assert sum(job["status"] == "failed" for job in listed) == 4  # failed jobs are kept
    trimmed = [w for w in done.commands("warning") if "of 200 jobs" in w]
    assert trimmed and f"{len(listed)} of 200 jobs" in trimmed[0], done.commands("warning")
    assert {"status", "message", "failed-jobs", "junit-path", "artifacts-path"} <= set(outputs)
