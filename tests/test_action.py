"""The action entry in-process: masking first, input errors, the skip, server trouble,
hostile server text, outputs and the post step (the demo: tests/test_demo.py)."""

from __future__ import annotations

import argparse
import io
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    FAIL_SHA,
    HANG_SHA,
    ActionEnv,
    SecretScanner,
    distinctive_token,
    make_scenario,
    parse_file_commands,
)
from ectf_action.action import add_run_arguments, run_command
from ectf_action.client import EctfClient
from ectf_action.post import post_command
from ectf_action.settings import INPUTS
from ectf_action.simulator import Scenario, Simulator


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


def run_in_process(
    env: dict[str, str], *argv: str, client_factory: Any = None
) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_command(
        run_args(*argv),
        env=env,
        stdout=stdout,
        stderr=stderr,
        client_factory=client_factory,
        install_signal_handlers=False,
    )
    return code, stdout.getvalue(), stderr.getvalue()


def refusing_factory(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("no client may be made for this run")


def errors(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("::error")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- flags -----------------------------------------------------------------------------------


def test_every_input_has_a_flag_defaulting_to_none() -> None:
    args = run_args()
    for spec in INPUTS:
        assert getattr(args, spec.name.replace("-", "_")) is None
    assert run_args("--timeout-minutes", "3", "--on-conflict", "fail").on_conflict == "fail"


def test_the_entry_modules_do_not_import_the_http_library() -> None:
    code = (
        "import sys, ectf_action.action, ectf_action.settings, ectf_action.demo; "
        "print(sorted(m for m in ('requests', 'urllib3', 'ectf_action.client', "
        "'ectf_action.simulator') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- before anything is sent -------------------------------------------------------------------


def test_the_mask_comes_first_even_before_an_input_error(action_env: ActionEnv) -> None:
    action_env.set_inputs(**{"timeout-minutes": "soon"})
    code, stdout, stderr = run_in_process(action_env.env, client_factory=refusing_factory)
    action_env.completed(code, stdout, stderr)
    lines = stdout.splitlines()
    assert lines[0] == f"::add-mask::{action_env.token}"
    assert code == 2
    assert errors(stdout) == [
        "::error title=Invalid input::timeout-minutes: 'soon' is not a number. Nothing was sent "
        "to the testing server; fix this input and run again."
    ]
    assert action_env.outputs() == {
        "status": "error",
        "message": "eCTF run: error; invalid input, nothing was sent; timeout-minutes: 'soon' is "
        "not a number",
    }


def test_a_token_from_the_config_file_is_masked_before_use(
    tmp_path: Path, simulator: Simulator, secret_scanner: SecretScanner
) -> None:
    (tmp_path / ".ectf-config").write_text(
        f"token: {simulator.token}\napi_url: {simulator.url}\n"
        "git_url: ssh://git@github.com/sim-team/design.git\n"
    )
    env = {"HOME": str(tmp_path)}
    code, stdout, _ = run_in_process(
        env, "--commit", "1234567", "--poll-interval", "0.05", "--artifacts-path",
        str(tmp_path / "artifacts"), "--junit-path", str(tmp_path / "junit.xml"),
    )  # fmt: skip
    assert code == 0, stdout
    # Outside Actions the step is shown as GitHub shows it: the mask hides the token
    # everywhere, the mask command included.
    assert simulator.token not in stdout
    assert "::add-mask::" not in stdout
    # Outside Actions there is no output file: the outputs are printed.
    outputs_line = next(line for line in stdout.splitlines() if line.startswith("outputs: "))
    assert "status=succeeded" in outputs_line
    assert f"junit-path={(tmp_path / 'junit.xml').as_posix()}" in outputs_line


def test_no_token_skips_with_a_notice_and_reports(action_env: ActionEnv) -> None:
    action_env.set_inputs(token="")
    code, stdout, stderr = run_in_process(action_env.env, client_factory=refusing_factory)
    action_env.completed(code, stdout, stderr)
    assert code == 0
    notices = [line for line in stdout.splitlines() if line.startswith("::notice")]
    assert len(notices) == 1 and "skip-without-token" in notices[0]
    outputs = action_env.outputs()
    assert outputs["status"] == "skipped" and outputs["flow-id"] == ""
    assert outputs["jobs"] == "[]"
    assert "skipped" in action_env.summary()


def test_no_token_without_skip_fails_saying_how_to_set_the_secret(action_env: ActionEnv) -> None:
    action_env.set_inputs(token="", **{"skip-without-token": "false"})
    code, stdout, _ = run_in_process(action_env.env, client_factory=refusing_factory)
    assert code == 2
    (error,) = errors(stdout)
    assert "secrets.ECTF_TOKEN" in error


# -- trouble with the server -------------------------------------------------------------------


def test_an_unreachable_server_is_exit_3_with_reports(action_env: ActionEnv) -> None:
    action_env.set_inputs(**{"api-url": f"http://127.0.0.1:{free_port()}"})

    def impatient(api_url: str, token: str) -> EctfClient:
        return EctfClient(api_url, token, retries=0, queue_attempts=1)

    code, stdout, stderr = run_in_process(action_env.env, client_factory=impatient)
    action_env.completed(code, stdout, stderr)
    assert code == 3
    (error,) = errors(stdout)
    assert error.startswith("::error title=eCTF run failed::")
    assert action_env.outputs()["status"] == "error"
    assert (action_env.workspace / "ectf-junit.xml").exists()


def test_a_rejected_token_is_exit_3(action_env: ActionEnv, simulator: Simulator) -> None:
    action_env.set_inputs(token=distinctive_token())
    code, stdout, _ = run_in_process(action_env.env)
    assert code == 3
    (error,) = errors(stdout)
    assert "token" in error and "rejected" in error
    assert all(record.status == 401 for record in simulator.requests)


def test_outputs_use_the_delimiter_form_and_the_contract_shape(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    code, stdout, stderr = run_in_process(action_env.env)
    action_env.completed(code, stdout, stderr)
    assert code == 0, stdout
    raw = action_env.output_file.read_text()
    assert raw.startswith("flow-id<<ghadelimiter_")
    outputs = parse_file_commands(raw)
    assert list(outputs) == [
        "flow-id", "status", "message", "failed-jobs", "jobs", "junit-path", "artifacts-path",
    ]  # fmt: skip
    for job in json.loads(outputs["jobs"]):
        assert set(job) == {"id", "name", "status", "has_artifacts", "private", "artifacts_dir"}


# -- hostile server text -----------------------------------------------------------------------

HOSTILE_NAME = "::error title=owned::not ours"
HOSTILE_LOG = "::error::injected\n::add-mask::x\n::stop-commands::abc\n::abc::\n::warning::late\n"


@pytest.fixture
def hostile_simulator(sim_token: str) -> Any:
    scenario = Scenario.from_dict(
        {
            "flows": {
                "test": {
                    "jobs": [
                        {
                            "name": HOSTILE_NAME,
                            "duration": 1,
                            "outcome": "failed",
                            "artifacts": [{"name": "evil.log", "text": HOSTILE_LOG}],
                        }
                    ]
                }
            }
        },
        base=make_scenario(),
    )
    with Simulator(scenario, token=sim_token) as simulator:
        yield simulator


def test_server_text_cannot_issue_workflow_commands(
    tmp_path: Path, hostile_simulator: Simulator
) -> None:
    environment = ActionEnv(tmp_path, hostile_simulator.token, hostile_simulator.url)
    code, stdout, _ = run_in_process(environment.env)
    assert code == 1
    stop_token: str | None = None
    for line in stdout.splitlines():
        if stop_token is not None:
            if line == f"::{stop_token}::":
                stop_token = None
            continue
        if line.startswith("::stop-commands::"):
            stop_token = line.split("::")[2]
            continue
        assert not line.startswith(("::warning::late", "::error::injected", "::add-mask::x"))
        if line.startswith("::error title=eCTF job"):
            properties = line[len("::error ") :].split("::", 1)[0]
            assert "," not in properties  # one property: the name cannot add another
            assert properties.endswith("%3A%3Anot ours failed")
    assert stop_token is None
    assert "::error::injected" in stdout  # shown, but fenced


# -- signals -----------------------------------------------------------------------------------


def test_signal_handlers_are_restored_after_the_run(action_env: ActionEnv) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stdout = io.StringIO()
    code = run_command(run_args(), env=action_env.env, stdout=stdout, stderr=io.StringIO())
    action_env.completed(code, stdout.getvalue(), "")
    assert code == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# -- the post step -----------------------------------------------------------------------------


def post(env: dict[str, str]) -> tuple[int, str]:
    stdout = io.StringIO()
    code = post_command(env, stdout)
    return code, stdout.getvalue()


def post_env(action_env: ActionEnv, flow_id: str, flow: str = "test") -> dict[str, str]:
    env = dict(action_env.env)
    env.update(STATE_flow_id=flow_id, STATE_flow=flow)
    return env


def test_post_step_without_state_does_nothing(action_env: ActionEnv, simulator: Simulator) -> None:
    code, stdout = post(dict(action_env.env))
    assert code == 0
    assert stdout.splitlines()[-1] == "The main step queued no eCTF flow; nothing to cancel."
    assert [(r.method, r.path) for r in simulator.requests] == [("GET", "/api/flow/test/")]


def test_post_step_without_state_cancels_the_flow_of_this_commit(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    """The main step was killed while its queue request was on its way: no id was saved,
    but the flow exists and holds the slot."""
    action_env.set_inputs(commit=HANG_SHA)
    with EctfClient(simulator.url, simulator.token) as client:
        flow_id = client.queue_flow(
            "test", {"git_url": "ssh://git@github.com/a/b.git", "commit_hash": HANG_SHA}
        )
    code, stdout = post(dict(action_env.env))
    assert code == 0
    assert f"Cancelled the test flow {flow_id}" in stdout
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["build"] == "canceled"


def test_post_step_without_state_leaves_another_commits_flow_alone(
    action_env: ActionEnv, simulator: Simulator
) -> None:
    with EctfClient(simulator.url, simulator.token) as client:
        client.queue_flow(
            "test", {"git_url": "ssh://git@github.com/a/b.git", "commit_hash": HANG_SHA}
        )
    code, stdout = post(dict(action_env.env))  # this run's commit is another one
    assert code == 0
    assert stdout.splitlines()[-1] == "The main step queued no eCTF flow; nothing to cancel."
    assert not any(r.path.endswith("/cancel/") for r in simulator.requests)


def test_post_step_cancels_an_active_flow(action_env: ActionEnv, simulator: Simulator) -> None:
    with EctfClient(simulator.url, simulator.token) as client:
        flow_id = client.queue_flow(
            "test", {"git_url": "ssh://git@github.com/a/b.git", "commit_hash": HANG_SHA}
        )
    code, stdout = post(post_env(action_env, flow_id))
    assert code == 0
    assert stdout.splitlines()[0] == f"::add-mask::{simulator.token}"
    assert f"Cancelled the test flow {flow_id}" in stdout
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.statuses["build"] == "canceled"


def test_post_step_leaves_an_ended_flow_alone(action_env: ActionEnv, simulator: Simulator) -> None:
    with EctfClient(simulator.url, simulator.token) as client:
        flow_id = client.queue_flow(
            "test", {"git_url": "ssh://git@github.com/a/b.git", "commit_hash": FAIL_SHA}
        )
    simulator.engine.wait_completed(flow_id)
    code, stdout = post(post_env(action_env, flow_id))
    assert code == 0
    assert "already ended; nothing to cancel" in stdout
    assert not any(r.path.endswith("/cancel/") for r in simulator.requests)


def test_post_step_never_fails_the_job(action_env: ActionEnv) -> None:
    env = post_env(action_env, "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    env["INPUT_API-URL"] = f"http://127.0.0.1:{free_port()}"
    stdout = io.StringIO()

    def impatient(api_url: str, token: str) -> EctfClient:
        return EctfClient(api_url, token, retries=0, queue_attempts=1)

    assert post_command(env, stdout, client_factory=impatient) == 0
    assert "::warning title=eCTF flow not cancelled::" in stdout.getvalue()
    code, text = post(post_env(action_env, "not-a-uuid"))
    assert code == 0 and "STATE_flow_id" in text


def test_outside_actions_the_step_is_shown_as_github_shows_it(
    tmp_path: Path, simulator: Simulator, secret_scanner: SecretScanner
) -> None:
    """A person running the action at a terminal reads what GitHub would show: the live
    log, the annotations as GitHub lists them, the summary drawn for a terminal; no raw
    workflow command, and the token nowhere."""
    env = {
        "HOME": str(tmp_path),
        "ECTF_TOKEN": simulator.token,
        "ECTF_API_URL": simulator.url,
        "ECTF_GIT_URL": "ssh://git@github.com/sim-team/design.git",
        "NO_COLOR": "1",
    }
    code, stdout, _ = run_in_process(
        env, "--commit", FAIL_SHA, "--poll-interval", "0.05", "--artifacts-path",
        str(tmp_path / "artifacts"), "--junit-path", str(tmp_path / "junit.xml"),
    )  # fmt: skip
    assert code == 1, stdout
    assert not [line for line in stdout.splitlines() if line.startswith("::")], stdout
    assert "\nAnnotations: " in stdout and "\n  Error: eCTF flow failed: " in stdout
    assert "\nJobs\n----\n" in stdout  # the summary's table, for a terminal
    assert "\x1b[" not in stdout  # NO_COLOR
    assert simulator.token not in stdout
