"""A server that misbehaves in the shape of its replies, played by the simulator: proxy
HTML pages, 200s that are not JSON, flow documents with fields missing, added or
contradicting each other, a flow that vanishes mid-poll, downloads that stall.

The whole action runs in this process with a real client, as in the fault matrix. Where
the trouble passes (or only hides what the action does not need), the run must end
exactly as the fault-free run does; where it does not pass, with a clear message and the
contract's status and exit code. Never a traceback, never the token anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ActionEnv, SecretScanner, distinctive_token
from ectf_action.client import EctfClient
from ectf_action.simulator import RequestRecord, Scenario, Simulator, default_scenario
from hardening_support import (
    Ran,
    ScaledClock,
    assert_no_leak,
    fast_client_factory,
    leftovers,
    run_action,
    tree,
)

TIME_SCALE = 0.02  # the ~12 s test flow takes ~0.25 s
CLOCK_FACTOR = 0.01  # the runner's seconds, in real time
POLL_SECONDS = "0.5"  # 5 ms of real time
TIMEOUT_MINUTES = 10  # 600 runner seconds: 6 s of real time
HANG_COMMIT = "deadbeef56f708192a3b4c5d6e7f8091a2b3c4d"
POLL_PATH = r"^/api/flow/test/[0-9a-f-]{36}/$"
FLOW_PATHS = r"^/api/flow/test/([0-9a-f-]{36}/)?$"
DOWNLOAD_PATH = r"/job/"
READ_TIMEOUT = 0.3  # seconds a stalled download is waited for


def scenario(
    faults: list[dict[str, Any]], token: str, extra_jobs: list[dict[str, Any]] | None = None
) -> Scenario:
    """A three-job test flow with the same bytes in every run, and *faults*."""

    def job(name: str, needs: list[str], *extra: dict[str, Any]) -> dict[str, Any]:
        files = [{"name": f"{name}.log", "text": f"{name}\nall good\n"}, *extra]
        return {"name": name, "needs": needs, "duration": 3, "artifacts": files}

    return Scenario.from_dict(
        {
            "seed": 2027,
            "time_scale": TIME_SCALE,
            "outcomes": [{"commit_prefix": "deadbeef", "hang": ["build"]}],
            "flows": {
                "test": {
                    "queue_delay": 0.5,
                    "jobs": [
                        job("pull-repo", []),
                        job(
                            "build",
                            ["pull-repo"],
                            {"name": "hsm.bin", "kind": "random", "size": "96KiB"},
                        ),
                        job("test_functional", ["build"]),
                        *(extra_jobs or []),
                    ],
                }
            },
            "faults": faults,
        },
        base=default_scenario(),
    ).with_token(token)


@dataclass
class Outcome:
    ran: Ran
    outputs: dict[str, str]
    files: dict[str, bytes]
    requests: list[RequestRecord]
    flows: int

    @property
    def context(self) -> str:
        return self.ran.stdout + self.ran.stderr

    def fired(self, kind: str) -> int:
        """How many replies a fault of *kind* changed (labels are `kind` or `kind:status`)."""
        labels = [label for r in self.requests if r.fault for label in r.fault.split(",")]
        return sum(1 for label in labels if label.partition(":")[0] == kind)


def run(
    root: Path,
    faults: list[dict[str, Any]],
    *,
    commit: str | None = None,
    client_factory: Callable[[str, str], EctfClient] | None = None,
    timeout_minutes: float = TIMEOUT_MINUTES,
    extra_jobs: list[dict[str, Any]] | None = None,
) -> Outcome:
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(scenario(faults, token, extra_jobs)) as simulator:
        environment = ActionEnv(root, token, simulator.url, scanner)
        environment.set_inputs(
            **{"poll-interval": POLL_SECONDS, "timeout-minutes": str(timeout_minutes)}
        )
        if commit is not None:
            environment.set_inputs(commit=commit)
        ran = run_action(
            environment,
            client_factory=client_factory or fast_client_factory(),
            clock=ScaledClock(CLOCK_FACTOR),
        )
        flows = len(simulator.engine.flows(team=simulator.team, flow_name="test"))
        requests = simulator.requests
    assert_no_leak(scanner, root, token)
    assert leftovers(environment.workspace, environment.runner_temp) == []
    assert "Traceback" not in ran.stdout + ran.stderr
    return Outcome(
        ran, environment.outputs(), tree(environment.workspace / "ectf-artifacts"), requests, flows
    )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    outcome = run(tmp_path_factory.mktemp("baseline"), [])
    assert outcome.ran.code == 0, outcome.context
    assert all(r.fault is None for r in outcome.requests)
    assert len(outcome.files) == 4  # three logs and the image
    yield outcome


def assert_same(outcome: Outcome, base: Outcome) -> None:
    assert outcome.ran.code == base.ran.code, outcome.context
    assert outcome.outputs == base.outputs, outcome.context
    assert outcome.files == base.files
    assert outcome.flows == 1, f"{outcome.flows} flows were queued"
    assert outcome.ran.commands("error") == []
    assert outcome.ran.commands("warning") == base.ran.commands("warning")


# -- trouble that passes: the fault-free result -----------------------------------------------

PASSING: dict[str, list[dict[str, Any]]] = {
    "html pages at 20%": [{"kind": "html", "rate": 0.2, "statuses": [502, 503, 504]}],
    "html 200 pages on polls at 30%": [
        {"kind": "html", "rate": 0.3, "statuses": [200], "path": POLL_PATH}
    ],
    "not JSON on flow replies at 20%": [
        {"kind": "not_json", "rate": 0.2, "methods": ["GET"], "path": FLOW_PATHS}
    ],
    "completed missing": [{"kind": "mangle", "drop_fields": ["completed"]}],
    "optional fields missing": [
        {"kind": "mangle", "drop_fields": ["submit_time", "params", "private"]}
    ],
    "extra fields everywhere": [
        {"kind": "mangle", "extra_fields": {"runner": "r7", "exit": 0, "meta": {"a": [1]}}}
    ],
    "unknown status for unfinished jobs": [{"kind": "mangle", "unknown_status": "warming-up"}],
    "completed is always false": [{"kind": "mangle", "completed": False}],
    "a short stall in a download": [
        {"kind": "stall", "path": DOWNLOAD_PATH, "fraction": 0.5, "seconds": 0.1}
    ],
    "a stall longer than the read timeout, twice": [
        {"kind": "stall", "path": DOWNLOAD_PATH, "fraction": 0.3, "seconds": 5, "limit": 2}
    ],
    "a stall that ends in a closed connection, twice": [
        {"kind": "stall", "path": DOWNLOAD_PATH, "seconds": 0.05, "then": "close", "limit": 2}
    ],
}


def stall_client(api_url: str, token: str) -> EctfClient:
    return fast_client_factory(timeout=(5.0, READ_TIMEOUT))(api_url, token)


@pytest.mark.parametrize("case", list(PASSING))
def test_shape_trouble_that_passes_gives_the_fault_free_result(
    tmp_path: Path, baseline: Outcome, case: str
) -> None:
    faults = PASSING[case]
    outcome = run(tmp_path, faults, client_factory=stall_client)
    assert_same(outcome, baseline)
    assert outcome.fired(faults[0]["kind"]) > 0, "the fault never fired"
    assert outcome.ran.seconds < TIMEOUT_MINUTES * 60 * CLOCK_FACTOR


def test_jobs_without_has_artifacts_still_have_their_output_fetched(
    tmp_path: Path, baseline: Outcome
) -> None:
    outcome = run(tmp_path, [{"kind": "mangle", "drop_fields": ["has_artifacts"]}])
    assert outcome.ran.code == 0, outcome.context
    assert outcome.files == baseline.files
    assert "artifacts not downloaded" not in outcome.ran.stdout


# -- trouble that does not pass: a clear error ------------------------------------------------


def test_a_flow_that_vanishes_mid_poll_is_an_error_saying_so(tmp_path: Path) -> None:
    outcome = run(tmp_path, [{"kind": "vanish", "path": POLL_PATH, "skip": 2}])
    assert outcome.ran.code == 3, outcome.context
    assert outcome.outputs["status"] == "error"
    flow_id = outcome.outputs["flow-id"]
    *_, error = outcome.ran.commands("error")
    assert "disappeared" in error and flow_id in error, error
    assert outcome.fired("vanish") >= 1
    assert outcome.flows == 1


def test_completed_while_jobs_run_is_an_error_naming_them(tmp_path: Path) -> None:
    outcome = run(tmp_path, [{"kind": "mangle", "completed": True}], commit=HANG_COMMIT)
    assert outcome.ran.code == 3, outcome.context
    assert outcome.outputs["status"] == "error"
    *_, error = outcome.ran.commands("error")
    assert "marked completed while jobs had not finished" in error, error


def test_every_poll_not_json_is_an_error_naming_what_came_back(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        [{"kind": "not_json", "path": POLL_PATH}],
        timeout_minutes=0.5,
    )
    assert outcome.ran.code == 3, outcome.context
    assert outcome.outputs["status"] == "error"
    *_, error = outcome.ran.commands("error")
    assert "not JSON" in error and "upstream connect error" in error, error


def test_downloads_that_always_stall_cost_the_artifacts_not_the_result(
    tmp_path: Path, baseline: Outcome
) -> None:
    rule = {"kind": "stall", "path": DOWNLOAD_PATH, "fraction": 0.2, "seconds": 30}
    outcome = run(tmp_path, [rule], client_factory=stall_client)
    assert outcome.ran.code == 0, outcome.context
    assert outcome.outputs["status"] == "succeeded"
    assert outcome.outputs["flow-id"] == baseline.outputs["flow-id"]
    assert outcome.files == {}
    warnings = outcome.ran.commands("warning")
    assert len(warnings) == 3 and all("artifacts not downloaded" in w for w in warnings), warnings
    assert outcome.ran.seconds < 15


def test_a_job_added_mid_run_is_followed_reported_and_fetched(tmp_path: Path) -> None:
    late = {
        "name": "late-job",
        "duration": 2,
        "appears_after": 8,  # listed while build runs or later
        "outcome": "failed",
        "artifacts": [{"name": "late-job.log", "text": "late\n"}],
    }
    outcome = run(tmp_path, [], extra_jobs=[late])
    assert outcome.ran.code == 1, outcome.context
    assert outcome.outputs["status"] == "failed"
    assert outcome.outputs["failed-jobs"] == "late-job"
    jobs = [job["name"] for job in json.loads(outcome.outputs["jobs"])]
    assert jobs == ["pull-repo", "build", "test_functional", "late-job"]
    assert outcome.files["late-job/late-job.log"] == b"late\n"
    lines = outcome.ran.stdout.splitlines()
    first_seen = next(i for i, line in enumerate(lines) if "late-job" in line)
    build_ran = next(
        i for i, line in enumerate(lines) if re.search(r"build +queued -> running", line)
    )
    assert first_seen > build_ran, "the late job was listed from the start"
