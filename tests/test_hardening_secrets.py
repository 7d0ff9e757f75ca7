"""The token never reaches a report, escaped or not.

A token made of the characters each report escapes (markdown, XML, JSON, regular
expressions, the workflow commands' `%` and `,`) is echoed back by the server in every
field it sends: job names (the simulator's `echo` fault), statuses, the flow's name,
401 and 403 details, an HTML error page that HTML-escapes it, and a job's log inside its
zip. It is then looked for, raw and in every escaped form (`conftest.token_forms`), in
stdout, stderr, the job summary, JUnit, every output, the state, and the names of the
files and folders made; the live log's cut of long names shows no start of it either;
the command line's own messages neither. The one place the token may be is the job's
log as extracted, which must stay byte for byte what the server sent: the scanner skips
exactly that file's content (`SecretScanner.allow_server_bytes`), and the test compares
it with the zip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import (
    FAIL_SHA,
    ActionEnv,
    Completed,
    SecretScanner,
    make_scenario,
    token_forms,
    without_masks,
)
from ectf_action.simulator import Scenario, Simulator
from hardening_support import (
    FakeServer,
    Reply,
    Request,
    ScriptedApi,
    assert_no_leak,
    detail,
    flow_doc,
    zip_of,
)

pytestmark = pytest.mark.e2e

# Visible ASCII without spaces, as a header carries a token, and every special character
# of the reports' formats.
SPECIALS = "tok_*[x]<y>&z\"q\\%,|{}$^.+?-`#!~:'"
LONG_NAME = "integration-tests-on-the-reference-boards"


def special_token() -> str:
    return SPECIALS + uuid.uuid4().hex


def no_start_of(token: str, text: str, where: str) -> None:
    """Not even the token's first 8 characters (what cutting a long name before
    redacting it would show)."""
    assert token[:8] not in text, f"the start of the token is in {where}"


# -- job names echoed by the simulator -------------------------------------------------------


def test_a_token_echoed_in_every_job_name_reaches_no_report(tmp_path: Path) -> None:
    """The simulator's echo fault quotes the token in every job name of every flow
    document; the build fails, so the names reach annotations, JUnit and the summary."""
    token = special_token()
    scanner = SecretScanner()
    scenario = Scenario.from_dict({"faults": [{"kind": "echo"}]}, base=make_scenario(0.01))
    with Simulator(scenario.with_token(token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, scanner)
        environment.set_inputs(commit=FAIL_SHA)
        done = environment.run()
        echoed = [r for r in simulator.requests if r.fault == "echo"]
    assert_no_leak(scanner, tmp_path, token)
    no_start_of(token, without_masks(done.stdout), "stdout")
    assert done.returncode == 1, done.stdout + done.stderr
    assert echoed, "the echo fault never fired"
    names = [job["name"] for job in json.loads(environment.outputs()["jobs"])]
    assert names and all(name.endswith("(token ***)") for name in names), names
    assert environment.outputs()["failed-jobs"] == "build (token ***)"


# -- every other field, from the scripted server -------------------------------------------


def html_page(token: str) -> bytes:
    """A proxy's error page that quotes the token, HTML-escaped as a page would."""
    escaped = token.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&quot;").replace("'", "&#x27;")
    return (
        f"<html><head><title>502 Bad Gateway for {escaped}</title></head>"
        f"<body><h1>upstream refused the token {escaped}</h1></body></html>"
    ).encode()


def build_log(token: str) -> bytes:
    return (
        f"cc -DAPI_TOKEN={token} -c main.c\n"
        f"main.c:3:5: error: the token {token} is not a constant\n"
        "Build failed with exit code 2\n"
    ).encode()


def echoing_api(token: str) -> ScriptedApi:
    """Polls: an HTML 502 quoting the token, then the flow named after the token with a
    job whose status is the token and one whose (long) name holds it, then the end:
    the build failed (its log quotes the token), the tests' download is refused with a
    403 that quotes it."""
    secret_job = f"{LONG_NAME} {token}"
    running = flow_doc([("build", token), (secret_job, "running"), ("tests", "queued")])
    ended = flow_doc(
        [("build", "failed"), (secret_job, "succeeded"), ("tests", "failed")],
        artifacts=["build", "tests"],
    )
    artifacts: dict[str, bytes | Reply] = {
        "build": zip_of({"build.log": build_log(token), "hsm.map": b"map\n"}),
        "tests": detail(403, f"Invalid token {token}"),
    }
    return ScriptedApi(
        token,
        [Reply(502, html_page(token), "text/html"), {**running, "name": token}, ended],
        artifacts,
    )


