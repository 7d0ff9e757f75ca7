"""Interrupting the real entry point (`python -m ectf_action run`) in each phase.

SIGTERM (and SIGINT) while queueing, while polling and while downloading: the remote
flow, when one exists, is cancelled within 5 s; a partial download is never taken for
a complete one (no half-extracted folder reported, no `.part` file left); the exit code
says which signal (143, 130); and the post step cancels a flow saved in state, and does
nothing when the flow already ended. Each phase is held open by a fault (latency) or a
slow download, and the test waits for the run's own output to know the phase.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    HANG_SHA,
    ActionEnv,
    Completed,
    SecretScanner,
    make_scenario,
    without_masks,
)
from ectf_action.client import EctfClient
from ectf_action.clock import SystemClock
from ectf_action.post import post_command
from ectf_action.runner import Runner
from ectf_action.settings import load_settings
from ectf_action.simulator import Scenario, Simulator
from hardening_support import (
    FLOW_ID,
    FakeServer,
    Reply,
    Request,
    ScriptedApi,
    assert_no_leak,
    flow_doc,
    leftovers,
    scripted,
)

pytestmark = pytest.mark.e2e

CANCEL_WITHIN = 5.0
QUEUE_PATH = r"^/api/flow/test/$"
POLL_PATH = r"^/api/flow/test/[0-9a-f-]{36}/$"


def slow_scenario(token: str, *faults: dict[str, object]) -> Scenario:
    scenario = Scenario.from_dict({"faults": list(faults)}, base=make_scenario())
    return scenario.with_token(token)


@pytest.fixture
def started(tmp_path: Path, secret_scanner: SecretScanner) -> Iterator[list[ActionEnv]]:
    """Environments made by a test; afterwards the token is nowhere under tmp_path."""
    made: list[ActionEnv] = []
    yield made
    for environment in made:
        assert_no_leak(secret_scanner, tmp_path, environment.token)


def environment_for(
    tmp_path: Path, url: str, token: str, scanner: SecretScanner, made: list[ActionEnv]
) -> ActionEnv:
    environment = ActionEnv(tmp_path, token, url, scanner)
    made.append(environment)
    return environment


def wait_until(condition: object, timeout: float = 10.0) -> float:
    """Seconds until `condition()` held; fails after *timeout*."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


def only_error(done: Completed) -> str:
    errors = done.commands("error")
    assert len(errors) == 1, errors
    return errors[0]


# -- while queueing ----------------------------------------------------------------------------


def test_sigterm_before_the_flow_is_queued_queues_nothing(
    tmp_path: Path, sim_token: str, secret_scanner: SecretScanner, started: list[ActionEnv]
) -> None:
    """The signal arrives while the run looks for an active flow (held 1.5 s)."""
    scenario = slow_scenario(
        sim_token,
        {"kind": "latency", "methods": ["GET"], "path": QUEUE_PATH, "min": 1.5, "limit": 1},
    )
    with Simulator(scenario) as simulator:
        environment = environment_for(tmp_path, simulator.url, sim_token, secret_scanner, started)
        live = environment.launch()
        live.wait_for("eCTF test flow for commit")
        live.process.send_signal(signal.SIGTERM)
        done = live.finish(timeout=10)
        posts = [r for r in simulator.requests if r.method == "POST"]
        flows = simulator.engine.flows(team=simulator.team)
    assert done.returncode == 143, done.stdout + done.stderr
    assert posts == [] and flows == []
    assert "nothing was left running" in only_error(done)
    assert environment.outputs()["status"] == "canceled"
    assert environment.outputs()["flow-id"] == ""
    assert environment.state() == {}


