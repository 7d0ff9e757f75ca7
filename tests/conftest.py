"""Shared fixtures: an in-process simulator, a runner-like environment, a secret scanner.

`ActionEnv` lays out what the GitHub runner gives a container action: a workspace, the
file-command files (outside the workspace, as under /github/file_commands), an event
payload, RUNNER_TEMP, every `INPUT_*` with action.yml's defaults filled in (hyphens
kept), and reads back the outputs, state and summary the action wrote.
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
import xml.sax.saxutils
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ectf_action.simulator import Scenario, Simulator, default_scenario

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTION_YML = REPO_ROOT / "action.yml"
PUSH_SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
FAIL_SHA = "badc0de5e6f708192a3b4c5d6e7f8091a2b3c4d"  # the default scenario fails its build
HANG_SHA = "deadbeef56f708192a3b4c5d6e7f8091a2b3c4d"  # its build runs until canceled
FAST_SCALE = 0.05  # the default test flow (~10 s of jobs) runs in about half a second


def action_defaults() -> dict[str, str]:
    """Every input with action.yml's default, as the runner fills them in ("" if none)."""
    metadata = yaml.safe_load(ACTION_YML.read_text(encoding="utf-8"))
    return {
        str(name): str(spec.get("default", "") or "") for name, spec in metadata["inputs"].items()
    }


def input_variable(name: str) -> str:
    return "INPUT_" + name.replace(" ", "_").upper()


def parse_file_commands(text: str) -> dict[str, str]:
    """`name<<delimiter` ... `delimiter` and `name=value` records, as the runner reads them."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            index += 1
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


@dataclass
class ActionEnv:
    """A runner-like environment in *root*; `env` is what the action's process gets."""

    root: Path
    token: str
    api_url: str
    scanner: SecretScanner | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workspace = self.root / "workspace"
        self.file_commands = self.root / "file_commands"
        self.runner_temp = self.root / "runner_temp"
        self.home = self.root / "home"
        for folder in (self.workspace, self.file_commands, self.runner_temp, self.home):
            folder.mkdir(parents=True, exist_ok=True)
        self.output_file = self.file_commands / "set_output"
        self.state_file = self.file_commands / "save_state"
        self.summary_file = self.file_commands / "step_summary"
        self.event_file = self.root / "workflow" / "event.json"
        self.event_file.parent.mkdir(exist_ok=True)
        for path in (self.output_file, self.state_file, self.summary_file):
            path.touch()
        self.event_file.write_text(json.dumps({"ref": "refs/heads/main", "after": PUSH_SHA}))
        self.env = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": str(self.home),
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(self.output_file),
            "GITHUB_STATE": str(self.state_file),
            "GITHUB_STEP_SUMMARY": str(self.summary_file),
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_EVENT_PATH": str(self.event_file),
            "GITHUB_SHA": PUSH_SHA,
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REPOSITORY": "sim-team/design",
            "GITHUB_SERVER_URL": "https://github.com",
            "RUNNER_TEMP": str(self.runner_temp),
        }
        for name, default in action_defaults().items():
            self.env[input_variable(name)] = default
        self.set_inputs(token=self.token, **{"api-url": self.api_url, "poll-interval": "0.05"})

    def set_inputs(self, **inputs: str) -> None:
        """Set inputs by their action.yml names (`**{"on-conflict": "fail"}`)."""
        for name, value in inputs.items():
            self.env[input_variable(name)] = value

    def pull_request(self, head_sha: str, *, event: str = "pull_request") -> None:
        self.event_file.write_text(
            json.dumps({"action": "synchronize", "pull_request": {"head": {"sha": head_sha}}})
        )
        self.env["GITHUB_EVENT_NAME"] = event
        self.env["GITHUB_SHA"] = "9" * 40  # the merge commit, which the server cannot fetch

    def outputs(self) -> dict[str, str]:
        return parse_file_commands(self.output_file.read_text(encoding="utf-8"))

    def state(self) -> dict[str, str]:
        return parse_file_commands(self.state_file.read_text(encoding="utf-8"))

    def summary(self) -> str:
        return self.summary_file.read_text(encoding="utf-8")

    def process_env(self) -> dict[str, str]:
        """The environment of the action's process: the runner's, plus what Python needs."""
        env = dict(self.env)
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The real entry point, as the container runs it: `python -m ectf_action run`."""
        return subprocess.Popen(
            [sys.executable, "-m", "ectf_action", "run", *args],
            cwd=self.workspace,
            env=self.process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 60.0) -> Completed:
        process = self.start(*args)
        stdout, stderr = process.communicate(timeout=timeout)
        return self.completed(process.returncode, stdout, stderr)

    def launch(self, *args: str) -> LiveRun:
        """Start the action and watch its stdout while it runs."""
        return LiveRun(self, self.start(*args))

    def completed(self, returncode: int, stdout: str, stderr: str) -> Completed:
        """The result, its streams handed to the scanner (all but the mask itself)."""
        if self.scanner is not None:
            self.scanner.add_text("stdout", without_masks(stdout))
            self.scanner.add_text("stderr", without_masks(stderr))
        return Completed(returncode, stdout, stderr)


class LiveRun:
    """A running action whose stdout lines can be waited for (to time a signal)."""

    def __init__(self, environment: ActionEnv, process: subprocess.Popen[str]) -> None:
        self.environment = environment
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, *parts: str, timeout: float = 20.0) -> str:
        """The first stdout line holding every one of *parts*; fails after *timeout* s."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if all(part in line for part in parts):
                return line
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(0.01, remaining))
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                raise AssertionError(f"no line with {parts!r} in: {self.lines}")
            self.lines.append(line)
            if all(part in line for part in parts):
                return line

    def finish(self, timeout: float = 30.0) -> Completed:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        stdout = "\n".join(self.lines) + "\n"
        return self.environment.completed(self.process.returncode, stdout, stderr)


