"""The command line of the workflow shapes: `flows download` (extracted as the action
does: the same folders, files and refusals), `flows watch --download`, a signal in the
middle of a download, and `jobs input --job NAME --flow-id ID`."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import responses

import hostile_zips
from conftest import FAIL_SHA, PUSH_SHA, ActionEnv, SecretScanner, flows_of, make_scenario
from ectf_action.artifacts import job_dir_name
from ectf_action.client import EctfClient
from ectf_action.simulator import Simulator
from ectf_action.workflow import escape_data
from hardening_support import (
    FLOW_ID,
    Reply,
    ScaledClock,
    fast_client_factory,
    flow_doc,
    run_action,
    scripted,
    tree,
)
from test_cli import (
    API,
    JOB_BUILD,
    JOB_PULL,
    JOB_TESTS,
    fast_simulator,
    flow,
    flow_url,
    job,
    run,
    sim_env,
)

__all__ = ["fast_simulator"]  # the fixture of test_cli.py, shared

GIT_URL = "ssh://git@github.com/sim-team/design.git"


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def finished_flow(simulator: Simulator, commit: str, flow: str = "test") -> str:
    with EctfClient(simulator.url, simulator.token) as client:
        flow_id = client.queue_flow(flow, {"git_url": GIT_URL, "commit_hash": commit})
    simulator.engine.wait_completed(flow_id, timeout=20)
    return flow_id


def folders(path: Path) -> list[str]:
    return sorted(entry.name for entry in path.iterdir())


# -- flows download -------------------------------------------------------------------------


def test_flows_download_extracts_what_the_action_extracts(
    fast_simulator: Simulator, tmp_path: Path
) -> None:
    flow_id = finished_flow(fast_simulator, FAIL_SHA)
    environment = ActionEnv(tmp_path / "runner", fast_simulator.token, fast_simulator.url)
    environment.set_inputs(**{"flow-id": flow_id})
    assert environment.run().returncode == 1  # the build failed
    by_action = tree(environment.workspace / "ectf-artifacts")

    dest = tmp_path / "cli"
    done = run(
        ["flows", "download", "test", flow_id, "-o", str(dest)],
        home=tmp_path,
        env=sim_env(fast_simulator),
    )
    assert done.code == 0, done.err
    assert tree(dest) == by_action
    assert folders(dest) == ["build", "pull-repo"]  # the canceled jobs have no output
    lines = done.out.splitlines()
    assert (
        lines[0] == "Not downloaded: test_functional (no artifacts), test_security (no artifacts)"
    )
    assert sorted(line.split("] ", 1)[1].split(":")[0] for line in lines[1:3]) == [
        "build",
        "pull-repo",
    ]
    assert f"-> {dest}/build" in done.out
    assert lines[-1] == f"Saved the artifacts of 2 of 2 jobs in {dest}."


def test_flows_download_failed_only_as_json(fast_simulator: Simulator, tmp_path: Path) -> None:
    flow_id = finished_flow(fast_simulator, FAIL_SHA)
    dest = tmp_path / "failed"
    done = run(
        ["flows", "download", "test", flow_id, "-o", str(dest), "--failed", "--json"],
        home=tmp_path,
        env=sim_env(fast_simulator),
    )
    assert done.code == 0, done.err
    document = json.loads(done.out)
    build = next(j for j in flows_of(fast_simulator)[0].jobs if j.name == "build")
    size = sum(len(data) for data in tree(dest).values())
    assert document == {
        "flow": "test",
        "id": flow_id,
        "directory": str(dest),
        "interrupted": False,
        "jobs": [
            {
                "job": "build",
                "job_id": build.id,
                "status": "failed",
                "folder": str(dest / "build"),
                "files": 1,
                "bytes": size,
                "warnings": [],
            }
        ],
    }
    assert folders(dest) == ["build"]
    assert "build: 1 file" in done.err  # progress stays off stdout


def test_flows_download_keeps_to_an_empty_folder_unless_forced(
    fast_simulator: Simulator, tmp_path: Path
) -> None:
    flow_id = finished_flow(fast_simulator, PUSH_SHA)
    dest = tmp_path / "out"
    (dest / "build").mkdir(parents=True)
    (dest / "build" / "stale.txt").write_text("from an older run")
    requests_before = len(fast_simulator.requests)
    env = sim_env(fast_simulator)
    refused = run(["flows", "download", "test", flow_id, "-o", str(dest)], home=tmp_path, env=env)
    assert refused.code == 2
    assert refused.err.startswith(f"error: --output: {str(dest)!r} is not empty; pass --force")
    assert len(fast_simulator.requests) == requests_before  # refused before any request
    forced = run(
        ["flows", "download", "test", flow_id, "-o", str(dest), "--force"], home=tmp_path, env=env
    )
    assert forced.code == 0, forced.err
    assert not (dest / "build" / "stale.txt").exists()  # the job's folder was replaced
    assert (dest / "build" / "build" / "hsm.bin").stat().st_size == 96 * 1024
    assert folders(dest) == ["build", "pull-repo", "test_functional", "test_security"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["flows", "download", "test", "not-a-uuid"], "error: FLOW_ID: 'not-a-uuid' is not a UUID"),
        (["flows", "download", "deploy", FLOW_ID], "error: FLOW: 'deploy' is not a flow"),
        (
            ["flows", "download", "test", FLOW_ID, "--max-artifact-mb", "0"],
            "error: --max-artifact-mb: '0' must be > 0",
        ),
    ],
)
def test_flows_download_checks_its_arguments_first(
    api: responses.RequestsMock, tmp_path: Path, argv: list[str], message: str
) -> None:
    done = run([*argv, "-o", str(tmp_path / "out")], home=tmp_path)
    assert done.code == 2
    assert done.err.startswith(message)
    assert len(api.calls) == 0


def test_flows_download_of_a_running_flow_takes_the_finished_jobs(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    api.get(
        flow_url("test", FLOW_ID),
        json=flow(
            jobs=[
                job(JOB_PULL, "pull-repo", "succeeded", artifacts=True),
                job(JOB_BUILD, "build", "running"),
                job(JOB_TESTS, "approval", "pending", private=True),
            ]
        ),
    )
    api.get(flow_url("test", "job", JOB_PULL), body=hostile_zips.write_zip(
        tmp_path / "pull.zip", [("pull.log", b"cloned\n")]
    ).read_bytes())  # fmt: skip
    dest = tmp_path / "out"
    done = run(["flows", "download", "test", FLOW_ID, "-o", str(dest)], home=tmp_path)
    assert done.code == 0, done.err
    assert done.out.splitlines()[0] == "Not downloaded: build (running), approval (private)"
    assert tree(dest) == {"pull-repo/pull.log": b"cloned\n"}
    assert [call.request.url for call in api.calls] == [
        flow_url("test", FLOW_ID),
        flow_url("test", "job", JOB_PULL),
    ]
    assert API in flow_url("test", FLOW_ID)


# -- hostile zips, refused as the action refuses them ------------------------------------------

# A part of the corpus: one archive per kind of trick, small enough to stay fast.
HOSTILE = ["traversal", "absolute", "symlinks", "duplicates", "bad_crc", "mixed", "not_a_zip"]


def test_flows_download_refuses_hostile_zips_as_the_action_does(tmp_path: Path) -> None:
    builders: dict[str, Callable[[Path], Path]] = {
        **hostile_zips.SURVIVABLE,
        **hostile_zips.UNREADABLE,
    }
    zips = tmp_path / "zips"
    zips.mkdir()
    artifacts = {
        f"zip-{case}": builders[case](zips / f"{case}.zip").read_bytes() for case in HOSTILE
    }
    polls = [flow_doc(dict.fromkeys(artifacts, "succeeded"), artifacts=list(artifacts))]
    token = f"tok-hostile-cli-{os.getpid()}-secret"
    scanner = SecretScanner()
    with scripted(tmp_path / "runner", token, scanner, polls, artifacts) as served:
        environment = served.environment
        environment.set_inputs(**{"flow-id": FLOW_ID, "poll-interval": "1"})
        action = run_action(
            environment, client_factory=fast_client_factory(), clock=ScaledClock(0.01)
        )
        dest = tmp_path / "cli"
        done = run(
            ["flows", "download", "test", FLOW_ID, "-o", str(dest), "--json"],
            home=tmp_path,
            env={"ECTF_TOKEN": token, "ECTF_API_URL": served.server.url},
        )
    assert done.code == 3, done.err  # the zip that is no zip at all saved nothing
    assert tree(dest) == tree(environment.workspace / "ectf-artifacts")
    document = json.loads(done.out)
    by_job = {entry["job"]: entry for entry in document["jobs"]}
    assert set(by_job) == set(artifacts)
    for name, entry in by_job.items():
        assert entry["warnings"], name
        for warning in entry["warnings"]:  # the same words as in the action's log
            # an annotation, or, past GitHub's 10 a step, a plain line of the log
            assert (
                f"::warning title=eCTF job {name}::{escape_data(warning)}" in action.stdout
                or f"\n{warning}\n" in action.stdout
            ), warning
    assert by_job["zip-not_a_zip"]["folder"] is None
    assert "not a readable zip" in by_job["zip-not_a_zip"]["warnings"][0]
    everything = {path.relative_to(tmp_path) for path in tmp_path.rglob("*")}
    outside = {
        path for path in everything
        if path.parts[0] == "cli" and len(path.parts) > 1
        and path.parts[1] not in {job_dir_name(name) for name in artifacts}
    }  # fmt: skip
    assert outside == set()  # nothing beside the job folders: no staging left, no escape
    assert not [path for path in (tmp_path / "cli").rglob("*") if path.is_symlink()]


# -- a signal in the middle ---------------------------------------------------------------------


class Lines:
    """A subprocess's stdout, read line by line in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, fragment: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return
        self.process.kill()
        raise AssertionError(f"no line with {fragment!r} in {self.seen}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_flows_download_leaving_only_whole_folders(
    tmp_path: Path, signum: int, code: int
) -> None:
    quick = hostile_zips.write_zip(tmp_path / "quick.zip", [("quick.log", b"done\n")])
    slow = hostile_zips.write_zip(tmp_path / "slow.zip", [("big.bin", os.urandom(256 * 1024))])
    artifacts: dict[str, bytes | Reply] = {
        "quick": quick.read_bytes(),
        "slow": Reply(200, slow.read_bytes(), "application/zip", slow=0.05, chunk=4096),
    }
    polls = [flow_doc({"quick": "succeeded", "slow": "succeeded"}, artifacts=list(artifacts))]
    token = f"tok-signal-cli-{os.getpid()}-secret"
    dest = tmp_path / "out"
    with scripted(tmp_path / "runner", token, SecretScanner(), polls, artifacts) as served:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "ECTF_TOKEN": token,
            "ECTF_API_URL": served.server.url,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "ectf_action", "flows", "download", "test", FLOW_ID,
             "-o", str(dest)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines = Lines(process)
        lines.wait_for("quick: 1 file")
        assert served.api.download_started.wait(10)
        process.send_signal(signum)
        process.wait(timeout=15)
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert process.returncode == code, stderr
    assert "Interrupted: the artifacts of 1 of 2 jobs are whole in" in stderr
    assert folders(dest) == ["quick"]  # no half-extracted folder, no staging folder
    assert tree(dest) == {"quick/quick.log": b"done\n"}