def test_a_token_echoed_in_statuses_names_details_pages_and_logs_reaches_no_report(
    tmp_path: Path,
) -> None:
    token = special_token()
    scanner = SecretScanner()
    api = echoing_api(token)
    with FakeServer(api) as server:
        environment = ActionEnv(tmp_path, token, server.url, scanner)
        done = environment.run()
    assert done.returncode == 1, done.stdout + done.stderr
    log = environment.workspace / "ectf-artifacts" / "build" / "build.log"
    assert log.read_bytes() == build_log(token)  # the server's artifact, byte for byte
    scanner.allow_server_bytes(log)
    assert_no_leak(scanner, tmp_path, token)
    no_start_of(token, without_masks(done.stdout), "stdout")
    # Each echo did reach the reports, redacted: none of this passed by not being shown.
    shown = done.stdout
    assert "an HTML page: 502 Bad Gateway for ***; trying again" in shown, shown
    assert "-> 403: Invalid token ***" in shown
    assert "error: the token *** is not a constant" in shown
    assert f"{LONG_NAME} ***" in environment.outputs()["jobs"]
    junit = ET.parse(environment.workspace / "ectf-junit.xml").getroot()  # noqa: S314 (ours)
    failures = [failure.text or "" for failure in junit.iter("failure")]
    assert any("the token *** is not a constant" in text for text in failures), failures
    assert "***" in environment.summary()


def rejecting(token: str) -> FakeServer:
    """A server that rejects every request with a 401 quoting the token."""

    def app(request: Request) -> Reply:
        return detail(401, f"Invalid token {token}")

    return FakeServer(app)


def test_a_token_quoted_in_a_401_detail_reaches_no_report(tmp_path: Path) -> None:
    """The 401's detail lands in the error, the message output, the summary and JUnit:
    each holds it redacted, none escaped (the summary's `\\_` once read as the token)."""
    token = special_token()
    scanner = SecretScanner()
    with rejecting(token) as server:
        environment = ActionEnv(tmp_path, token, server.url, scanner)
        done = environment.run()
    assert_no_leak(scanner, tmp_path, token)
    assert done.returncode == 3, done.stdout + done.stderr
    errors = done.commands("error")
    assert len(errors) == 1 and "Invalid token ***" in errors[0], errors
    assert "Invalid token ***" in environment.outputs()["message"]
    assert "Invalid token" in environment.summary()


# -- the command line's own messages ---------------------------------------------------------


def cli(home: Path, url: str, token: str, *args: str) -> Completed:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ECTF_TOKEN": token,
        "ECTF_API_URL": url,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ectf_action", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Completed(done.returncode, done.stdout, done.stderr)


def test_the_command_line_shows_an_echoed_token_nowhere(tmp_path: Path) -> None:
    """`flows list`, `flows show` (table and JSON) against the echoing simulator, and a
    401 quoting the token: the token is in none of their output."""
    token = special_token()
    scanner = SecretScanner()
    scenario = Scenario.from_dict({"faults": [{"kind": "echo"}]}, base=make_scenario(0.01))
    runs: list[Completed] = []
    with Simulator(scenario.with_token(token)) as simulator:
        team = simulator.engine.team_for_token(token)
        assert team is not None
        params = {"git_url": "ssh://git@github.com/sim-team/design.git", "commit_hash": FAIL_SHA}
        flow_id = simulator.engine.queue_flow(team, "test", params)
        simulator.engine.wait_completed(flow_id, timeout=10)
        for args in (["flows", "list", "test"], ["flows", "show", "test", flow_id]):
            runs.append(cli(tmp_path, simulator.url, token, *args))
            runs.append(cli(tmp_path, simulator.url, token, *args, "--json"))
    with rejecting(token) as server:
        refused = cli(tmp_path, server.url, token, "flows", "list", "test")
    for number, run in enumerate([*runs, refused]):
        scanner.add_text(f"command {number} stdout", run.stdout)
        scanner.add_text(f"command {number} stderr", run.stderr)
    assert_no_leak(scanner, tmp_path, token)
    for number, run in enumerate([*runs, refused]):
        no_start_of(token, run.stdout + run.stderr, f"command {number}")
    assert [run.returncode for run in runs] == [0, 0, 0, 0], runs
    assert "(token ***)" in runs[2].stdout and "(token ***)" in runs[3].stdout
    assert refused.returncode == 3 and "Invalid token ***" in refused.stderr, refused


