"""Every input with wrong values: exit 2, exactly one `::error::` naming the input and
what is allowed, the `status` output `error`, and not one request to the server.

The simulator is real and listening, so "nothing was sent" is read off its request
records, not assumed. The token is distinctive and scanned for everywhere, including
in the runs where it is itself the bad value.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ActionEnv, SecretScanner, make_scenario
from ectf_action.client import EctfClient
from ectf_action.errors import InvalidInput
from ectf_action.post import post_command
from ectf_action.simulator import Simulator
from hardening_support import assert_no_leak, run_action

# (input, bad value, what the message must say is allowed)
BAD_INPUTS: list[tuple[str, str, str]] = [
    ("flow", "deploy", "use one of clone, test, submit, remote"),
    ("flow", "Test", "use one of clone, test, submit, remote"),
    ("api-url", "localhost:8000", "http(s) URL"),
    ("api-url", "ftp://example.com", "http(s) URL"),
    ("api-url", "https://api.example.com/?x=1", "must not hold a query"),
    ("git-url", "https://github.com/team/design.git", "ssh://git@<host>/<owner>/<repo>.git"),
    ("git-url", "git@github.com:team/design.git", "ssh://git@<host>/<owner>/<repo>.git"),
    ("commit", "not-hex", "7 to 64 hex digits"),
    ("commit", "abc12", "7 to 64 hex digits"),
    ("commit", "g" * 40, "7 to 64 hex digits"),
    ("target-team", "rival\nteam", "one line"),
    ("params", "{team: [", "YAML or JSON"),
    ("params", '{"a": 1,,}', "YAML or JSON"),
    ("params", "[1, 2]", "must be a mapping"),
    ("params", "commit_hash: abc", "use the commit input"),
    ("timeout-minutes", "-1", "> 0"),
    ("timeout-minutes", "0", "> 0"),
    ("timeout-minutes", "soon", "not a number"),
    ("timeout-minutes", "nan", "finite number"),
    ("poll-interval", "0", "more than 0 and at most 3600"),
    ("poll-interval", "-5", "more than 0 and at most 3600"),
    ("poll-interval", "fast", "auto or seconds"),
    ("on-conflict", "retry", "use one of wait, cancel, fail"),
    ("on-pending", "ignore", "use one of exit, wait, fail"),
    ("pending-inputs", "{team_approval: [", "YAML or JSON"),
    ("pending-inputs", "[team_approval]", "must be a mapping"),
    ("pending-inputs", "team_approval: yes", "must be a mapping"),
    ("artifacts-path", "../outside", "relative to it"),
    ("artifacts-path", "/etc", "relative to it"),
    ("artifacts-path", ".", "name a path inside it"),
    ("download-artifacts", "some", "use one of all, failed, none"),
    ("max-artifact-mb", "0", "> 0"),
    ("max-artifact-mb", "lots", "not a number"),
    ("junit-path", "../report.xml", "relative to it"),
    ("job-summary", "yes", "use true or false"),
    ("fail-on", "failed,sometimes", "comma-separated list of"),
    ("fail-on", ",", "comma-separated list of"),
    ("skip-without-token", "maybe", "use true or false"),
]

# Tokens that cannot travel in a header: copy-and-paste accidents.
BAD_TOKENS = {
    "a space": "tok-with a-space-secret",
    "a line break": "tok-first-line\nsecond-line-secret",
    "a character outside ASCII": "tok-caf\u00e9-\u20ac-secret",
}


@pytest.fixture
def quiet_simulator(sim_token: str) -> Iterator[Simulator]:
    with Simulator(make_scenario(), token=sim_token) as simulator:
        yield simulator


def run_with(
    tmp_path: Path, simulator: Simulator, scanner: SecretScanner, token: str, **inputs: str
) -> tuple[int, str, ActionEnv]:
    environment = ActionEnv(tmp_path, token, simulator.url, scanner)
    environment.set_inputs(**inputs)
    ran = run_action(environment)
    assert_no_leak(scanner, tmp_path, token or simulator.token)
    return ran.code, ran.stdout, environment


def only_error(stdout: str) -> str:
    errors = [line for line in stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_INPUTS)
def test_a_bad_input_is_refused_before_any_request(
    tmp_path: Path,
    quiet_simulator: Simulator,
    secret_scanner: SecretScanner,
    name: str,
    value: str,
    allowed: str,
) -> None:
    code, stdout, environment = run_with(
        tmp_path, quiet_simulator, secret_scanner, quiet_simulator.token, **{name: value}
    )
    assert code == 2, stdout
    error = only_error(stdout)
    assert error.startswith("::error title=Invalid input::")
    assert name in error and allowed in error, error
    assert quiet_simulator.requests == []
    outputs = environment.outputs()
    assert outputs.keys() == {"status", "message"} and outputs["status"] == "error"
    assert outputs["message"].startswith("eCTF run: error; invalid input, nothing was sent; ")
    assert stdout.splitlines()[0].startswith("::add-mask::")


def test_remote_without_a_target_team_is_refused(
    tmp_path: Path, quiet_simulator: Simulator, secret_scanner: SecretScanner
) -> None:
    code, stdout, _ = run_with(
        tmp_path, quiet_simulator, secret_scanner, quiet_simulator.token, flow="remote"
    )
    assert code == 2
    assert "target-team: is required for flow: remote" in only_error(stdout)
    assert quiet_simulator.requests == []


def test_a_missing_token_with_skip_off_is_refused(
    tmp_path: Path, quiet_simulator: Simulator, secret_scanner: SecretScanner
) -> None:
    code, stdout, _ = run_with(
        tmp_path, quiet_simulator, secret_scanner, "", **{"skip-without-token": "false"}
    )
    assert code == 2
    assert "secrets.ECTF_TOKEN" in only_error(stdout)
    assert quiet_simulator.requests == []


@pytest.mark.parametrize("problem", sorted(BAD_TOKENS))
def test_a_token_that_cannot_be_sent_is_refused_without_quoting_it(
    tmp_path: Path, quiet_simulator: Simulator, secret_scanner: SecretScanner, problem: str
) -> None:
    token = BAD_TOKENS[problem]
    code, stdout, _ = run_with(tmp_path, quiet_simulator, secret_scanner, token)
    assert code == 2, stdout
    error = only_error(stdout)
    assert error.startswith("::error title=Invalid input::input token: holds a space")
    assert quiet_simulator.requests == []


def test_the_client_refuses_such_a_token_too() -> None:
    """The command-line client and the post step build clients without the action's
    settings; the client itself refuses a token it could not send."""
    with pytest.raises(InvalidInput) as caught:
        EctfClient("http://127.0.0.1:9", BAD_TOKENS["a character outside ASCII"])
    assert "\u20ac" not in str(caught.value)


def test_the_post_step_with_such_a_token_warns_and_succeeds(
    tmp_path: Path, quiet_simulator: Simulator
) -> None:
    environment = ActionEnv(tmp_path, BAD_TOKENS["a line break"], quiet_simulator.url)
    env = dict(environment.env)
    env.update(STATE_flow_id="3fa85f64-5717-4562-b3fc-2c963f66afa6", STATE_flow="test")
    stdout = io.StringIO()
    assert post_command(env, stdout) == 0
    assert "::warning title=eCTF post step::The eCTF flow was not cancelled" in stdout.getvalue()
    assert quiet_simulator.requests == []


def test_a_bad_flag_through_the_real_entry_point(
    tmp_path: Path, quiet_simulator: Simulator, secret_scanner: SecretScanner
) -> None:
    """The same refusal from `python -m ectf_action run`, a flag winning over the input."""
    environment = ActionEnv(tmp_path, quiet_simulator.token, quiet_simulator.url, secret_scanner)
    process = subprocess.run(
        [sys.executable, "-m", "ectf_action", "run", "--on-conflict", "sometimes"],
        cwd=environment.workspace,
        env=environment.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    done = environment.completed(process.returncode, process.stdout, process.stderr)
    assert done.returncode == 2
    error = only_error(done.stdout)
    assert "on-conflict: 'sometimes' is not allowed; use one of wait, cancel, fail" in error
    assert done.stderr == ""
    assert quiet_simulator.requests == []
    assert_no_leak(secret_scanner, tmp_path, quiet_simulator.token)
