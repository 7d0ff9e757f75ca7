"""A server that misbehaves: bodies that are not JSON or not a flow, HTML error pages,
missing and extra fields, unknown statuses, a flow that vanishes, jobs that appear
mid-run, a `completed` flag that disagrees with the jobs, odd replies to queueing.

Each case runs the whole action in this process against a scripted server and must end
with a clear message and the contract's status and exit code, never a traceback; the
reports are written whatever happened, and the token appears nowhere.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import SecretScanner
from ectf_action.client import EctfClient
from hardening_support import (
    FLOW_ID,
    Poll,
    Ran,
    Reply,
    detail,
    fast_client_factory,
    flow_doc,
    job_id,
    json_reply,
    run_action,
    scripted,
    zip_of,
)

RUNNING = flow_doc({"pull-repo": "succeeded", "build": "running"})
DONE = flow_doc({"pull-repo": "succeeded", "build": "succeeded"}, artifacts=["build"])
HTML_PAGE = b"<html><head><title>Captive portal</title></head><body>log in</body></html>"


ARTIFACTS: dict[str, bytes | Reply] = {
    "build": zip_of({"build.log": "built\n"}),
    "late-job": zip_of({"late-job.log": "late\n"}),
}


@dataclass
class Case:
    polls: list[Poll]
    code: int
    status: str
    says: tuple[str, ...] = ()
    queue_reply: Reply | None = None
    inputs: dict[str, str] = field(default_factory=dict)


def html(status: int, title: str) -> Reply:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return Reply(status, page.encode(), "text/html")


CASES: dict[str, Case] = {
    # Passing trouble in the middle of a flow: tolerated, the result is the real one.
    "one poll answered with plain text": Case(
        [RUNNING, Reply(200, b"OK", "text/plain"), DONE], 0, "succeeded"
    ),
    "one poll answered with a proxy's HTML page": Case(
        [RUNNING, Reply(200, HTML_PAGE, "text/html"), DONE], 0, "succeeded"
    ),
    "one poll answered with JSON null": Case(
        [RUNNING, json_reply(200, None), DONE], 0, "succeeded"
    ),
    "one poll answered with a list": Case([RUNNING, json_reply(200, [1, 2]), DONE], 0, "succeeded"),
    "a 502 HTML page, then the flow": Case(
        [RUNNING, html(502, "502 Bad Gateway"), DONE], 0, "succeeded"
    ),
    # Trouble that does not pass: an error naming what came back.
    "every poll answered with an HTML page": Case(
        [RUNNING, Reply(200, HTML_PAGE, "text/html")],
        3,
        "error",
        ("not JSON", "an HTML page: Captive portal", FLOW_ID),
    ),
    "a job without an id, every time": Case(
        [RUNNING, {"id": FLOW_ID, "jobs": [{"name": "build", "status": "running"}]}],
        3,
        "error",
        ("has no id",),
    ),
    "the flow vanishes mid-poll (404)": Case(
        [RUNNING, detail(404, "Flow not found")], 3, "error", ("disappeared", FLOW_ID)
    ),
    "a 403 HTML page mid-poll": Case(
        [RUNNING, html(403, "403 Forbidden")], 3, "error", ("403", "an HTML page: 403 Forbidden")
    ),
    # Shapes the documentation does not promise.
    "missing optional fields": Case(
        [{"id": FLOW_ID, "jobs": [{"id": job_id("a"), "status": "succeeded"}]}], 0, "succeeded"
    ),
    "extra fields everywhere": Case(
        [
            {
                **DONE,
                "owner": {"team": "x"},
                "jobs": [{**job, "runner": "r1", "exit": 0} for job in DONE["jobs"]],
            }
        ],
        0,
        "succeeded",
    ),
    "an unknown status that later resolves": Case(
        [flow_doc({"pull-repo": "succeeded", "build": "warming-up"}), DONE], 0, "succeeded"
    ),
    "an unknown status on a completed flow": Case(
        [RUNNING, flow_doc({"pull-repo": "succeeded", "build": "exploded"}, completed=True)],
        3,
        "error",
        ("marked completed while jobs had not finished", "build (exploded)"),
    ),
    "the British spelling of canceled": Case(
        [flow_doc({"pull-repo": "succeeded", "build": "cancelled"}, completed=True)],
        1,
        "canceled",
        ("canceled on the server",),
    ),
    "jobs added mid-run": Case(
        [
            RUNNING,
            flow_doc({"pull-repo": "succeeded", "build": "running", "late-job": "queued"}),
            flow_doc(
                {"pull-repo": "succeeded", "build": "succeeded", "late-job": "failed"},
                artifacts=["build", "late-job"],
            ),
        ],
        1,
        "failed",
        ("failed: late-job",),
    ),
    "completed while a job still runs": Case(
        [RUNNING, flow_doc({"pull-repo": "succeeded", "build": "running"}, completed=True)],
        3,
        "error",
        ("marked completed while jobs had not finished", "build (running)"),
    ),
    "every job ended but completed is false": Case(
        [
            RUNNING,
            flow_doc(
                {"pull-repo": "succeeded", "build": "succeeded"},
                completed=False,
                artifacts=["build"],
            ),
        ],
        0,
        "succeeded",
    ),
    "completed without any job": Case(
        [flow_doc({}, completed=True)], 3, "error", ("ended without any job",)
    ),
    # Replies to queueing.
    "a 201 whose body is not a UUID": Case(
        [DONE], 0, "succeeded", queue_reply=Reply(201, b'"flow created"')
    ),
    "a 201 HTML page": Case([DONE], 0, "succeeded", queue_reply=html(201, "Created")),
    "a 200 with the id": Case([DONE], 0, "succeeded", queue_reply=json_reply(200, FLOW_ID)),
    "a 401 HTML page": Case(
        [DONE],
        3,
        "error",
        ("401", "token was rejected"),
        queue_reply=html(401, "401 Authorization Required"),
    ),
    "a 418": Case(
        [DONE], 3, "error", ("418", "does not expect"), queue_reply=detail(418, "I'm a teapot")
    ),
    "a 422 listing the bad field": Case(
        [DONE],
        3,
        "error",
        ("commit_hash: bad commit",),
        queue_reply=json_reply(
            422, {"detail": [{"loc": ["body", "commit_hash"], "msg": "bad commit", "type": "x"}]}
        ),
    ),
}


def check_reports(served_root: Path, ran: Ran, outputs: dict[str, str], case: Case) -> None:
    """Outputs, JUnit and summary exist and agree, whatever the result."""
    workspace = served_root / "workspace"
    assert outputs["status"] == case.status
    jobs = json.loads(outputs["jobs"])
    assert isinstance(jobs, list)
    junit = ET.parse(workspace / "ectf-junit.xml").getroot()  # noqa: S314 (our own output)
    assert junit.tag == "testsuites"
    assert {p.get("name"): p.get("value") for p in junit.iter("property")}["status"] == case.status
    summary = (served_root / "file_commands" / "step_summary").read_text(encoding="utf-8")
    assert f"## eCTF test flow: {case.status}" in summary


@pytest.mark.parametrize("name", list(CASES))
def test_a_misbehaving_server_gets_a_clear_message_and_a_sane_result(
    tmp_path: Path, secret_scanner: SecretScanner, sim_token: str, name: str
) -> None:
    case = CASES[name]
    with scripted(
        tmp_path, sim_token, secret_scanner, case.polls, ARTIFACTS, queue_reply=case.queue_reply
    ) as served:
        served.environment.set_inputs(**{"timeout-minutes": "0.5", **case.inputs})
        ran = run_action(served.environment, client_factory=fast_client_factory())
        outputs = served.environment.outputs()
    context = ran.stdout + ran.stderr
    assert ran.code == case.code, context
    assert "Traceback" not in ran.stderr and ran.stderr == "", ran.stderr
    errors = ran.commands("error")
    if case.code == 0:
        assert errors == []
    else:
        verdict = errors[0]  # first: GitHub shows 10 error annotations per step
        assert not verdict.startswith("::error title=eCTF job ")
        assert all(line.startswith("::error title=eCTF job ") for line in errors[1:])
        for part in case.says:
            assert part in verdict, verdict
    if case.status != "error" or "disappeared" in " ".join(case.says):
        assert outputs["flow-id"] == FLOW_ID
    assert served.api.queued <= 1
    check_reports(tmp_path, ran, outputs, case)


def test_jobs_added_mid_run_are_reported_and_fetched(
    tmp_path: Path, secret_scanner: SecretScanner, sim_token: str
) -> None:
    case = CASES["jobs added mid-run"]
    with scripted(tmp_path, sim_token, secret_scanner, case.polls, ARTIFACTS) as served:
        ran = run_action(served.environment, client_factory=fast_client_factory())
        outputs = served.environment.outputs()
    assert ran.code == 1
    jobs = {job["name"]: job for job in json.loads(outputs["jobs"])}
    assert list(jobs) == ["pull-repo", "build", "late-job"]
    assert jobs["late-job"]["artifacts_dir"] == "ectf-artifacts/late-job"
    late_log = tmp_path / "workspace/ectf-artifacts/late-job/late-job.log"
    assert late_log.read_text() == "late\n"
    assert outputs["failed-jobs"] == "late-job"
    assert "[ 0m00s] late-job" in ran.stdout


def test_an_error_that_echoes_the_token_is_masked(
    tmp_path: Path, secret_scanner: SecretScanner, sim_token: str
) -> None:
    """A server that quotes the token back in a refusal: the message is shown, the
    token is not (the scanner checks every stream and file)."""
    polls: list[Poll] = [RUNNING, detail(400, f"token {sim_token} may not poll flows")]
    with scripted(tmp_path, sim_token, secret_scanner, polls) as served:
        ran = run_action(served.environment, client_factory=fast_client_factory())
    assert ran.code == 3
    (error,) = ran.commands("error")
    assert "token *** may not poll flows" in error


def test_hostile_names_and_statuses_stay_one_line_and_valid(
    tmp_path: Path, secret_scanner: SecretScanner, sim_token: str
) -> None:
    """Control characters, a lone surrogate, markdown, XML and commands in a job name."""
    odd = "bu\x1b[31mild\r\n::error::x\ud800 <b>|*\r::warning::y"
    polls: list[Poll] = [flow_doc([("pull-repo", "succeeded"), (odd, "failed")], completed=True)]
    with scripted(tmp_path, sim_token, secret_scanner, polls) as served:
        ran = run_action(served.environment, client_factory=fast_client_factory())
        outputs = served.environment.outputs()
    assert ran.code == 1, ran.stdout
    assert outputs["status"] == "failed"
    assert json.loads(outputs["jobs"])[1]["name"] == odd  # JSON escapes keep it exact
    ET.parse(tmp_path / "workspace/ectf-junit.xml")  # noqa: S314 (our own output)
    for line in ran.stdout.splitlines():
        assert not line.startswith(("::error::x", "::warning::y"))


class _BrokenDownloads(EctfClient):
    """A client whose downloads fail in a way nobody foresaw (a bug, a library quirk)."""

    def download_job_output(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unforeseen trouble in the zip library")


def test_an_unforeseen_download_failure_costs_only_that_jobs_artifacts(
    tmp_path: Path, secret_scanner: SecretScanner, sim_token: str
) -> None:
    def factory(api_url: str, token: str) -> EctfClient:
        return _BrokenDownloads(api_url, token, backoff_factor=0.01)

    with scripted(tmp_path, sim_token, secret_scanner, [RUNNING, DONE], ARTIFACTS) as served:
        ran = run_action(served.environment, client_factory=factory)
        outputs = served.environment.outputs()
    assert ran.code == 0, ran.stdout + ran.stderr
    assert outputs["status"] == "succeeded"
    (warning,) = ran.commands("warning")
    assert "title=eCTF job build::artifacts not saved: RuntimeError" in warning