def test_the_scanner_finds_the_token_in_each_escaped_form_and_in_names(tmp_path: Path) -> None:
    """The checks above can fail: each escaped form in a text, a folder named after the
    token, and the token in a file are found; an allowed server file's content is not."""
    token = special_token()
    scanner = SecretScanner()
    for form, text in token_forms(token).items():
        scanner.add_text(form, f"before {text} after")
    (tmp_path / f"build-{token[:20].replace('/', '_')}").mkdir()
    (tmp_path / "summary.md").write_text(token_forms(token)["markdown"])
    server_file = tmp_path / "server.log"
    server_file.write_text(token)
    scanner.add_folder(tmp_path)
    scanner.allow_server_bytes(server_file)
    found = scanner.leaks(token)
    for form in token_forms(token):
        assert any(where.startswith(f"{form} ({form})") for where in found), (form, found)
    assert any("the name 'build-" in where for where in found), found
    assert any("summary.md (markdown)" in where for where in found), found
    assert not any(str(server_file) in where for where in found), found


# -- credentials in the URL or in ~/.netrc ----------------------------------------------------


def test_an_api_url_with_user_info_is_refused_before_any_request_without_its_password(
    tmp_path: Path,
) -> None:
    """requests would send `user:password@` as Basic auth instead of the team's token, and
    print the password in its errors: it is an input error (exit 2), found before any
    request, and the password is in no stream, output or file."""
    token = special_token()
    password = f"pw-{uuid.uuid4().hex}"
    scanner = SecretScanner()
    with Simulator(make_scenario(0.01).with_token(token)) as simulator:
        url = simulator.url.replace("http://", f"http://ectf-user:{password}@")
        environment = ActionEnv(tmp_path, token, url, scanner)
        done = environment.run()
        sent = list(simulator.requests)
    assert_no_leak(scanner, tmp_path, password)
    assert_no_leak(scanner, tmp_path, token)
    assert done.returncode == 2, done.stdout + done.stderr
    assert sent == []
    (error,) = done.commands("error")
    assert "api-url" in error and "user name or password" in error, error
    assert environment.outputs()["status"] == "error"


def recording(api: ScriptedApi, seen: list[Request]) -> FakeServer:
    def app(request: Request) -> Reply:
        seen.append(request)
        return api(request)

    return FakeServer(app)


def finished_flow(token: str) -> ScriptedApi:
    return ScriptedApi(token, [flow_doc({"build": "running"}), flow_doc({"build": "succeeded"})])


def test_a_netrc_entry_for_the_server_never_replaces_the_bearer_token(tmp_path: Path) -> None:
    """`~/.netrc` (HOME of the run) has an entry for the server's host: every request
    still carries `Authorization: Bearer <token>`, and the netrc password is nowhere."""
    token = special_token()
    password = f"netrc-{uuid.uuid4().hex}"
    scanner = SecretScanner()
    seen: list[Request] = []
    with recording(finished_flow(token), seen) as server:
        environment = ActionEnv(tmp_path, token, server.url, scanner)
        netrc = environment.home / ".netrc"
        netrc.write_text(f"machine 127.0.0.1 login netrc-user password {password}\n")
        netrc.chmod(0o600)
        done = environment.run()
    assert_no_leak(scanner, tmp_path, token)
    scanner.server_files.add(netrc)  # ours, written above
    assert_no_leak(scanner, tmp_path, password)
    assert [r.headers.get("Authorization") for r in seen] == [f"Bearer {token}"] * len(seen)
    assert len(seen) >= 3, [r.path for r in seen]  # list, queue, a poll at least
    assert done.returncode == 0, done.stdout + done.stderr