def without_masks(text: str) -> str:
    """The `::add-mask::` lines hold the secret by design: they are what hides it."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def commands(self, name: str) -> list[str]:
        """The workflow commands `::name...` the action printed."""
        return [line for line in self.stdout.splitlines() if line.startswith(f"::{name}")]


def distinctive_token() -> str:
    """A token no output could contain by chance, so finding it anywhere is a leak."""
    return f"tok-{uuid.uuid4().hex}-secret"


class SecretScanner:
    """Fails a test when the token shows up in any byte the action produced, or in the
    name of any file or folder it made."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.folders: list[Path] = []
        self.server_files: set[Path] = set()

    def add_text(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_folder(self, folder: Path) -> None:
        self.folders.append(folder)

    def allow_server_bytes(self, path: Path) -> None:
        """*path* is an artifact extracted byte for byte as the server sent it (a test
        checks that), so the token may be in its content; its name is still scanned."""
        self.server_files.add(path)

    def leaks(self, token: str) -> list[str]:
        """Where the token is, in any of the forms a report could spell it."""
        forms = token_forms(token)
        found = [
            f"{where} ({form})"
            for where, text in self.texts
            for form, needle in forms.items()
            if needle in text
        ]
        as_name = _FILE_NAME_UNSAFE.sub("_", token)
        names = {**forms, "as a file name": as_name}
        if "start" in forms:
            names["its start as a file name"] = as_name[:16]
        for folder in self.folders:
            for path in sorted(folder.rglob("*")):
                name = path.relative_to(folder).as_posix()
                found += [f"the name {name!r} ({form})" for form, n in names.items() if n in name]
                if not path.is_file() or path.is_symlink() or path in self.server_files:
                    continue
                data = path.read_bytes()
                found += [
                    f"{path} ({form})" for form, needle in forms.items() if needle.encode() in data
                ]
        return found


_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # what a job's folder name replaces


_MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "&#96;", "|": "&#124;"}


def token_forms(token: str) -> dict[str, str]:
    """The token raw, its start (what cutting a long name before redacting it shows),
    and escaped as each report escapes text: markdown, XML and HTML, JSON, and the
    workflow commands' property escaping. Finding any of them is a leak."""
    markdown = "".join(
        f"\\{ch}" if ch in "\\*_[]~#!" else _MARKDOWN_ENTITIES.get(ch, ch) for ch in token
    )
    forms = {
        "raw": token,
        "markdown": markdown,
        "xml": xml.sax.saxutils.escape(token, {'"': "&quot;", "'": "&apos;"}),
        "html": html.escape(token),
        "json": json.dumps(token)[1:-1],
        "workflow": token.replace("%", "%25").replace(":", "%3A").replace(",", "%2C"),
    }
    if len(token) >= 24:
        forms["start"] = token[:16]
    return forms


@pytest.fixture
def secret_scanner() -> SecretScanner:
    return SecretScanner()


@pytest.fixture
def sim_token() -> str:
    return distinctive_token()


def make_scenario(time_scale: float = FAST_SCALE) -> Scenario:
    """The default scenario, fast, plus commits whose build hangs until canceled."""
    outcomes = [
        {"commit_prefix": "badc0de", "fail": ["build"]},
        {"commit_prefix": "deadbeef", "hang": ["build"]},
    ]
    return Scenario.from_dict(
        {"time_scale": time_scale, "outcomes": outcomes}, base=default_scenario()
    )


@pytest.fixture
def simulator(sim_token: str) -> Iterator[Simulator]:
    """The test scenario at a fast time scale, with this test's own token."""
    with Simulator(make_scenario(), token=sim_token) as sim:
        yield sim


@pytest.fixture
def action_env(
    tmp_path: Path, simulator: Simulator, secret_scanner: SecretScanner
) -> Iterator[ActionEnv]:
    """A runner-like environment pointed at the simulator; afterwards every file the
    action could have written (workspace, file commands, temp) is scanned for the token."""
    environment = ActionEnv(tmp_path, simulator.token, simulator.url, secret_scanner)
    yield environment
    secret_scanner.add_folder(tmp_path)
    leaks = secret_scanner.leaks(simulator.token)
    assert not leaks, f"the token leaked into: {leaks}"


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def flows_of(simulator: Simulator, flow: str = "test") -> list[Any]:
    """The default team's flows of one type, newest first."""
    return simulator.engine.flows(team=simulator.team, flow_name=flow)


def assert_golden(path: Path, text: str) -> None:
    """*text* equals the golden file at *path*, byte for byte (no newline is translated:
    a lone CR from the server must show); with UPDATE_GOLDEN=1 it is written instead. A
    missing golden file fails."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; create it with UPDATE_GOLDEN=1")
    assert text == path.read_bytes().decode("utf-8")
