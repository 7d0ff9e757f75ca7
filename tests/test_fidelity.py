"""The organizers' own client, unmodified, against the simulator.

`ectf` (the organizers' package on PyPI) needs Python >= 3.12, so it is installed into
a virtual environment of its own, made once and cached under
`~/.cache/ectf-action-fidelity/` (keyed by the package and Python versions). Each test
runs one of its `ectf api ...` commands as a subprocess, with a temporary HOME holding
the `~/.ectf-config` it reads, and checks both the exit status and what the simulator
saw. When Python 3.12 or the package cannot be had, every test here is skipped with
the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ectf_action import cli
from ectf_action.config import resolve_config
from ectf_action.edges import Environment, Inputs
from ectf_action.simulator import Simulator, load_scenario

pytestmark = pytest.mark.fidelity

ECTF_VERSION = "2026.0.11"
GIT_URL = "ssh://git@github.com/team/design.git"
PYTHON_CANDIDATES = (
    os.environ.get("ECTF_FIDELITY_PYTHON", ""),
    "/root/.pyenv/versions/3.12.1/bin/python",
    "python3.12",
)
FAST_SCENARIO = """
time_scale: 0.01
flows:
  remote:
    jobs:
      - name: get_ports
        duration: 1
        artifacts:
          - {name: get_ports/port.out, kind: port}
      - name: run_remote_scenario
        needs: [get_ports]
        duration: 600
outcomes:
  - {commit_prefix: badc0de, fail: build}
  - {commit_prefix: "5105", hang: build}   # "slow": runs until canceled
