"""The action's image, built and run the way the GitHub runner builds and runs it.

The runner builds the root Dockerfile and starts the image with the workspace, the
file-command files and the event payload mounted under /github, every input as an
`INPUT_*` variable (hyphens kept) and the `GITHUB_*` variables passed with `-e`. These
tests do the same against an in-process simulator, so what a team's workflow would see
(outputs, JUnit file, artifacts, summary, the post step's cancel) is checked end to end.

They need a Docker daemon and the base image present locally: no registry is reachable
in tests, so the digest-pinned default base is replaced by a local tag
(`ECTF_TEST_PYTHON_IMAGE`, default python:3.12-slim).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import action_defaults, input_variable
from ectf_action.models import JobStatus

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "ectf-action:test"
BASE_IMAGE = os.environ.get("ECTF_TEST_PYTHON_IMAGE", "python:3.12-slim")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPOSITORY = "team-example/design"
BUILD_TIMEOUT = 900
RUN_TIMEOUT = 180


def docker_unavailable() -> str | None:
    """Why the container tests cannot run here, or None when they can."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return "no Docker daemon answers `docker info`"
    inspect = subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, timeout=30, check=False
    )
    if inspect.returncode != 0:
        return (
            f"the base image {BASE_IMAGE} is not present locally and cannot be pulled here; "
            "load or build it, or name another with ECTF_TEST_PYTHON_IMAGE"
        )
    return None


def report(config: pytest.Config, line: str) -> None:
    """A line on pytest's terminal, shown even while output is captured."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> str:
    """Build the image once for the module, from the repository root like the runner."""
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    build = subprocess.run(
        ["docker", "build", "-t", IMAGE, "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    assert build.returncode == 0, (
        f"docker build failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}"
    )
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", IMAGE],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
    base_size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", BASE_IMAGE],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
    report(
        request.config,
        f"\n{IMAGE}: built in {seconds:.1f} s from {BASE_IMAGE}; "
        f"{size / 1e6:.1f} MB ({(size - base_size) / 1e6:.2f} MB over the base image)",
    )
    return IMAGE


@dataclass
class RunnerDirs:
    """The host folders the runner mounts into the container under /github."""

    root: Path
    workspace: Path
    file_commands: Path
    workflow: Path
    home: Path
    runner_temp: Path
    output: Path
    state: Path
    summary: Path

    @classmethod
    def create(cls, root: Path) -> RunnerDirs:
        root.mkdir(parents=True, exist_ok=True)
        folders = {
            name: root / name
            for name in ("workspace", "file_commands", "workflow", "home", "runner_temp")
        }
        for folder in folders.values():
            folder.mkdir()
        commands = folders["file_commands"]
        # the runner creates each file-command file, empty, before the step starts
        files = {
            "output": commands / f"set_output_{uuid.uuid4()}",
            "state": commands / f"save_state_{uuid.uuid4()}",
            "summary": commands / f"step_summary_{uuid.uuid4()}",
        }
        for file in files.values():
            file.touch()
        return cls(root=root, **folders, **files)

    def mounts(self) -> list[str]:
        pairs = [
            (self.workspace, "/github/workspace"),
            (self.file_commands, "/github/file_commands"),
            (self.workflow, "/github/workflow"),
            (self.home, "/github/home"),
            (self.runner_temp, "/github/runner_temp"),
        ]
        return [arg for host, container in pairs for arg in ("-v", f"{host}:{container}")]

    def container_path(self, host_file: Path) -> str:
        return f"/github/file_commands/{host_file.name}"


def runner_environment(dirs: RunnerDirs, inputs: Mapping[str, str]) -> dict[str, str]:
    """The variables the runner passes to a container action's step."""
    env = {
        "HOME": "/github/home",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": "/github/workspace",
        "GITHUB_OUTPUT": dirs.container_path(dirs.output),
        "GITHUB_STATE": dirs.container_path(dirs.state),
        "GITHUB_STEP_SUMMARY": dirs.container_path(dirs.summary),
        "GITHUB_EVENT_PATH": "/github/workflow/event.json",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_SHA": COMMIT,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "1",
        "RUNNER_TEMP": "/github/runner_temp",
        "RUNNER_OS": "Linux",
    }
    env.update({input_variable(name): value for name, value in inputs.items()})
    return env


