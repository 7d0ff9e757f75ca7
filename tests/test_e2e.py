"""The real entry point (`python -m ectf_action run`) against the simulator, in a
runner-like environment. Every test has its own token, and every byte the action wrote
(stdout, stderr, outputs, state, summary, JUnit, artifacts, temp) is scanned for it.

Golden files (tests/golden/e2e/) pin the summary and JUnit of a success and a failure,
with ids, times and ports normalised; `UPDATE_GOLDEN=1` rewrites them.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from conftest import (
    FAIL_SHA,
    HANG_SHA,
    PUSH_SHA,
    UUID_RE,
    ActionEnv,
    Completed,
    assert_golden,
    flows_of,
)
from ectf_action.client import EctfClient
from ectf_action.simulator import Simulator

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).parent / "golden" / "e2e"
GIT_URL = "ssh://git@github.com/sim-team/design.git"


def normalise(text: str) -> str:
    """What changes from run to run: ids, times, ports, timestamps in logs."""
    text = UUID_RE.sub("<uuid>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<timestamp>", text)
    text = re.sub(r'time="[0-9.]+"', 'time="<seconds>"', text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"\b\d+(\.\d+)? ?s\b", "<seconds>", text)
    text = re.sub(r"\b\d+m\d\ds\b", "<duration>", text)
    return text


def check_golden(name: str, text: str) -> None:
    assert_golden(GOLDEN / name, normalise(text))


def only_error(done: Completed) -> str:
    errors = done.commands("error")
    assert len(errors) == 1, errors
    return errors[0]


def queue_other_flow(simulator: Simulator, commit: str) -> str:
    """Another run's flow, holding the team's one test slot."""
    with EctfClient(simulator.url, simulator.token) as client:
        return client.queue_flow("test", {"git_url": GIT_URL, "commit_hash": commit})


def queue_posts(simulator: Simulator) -> int:
    return sum(1 for r in simulator.requests if r.method == "POST" and r.path == "/api/flow/test/")


# -- results --------------------------------------------------------------------------------


def test_success(action_env: ActionEnv, simulator: Simulator) -> None:
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"::add-mask::{simulator.token}"
    assert done.commands("error") == [] and done.commands("warning") == []
    outputs = action_env.outputs()
    flow_id = outputs["flow-id"]
    assert UUID_RE.fullmatch(flow_id)
    assert outputs["status"] == "succeeded"
    assert outputs["failed-jobs"] == ""
    assert outputs["junit-path"] == "ectf-junit.xml"
    assert outputs["artifacts-path"] == "ectf-artifacts"
    jobs = json.loads(outputs["jobs"])
    assert [(j["name"], j["status"], j["artifacts_dir"]) for j in jobs] == [
        ("pull-repo", "succeeded", "ectf-artifacts/pull-repo"),
        ("build", "succeeded", "ectf-artifacts/build"),
        ("test_functional", "succeeded", "ectf-artifacts/test_functional"),
        ("test_security", "succeeded", "ectf-artifacts/test_security"),
    ]
    assert action_env.state() == {"flow_id": flow_id, "flow": "test"}
    workspace = action_env.workspace
    assert (workspace / "ectf-artifacts/build/build/hsm.bin").stat().st_size == 96 * 1024
    assert [f.params["commit_hash"] for f in flows_of(simulator)] == [PUSH_SHA]
    assert list(action_env.runner_temp.iterdir()) == []  # the zips are gone
    assert "::group::eCTF job build: succeeded" in done.stdout
    check_golden("success.junit.xml", (workspace / "ectf-junit.xml").read_text())
    check_golden("success.summary.md", action_env.summary())


def test_a_failed_job(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.env["GITHUB_SHA"] = FAIL_SHA
    done = action_env.run()
    assert done.returncode == 1, done.stdout + done.stderr
    outputs = action_env.outputs()
    assert outputs["status"] == "failed"
    assert outputs["failed-jobs"] == "build"  # the jobs canceled after it are not listed
    statuses = {j["name"]: j["status"] for j in json.loads(outputs["jobs"])}
    assert statuses["test_functional"] == "canceled"
    annotations = [line for line in done.commands("error") if "title=eCTF job build failed" in line]
    assert len(annotations) == 1 and "Build failed with exit code 2" in annotations[0]
    verdict = done.commands("error")[0]  # the verdict first: GitHub shows 10 per step
    assert verdict.startswith("::error title=eCTF flow failed::") and "build" in verdict
    check_golden("failed.junit.xml", (action_env.workspace / "ectf-junit.xml").read_text())
    check_golden("failed.summary.md", action_env.summary())


def test_a_pull_request_tests_its_head_not_the_merge_commit(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    head = "abcdef0123456789abcdef0123456789abcdef01"
    action_env.pull_request(head)
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [f.params["commit_hash"] for f in flows_of(simulator)] == [head]


# -- the team's one slot --------------------------------------------------------------------


def test_an_active_flow_for_the_same_commit_is_followed(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    existing = queue_other_flow(simulator, HANG_SHA)
    action_env.set_inputs(commit=HANG_SHA, **{"timeout-minutes": "0.02"})
    done = action_env.run()
    assert action_env.outputs()["flow-id"] == existing
    assert queue_posts(simulator) == 1  # only the other run's
    assert done.returncode == 1 and action_env.outputs()["status"] == "timed-out"


def test_on_conflict_wait(action_env: ActionEnv, simulator: Simulator) -> None:
    other = queue_other_flow(simulator, HANG_SHA)
    live = action_env.launch()
    live.wait_for("waiting for the team's active test flow " + other)
    with EctfClient(simulator.url, simulator.token) as client:
        client.cancel_flow("test", other)  # the other run ends
    done = live.finish()
    assert done.returncode == 0, done.stdout + done.stderr
    ours = action_env.outputs()["flow-id"]
    assert ours != other
    assert simulator.engine.wait_completed(ours).statuses["build"] == "succeeded"


def test_on_conflict_cancel(action_env: ActionEnv, simulator: Simulator) -> None:
    other = queue_other_flow(simulator, HANG_SHA)
    action_env.set_inputs(**{"on-conflict": "cancel"})
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    cancelled = simulator.engine.flow(other)
    assert cancelled is not None and cancelled.statuses["build"] == "canceled"
    assert action_env.outputs()["status"] == "succeeded"


def test_on_conflict_fail(action_env: ActionEnv, simulator: Simulator) -> None:
    other = queue_other_flow(simulator, HANG_SHA)
    action_env.set_inputs(**{"on-conflict": "fail"})
    done = action_env.run()
    assert done.returncode == 3
    assert other in only_error(done)
    assert action_env.outputs()["status"] == "error"
    assert action_env.outputs()["flow-id"] == ""
    assert queue_posts(simulator) == 2  # the other run's and our refused one
    still = simulator.engine.flow(other)
    assert still is not None and still.statuses["build"] != "canceled"  # left alone


# -- pending jobs, time limits, signals ------------------------------------------------------


def test_submit_flow_with_team_approval_answered(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(
        flow="submit",
        **{"pending-inputs": "team_approval: {approve: true}", "on-pending": "wait"},
    )
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert action_env.outputs()["status"] == "succeeded"
    flow = simulator.engine.flow(action_env.outputs()["flow-id"])
    assert flow is not None
    assert flow.job("team_approval").inputs == ({"approve": True},)
    assert flow.statuses["organizer_approval"] == "succeeded"


def test_submit_flow_left_pending_for_a_person(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.set_inputs(flow="submit")
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert action_env.outputs()["status"] == "pending"
    flow = simulator.engine.flow(action_env.outputs()["flow-id"])
    assert flow is not None and flow.statuses["team_approval"] == "pending"
    job_id = flow.job("team_approval").id
    (notice,) = done.commands("notice")
    assert f"ectf-action jobs input submit {job_id} --approve" in notice


def test_timeout_cancels_the_flow(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.set_inputs(commit=HANG_SHA, **{"timeout-minutes": "0.02"})
    done = action_env.run()
    assert done.returncode == 1
    outputs = action_env.outputs()
    assert outputs["status"] == "timed-out"
    assert "timeout-minutes" in only_error(done)
    flow = simulator.engine.flow(outputs["flow-id"])
    assert flow is not None and flow.statuses["build"] == "canceled"


def test_sigterm_mid_poll_cancels_the_remote_flow(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(commit=HANG_SHA)
    live = action_env.launch()
    live.wait_for("] build ", "-> running")
    live.process.send_signal(signal.SIGTERM)
    done = live.finish(timeout=10)
    assert done.returncode == 143, done.stdout + done.stderr
    error = only_error(done)
    assert "interrupted" in error and "cancelled on the server" in error
    flow_id = action_env.state()["flow_id"]
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["build"] == "canceled"
    assert action_env.outputs()["status"] == "canceled"


# -- nothing sent ----------------------------------------------------------------------------


def test_no_token_skips(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.set_inputs(token="")
    done = action_env.run()
    assert done.returncode == 0
    assert action_env.outputs()["status"] == "skipped"
    (notice,) = done.commands("notice")
    assert "fork" in notice
    assert simulator.requests == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flow", "deploy"),
        ("timeout-minutes", "-1"),
        ("git-url", "https://github.com/sim-team/design.git"),
        ("pending-inputs", "[team_approval]"),
        ("fail-on", "failed,sometimes"),
        ("artifacts-path", "../outside"),
    ],
)
def test_a_bad_input_sends_nothing(
    action_env: ActionEnv, simulator: Simulator, name: str, value: str
) -> None:
    action_env.set_inputs(**{name: value})
    done = action_env.run()
    assert done.returncode == 2
    error = only_error(done)
    assert error.startswith("::error title=Invalid input::") and name in error
    assert simulator.requests == []
    assert action_env.outputs()["status"] == "error"