# -- flows watch --download -----------------------------------------------------------------------


@pytest.fixture
def paced_simulator(sim_token: str) -> Iterator[Simulator]:
    """Jobs slow enough (the build runs 0.2 s) that a download clearly overlaps them."""
    with Simulator(make_scenario(time_scale=0.05), token=sim_token) as sim:
        yield sim


def test_flows_watch_downloads_each_job_as_it_ends(
    paced_simulator: Simulator, tmp_path: Path
) -> None:
    fast_simulator = paced_simulator
    env = sim_env(fast_simulator)
    with EctfClient(fast_simulator.url, fast_simulator.token) as client:
        flow_id = client.queue_flow("test", {"git_url": GIT_URL, "commit_hash": FAIL_SHA})
    dest = tmp_path / "watched"
    done = run(
        ["flows", "watch", "test", flow_id, "--download", str(dest), "--poll-interval", "0.02",
         "--json"],
        home=tmp_path, env=env,
    )  # fmt: skip
    assert done.code == 1, done.err  # the flow failed
    document = json.loads(done.out)
    assert document["status"] == "failed"
    saved = {entry["job"]: entry["folder"] for entry in document["artifacts"]["jobs"]}
    assert saved == {"pull-repo": str(dest / "pull-repo"), "build": str(dest / "build")}
    err = done.err.splitlines()
    pulled = next(i for i, line in enumerate(err) if "pull-repo: 1 file" in line)
    failed = next(i for i, line in enumerate(err) if "build: running -> failed" in line)
    assert pulled < failed, err  # downloaded while the flow went on
    assert folders(dest) == ["build", "pull-repo"]


