"""The workflow shapes, end to end: the real entry point against the simulator, in a
runner-like environment. Queue without waiting (`wait: false`), attach to a flow queued
elsewhere (`flow-id`), and the post step after each shape: it leaves alone a flow the
main step left running on purpose, and cancels one it owned when it was killed.

Golden files (tests/golden/shapes/) pin the summary and JUnit of a flow left queued.
"""

from __future__ import annotations

import io
import json
import signal
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import (
    FAIL_SHA,
    HANG_SHA,
    PUSH_SHA,
    UUID_RE,
    ActionEnv,
    Completed,
    SecretScanner,
    assert_golden,
    flows_of,
)
from ectf_action.client import EctfClient
from ectf_action.post import post_command
from ectf_action.simulator import Simulator
from test_e2e import normalise

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).parent / "golden" / "shapes"
GIT_URL = "ssh://git@github.com/sim-team/design.git"


def requests_of(simulator: Simulator, since: int = 0) -> list[tuple[str, str]]:
    return [(record.method, record.path) for record in simulator.requests[since:]]


def downloads_in(requests: list[tuple[str, str]]) -> list[str]:
    return [path for method, path in requests if method == "GET" and "/job/" in path]


def post_after(environment: ActionEnv) -> tuple[int, str]:
    """The post step as the runner starts it: the same inputs, and STATE_<name> for each
    state the main step saved."""
    env = dict(environment.env)
    env.update({f"STATE_{name}": value for name, value in environment.state().items()})
    stdout = io.StringIO()
    code = post_command(env, stdout)
    return code, stdout.getvalue()


def only_line(stdout: str) -> str:
    """The post step's one line, after the masks."""
    lines = [line for line in stdout.splitlines() if not line.startswith("::add-mask::")]
    assert len(lines) == 1, lines
    return lines[0]


def collector(
    tmp_path: Path, simulator: Simulator, scanner: SecretScanner, flow_id: str, name: str
) -> ActionEnv:
    """A later job that collects *flow_id*: its own workspace and file commands, and
    neither GITHUB_SHA nor GITHUB_REPOSITORY (flow-id needs no commit or git URL)."""
    environment = ActionEnv(tmp_path / name, simulator.token, simulator.url, scanner)
    del environment.env["GITHUB_SHA"], environment.env["GITHUB_REPOSITORY"]
    environment.set_inputs(**{"flow-id": flow_id})
    return environment


def skipped_reasons(environment: ActionEnv) -> dict[str, str]:
    suite = ET.parse(environment.workspace / "ectf-junit.xml").getroot()  # noqa: S314 (ours)
    reasons = {}
    for case in suite.iter("testcase"):
        skipped = case.find("skipped")
        assert skipped is not None, ET.tostring(case)
        reasons[case.get("name", "")] = skipped.get("message", "")
    return reasons


# -- wait: false ----------------------------------------------------------------------------