def test_sigterm_while_the_queue_request_is_in_flight_cancels_the_new_flow(
    tmp_path: Path, sim_token: str, secret_scanner: SecretScanner, started: list[ActionEnv]
) -> None:
    """The server takes 1.5 s to answer the queue request; the signal comes meanwhile.
    The flow it made is ours, so it is cancelled as soon as its id is known."""
    scenario = slow_scenario(
        sim_token,
        {"kind": "latency", "methods": ["POST"], "path": QUEUE_PATH, "min": 1.5, "limit": 1},
    )
    with Simulator(scenario) as simulator:
        environment = environment_for(tmp_path, simulator.url, sim_token, secret_scanner, started)
        environment.set_inputs(commit=HANG_SHA)
        live = environment.launch()
        live.wait_for("eCTF test flow for commit")
        wait_until(lambda: any(r.method == "GET" for r in simulator.requests))
        time.sleep(0.2)  # the queue request is on its way, held by the latency
        signalled = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        wait_until(lambda: _all_canceled(simulator), CANCEL_WITHIN)
        cancelled_after = time.monotonic() - signalled
        done = live.finish(timeout=10)
    assert done.returncode == 143, done.stdout + done.stderr
    assert cancelled_after < CANCEL_WITHIN
    error = only_error(done)
    assert "interrupted" in error and "cancelled on the server" in error
    assert environment.outputs()["status"] == "canceled"
    assert environment.state()["flow_id"] == environment.outputs()["flow-id"]


def _all_canceled(simulator: Simulator) -> bool:
    flows = simulator.engine.flows(team=simulator.team)
    return bool(flows) and all(f.completed and f.statuses["build"] == "canceled" for f in flows)


# -- while polling -----------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_polling_cancels_the_flow_within_5_s(
    tmp_path: Path,
    sim_token: str,
    secret_scanner: SecretScanner,
    started: list[ActionEnv],
    signum: int,
    code: int,
) -> None:
    """Each status request after the first few takes 4 s, so the signal finds the run
    waiting on HTTP; the flow is cancelled at once all the same, and the run ends
    without waiting for that reply (the runner kills a step 10 s after cancelling it)."""
    scenario = slow_scenario(
        sim_token,
        {"kind": "latency", "methods": ["GET"], "path": POLL_PATH, "min": 4.0, "skip": 8},
    )
    with Simulator(scenario) as simulator:
        environment = environment_for(tmp_path, simulator.url, sim_token, secret_scanner, started)
        environment.set_inputs(commit=HANG_SHA)
        live = environment.launch()
        live.wait_for("] build ", "-> running")
        wait_until(lambda: sum(bool(re.match(POLL_PATH, r.path)) for r in simulator.requests) >= 8)
        time.sleep(0.3)  # the ninth status request is now held by the latency
        signalled = time.monotonic()
        live.process.send_signal(signum)
        wait_until(lambda: _all_canceled(simulator), CANCEL_WITHIN)
        cancelled_after = time.monotonic() - signalled
        done = live.finish(timeout=10)
        exited_after = time.monotonic() - signalled
    assert done.returncode == code, done.stdout + done.stderr
    assert cancelled_after < 1.0, f"cancelled {cancelled_after:.1f} s after the signal"
    assert exited_after < 2.5, f"exited {exited_after:.1f} s after the signal"
    error = only_error(done)
    assert f"(received {signal.Signals(signum).name})" in error
    assert environment.outputs()["status"] == "canceled"


# -- while downloading -------------------------------------------------------------------------