def docker_run(
    image: str,
    dirs: RunnerDirs,
    env: Mapping[str, str],
    *,
    entrypoint: str | None = None,
    args: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`docker run` as the runner does it, waiting for the container to end."""
    return subprocess.run(
        docker_run_command(image, dirs, env, entrypoint=entrypoint, args=args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def docker_run_command(
    image: str,
    dirs: RunnerDirs,
    env: Mapping[str, str],
    *,
    entrypoint: str | None = None,
    args: list[str] | None = None,
) -> list[str]:
    """The runner's `docker run` arguments: variables by name only, their values taken
    from docker's own environment, so that secrets never appear in a process listing."""
    command = ["docker", "run", "--rm", "--network", "host", "--workdir", "/github/workspace"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    command += dirs.mounts()
    for name in env:
        command += ["-e", name]
    command += [image, *(args or [])]
    return command


def read_file_commands(path: Path) -> dict[str, str]:
    """Parse a `$GITHUB_OUTPUT`-style file: `name=value` or `name<<DELIM` ... `DELIM`."""
    values: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            for item in lines:
                if item == delimiter:
                    break
                body.append(item)
            else:
                raise AssertionError(f"{path.name}: {name} is missing its closing delimiter")
            values[name] = "\n".join(body)
        elif line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def assert_token_only_masked(output: str, token: str) -> None:
    """The token may appear only in `::add-mask::`, which must come before anything else."""
    lines = output.splitlines()
    assert lines, "the step printed nothing"
    assert lines[0] == f"::add-mask::{token}", "::add-mask:: of the token must be the first line"
    mask = f"::add-mask::{token}"
    leaks = [number for number, line in enumerate(lines, 1) if token in line and line != mask]
    assert not leaks, f"the token appears on stdout lines {leaks}"


@pytest.fixture(scope="module")
def simulator_token() -> str:
    return f"container-test-{secrets.token_hex(12)}"


@pytest.fixture
def fast_simulator(image: str, simulator_token: str) -> Iterator[Any]:
    """A simulator whose jobs finish in moments. A container on the host's network shares
    its loopback, so the simulator need not listen on any other interface."""
    from ectf_action.simulator import Simulator, default_scenario

    scenario = default_scenario().with_time_scale(0.02)
    with Simulator(scenario, host="127.0.0.1", port=0, token=simulator_token) as simulator:
        yield simulator


@pytest.fixture
def slow_simulator(image: str, simulator_token: str) -> Iterator[Any]:
    """A simulator in real time: its flows stay running long enough to be cancelled."""
    from ectf_action.simulator import Simulator, default_scenario

    with Simulator(default_scenario(), host="127.0.0.1", port=0, token=simulator_token) as sim:
        yield sim


def local_url(simulator: Any) -> str:
    """The simulator's URL as seen from a container on the host's network."""
    port = int(str(simulator.url).rsplit(":", 1)[1])
    return f"http://127.0.0.1:{port}"


def prepare_step(
    tmp_path: Path, simulator: Any, token: str, *, sha: str = COMMIT
) -> tuple[RunnerDirs, dict[str, str]]:
    """Runner folders and the environment of a push-triggered step with default inputs."""
    dirs = RunnerDirs.create(tmp_path)
    event = {"after": sha, "ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}}
    (dirs.workflow / "event.json").write_text(json.dumps(event), encoding="utf-8")
    inputs = action_defaults()
    inputs["token"] = token
    inputs["api-url"] = local_url(simulator)
    inputs["poll-interval"] = "0.25"  # the adaptive default waits seconds between polls
    env = runner_environment(dirs, inputs)
    env["GITHUB_SHA"] = sha
    return dirs, env


def assert_no_token_leak(
    result: subprocess.CompletedProcess[str], tmp_path: Path, token: str
) -> None:
    assert_token_only_masked(result.stdout, token)
    assert token not in result.stderr
    assert files_holding(tmp_path, token.encode()) == []


# GitHub's hosted runners run jobs as this user, who owns the workspace; the container
# runs as root.
RUNNER_UID = 1001


def owned_by_the_runners_user(folder: Path) -> tuple[int, int]:
    """The uid and gid the step's files in *folder* must end up with. The workspace
    belongs to the runner's user and the container runs as root: as root here, *folder*
    is handed to another uid, as on a hosted runner; otherwise it is ours already."""
    if os.geteuid() == 0:
        for path in (folder, *folder.rglob("*")):
            os.lchown(path, RUNNER_UID, RUNNER_UID)
        return RUNNER_UID, RUNNER_UID
    info = folder.stat()
    return info.st_uid, info.st_gid


def not_owned_by(owner: tuple[int, int], paths: list[Path]) -> list[str]:
    """Each of *paths* whose uid or gid is not *owner*'s, with the ones it has."""
    wrong = []
    for path in paths:
        info = path.lstat()
        if (info.st_uid, info.st_gid) != owner:
            wrong.append(f"{path} ({info.st_uid}:{info.st_gid})")
    return wrong


def started(command: list[str], env: Mapping[str, str], stdout: Path) -> subprocess.Popen[str]:
    """`docker run` in the background, its stdout written to *stdout* as it comes."""
    with stdout.open("w", encoding="utf-8") as sink:
        return subprocess.Popen(
            command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT, text=True
        )


def wait_until(holds: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while not holds():
        assert process.poll() is None, f"the step ended before {what}"
        assert time.monotonic() < deadline, f"the step never {what}"
        time.sleep(0.05)


def interrupt(process: subprocess.Popen[str], *signals: int, gap: float = 0.3) -> float:
    """Send *signals* *gap* seconds apart and wait for the step to end: the seconds from
    the first signal to the end. The process is killed if it outlives the test."""
    try:
        signalled = time.monotonic()
        for index, signum in enumerate(signals):
            if index:
                time.sleep(gap)
            process.send_signal(signum)
        process.wait(timeout=RUN_TIMEOUT)
        return time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_entrypoint_resolves_to_the_cli(image: str) -> None:
    result = subprocess.run(
        ["docker", "run", "--rm", image, "--help"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()
    assert "--api-url" in result.stdout


def test_image_writes_no_bytecode_and_has_no_dev_tools(image: str) -> None:
    result = subprocess.run(
        [
            "docker", "run", "--rm", "--entrypoint", "python", image, "-c",
            "import importlib.util, os, sys; "
            "print(os.environ.get('PYTHONDONTWRITEBYTECODE'), os.environ.get('PYTHONUNBUFFERED')); "
            "print(*[m for m in ('pytest', 'mypy', 'ruff', 'responses') "
            "if importlib.util.find_spec(m)], sep=',')",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    settings, dev_tools = result.stdout.splitlines()
    assert settings == "1 1"
    assert dev_tools == ""


def test_run_step_as_the_runner_runs_it(
    image: str, fast_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    dirs, env = prepare_step(tmp_path, fast_simulator, simulator_token)

    result = docker_run(image, dirs, env)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    outputs = read_file_commands(dirs.output)
    assert outputs["status"] == "succeeded"
    assert re.fullmatch(r"[0-9a-f-]{36}", outputs["flow-id"])
    assert outputs["failed-jobs"] == ""
    assert outputs["junit-path"] == "ectf-junit.xml"
    assert outputs["artifacts-path"] == "ectf-artifacts"

    junit = dirs.workspace / outputs["junit-path"]
    assert junit.is_file() and b"<testsuites" in junit.read_bytes()
    assert (dirs.workspace / outputs["artifacts-path"]).is_dir()
    jobs = json.loads(outputs["jobs"])
    assert jobs
    assert {JobStatus.parse(job["status"]) for job in jobs} == {JobStatus.SUCCEEDED}
    for job in jobs:
        if job["artifacts_dir"] is not None:
            assert not Path(job["artifacts_dir"]).is_absolute()
            assert (dirs.workspace / job["artifacts_dir"]).is_dir()
            assert any((dirs.workspace / job["artifacts_dir"]).iterdir())
    assert any(job["artifacts_dir"] for job in jobs)

    state = read_file_commands(dirs.state)
    assert state["flow_id"] == outputs["flow-id"]
    assert state["flow"] == "test"
    summary = dirs.summary.read_text(encoding="utf-8")
    assert outputs["flow-id"] in summary

    assert_no_token_leak(result, tmp_path, simulator_token)
    queued = [r for r in fast_simulator.requests if r.method == "POST" and r.status == 201]
    assert len(queued) == 1


def test_failed_flow_fails_the_step(
    image: str, fast_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    # in the default scenario a commit starting with badc0de fails the build job
    dirs, env = prepare_step(tmp_path, fast_simulator, simulator_token, sha="badc0de" + COMMIT[7:])

    result = docker_run(image, dirs, env)

    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]
    outputs = read_file_commands(dirs.output)
    assert outputs["status"] == "failed"
    assert outputs["failed-jobs"] == "build"
    assert "::error title=eCTF job build failed::" in result.stdout
    junit = (dirs.workspace / outputs["junit-path"]).read_text(encoding="utf-8")
    assert "<failure" in junit
    build = next(job for job in json.loads(outputs["jobs"]) if job["name"] == "build")
    assert any((dirs.workspace / build["artifacts_dir"]).iterdir())
    assert_no_token_leak(result, tmp_path, simulator_token)


def test_fork_without_a_token_is_skipped(image: str, fast_simulator: Any, tmp_path: Path) -> None:
    dirs, env = prepare_step(tmp_path, fast_simulator, "")

    result = docker_run(image, dirs, env)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert read_file_commands(dirs.output)["status"] == "skipped"
    assert "::notice" in result.stdout
    assert fast_simulator.requests == []


def test_interrupted_step_cancels_its_flow(
    image: str, slow_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    """The runner cancels a step with SIGINT to `docker run`, which passes it on to the
    entrypoint, PID 1 in the container: the flow must be cancelled, not left running."""
    dirs, env = prepare_step(tmp_path, slow_simulator, simulator_token)
    command = docker_run_command(image, dirs, env)
    with subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        wait_until(
            lambda: "flow_id" in read_file_commands(dirs.state), process, "saved the flow id"
        )
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)

    assert process.returncode == 130, stdout[-4000:] + stderr[-4000:]
    flow_id = read_file_commands(dirs.state)["flow_id"]
    outputs = read_file_commands(dirs.output)
    assert outputs["status"] == "canceled"
    assert outputs["flow-id"] == flow_id
    cancels = [r for r in slow_simulator.requests if r.method == "POST" and "/cancel" in r.path]
    assert [r.status for r in cancels] == [204]
    assert flow_id in cancels[0].path


def test_post_step_cancels_the_flow_left_running(
    image: str, slow_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    from ectf_action.client import EctfClient

    with EctfClient(slow_simulator.url, simulator_token) as client:
        flow_id = client.queue_flow(
            "test", {"git_url": f"ssh://git@github.com/{REPOSITORY}.git", "commit_hash": COMMIT}
        )
        assert not client.get_flow("test", flow_id).finished

        dirs, env = prepare_step(tmp_path, slow_simulator, simulator_token)
        env.update({"STATE_flow_id": flow_id, "STATE_flow": "test"})

        result = docker_run(image, dirs, env, entrypoint="ectf-action-post")

        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert client.get_flow("test", flow_id).finished
    cancels = [
        r for r in slow_simulator.requests if r.method == "POST" and r.path.endswith("/cancel/")
    ]
    assert [r.status for r in cancels] == [204]
    assert_no_token_leak(result, tmp_path, simulator_token)


def test_files_made_in_the_workspace_belong_to_its_owner(
    image: str, fast_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    """On a self-hosted runner the next job's checkout, running as the runner's user,
    must be able to remove what this step made as root: every folder and file of it."""
    dirs, env = prepare_step(tmp_path, fast_simulator, simulator_token)
    env[input_variable("junit-path")] = "reports/ectf/junit.xml"  # folders made on the way
    owner = owned_by_the_runners_user(dirs.workspace)

    result = docker_run(image, dirs, env)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "eCTF files not handed over" not in result.stdout
    made = [path for path in dirs.workspace.rglob("*")]
    assert dirs.workspace / "reports/ectf/junit.xml" in made
    assert len([path for path in made if path.is_file()]) > 4  # the artifacts too
    assert not_owned_by(owner, made) == []


def test_queued_without_waiting_then_collected_by_its_id(
    image: str, fast_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    """queue-then-collect.yml in the image: `wait: false` leaves the flow queued, and a
    later job's step with `flow-id` follows it to the end without queueing another."""
    queue_dirs, queue_env = prepare_step(tmp_path / "queue", fast_simulator, simulator_token)
    queue_env[input_variable("wait")] = "false"

    queued = docker_run(image, queue_dirs, queue_env)

    assert queued.returncode == 0, queued.stdout[-4000:] + queued.stderr[-4000:]
    outputs = read_file_commands(queue_dirs.output)
    flow_id = outputs["flow-id"]
    assert outputs["status"] == "queued"
    assert outputs["message"] == (
        f"eCTF test flow {flow_id}: queued; left running on the server, not followed (wait: false)"
    )
    assert read_file_commands(queue_dirs.state)["left_running"] == "queued"
    assert not (queue_dirs.workspace / "ectf-artifacts").exists()

    collect_dirs, collect_env = prepare_step(tmp_path / "collect", fast_simulator, simulator_token)
    collect_env[input_variable("flow-id")] = flow_id
    del collect_env["GITHUB_SHA"]  # a collecting job needs no commit

    collected = docker_run(image, collect_dirs, collect_env)

    assert collected.returncode == 0, collected.stdout[-4000:] + collected.stderr[-4000:]
    outputs = read_file_commands(collect_dirs.output)
    assert (outputs["flow-id"], outputs["status"]) == (flow_id, "succeeded")
    assert outputs["message"] == f"eCTF test flow {flow_id}: succeeded (4 jobs)"
    assert "left_running" not in read_file_commands(collect_dirs.state)
    assert any((collect_dirs.workspace / "ectf-artifacts").iterdir())
    posts = [r for r in fast_simulator.requests if r.method == "POST"]
    assert [r.status for r in posts] == [201]  # one queue request, nothing cancelled
    assert_no_token_leak(collected, tmp_path / "collect", simulator_token)


@pytest.fixture
def hanging_simulator(image: str, simulator_token: str) -> Iterator[Any]:
    """A server that takes the list request and never answers it."""
    from ectf_action.simulator import Scenario, Simulator

    scenario = Scenario.from_dict(
        {"faults": [{"kind": "hang", "methods": ["GET"], "path": "^/api/flow/test/$"}]}
    )
    with Simulator(scenario, host="127.0.0.1", port=0, token=simulator_token) as sim:
        yield sim


def test_a_signal_during_a_request_that_never_returns_ends_the_step(
    image: str,
    hanging_simulator: Any,
    simulator_token: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The entrypoint is PID 1 in the container, and the first request has no reply
    coming: SIGINT must still end the step within 5 s."""
    dirs, env = prepare_step(tmp_path, hanging_simulator, simulator_token)
    stdout = tmp_path / "stdout"
    process = started(docker_run_command(image, dirs, env), env, stdout)
    wait_until(
        lambda: "eCTF test flow for commit" in stdout.read_text(encoding="utf-8"),
        process,
        "started",
    )
    time.sleep(1.0)  # the list request is on its way

    seconds = interrupt(process, signal.SIGINT)

    assert process.returncode == 130, stdout.read_text(encoding="utf-8")[-4000:]
    assert seconds < 5.0
    report(request.config, f"\nSIGINT during a request never answered: ended in {seconds:.1f} s")
    assert read_file_commands(dirs.output)["status"] == "canceled"
    assert [r.method for r in hanging_simulator.requests if r.method == "POST"] == []


def test_a_second_signal_ends_the_step_at_once(
    image: str, slow_simulator: Any, simulator_token: str, tmp_path: Path
) -> None:
    """Ctrl-C twice, or the runner's SIGTERM after its SIGINT: the step ends at once,
    and the cancel the first signal started still reaches the server."""
    dirs, env = prepare_step(tmp_path, slow_simulator, simulator_token)
    process = started(docker_run_command(image, dirs, env), env, tmp_path / "stdout")
    wait_until(lambda: "flow_id" in read_file_commands(dirs.state), process, "saved the flow id")

    seconds = interrupt(process, signal.SIGINT, signal.SIGTERM)

    output = (tmp_path / "stdout").read_text(encoding="utf-8")
    assert process.returncode == 130, output[-4000:]
    assert seconds < 3.0, output[-4000:]
    assert read_file_commands(dirs.output)["status"] == "canceled"
    cancels = [r for r in slow_simulator.requests if r.method == "POST" and "/cancel" in r.path]
    assert [r.status for r in cancels] == [204]


def private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA (ca.pem) and a certificate it signed for 127.0.0.1 (server.pem, server.key),
    made with the openssl binary, as a company's TLS-inspecting proxy would hold."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the private CA)")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "server.pem", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=Test CA",
         "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
         "-out", request],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "1", "-extfile", extensions, "-out", cert],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, command)], capture_output=True, check=True)
    return ca, cert, key


@pytest.fixture
def tls_url(fast_simulator: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https:// URL in front of the simulator, with a certificate of a private CA; and
    that CA's bundle."""
    ca, cert, key = private_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream = int(str(fast_simulator.url).rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve(raw: socket.socket) -> None:
        try:
            client = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):  # a client that does not trust the CA hangs up
            raw.close()
            return
        server = socket.create_connection(("127.0.0.1", upstream))
        threading.Thread(target=pump, args=(server, client), daemon=True).start()
        pump(client, server)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca
    finally:
        listener.close()


def test_a_private_ca_is_trusted_from_a_path_under_the_workspace(
    image: str, fast_simulator: Any, simulator_token: str, tmp_path: Path, tls_url: tuple[str, Path]
) -> None:
    """A self-hosted runner behind a proxy that re-signs HTTPS: the CA bundle is given
    in `env:` as the container sees it, under /github/workspace."""
    url, ca = tls_url
    for variable in (None, "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        dirs, env = prepare_step(tmp_path / str(variable), fast_simulator, simulator_token)
        env[input_variable("api-url")] = url
        (dirs.workspace / "ci").mkdir()
        shutil.copy(ca, dirs.workspace / "ci" / "company-ca.pem")
        if variable is None:  # the failure is retried until the deadline: keep it short
            env[input_variable("timeout-minutes")] = "0.02"
        else:
            env[variable] = "/github/workspace/ci/company-ca.pem"

        result = docker_run(image, dirs, env)

        if variable is None:
            assert result.returncode == 3, result.stdout[-4000:]
            assert "CERTIFICATE_VERIFY_FAILED" in result.stdout
        else:
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            assert read_file_commands(dirs.output)["status"] == "succeeded"
