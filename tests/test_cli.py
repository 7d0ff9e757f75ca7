"""The command line: every subcommand over a real client and a mocked transport, golden
files for what people and scripts read, and the exit status of each kind of failure."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

import conftest
from conftest import FAIL_SHA, PUSH_SHA, make_scenario
from ectf_action import __version__, cli
from ectf_action.client import EctfClient
from ectf_action.clock import FakeClock
from ectf_action.config import DEFAULT_API_URL
from ectf_action.models import FLOW_NAMES
from ectf_action.simulator import Simulator

API = "https://api.example.test"
TOKEN = "tok-5ec7e7-never-printed"
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
OTHER_FLOW_ID = "0b9d1c1e-8a5b-4c8e-9f3e-2f1a0c6d7e81"
JOB_PULL = "981b2de7-f03f-4780-9cd1-1b6a893a0221"
JOB_BUILD = "2d7c01fd-76b6-4221-9c13-0342a2ed902d"
JOB_TESTS = "7e782e6c-2e35-4a3e-9702-1f46fed7cd2b"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT_URL = "ssh://git@github.com/team/design.git"
ENV = {"ECTF_TOKEN": TOKEN, "ECTF_API_URL": API, "ECTF_GIT_URL": GIT_URL}
AUTH = matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})
GOLDEN = Path(__file__).parent / "golden" / "cli"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


# -- helpers -------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run(
    argv: Sequence[str],
    *,
    home: Path,
    env: dict[str, str] | None = None,
    clock: FakeClock | None = None,
) -> Outcome:
    """`main` in-process, over a real client that never sleeps between retries."""
    stdout, stderr = io.StringIO(), io.StringIO()

    def factory(api_url: str, token: str) -> EctfClient:
        return EctfClient(
            api_url,
            token,
            retries=0,
            backoff_factor=0,
            queue_attempts=1,
            sleep=lambda _: None,
        )

    code = cli.main(
        list(argv),
        env=ENV if env is None else env,
        stdout=stdout,
        stderr=stderr,
        home=home,
        client_factory=factory,
        clock=clock,
    )
    outcome = Outcome(code, stdout.getvalue(), stderr.getvalue())
    # `run` masks the token for the runner first: that command is the one place it may appear
    shown = "".join(
        line
        for line in (outcome.out + outcome.err).splitlines(keepends=True)
        if not line.startswith("::add-mask::")
    )
    for secret in {TOKEN, (env or {}).get("ECTF_TOKEN") or TOKEN}:
        assert secret not in shown
    return outcome


def assert_golden(name: str, text: str) -> None:
    conftest.assert_golden(GOLDEN / f"{name}.txt", text)


def job(
    job_id: str, name: str, status: str, *, artifacts: bool = False, private: bool = False
) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": name,
        "status": status,
        "has_artifacts": artifacts,
        "private": private,
    }


def flow(
    flow_id: str = FLOW_ID,
    *,
    name: str = "test",
    completed: bool = False,
    jobs: Sequence[dict[str, Any]] = (),
    params: dict[str, Any] | None = None,
    submit_time: str = "2026-01-29T14:53:48.335Z",
) -> dict[str, Any]:
    return {
        "id": flow_id,
        "submit_time": submit_time,
        "name": name,
        "completed": completed,
        "params": {"git_url": GIT_URL, "commit_hash": COMMIT} if params is None else params,
        "jobs": list(jobs),
    }


FAILED_FLOW = flow(
    completed=True,
    jobs=[
        job(JOB_PULL, "pull-repo", "succeeded", artifacts=True),
        job(JOB_BUILD, "build", "failed", artifacts=True),
        job(JOB_TESTS, "\x1b[31mtests\nspoofed line", "canceled"),
    ],
)
RUNNING_FLOW = flow(
    OTHER_FLOW_ID,
    submit_time="2026-01-30T09:00:00+01:00",
    jobs=[
        job(JOB_PULL, "pull-repo", "succeeded"),
        job(JOB_BUILD, "build", "running"),
    ],
)
REMOTE_FLOW = flow(
    "5c1b8a3e-1111-4a2b-8c3d-444455556666",
    name="remote",
    submit_time="2026-02-01T10:00:00Z",
    params={"target_team": "mitre"},
    jobs=[job(JOB_PULL, "get_ports", "queued")],
)


def flow_url(flow_name: str, *parts: str) -> str:
    return "/".join([f"{API}/api/flow/{flow_name}", *parts]) + "/"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("build.log", "ok\n")
    return buffer.getvalue()


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- help, version, usage ------------------------------------------------------------------


def all_commands() -> list[list[str]]:
    return [
        ["flows"],
        ["flows", "list"],
        ["flows", "show"],
        ["flows", "queue"],
        ["flows", "cancel"],
        ["flows", "watch"],
        ["jobs"],
        ["jobs", "download"],
        ["jobs", "input"],
        ["packages"],
        ["packages", "list"],
        ["packages", "get"],
        ["flags"],
        ["flags", "photo"],
        ["flags", "design"],
        ["flags", "steal"],
        ["simulate"],
    ]


def test_top_level_help_teaches_with_examples(tmp_path: Path) -> None:
    result = run(["--help"], home=tmp_path)
    assert result.code == 0
    assert "examples:" in result.out
    assert "ectf-action flows queue test --commit" in result.out
    assert DEFAULT_API_URL in result.out
    for command in ("flows", "jobs", "packages", "flags", "run", "simulate", "demo"):
        assert f"    {command} " in result.out


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_help_has_examples(tmp_path: Path, command: list[str]) -> None:
    result = run([*command, "--help"], home=tmp_path)
    assert result.code == 0
    assert "examples:" in result.out
    assert f"ectf-action {' '.join(command)}" in result.out


def test_help_names_every_flow_type(tmp_path: Path) -> None:
    result = run(["flows", "show", "--help"], home=tmp_path)
    for name in FLOW_NAMES:
        assert name in result.out


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], home=tmp_path)
    assert (result.code, result.out) == (0, f"ectf-action {__version__}\n")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND"),
        (["flows"], "required: COMMAND"),
        (["flows", "list", "--num", "many"], "invalid int value: 'many'"),
        (["flows", "show", "test"], "required: FLOW_ID"),
        (["flows", "list", "--bogus"], "unrecognized arguments: --bogus"),
        (["jobs", "input", "test", JOB_PULL], "one of the arguments --data --approve --reject"),
        (["jobs", "input", "test", JOB_PULL, "--approve", "--reject"], "not allowed with"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    api: responses.RequestsMock, tmp_path: Path, argv: list[str], fragment: str
) -> None:
    result = run(argv, home=tmp_path)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert fragment in result.err
    assert len(api.calls) == 0


def test_python_dash_m_is_the_same_program() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ectf_action", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, f"ectf-action {__version__}\n")


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from ectf_action import cli; cli.build_parser().format_help(); "
        "print(sorted(m for m in ('requests', 'yaml', 'ectf_action.client', "
        "'ectf_action.models', 'ectf_action.config', 'ectf_action.simulator', "
        "'ectf_action.action', 'ectf_action.runner', 'dataclasses') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.strip() == "[]"


# -- configuration -------------------------------------------------------------------------


def test_no_token_is_refused_before_any_request(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    result = run(["flows", "list", "test"], home=tmp_path, env={"ECTF_API_URL": API})
    assert result.code == 2
    assert result.err == (
        "error: no token: pass --token, set ECTF_TOKEN, or run `ectf config` "
        "/ write ~/.ectf-config\n"
    )
    assert len(api.calls) == 0


def test_token_and_urls_come_from_the_config_file(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    (tmp_path / ".ectf-config").write_text(f"token: {TOKEN}\napi_url: {API}\n")
    api.get(flow_url("test"), json=[], match=[AUTH])
    result = run(["flows", "list", "test"], home=tmp_path, env={})
    assert (result.code, result.out) == (0, "No test flows.\n")


def test_token_flag_wins_over_environment(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(
        flow_url("test"),
        json=[],
        match=[matchers.header_matcher({"Authorization": "Bearer from-flag"})],
    )
    result = run(["flows", "list", "test", "--token", "from-flag"], home=tmp_path)
    assert result.code == 0


def test_bad_api_url_is_invalid_input(api: responses.RequestsMock, tmp_path: Path) -> None:
    result = run(["flows", "list", "--api-url", "ftp://example.test"], home=tmp_path)
    assert result.code == 2
    assert "ftp://example.test" in result.err
    assert len(api.calls) == 0


def test_nonpositive_request_timeout_is_invalid(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    result = run(["packages", "list", "--timeout", "0"], home=tmp_path)
    assert result.code == 2 and "--timeout" in result.err
    assert len(api.calls) == 0


# -- flows list / show ---------------------------------------------------------------------


def test_flows_list_all_types_table(api: responses.RequestsMock, tmp_path: Path) -> None:
    num = matchers.query_param_matcher({"num": "10"})
    api.get(flow_url("clone"), json=[], match=[AUTH, num])
    api.get(flow_url("test"), json=[FAILED_FLOW, RUNNING_FLOW], match=[AUTH, num])
    api.get(flow_url("submit"), json=[], match=[AUTH, num])
    api.get(flow_url("remote"), json=[REMOTE_FLOW], match=[AUTH, num])
    result = run(["flows", "list"], home=tmp_path)
    assert result.code == 0
    assert len(api.calls) == 4
    assert_golden("flows_list", result.out)


def test_flows_list_json_is_sorted_newest_first(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(
        flow_url("test"),
        json=[FAILED_FLOW, RUNNING_FLOW],
        match=[matchers.query_param_matcher({"num": "0"})],
    )
    result = run(["flows", "list", "test", "--num", "0", "--json"], home=tmp_path)
    assert result.code == 0
    data = json.loads(result.out)
    assert [item["id"] for item in data] == [OTHER_FLOW_ID, FLOW_ID]
    assert [item["status"] for item in data] == ["running", "failed"]
    assert_golden("flows_list_json", result.out)


def test_flows_list_rejects_negative_num_and_unknown_flow(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    negative = run(["flows", "list", "test", "--num", "-1"], home=tmp_path)
    unknown = run(["flows", "list", "tset"], home=tmp_path)
    assert (negative.code, unknown.code) == (2, 2)
    assert "--num" in negative.err
    assert unknown.err == (
        "error: FLOW: 'tset' is not a flow; use one of clone, test, submit, remote\n"
    )
    assert len(api.calls) == 0


def test_flows_show_table_escapes_hostile_names(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(flow_url("test", FLOW_ID), json=FAILED_FLOW, match=[AUTH])
    result = run(["flows", "show", "test", FLOW_ID.upper()], home=tmp_path)
    assert result.code == 0
    assert "\x1b" not in result.out
    assert "spoofed line" in result.out and "\nspoofed" not in result.out
    assert_golden("flows_show", result.out)


def test_flows_show_json(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(flow_url("test", FLOW_ID), json=FAILED_FLOW)
    result = run(["flows", "show", "test", FLOW_ID, "--json"], home=tmp_path)
    assert result.code == 0
    assert json.loads(result.out)["status"] == "failed"
    assert_golden("flows_show_json", result.out)


def test_flows_show_rejects_a_malformed_id(api: responses.RequestsMock, tmp_path: Path) -> None:
    result = run(["flows", "show", "test", "not-a-uuid"], home=tmp_path)
    assert result.code == 2
    assert result.err.startswith("error: FLOW_ID: 'not-a-uuid' is not a UUID")
    assert len(api.calls) == 0


# -- flows queue / cancel ------------------------------------------------------------------


def queue_reply(api: responses.RequestsMock, flow_name: str, body: dict[str, Any]) -> None:
    api.post(
        flow_url(flow_name),
        body=json.dumps(FLOW_ID),
        status=201,
        content_type="application/json",
        match=[AUTH, matchers.json_params_matcher(body)],
    )


def test_flows_queue_prints_the_id(api: responses.RequestsMock, tmp_path: Path) -> None:
    queue_reply(api, "test", {"git_url": GIT_URL, "commit_hash": COMMIT})
    result = run(["flows", "queue", "test", "--commit", COMMIT.upper()], home=tmp_path)
    assert (result.code, result.out) == (0, f"{FLOW_ID}\n")


def test_flows_queue_merges_params(api: responses.RequestsMock, tmp_path: Path) -> None:
    other_url = "ssh://git@example.test/other/repo.git"
    queue_reply(
        api, "submit", {"git_url": other_url, "commit_hash": COMMIT, "note": "x=y", "extra": 3}
    )
    result = run(
        [
            "flows",
            "queue",
            "submit",
            "--commit",
            COMMIT,
            "--git-url",
            other_url,
            "--params",
            "{extra: 3}",
            "--param",
            "note=x=y",
            "--json",
        ],
        home=tmp_path,
    )
    assert result.code == 0
    assert json.loads(result.out) == {"flow": "submit", "id": FLOW_ID}


def test_flows_queue_remote_sends_the_target_team(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    queue_reply(api, "remote", {"target_team": "mitre"})
    result = run(["flows", "queue", "remote", "--target-team", "mitre"], home=tmp_path)
    assert (result.code, result.out) == (0, f"{FLOW_ID}\n")


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["test"], ENV, "error: --commit: which commit"),
        (["test", "--commit", "main"], ENV, "'main' is not a commit hash"),
        (["test", "--commit", COMMIT], {"ECTF_TOKEN": TOKEN}, "no git URL"),
        (
            ["test", "--commit", COMMIT, "--git-url", "https://github.com/team/design"],
            ENV,
            "clones over SSH",
        ),
        (["test", "--commit", COMMIT, "--params", "[1, 2]"], ENV, "--params: must be a mapping"),
        (["test", "--commit", COMMIT, "--params", "a: [b"], ENV, "--params: not valid YAML"),
        (["test", "--commit", COMMIT, "--param", "novalue"], ENV, "'novalue' is not KEY=VALUE"),
        # as in the action, the fields with flags of their own come only from those flags
        (
            ["test", "--commit", COMMIT, "--params", "{git_url: 'ssh://git@h/o/r.git'}"],
            ENV,
            "--params: must not set 'git_url': use --git-url",
        ),
        (
            ["test", "--commit", COMMIT, "--param", f"commit_hash={COMMIT}"],
            ENV,
            "--param: must not set 'commit_hash': use --commit",
        ),
        (
            ["remote", "--param", "target_team=mitre"],
            ENV,
            "--param: must not set 'target_team': use --target-team",
        ),
        (["test", "--commit", COMMIT, "--target-team", "mitre"], ENV, "only the remote flow"),
        (["remote"], ENV, "--target-team: the remote flow needs"),
        (["remote", "--target-team", "../admin"], ENV, "must be a plain name"),
        (["remote", "--target-team", "mitre", "--commit", COMMIT], ENV, "--commit: the remote"),
        (["test", "--commit", COMMIT, "--poll-interval", "often"], ENV, "--poll-interval"),
        (["test", "--commit", COMMIT, "--timeout-minutes", "-5"], ENV, "--timeout-minutes"),
    ],
)
def test_flows_queue_checks_its_body_before_sending(
    api: responses.RequestsMock,
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
    fragment: str,
) -> None:
    result = run(["flows", "queue", *argv], home=tmp_path, env=env)
    assert result.code == 2
    assert fragment in result.err
    assert result.err.count("\n") == 1
    assert len(api.calls) == 0


def test_flows_queue_conflict_names_the_active_flow(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.post(flow_url("test"), status=409, json={"detail": "Reached max active flows"})
    api.get(flow_url("test"), json=[RUNNING_FLOW])
    result = run(["flows", "queue", "test", "--commit", COMMIT], home=tmp_path)
    assert result.code == 3
    assert result.err.startswith("error: POST ")
    assert OTHER_FLOW_ID in result.err
    assert result.out == ""


def test_flows_cancel(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.post(flow_url("test", FLOW_ID, "cancel"), status=204, match=[AUTH])
    result = run(["flows", "cancel", "test", FLOW_ID], home=tmp_path)
    assert (result.code, result.out) == (0, f"Canceled test flow {FLOW_ID}.\n")
    as_json = run(["flows", "cancel", "test", FLOW_ID, "--json"], home=tmp_path)
    assert json.loads(as_json.out) == {"canceled": True, "flow": "test", "id": FLOW_ID}


def test_flows_cancel_of_a_completed_flow_is_refused(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.post(
        flow_url("test", FLOW_ID, "cancel"), status=400, json={"detail": "Flow already completed"}
    )
    result = run(["flows", "cancel", "test", FLOW_ID], home=tmp_path)
    assert result.code == 3
    assert "Flow already completed" in result.err


# -- flows watch ---------------------------------------------------------------------------


def watch_replies(
    api: responses.RequestsMock, *states: dict[str, Any], flow_name: str = "test"
) -> None:
    for state in states:
        api.get(flow_url(flow_name, FLOW_ID), json=state, match=[AUTH])


def test_flows_watch_prints_each_change_and_fails_with_the_flow(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    watch_replies(
        api,
        flow(jobs=[job(JOB_PULL, "pull-repo", "running"), job(JOB_BUILD, "build", "queued")]),
        flow(jobs=[job(JOB_PULL, "pull-repo", "running"), job(JOB_BUILD, "build", "queued")]),
        flow(jobs=[job(JOB_PULL, "pull-repo", "succeeded"), job(JOB_BUILD, "build", "running")]),
        flow(
            completed=True,
            jobs=[job(JOB_PULL, "pull-repo", "succeeded"), job(JOB_BUILD, "build", "failed")],
        ),
    )
    clock = FakeClock()
    result = run(
        ["flows", "watch", "test", FLOW_ID, "--poll-interval", "30"], home=tmp_path, clock=clock
    )
    assert result.code == 1
    assert clock.waits == [30.0, 30.0, 30.0]
    assert_golden("flows_watch_failed", result.out)


def test_flows_watch_succeeds_and_hints_at_pending_input(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    approval = "c0ffee00-0000-4000-8000-000000000001"
    watch_replies(
        api,
        flow(name="submit", jobs=[job(approval, "team_approval", "pending")]),
        flow(name="submit", completed=True, jobs=[job(approval, "team_approval", "succeeded")]),
        flow_name="submit",
    )
    result = run(["flows", "watch", "submit", FLOW_ID], home=tmp_path, clock=FakeClock())
    assert result.code == 0
    assert f"ectf-action jobs input submit {approval} --approve" in result.out
    assert_golden("flows_watch_pending", result.out)


def test_flows_watch_json_keeps_progress_off_stdout(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    watch_replies(api, flow(completed=True, jobs=[job(JOB_PULL, "pull-repo", "succeeded")]))
    result = run(["flows", "watch", "test", FLOW_ID, "--json"], home=tmp_path, clock=FakeClock())
    assert result.code == 0
    document = json.loads(result.out)
    assert (document["reason"], document["status"]) == ("finished", "succeeded")
    assert document["details"]["jobs"][0]["name"] == "pull-repo"
    assert "pull-repo: succeeded" in result.err


def test_flows_watch_times_out_with_exit_1(api: responses.RequestsMock, tmp_path: Path) -> None:
    watch_replies(api, flow(jobs=[job(JOB_PULL, "pull-repo", "running")]))
    clock = FakeClock()
    result = run(
        ["flows", "watch", "test", FLOW_ID, "--poll-interval", "20", "--timeout-minutes", "1"],
        home=tmp_path,
        clock=clock,
    )
    assert result.code == 1
    assert sum(clock.waits) == 60.0
    assert result.err == (
        f"error: test flow {FLOW_ID} did not finish within 1m00s; it keeps running\n"
    )


class SignalClock(FakeClock):
    """Delivers a signal to this process during the first wait, as a user or runner would."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if not self.waits:
            signal.raise_signal(self.signum)
        return super().wait(seconds, cancel)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_flows_watch_stops_on_signals(
    api: responses.RequestsMock, tmp_path: Path, signum: int, code: int
) -> None:
    watch_replies(api, flow(jobs=[job(JOB_PULL, "pull-repo", "running")]))
    before = signal.getsignal(signum)
    result = run(["flows", "watch", "test", FLOW_ID], home=tmp_path, clock=SignalClock(signum))
    assert result.code == code
    assert f"ectf-action flows cancel test {FLOW_ID}" in result.err
    assert signal.getsignal(signum) is before
    assert len(api.calls) == 1