def big_zip(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("build.log", "built\n")
        archive.writestr("build/image.bin", os.urandom(size))
    return buffer.getvalue()


@pytest.mark.parametrize("pace", ["slow", "stalled"])
def test_sigterm_while_downloading_leaves_no_partial_artifacts(
    tmp_path: Path,
    sim_token: str,
    secret_scanner: SecretScanner,
    pace: str,
) -> None:
    """The build's zip trickles in (or stalls after its first bytes) while the tests
    still run; a SIGTERM then cancels the flow, leaves no `.part` file and no folder
    for the build, reports no artifacts for it, and exits promptly."""
    delay = 0.05 if pace == "slow" else 30.0
    download = Reply(200, big_zip(4 * 1024 * 1024), "application/zip", slow=delay, chunk=32 * 1024)
    polls = [
        flow_doc({"build": "running", "test": "queued"}),
        flow_doc({"build": "succeeded", "test": "running"}, artifacts=["build"]),
    ]
    with scripted(tmp_path, sim_token, secret_scanner, polls, {"build": download}) as served:
        environment = served.environment
        live = environment.launch()
        live.wait_for("] build ", "-> succeeded")
        wait_until(lambda: served.server.bytes_sent > 0)
        signalled = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        wait_until(served.api.cancelled.is_set, CANCEL_WITHIN)
        done = live.finish(timeout=10)
        exited_after = time.monotonic() - signalled
    assert done.returncode == 143, done.stdout + done.stderr
    assert exited_after < CANCEL_WITHIN, f"the run took {exited_after:.1f} s to exit"
    assert environment.outputs()["status"] == "canceled"
    jobs = {job["name"]: job for job in json.loads(environment.outputs()["jobs"])}
    assert jobs["build"]["artifacts_dir"] is None
    assert not (environment.workspace / "ectf-artifacts" / "build").exists()
    assert leftovers(environment.workspace, environment.runner_temp) == []
    assert list(environment.runner_temp.rglob("*")) == []
    assert served.api.queued == 1
    assert "Traceback" not in done.stderr


# -- the post step -----------------------------------------------------------------------------


def post(environment: ActionEnv, flow_id: str) -> str:
    env = dict(environment.env)
    env.update(STATE_flow_id=flow_id, STATE_flow="test")
    stdout = io.StringIO()
    assert post_command(env, stdout) == 0
    return stdout.getvalue()


def test_the_post_step_cancels_the_flow_a_killed_run_left(
    tmp_path: Path, sim_token: str, secret_scanner: SecretScanner, started: list[ActionEnv]
) -> None:
    """The runner's last resort (SIGKILL) leaves the flow running; the post step finds
    its id in the state the main step saved, and cancels it."""
    with Simulator(slow_scenario(sim_token)) as simulator:
        environment = environment_for(tmp_path, simulator.url, sim_token, secret_scanner, started)
        environment.set_inputs(commit=HANG_SHA)
        live = environment.launch()
        live.wait_for("] build ", "-> running")
        live.process.kill()
        live.finish(timeout=10)
        flow_id = environment.state()["flow_id"]
        assert not _all_canceled(simulator)
        text = post(environment, flow_id)
        assert f"Cancelled the test flow {flow_id}" in text
        assert _all_canceled(simulator)
        again = post(environment, flow_id)  # a second post step: the flow already ended
        cancels = [r for r in simulator.requests if r.path.endswith("/cancel/")]
    assert "already ended; nothing to cancel" in again
    assert len(cancels) == 1
    secret_scanner.add_text("post step", without_masks(text + again))


def test_the_post_step_leaves_a_finished_flow_alone(
    tmp_path: Path, sim_token: str, secret_scanner: SecretScanner, started: list[ActionEnv]
) -> None:
    with Simulator(slow_scenario(sim_token)) as simulator:
        environment = environment_for(tmp_path, simulator.url, sim_token, secret_scanner, started)
        done = environment.run()
        assert done.returncode == 0
        text = post(environment, environment.state()["flow_id"])
        cancels = [r for r in simulator.requests if r.path.endswith("/cancel/")]
    assert "already ended; nothing to cancel" in text
    assert cancels == []
    assert FLOW_ID not in text  # the simulator's own ids, not the scripted server's


# -- a signal during a reply -------------------------------------------------------------------


def test_a_signal_while_a_status_reply_is_on_its_way_is_still_an_interruption(
    tmp_path: Path, sim_token: str, secret_scanner: SecretScanner
) -> None:
    """The signal lands while the server answers a status request, and that answer
    already shows the flow cancelled (by our own guard): the run was interrupted, not
    cancelled by someone else, so it ends as interrupted (the entry point's 143/130)."""
    cancel = threading.Event()
    finished = flow_doc({"build": "canceled"}, completed=True)
    api = ScriptedApi(sim_token, [flow_doc({"build": "running"}), finished])

    def app(request: Request) -> Reply:
        if request.method == "GET" and FLOW_ID in request.path and api.poll_count == 1:
            cancel.set()  # the signal arrives now
        return api(request)

    lines: list[str] = []
    with FakeServer(app) as server:
        environment = ActionEnv(tmp_path, sim_token, server.url, secret_scanner)
        settings = load_settings({}, environment.env, home=environment.home, cwd=tmp_path)
        with EctfClient(server.url, sim_token) as client:
            outcome = Runner(
                settings, client, clock=SystemClock(), cancel=cancel, log=lines.append
            ).run()
    assert outcome.interrupted, lines
    assert outcome.result.status.value == "canceled"
    assert "interrupted" in outcome.result.message
    assert_no_leak(secret_scanner, tmp_path, sim_token)