def test_wait_false_queues_once_reports_queued_and_leaves_the_flow_running(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(wait="false", commit=HANG_SHA)
    done = action_env.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.commands("error") == [] and done.commands("warning") == []
    outputs = action_env.outputs()
    flow_id = outputs["flow-id"]
    assert UUID_RE.fullmatch(flow_id)
    assert outputs["status"] == "queued"
    assert outputs["message"] == (
        f"eCTF test flow {flow_id}: queued; left running on the server, not followed (wait: false)"
    )
    jobs = json.loads(outputs["jobs"])
    assert [job["name"] for job in jobs] == [
        "pull-repo",
        "build",
        "test_functional",
        "test_security",
    ]
    assert {job["artifacts_dir"] for job in jobs} == {None}
    assert action_env.state() == {"flow_id": flow_id, "flow": "test", "left_running": "queued"}

    requests = requests_of(simulator)
    assert requests == [
        ("GET", "/api/flow/test/"),  # the same-commit rule, as without wait: false
        ("POST", "/api/flow/test/"),
        ("GET", f"/api/flow/test/{flow_id}/"),  # its jobs, for the reports
    ]
    assert not (action_env.workspace / "ectf-artifacts").exists()
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and not flow.completed  # left running

    (notice,) = done.commands("notice")
    assert notice.startswith("::notice title=eCTF flow queued::")
    assert f"ectf-action flows watch test {flow_id}" in notice and f"flow-id: {flow_id}" in notice
    summary = action_env.summary()
    assert f"- From a terminal: `ectf-action flows watch test {flow_id}`" in summary
    assert f"`flow: test`, `flow-id: {flow_id}`" in summary
    assert set(skipped_reasons(action_env)) == {job["name"] for job in jobs}
    assert all(
        r.startswith("not followed (wait: false)") for r in skipped_reasons(action_env).values()
    )
    assert_golden(GOLDEN / "queued.summary.md", normalise(summary))
    assert_golden(
        GOLDEN / "queued.junit.xml",
        normalise((action_env.workspace / "ectf-junit.xml").read_text()),
    )

    code, stdout = post_after(action_env)
    assert code == 0
    assert only_line(stdout) == (
        f"The main step left the test flow {flow_id} running on purpose (queued with wait: "
        "false); the post step leaves it alone."
    )
    assert len(simulator.requests) == len(requests)  # the post step asked nothing
    assert not flow.completed


def test_wait_false_follows_the_rules_of_the_slot(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    """An active flow for the same commit is reported, not a second one queued."""
    with EctfClient(simulator.url, simulator.token) as client:
        existing = client.queue_flow("test", {"git_url": GIT_URL, "commit_hash": HANG_SHA})
    action_env.set_inputs(wait="false", commit=HANG_SHA)
    done = action_env.run()
    assert done.returncode == 0, done.stdout
    assert action_env.outputs()["flow-id"] == existing
    assert [f.id for f in flows_of(simulator)] == [existing]


# -- flow-id ------------------------------------------------------------------------------------


def test_a_flow_left_queued_is_collected_by_a_later_job(
    action_env: ActionEnv, simulator: Simulator, tmp_path: Path, secret_scanner: SecretScanner
) -> None:
    """The shape of queue-then-collect.yml: a short job queues, a later one collects."""
    action_env.set_inputs(wait="false")
    queued = action_env.run()
    assert queued.returncode == 0, queued.stdout
    flow_id = action_env.outputs()["flow-id"]
    before = len(simulator.requests)

    later = collector(tmp_path, simulator, secret_scanner, flow_id, "collect")
    done = later.run()
    assert done.returncode == 0, done.stdout + done.stderr
    requests = requests_of(simulator, before)
    assert ("GET", "/api/flow/test/") not in requests  # no list
    assert not [method for method, path in requests if method == "POST"]  # no queue
    outputs = later.outputs()
    assert (outputs["flow-id"], outputs["status"]) == (flow_id, "succeeded")
    assert outputs["message"] == f"eCTF test flow {flow_id}: succeeded (4 jobs)"
    assert later.state() == {"flow_id": flow_id, "flow": "test"}  # owned: no left_running
    assert (later.workspace / "ectf-artifacts/build/build/hsm.bin").stat().st_size == 96 * 1024
    assert f"eCTF test flow {flow_id} (the flow-id input) on" in done.stdout
    assert f"- Commit: `{PUSH_SHA}`" in later.summary()  # the flow's own commit


def test_a_completed_flow_is_reported_at_once(action_env: ActionEnv, simulator: Simulator) -> None:
    with EctfClient(simulator.url, simulator.token) as client:
        flow_id = client.queue_flow("test", {"git_url": GIT_URL, "commit_hash": FAIL_SHA})
    simulator.engine.wait_completed(flow_id)
    before = len(simulator.requests)
    action_env.set_inputs(**{"flow-id": flow_id})
    done = action_env.run()
    assert done.returncode == 1, done.stdout + done.stderr
    requests = requests_of(simulator, before)
    assert requests.count(("GET", f"/api/flow/test/{flow_id}/")) == 1  # one poll
    assert sorted(downloads_in(requests)) == sorted(
        f"/api/flow/test/job/{job.id}/" for job in simulator.engine.flow(flow_id).jobs
        if job.name in ("pull-repo", "build")
    )  # fmt: skip
    outputs = action_env.outputs()
    assert (outputs["status"], outputs["failed-jobs"]) == ("failed", "build")
    # the build's first error, as its log said it and as JUnit's failure message says it
    junit = ET.parse(action_env.workspace / "ectf-junit.xml").getroot()  # noqa: S314 (ours)
    failure = next(
        case.find("failure") for case in junit.iter("testcase") if case.get("name") == "build"
    )
    first_error = failure.get("message") if failure is not None else None
    assert first_error and ": error: " in first_error
    assert outputs["message"] == (
        f"eCTF test flow {flow_id}: failed; failed jobs: build; first error (build): {first_error}"
    )


def test_an_unknown_flow_id_is_exit_3_naming_the_type_and_the_id(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    with EctfClient(simulator.url, simulator.token) as client:
        submit_flow = client.queue_flow("submit", {"git_url": GIT_URL, "commit_hash": PUSH_SHA})
    for flow_id in (str(uuid.uuid4()), submit_flow):  # unknown; another type's
        before = len(simulator.requests)
        action_env.set_inputs(**{"flow-id": flow_id})
        done = action_env.run()
        assert done.returncode == 3, done.stdout
        assert done.commands("error")[-1] == (
            f"::error title=eCTF run failed::The test flow {flow_id} was not found on the "
            "server (404): check that the flow input matches the flow's type, and the id."
        )
        assert requests_of(simulator, before) == [("GET", f"/api/flow/test/{flow_id}/")]
        assert action_env.outputs()["status"] == "error"


@pytest.mark.parametrize("value", ["not-a-uuid", "3fa85f64-5717-4562-b3fc", "../../cancel"])
def test_a_bad_flow_id_is_exit_2_before_any_request(
    action_env: ActionEnv, simulator: Simulator, value: str
) -> None:
    action_env.set_inputs(**{"flow-id": value})
    done = action_env.run()
    assert done.returncode == 2
    (error,) = done.commands("error")
    assert error.startswith(f"::error title=Invalid input::flow-id: {value!r} is not a UUID")
    assert simulator.requests == []
    assert action_env.outputs()["status"] == "error"


def test_wait_false_with_a_flow_id_is_refused(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.set_inputs(wait="false", **{"flow-id": str(uuid.uuid4())})
    done = action_env.run()
    assert done.returncode == 2
    assert "wait: false leaves the flow at once" in done.commands("error")[0]
    assert simulator.requests == []


# -- the post step after each shape ---------------------------------------------------------------


def test_a_pending_exit_is_left_alone_by_the_post_step(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(flow="submit")  # on-pending: exit, the default
    done = action_env.run()
    assert done.returncode == 0, done.stdout
    flow_id = action_env.outputs()["flow-id"]
    assert action_env.state() == {"flow_id": flow_id, "flow": "submit", "left_running": "pending"}
    before = len(simulator.requests)
    code, stdout = post_after(action_env)
    assert code == 0
    assert only_line(stdout) == (
        f"The main step left the submit flow {flow_id} running on purpose (stopped at a "
        "pending job, for a person to answer); the post step leaves it alone."
    )
    assert len(simulator.requests) == before
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["team_approval"] == "pending"


def killed_while_following(environment: ActionEnv) -> Completed:
    """The main step killed outright while it follows a flow whose build runs: no
    chance to cancel it, as when the runner kills a step that did not stop in time."""
    live = environment.launch()
    live.wait_for("] build ", "running")  # first seen running, or seen turning so
    live.process.send_signal(signal.SIGKILL)
    return live.finish(timeout=10)


def test_a_flow_owned_when_the_main_step_was_killed_is_cancelled(
    action_env: ActionEnv, simulator: Simulator, tmp_path: Path, secret_scanner: SecretScanner
) -> None:
    """Queued without waiting and left alone; then collected by a job that is killed
    while it follows it: that job owned it, so its post step cancels it."""
    action_env.set_inputs(wait="false", commit=HANG_SHA)
    assert action_env.run().returncode == 0
    flow_id = action_env.outputs()["flow-id"]
    assert "leaves it alone" in post_after(action_env)[1]

    later = collector(tmp_path, simulator, secret_scanner, flow_id, "collect")
    killed = killed_while_following(later)
    assert killed.returncode == -signal.SIGKILL
    assert later.state() == {"flow_id": flow_id, "flow": "test"}
    code, stdout = post_after(later)
    assert code == 0
    assert only_line(stdout) == (
        f"Cancelled the test flow {flow_id}, so the team's slot is free again."
    )
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["build"] == "canceled"


@pytest.mark.parametrize("given_state", [True, False], ids=["state", "no-state"])
def test_a_queued_flow_killed_before_any_decision_is_cancelled(
    action_env: ActionEnv, simulator: Simulator, given_state: bool
) -> None:
    """Without its state (see post_without_state below) the post step finds the flow by
    its commit, and cancels it just the same."""
    action_env.set_inputs(commit=HANG_SHA)
    killed_while_following(action_env)
    assert "left_running" not in action_env.state()
    code, stdout = (post_after if given_state else post_without_state)(action_env)
    assert code == 0 and "Cancelled the test flow" in stdout
    (flow,) = flows_of(simulator)
    assert flow.statuses["build"] == "canceled"


def test_a_flow_id_run_that_saved_nothing_cancels_nothing(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    """With flow-id and no saved id, the post step must not go looking for "this
    commit's" flow: there is no commit, and every active flow would match."""
    with EctfClient(simulator.url, simulator.token) as client:
        other = client.queue_flow("test", {"git_url": GIT_URL, "commit_hash": HANG_SHA})
    del action_env.env["GITHUB_SHA"]
    action_env.set_inputs(**{"flow-id": other})
    code, stdout = post_after(action_env)  # no state: the main step never got going
    assert code == 0
    assert only_line(stdout) == (
        f"The main step saved no flow id, so it never followed the test flow {other} of the "
        "flow-id input: it is left alone."
    )
    assert not any(record.path.endswith("/cancel/") for record in simulator.requests)


# -- a post step that is given no state -------------------------------------------------------
# nektos/act (0.2.89) starts a container action's post step with its inputs but without the
# STATE_<name> variables the main step saved (it passes them to JavaScript actions only), and
# it stops a cancelled main step's container without a signal. The post step then judges by
# the inputs and the flow it finds, and must still leave alone what was left on purpose.


def post_without_state(environment: ActionEnv) -> tuple[int, str]:
    stdout = io.StringIO()
    code = post_command(dict(environment.env), stdout)
    return code, stdout.getvalue()


def test_without_state_a_flow_queued_with_wait_false_is_left_alone(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(wait="false", commit=HANG_SHA)
    assert action_env.run().returncode == 0
    flow_id = action_env.outputs()["flow-id"]
    before = len(simulator.requests)

    code, stdout = post_without_state(action_env)

    assert code == 0
    assert only_line(stdout) == (
        "The main step saved no flow id, and it ran with wait: false: a test flow it queued "
        "is meant to keep running, so the post step leaves it alone."
    )
    assert len(simulator.requests) == before  # not even looked for
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and not flow.completed


def test_without_state_a_flow_waiting_for_a_person_is_left_alone(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    action_env.set_inputs(flow="submit")  # on-pending: exit, the default
    assert action_env.run().returncode == 0
    flow_id = action_env.outputs()["flow-id"]

    code, stdout = post_without_state(action_env)

    assert code == 0
    assert only_line(stdout) == (
        f"The main step saved no flow id; the submit flow {flow_id} of this commit waits at "
        "the pending job team_approval for a person to answer, where the main step leaves a "
        "flow running: the post step leaves it alone."
    )
    assert not any(record.path.endswith("/cancel/") for record in simulator.requests)
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["team_approval"] == "pending"