"""


# --- the organizers' client in its own environment -------------------------------


def find_python312() -> str | None:
    """A Python 3.12 interpreter that actually runs (a pyenv shim may not)."""
    for candidate in PYTHON_CANDIDATES:
        if not candidate:
            continue
        path = candidate if os.sep in candidate else shutil.which(candidate)
        if not path or not Path(path).exists():
            continue
        try:
            probe = subprocess.run(
                [path, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return path
    return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ectf-action-fidelity"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialize venv creation between concurrent test sessions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def organizers_client() -> Path:
    """The `ectf` executable of a cached venv; pytest.skip when it cannot be made."""
    python = find_python312()
    if python is None:
        pytest.skip(
            "Python 3.12 not found (the organizers' client needs it): looked for "
            + ", ".join(c for c in PYTHON_CANDIDATES if c)
        )
    venv = cache_root() / f"ectf-{ECTF_VERSION}-py3.12"
    ready = venv / ".ready"
    executable = venv / "bin" / "ectf"
    with locked(cache_root() / ".lock"):
        if ready.exists() and executable.exists():
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [python, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"ectf=={ECTF_VERSION}",
            ],
        )
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"could not install ectf=={ECTF_VERSION}: {exc}")
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                pytest.skip(f"could not install ectf=={ECTF_VERSION} (pip failed): {tail}")
        ready.write_text(f"ectf=={ECTF_VERSION}\n{sys.version}\n")
    return executable


@pytest.fixture(scope="module")
def ectf() -> Path:
    return organizers_client()


# --- per test: a simulator and a HOME with the client's config -------------------


@dataclass
class Run:
    code: int
    out: str

    @property
    def flat(self) -> str:
        """The output without line breaks, for values rich may have wrapped."""
        return "".join(self.out.split())


@dataclass
class Client:
    executable: Path
    home: Path
    sim: Simulator

    def configure(self, token: str) -> None:
        config = {"token": token, "git_url": GIT_URL, "api_url": self.sim.url}
        (self.home / ".ectf-config").write_text(yaml.safe_dump(config))

    def __call__(self, *args: str) -> Run:
        env = {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "COLUMNS": "250",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
        }
        done = subprocess.run(
            [str(self.executable), *args],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(done.returncode, done.stdout + done.stderr)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(load_scenario(FAST_SCENARIO)).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def client(ectf: Path, sim: Simulator, tmp_path: Path) -> Client:
    home = tmp_path / "home"
    home.mkdir()
    made = Client(ectf, home, sim)
    made.configure(sim.token)
    return made


def queue(sim: Simulator, flow: str = "test", commit: str = "abc1234") -> str:
    spec = sim.scenario.default
    params = (
        {"target_team": "rival-team"}
        if flow == "remote"
        else {"git_url": GIT_URL, "commit_hash": commit}
    )
    return sim.engine.queue_flow(spec, flow, params)


def calls(sim: Simulator, method: str, fragment: str) -> list[int | None]:
    return [r.status for r in sim.requests if r.method == method and fragment in r.path]


# --- the commands ----------------------------------------------------------------


def test_test_submit_queues_a_flow(client: Client, sim: Simulator) -> None:
    run = client("api", "test", "submit", "abc1234")
    assert run.code == 0, run.out
    [flow] = sim.engine.flows("sim-team", "test")
    assert flow.params == {"git_url": GIT_URL, "commit_hash": "abc1234"}
    assert f'Successfully submitted test with ID: "{flow.id}"' in run.out
    assert calls(sim, "POST", "/api/flow/test/") == [201]


def test_a_second_submit_hits_the_one_flow_limit(client: Client, sim: Simulator) -> None:
    queue(sim, commit="5105f1a5")
    run = client("api", "test", "submit", "second")
    assert run.code != 0
    assert "Reached max active flows" in run.out
    assert calls(sim, "POST", "/api/flow/test/") == [409]


def test_submit_submit_queues_a_submit_flow(client: Client, sim: Simulator) -> None:
    """`ectf api submit <commit>` is shadowed by the `submit` group: this is the command."""
    run = client("api", "submit", "submit", "cafe123")
    assert run.code == 0, run.out
    [flow] = sim.engine.flows("sim-team", "submit")
    assert flow.params["commit_hash"] == "cafe123"


def test_test_ls_lists_the_flows(client: Client, sim: Simulator) -> None:
    first = queue(sim, commit="5105a1")
    sim.engine.cancel_flow(sim.scenario.default, "test", first)
    second = queue(sim, commit="5105b2")
    run = client("api", "test", "ls", "-n", "0")
    assert run.code == 0, run.out
    assert first in run.out and second in run.out
    assert run.out.index(first) < run.out.index(second)  # the client prints oldest first
    assert [r.query for r in sim.requests] == ["num=0"]


def test_test_info_shows_the_flow(client: Client, sim: Simulator) -> None:
    flow_id = sim.engine.wait_completed(queue(sim, commit="badc0de77"), 5).id
    run = client("api", "test", "info", flow_id)
    assert run.code == 0, run.out
    for text in (flow_id, "build", "test_functional", "Failed", "Canceled", "badc0de77"):
        assert text in run.out


def test_test_info_of_unknown_and_malformed_ids(client: Client, sim: Simulator) -> None:
    unknown = client("api", "test", "info", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert unknown.code != 0 and "not found" in unknown.out
    malformed = client("api", "test", "info", "not-a-uuid")
    assert malformed.code != 0 and "is not a valid Test ID" in malformed.out
    assert [r.status for r in sim.requests] == [404, 422]


def test_test_get_downloads_the_job_zip(client: Client, sim: Simulator) -> None:
    flow = sim.engine.wait_completed(queue(sim), 5)
    job = flow.job("build")
    out = client.home / "build.zip"
    run = client("api", "test", "get", job.id, str(out))
    assert run.code == 0, run.out
    expected = sim.engine.artifact_path(job.id)
    assert expected is not None and out.read_bytes() == expected.read_bytes()
    with zipfile.ZipFile(out) as archive:
        assert "build.log" in archive.namelist()


def test_test_cancel(client: Client, sim: Simulator) -> None:
    flow_id = queue(sim, commit="5105cafe")
    run = client("api", "test", "cancel", flow_id)
    assert run.code == 0, run.out
    snapshot = sim.engine.flow(flow_id)
    assert snapshot is not None and snapshot.completed
    assert snapshot.job("build").status == "canceled"
    again = client("api", "test", "cancel", flow_id)
    assert again.code != 0 and "has already completed" in again.out
    assert calls(sim, "POST", "/cancel/") == [204, 400]


def test_submit_update_answers_the_pending_approval(client: Client, sim: Simulator) -> None:
    flow_id = queue(sim, "submit")
    flow = sim.engine.wait_for_job(flow_id, "team_approval", "pending", 10)
    job = flow.job("team_approval")
    answer = client.home / "approve.json"
    answer.write_text(json.dumps({"approve": True}))
    run = client("api", "submit", "update", job.id, str(answer))
    assert run.code == 0, run.out
    assert f"Successfully updated job {job.id}" in run.out
    assert calls(sim, "PATCH", job.id) == [204]
    assert [r.path for r in sim.requests] == [f"/api/flow/submit/{job.id}/"]
    done = sim.engine.wait_completed(flow_id, 10)
    assert done.job("team_approval").inputs == ({"approve": True},)
    assert set(done.statuses.values()) == {"succeeded"}
    again = client("api", "submit", "update", job.id, str(answer))
    assert again.code != 0 and "is not in the pending state" in again.out


def test_photo_gets_the_flag(client: Client, sim: Simulator) -> None:
    photo = client.home / "team.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    run = client("api", "photo", str(photo))
    assert run.code == 0, run.out
    assert sim.engine.flag_hex("sim-team", "team_photo") in run.flat
    not_png = client.home / "fake.png"
    not_png.write_bytes(b"GIF89a" + bytes(10))
    refused = client("api", "photo", str(not_png))
    assert refused.code != 0 and "File is not a PNG!" in refused.out
    assert calls(sim, "POST", "/api/flag/team_photo/") == [200, 422]


def test_design_gets_the_flag(client: Client, sim: Simulator) -> None:
    design = client.home / "design.pdf"
    design.write_bytes(b"%PDF-1.7\n" + bytes(200))
    run = client("api", "design", str(design))
    assert run.code == 0, run.out
    assert sim.engine.flag_hex("sim-team", "design_doc") in run.flat


def test_steal_checks_the_digest(client: Client, sim: Simulator) -> None:
    digest = sim.engine.steal_digest("rival-team")
    run = client("api", "steal", "rival-team", digest)
    assert run.code == 0, run.out
    assert sim.engine.flag_hex("sim-team", "steal_design_rival-team") in run.flat
    wrong = client("api", "steal", "rival-team", "00" * 32)
    assert wrong.code != 0 and "Provided hash is incorrect for team rival-team" in wrong.out
    assert calls(sim, "POST", "/api/flag/steal_design/rival-team/") == [200, 400]


def test_list_names_the_packages(client: Client, sim: Simulator) -> None:
    run = client("api", "list")
    assert run.code == 0, run.out
    assert "sim-team" in run.out and "rival-team" in run.out


def test_get_downloads_a_package(client: Client, sim: Simulator) -> None:
    out = client.home / "rival.enc"
    run = client("api", "get", "rival-team", "--out", str(out))
    assert run.code == 0, run.out
    artifact = sim.engine.package_file(sim.scenario.default, "rival-team")
    assert out.read_bytes() == artifact.path.read_bytes()
    missing = client("api", "get", "nobody", "--out", str(client.home / "n.enc"))
    assert missing.code != 0 and "Package nobody not found" in missing.out


def test_a_rejected_token(client: Client, sim: Simulator) -> None:
    client.configure("not-a-team-token")
    run = client("api", "test", "ls")
    assert run.code != 0 and "Token rejected" in run.out
    assert [r.status for r in sim.requests] == [401]


def test_remote_connect_finds_the_port(client: Client, sim: Simulator) -> None:
    """The client's remote scenario: poll the flow, read `port.out` from get_ports' zip.

    It then opens serial ports that do not exist here, which ends it; by then it has
    printed the port, which is what the simulator has to get right.
    """
    run = client(
        "api",
        "remote",
        "connect",
        "/nonexistent/mgmt",
        "/nonexistent/xfer",
        "rival-team",
        "--timeout",
        "1",
    )
    [flow] = sim.engine.flows("sim-team", "remote")
    assert flow.params == {"target_team": "rival-team"}
    job = flow.job("get_ports")
    path = sim.engine.artifact_path(job.id)
    assert path is not None
    with zipfile.ZipFile(path) as archive:
        port = int(archive.read("get_ports/port.out"))
    assert f"Remote TCP port: {port}" in run.out, run.out
    assert calls(sim, "GET", f"/job/{job.id}/") == [200]


def test_config_round_trips_with_the_organizers_client(
    ectf: Path, sim: Simulator, tmp_path: Path
) -> None:
    """`ectf-action config` writes byte for byte what `ectf config` writes for the same
    values; their client works from our file, and we read theirs."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    values = ["--token", sim.token, "--git-url", GIT_URL, "--api-url", sim.url]
    written = cli.main(
        ["config", *values], env={}, stdout=io.StringIO(), stderr=io.StringIO(), home=ours
    )
    assert written == 0
    made = Client(ectf, theirs, sim)("config", *values)
    assert made.code == 0, made.out
    assert (ours / ".ectf-config").read_bytes() == (theirs / ".ectf-config").read_bytes()

    run = Client(ectf, ours, sim)("api", "test", "submit", "abc1234")
    assert run.code == 0, run.out
    [flow] = sim.engine.flows("sim-team", "test")
    assert flow.params == {"git_url": GIT_URL, "commit_hash": "abc1234"}
    config = resolve_config(Inputs({}, Environment({})), theirs)
    assert (config.token, config.git_url, config.api_url) == (sim.token, GIT_URL, sim.url)