def test_flows_queue_watch_follows_the_new_flow(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    queue_reply(api, "test", {"git_url": GIT_URL, "commit_hash": COMMIT})
    watch_replies(api, flow(completed=True, jobs=[job(JOB_PULL, "pull-repo", "succeeded")]))
    result = run(
        ["flows", "queue", "test", "--commit", COMMIT, "--watch"], home=tmp_path, clock=FakeClock()
    )
    assert result.code == 0
    assert result.out.startswith(f"Queued test flow {FLOW_ID}\n")
    assert result.out.endswith(f"Flow {FLOW_ID} succeeded after 0s.\n")


# -- jobs ----------------------------------------------------------------------------------


def test_jobs_download_saves_the_zip(api: responses.RequestsMock, tmp_path: Path) -> None:
    data = zip_bytes()
    api.get(flow_url("test", "job", JOB_BUILD), body=data, match=[AUTH])
    dest = tmp_path / "out" / "build.zip"
    result = run(["jobs", "download", "test", JOB_BUILD, "-o", str(dest)], home=tmp_path)
    assert result.code == 0
    assert dest.read_bytes() == data
    assert result.out == f"Saved {dest} ({len(data):,} bytes).\n"


def test_jobs_download_into_a_directory_uses_the_job_id(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(flow_url("test", "job", JOB_BUILD), body=zip_bytes())
    result = run(
        ["jobs", "download", "test", JOB_BUILD, "-o", str(tmp_path), "--json"], home=tmp_path
    )
    assert result.code == 0
    assert json.loads(result.out)["path"] == str(tmp_path / f"{JOB_BUILD}.zip")


def test_jobs_download_to_a_new_folder_named_with_a_slash(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(flow_url("test", "job", JOB_BUILD), body=zip_bytes())
    result = run(["jobs", "download", "test", JOB_BUILD, "-o", f"{tmp_path}/new/"], home=tmp_path)
    assert result.code == 0, result.err
    assert zipfile.is_zipfile(tmp_path / "new" / f"{JOB_BUILD}.zip")


def test_jobs_download_never_overwrites_without_force(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    dest = tmp_path / "build.zip"
    dest.write_bytes(b"keep me")
    result = run(["jobs", "download", "test", JOB_BUILD, "-o", str(dest)], home=tmp_path)
    assert result.code == 2
    assert "already exists; pass --force" in result.err
    assert dest.read_bytes() == b"keep me"
    assert len(api.calls) == 0
    api.get(flow_url("test", "job", JOB_BUILD), body=zip_bytes())
    forced = run(["jobs", "download", "test", JOB_BUILD, "-o", str(dest), "--force"], home=tmp_path)
    assert forced.code == 0
    assert zipfile.is_zipfile(dest)


def test_jobs_download_of_a_broken_zip_keeps_nothing(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(flow_url("test", "job", JOB_BUILD), body=b"not a zip")
    dest = tmp_path / "build.zip"
    result = run(["jobs", "download", "test", JOB_BUILD, "-o", str(dest)], home=tmp_path)
    assert result.code == 3
    assert "not a readable zip" in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("answer", "sent"),
    [
        (["--approve"], {"approve": True}),
        (["--reject"], {"approve": False}),
        (["--data", '{"approve": true, "note": "ok"}'], {"approve": True, "note": "ok"}),
        (["--data", "port: 4000"], {"port": 4000}),
    ],
)
def test_jobs_input_patches_the_pending_job(
    api: responses.RequestsMock, tmp_path: Path, answer: list[str], sent: dict[str, Any]
) -> None:
    api.patch(
        flow_url("submit", JOB_BUILD), status=204, match=[AUTH, matchers.json_params_matcher(sent)]
    )
    result = run(["jobs", "input", "submit", JOB_BUILD, *answer], home=tmp_path)
    assert result.code == 0
    assert result.out == f"Sent {json.dumps(sent, sort_keys=True)} to job {JOB_BUILD}.\n"


@pytest.mark.parametrize("data", ["[true]", "{unclosed", "", "approve"])
def test_jobs_input_rejects_a_body_that_is_not_a_mapping(
    api: responses.RequestsMock, tmp_path: Path, data: str
) -> None:
    result = run(["jobs", "input", "submit", JOB_BUILD, "--data", data], home=tmp_path)
    assert result.code == 2
    assert result.err.startswith("error: --data: ")
    assert len(api.calls) == 0


def test_jobs_input_to_a_job_that_is_not_pending(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.patch(flow_url("submit", JOB_BUILD), status=400, json={"detail": "Job is not pending"})
    result = run(["jobs", "input", "submit", JOB_BUILD, "--approve"], home=tmp_path)
    assert result.code == 3
    assert "Job is not pending" in result.err


# -- packages and flags --------------------------------------------------------------------


def test_packages_list_table_and_json(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(f"{API}/api/package/", json=["team-b", "mitre", "team-a"], match=[AUTH])
    table = run(["packages", "list"], home=tmp_path)
    as_json = run(["packages", "list", "--json"], home=tmp_path)
    assert (table.code, as_json.code) == (0, 0)
    assert json.loads(as_json.out) == ["mitre", "team-a", "team-b"]
    assert_golden("packages_list", table.out)


def test_packages_get_saves_and_refuses_to_overwrite(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(f"{API}/api/package/mitre/", body=b"encrypted bytes", match=[AUTH])
    dest = tmp_path / "mitre.zip"
    first = run(["packages", "get", "mitre", "-o", str(tmp_path)], home=tmp_path)
    assert first.code == 0
    assert dest.read_bytes() == b"encrypted bytes"
    calls = len(api.calls)
    again = run(["packages", "get", "mitre", "-o", str(dest)], home=tmp_path)
    assert again.code == 2
    assert "already exists; pass --force to overwrite it" in again.err
    assert len(api.calls) == calls


def test_packages_get_rejects_a_name_that_is_a_path(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    result = run(["packages", "get", "../../etc/passwd"], home=tmp_path)
    assert result.code == 2
    assert result.err.startswith("error: NAME: ")
    assert len(api.calls) == 0


def test_packages_outside_the_attack_phase(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(f"{API}/api/package/", status=403, json={"detail": "Not in attack phase"})
    result = run(["packages", "list"], home=tmp_path)
    assert result.code == 3
    assert "attack phase" in result.err


def test_flags_photo_uploads_a_png(api: responses.RequestsMock, tmp_path: Path) -> None:
    photo = tmp_path / "team.png"
    photo.write_bytes(PNG)
    api.post(f"{API}/api/flag/team_photo/", json={"flag_hex": "6563746621"}, match=[AUTH])
    result = run(["flags", "photo", str(photo)], home=tmp_path)
    assert (result.code, result.out) == (0, "Team photo flag: 6563746621\n")
    assert b'name="team_photo"' in (api.calls[0].request.body or b"")


def test_flags_design_uploads_a_pdf_json(api: responses.RequestsMock, tmp_path: Path) -> None:
    doc = tmp_path / "design.pdf"
    doc.write_bytes(PDF)
    api.post(f"{API}/api/flag/design_doc/", json={"flag_hex": "abcd"}, match=[AUTH])
    result = run(["flags", "design", str(doc), "--json"], home=tmp_path)
    assert (result.code, json.loads(result.out)) == (0, {"flag_hex": "abcd"})


@pytest.mark.parametrize(
    ("command", "name", "content", "fragment"),
    [
        ("photo", "team.jpg", PNG, "must be a .png file"),
        ("photo", "team.png", PDF, "does not look like a PNG file"),
        ("photo", "missing.png", None, "does not exist"),
        ("design", "design.pdf", PNG, "does not look like a PDF file"),
        ("design", "design.txt", PDF, "must be a .pdf file"),
    ],
)
def test_flags_check_the_file_before_uploading(
    api: responses.RequestsMock,
    tmp_path: Path,
    command: str,
    name: str,
    content: bytes | None,
    fragment: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run(["flags", command, str(path)], home=tmp_path)
    assert result.code == 2
    assert result.err.startswith("error: FILE: ") and fragment in result.err
    assert len(api.calls) == 0


def test_flags_steal_sends_the_digest(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.post(
        f"{API}/api/flag/steal_design/mitre/",
        json={"flag_hex": "f00d"},
        match=[AUTH, matchers.json_params_matcher("0a1b2c3d")],
    )  # type: ignore[arg-type]
    result = run(["flags", "steal", "mitre", "0a1b2c3d"], home=tmp_path)
    assert (result.code, result.out) == (0, "Steal design flag: f00d\n")


def test_flags_steal_with_a_wrong_digest(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.post(f"{API}/api/flag/steal_design/mitre/", status=400, json={"detail": "Digest incorrect"})
    result = run(["flags", "steal", "mitre", "beef"], home=tmp_path)
    assert result.code == 3
    assert "Digest incorrect" in result.err


# -- how failures end ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        (401, "token was rejected"),
        (403, "token is your team's"),  # a flow endpoint: not the attack phase
        (404, "does not know it"),
        (409, "already has a flow of this type"),
        (422, "Fix the named field"),
        (500, "retry later"),
    ],
)
def test_each_server_refusal_exits_3_with_one_line(
    api: responses.RequestsMock, tmp_path: Path, status: int, fragment: str
) -> None:
    api.get(
        flow_url("test", FLOW_ID),
        status=status,
        json={"detail": f"server says\nno ({status}) \x1b[2J"},
    )
    result = run(["flows", "show", "test", FLOW_ID, "--json"], home=tmp_path)
    assert result.code == 3
    assert result.out == ""
    assert result.err.startswith(f"error: GET {API}/api/flow/test/{FLOW_ID}/ -> {status}: ")
    assert result.err.count("\n") == 1 and "\x1b" not in result.err
    assert fragment in result.err
    assert "Traceback" not in result.err


def test_unreachable_server_exits_3(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(flow_url("test"), body=requests.exceptions.ConnectionError("connection refused"))
    result = run(["flows", "list", "test"], home=tmp_path)
    assert result.code == 3
    assert "connection refused" in result.err and result.err.count("\n") == 1


def test_a_reply_of_the_wrong_shape_exits_3(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(flow_url("test", FLOW_ID), json=["not", "a", "flow"])
    result = run(["flows", "show", "test", FLOW_ID], home=tmp_path)
    assert result.code == 3
    assert "expected a flow object" in result.err


def test_unexpected_exceptions_keep_their_traceback(tmp_path: Path) -> None:
    def broken_factory(api_url: str, token: str) -> EctfClient:
        raise RuntimeError("a bug, not a user error")

    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(
            ["packages", "list"],
            env=ENV,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            home=tmp_path,
            client_factory=broken_factory,
        )


# -- against the simulator: a team's session, and the commands served by other modules -----


@pytest.fixture
def fast_simulator(sim_token: str) -> Iterator[Simulator]:
    with Simulator(make_scenario(time_scale=0.01), token=sim_token) as sim:
        yield sim


def sim_env(sim: Simulator) -> dict[str, str]:
    return {"ECTF_TOKEN": sim.token, "ECTF_API_URL": sim.url, "ECTF_GIT_URL": GIT_URL}


def test_a_test_flow_session_against_the_simulator(
    fast_simulator: Simulator, tmp_path: Path
) -> None:
    env = sim_env(fast_simulator)
    assert run(["flows", "list", "test"], home=tmp_path, env=env).out == "No test flows.\n"
    queued = run(
        [
            "flows",
            "queue",
            "test",
            "--commit",
            PUSH_SHA,
            "--watch",
            "--poll-interval",
            "0.02",
            "--timeout-minutes",
            "1",
        ],
        home=tmp_path,
        env=env,
    )
    assert queued.code == 0, queued.err
    assert "build: running -> succeeded" in queued.out
    listed = json.loads(run(["flows", "list", "test", "--json"], home=tmp_path, env=env).out)
    assert [(f["status"], f["params"]["commit_hash"]) for f in listed] == [("succeeded", PUSH_SHA)]
    flow_id = listed[0]["id"]
    shown = run(["flows", "show", "test", flow_id], home=tmp_path, env=env)
    assert "Status:    succeeded (finished)" in shown.out
    build = next(j for j in listed[0]["jobs"] if j["name"] == "build")
    saved = run(
        ["jobs", "download", "test", build["id"], "-o", str(tmp_path)], home=tmp_path, env=env
    )
    assert saved.code == 0, saved.err
    assert zipfile.is_zipfile(tmp_path / f"{build['id']}.zip")
    failing = run(
        ["flows", "queue", "test", "--commit", FAIL_SHA, "--watch", "--poll-interval", "0.02"],
        home=tmp_path,
        env=env,
    )
    assert failing.code == 1
    assert failing.out.splitlines()[-1].startswith(
        f"Flow {failing.out.split()[3]} failed (failed: build)"
    )


def test_a_submit_flow_answered_from_the_command_line(
    fast_simulator: Simulator, tmp_path: Path
) -> None:
    env = sim_env(fast_simulator)
    flow_id = run(
        ["flows", "queue", "submit", "--commit", PUSH_SHA], home=tmp_path, env=env
    ).out.strip()
    deadline = time.monotonic() + 20
    while True:  # the flow stops on team_approval, pending until the team answers
        shown = json.loads(
            run(["flows", "show", "submit", flow_id, "--json"], home=tmp_path, env=env).out
        )
        approval = next(j for j in shown["jobs"] if j["name"] == "team_approval")
        if approval["status"] == "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert approval["status"] == "pending"
    waited = run(
        ["flows", "watch", "submit", flow_id, "--timeout-minutes", "0.001"], home=tmp_path, env=env
    )
    assert waited.code == 1  # still pending when the watch times out
    assert f"jobs input submit {approval['id']} --approve" in waited.out
    answered = run(["jobs", "input", "submit", approval["id"], "--approve"], home=tmp_path, env=env)
    assert answered.code == 0, answered.err
    done = run(
        ["flows", "watch", "submit", flow_id, "--poll-interval", "0.02"], home=tmp_path, env=env
    )
    assert done.code == 0, done.out + done.err
    assert "organizer_approval waits for the organizers" in done.out


def test_packages_and_flags_against_the_simulator(
    fast_simulator: Simulator, tmp_path: Path
) -> None:
    env = sim_env(fast_simulator)
    names = json.loads(run(["packages", "list", "--json"], home=tmp_path, env=env).out)
    assert "rival-team" in names
    got = run(["packages", "get", "rival-team", "-o", str(tmp_path)], home=tmp_path, env=env)
    assert got.code == 0 and (tmp_path / "rival-team.zip").stat().st_size > 0
    photo = tmp_path / "team.png"
    photo.write_bytes(PNG)
    flagged = run(["flags", "photo", str(photo), "--json"], home=tmp_path, env=env)
    assert flagged.code == 0, flagged.err
    assert json.loads(flagged.out)["flag_hex"]
    wrong = run(["flags", "steal", "rival-team", "not-the-digest"], home=tmp_path, env=env)
    assert wrong.code == 3


def test_run_is_the_action_from_a_shell(fast_simulator: Simulator, tmp_path: Path) -> None:
    env = {"ECTF_TOKEN": fast_simulator.token}
    result = run(
        [
            "run",
            "--api-url",
            fast_simulator.url,
            "--flow",
            "clone",
            "--commit",
            PUSH_SHA,
            "--git-url",
            GIT_URL,
            "--poll-interval",
            "0.02",
            "--artifacts-path",
            str(tmp_path / "artifacts"),
            "--junit-path",
            str(tmp_path / "junit.xml"),
            "--job-summary",
            "false",
        ],
        home=tmp_path,
        env=env,
    )
    assert result.code == 0, result.out + result.err
    assert (tmp_path / "junit.xml").exists()
    assert (tmp_path / "artifacts" / "pull-repo").is_dir()


def test_run_and_demo_help_teach_with_examples(tmp_path: Path) -> None:
    run_help = run(["run", "--help"], home=tmp_path)
    demo_help = run(["demo", "--help"], home=tmp_path)
    assert (run_help.code, demo_help.code) == (0, 0)
    assert "--on-conflict" in run_help.out and "examples:" in run_help.out
    assert "--time-scale" in demo_help.out and "examples:" in demo_help.out


def test_run_reports_its_own_usage_errors(tmp_path: Path) -> None:
    result = run(["run", "--no-such-input", "x"], home=tmp_path, env={})
    assert result.code == 2
    assert result.err == (
        "error: unrecognized arguments: --no-such-input x (see `ectf-action run --help`)\n"
    )


def test_demo_runs_offline(tmp_path: Path) -> None:
    result = run(
        ["demo", "--workspace", str(tmp_path / "demo"), "--time-scale", "0.01"],
        home=tmp_path,
        env={},
    )
    assert result.code == 0, result.out + result.err
    assert "ectf-junit.xml" in result.out


def test_simulate_refuses_a_missing_scenario(tmp_path: Path) -> None:
    result = run(
        ["simulate", "--port", "0", "--scenario", str(tmp_path / "nope.yaml")], home=tmp_path
    )
    assert result.code == 2
    assert result.err.startswith("error: --scenario: ") and "is not a file" in result.err


@pytest.mark.e2e
def test_simulate_serves_until_interrupted(tmp_path: Path) -> None:
    scenario = tmp_path / "fast.yaml"
    scenario.write_text("time_scale: 0.01\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ectf_action",
            "simulate",
            "--port",
            "0",
            "--token",
            "cli-sim",
            "--scenario",
            str(scenario),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        env = {"ECTF_TOKEN": "cli-sim", "ECTF_API_URL": url, "ECTF_GIT_URL": GIT_URL}
        result = run(
            [
                "flows",
                "queue",
                "clone",
                "--commit",
                PUSH_SHA,
                "--watch",
                "--poll-interval",
                "0.02",
                "--timeout-minutes",
                "1",
            ],
            home=tmp_path,
            env=env,
        )
        assert result.code == 0, result.out + result.err
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