# -- jobs input by name ---------------------------------------------------------------------------


def test_a_pending_job_answered_by_name(fast_simulator: Simulator, tmp_path: Path) -> None:
    env = sim_env(fast_simulator)
    with EctfClient(fast_simulator.url, fast_simulator.token) as client:
        flow_id = client.queue_flow("submit", {"git_url": GIT_URL, "commit_hash": PUSH_SHA})
    fast_simulator.engine.wait_for_job(flow_id, "team_approval", "pending", timeout=20)
    done = run(
        ["jobs", "input", "submit", "--job", "team_approval", "--flow-id", flow_id, "--reject"],
        home=tmp_path,
        env=env,
    )
    assert done.code == 0, done.err
    approval = fast_simulator.engine.flow(flow_id).job("team_approval")
    assert done.out == f'Sent {{"approve": false}} to job {approval.id}.\n'
    assert approval.inputs == ({"approve": False},)
    methods = [(r.method, r.path) for r in fast_simulator.requests[-2:]]
    assert methods == [
        ("GET", f"/api/flow/submit/{flow_id}/"),
        ("PATCH", f"/api/flow/submit/{approval.id}/"),
    ]


def test_a_job_name_must_match_exactly_one_job(api: responses.RequestsMock, tmp_path: Path) -> None:
    api.get(
        flow_url("submit", FLOW_ID),
        json=flow(
            name="submit",
            jobs=[
                job(JOB_PULL, "pull-repo", "succeeded"),
                job(JOB_BUILD, "team_approval", "pending"),
                job(JOB_TESTS, "team_approval", "queued"),
            ],
        ),
    )
    missing = run(
        ["jobs", "input", "submit", "--job", "approval", "--flow-id", FLOW_ID, "--approve"],
        home=tmp_path,
    )
    assert missing.code == 2
    assert missing.err == (
        f"error: --job: no job named 'approval' in the submit flow {FLOW_ID}; its jobs: "
        "pull-repo (succeeded), team_approval (pending), team_approval (queued)\n"
    )
    twice = run(
        ["jobs", "input", "submit", "--job", "team_approval", "--flow-id", FLOW_ID, "--approve"],
        home=tmp_path,
    )
    assert twice.code == 2
    assert twice.err == (
        f"error: --job: 2 jobs are named 'team_approval' in the submit flow {FLOW_ID}; give "
        f"the job's id instead: {JOB_BUILD} (pending), {JOB_TESTS} (queued)\n"
    )
    assert [call.request.method for call in api.calls] == ["GET", "GET"]  # nothing sent


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--job", "team_approval"], "error: --flow-id: --job needs the id of the flow"),
        (["--flow-id", FLOW_ID], "error: --job: name the job"),
        ([JOB_PULL, "--job", "x", "--flow-id", FLOW_ID], "error: JOB_ID: give the job's id, or"),
        ([], "error: JOB_ID: give the pending job's id, or --job NAME --flow-id ID"),
        (["--job", "x", "--flow-id", "nope"], "error: --flow-id: 'nope' is not a UUID"),
    ],
)
def test_jobs_input_by_name_is_checked_before_any_request(
    api: responses.RequestsMock, tmp_path: Path, argv: list[str], message: str
) -> None:
    done = run(["jobs", "input", "submit", *argv, "--approve"], home=tmp_path)
    assert done.code == 2
    assert done.err.startswith(message), done.err
    assert len(api.calls) == 0


def test_the_new_commands_teach_with_examples(tmp_path: Path) -> None:
    for command in (["flows", "download"], ["flows", "watch"], ["jobs", "input"]):
        shown = run([*command, "--help"], home=tmp_path)
        assert shown.code == 0 and "examples:" in shown.out
    assert "--download DIR" in run(["flows", "watch", "--help"], home=tmp_path).out
    assert "--job team_approval --flow-id" in run(["jobs", "input", "--help"], home=tmp_path).out
