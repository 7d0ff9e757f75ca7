"""`ectf-action demo`: the whole action, offline, against an embedded simulator.

No network and no token: a simulator serves on a free loopback port, a fresh workspace
gets what the GitHub runner would give a container action (file-command files, an
event payload, RUNNER_TEMP, every input with action.yml's defaults), and the action
runs in this process exactly as `ectf-action run` would inside Actions.

By default what the action prints is shown as GitHub shows the step (`render.GitHubView`
reads the very protocol the runner would read), then the job summary drawn for a
terminal, the outputs and where the files are. `--raw` prints the protocol itself.

Kept light at import time: the simulator, the action and the renderer load when the
demo runs.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .edges import input_env_names
from .errors import InvalidInput
from .settings import INPUTS
from .text import clean
from .validation import parse_commit, parse_flow_name, parse_positive_number

if TYPE_CHECKING:
    from .render import GitHubView

DEFAULT_COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"
FAILING_COMMIT = "badc0de123456789abcdef0123456789abcdef01"
DEMO_REPOSITORY = "sim-team/design"
DEMO_TARGET = "rival-team"  # the default scenario's second team, attacked by `remote`
RULE = "=" * 72


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--commit",
        default=DEFAULT_COMMIT,
        metavar="SHA",
        help=f"commit to test; one starting with badc0de (e.g. {FAILING_COMMIT[:12]}...) "
        "makes the build fail",
    )
    parser.add_argument(
        "--flow", default="test", metavar="FLOW", help="clone, test, submit or remote"
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="folder to run in (created if missing) instead of a fresh temporary one",
    )
    parser.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the workspace to look at the artifacts and JUnit file (default); "
        "--no-keep removes a temporary one at the end",
    )
    parser.add_argument(
        "--time-scale",
        default="1",
        metavar="X",
        help="multiply the simulated jobs' durations (default 1: a test flow takes ~10 s)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="print the workflow commands exactly as the runner reads them, instead of the "
        "step as GitHub shows it",
    )
    parser.add_argument(
        "--expand",
        action="store_true",
        help="show every line of each job's log group (by default a long one is folded to "
        "its last lines)",
    )


def demo_command(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the demo; return the action's exit code (1 for a failed flow, as in CI)."""
    from .action import run_command
    from .simulator import Simulator, default_scenario
    from .simulator.design import design_of_flow

    env = {} if env is None else env
    flow = parse_flow_name(args.flow, name="--flow")
    commit = parse_commit(args.commit, name="--commit")
    scale = parse_positive_number(args.time_scale, name="--time-scale")
    root, temporary = _root(args.workspace)
    layout = _Layout(root)
    token = f"demo-{secrets.token_hex(12)}"
    scenario = default_scenario().with_time_scale(scale)
    # The team's repository, as actions/checkout leaves it: the sources the simulated
    # build compiles, so the diagnostics in its log annotate real files.
    design_of_flow(scenario, flow, commit).write(layout.workspace)
    try:
        with Simulator(scenario, token=token) as simulator:
            stdout.write(
                f"{RULE}\nectf-action demo: the {flow} flow of commit {commit[:12]} against a "
                f"simulated testing server at {simulator.url}\nworkspace: {layout.workspace}\n"
                f"{RULE}\n"
            )
            stdout.flush()
            action_env = layout.runner_env(simulator.url, token, flow, commit, scale)
            terminal = None if args.raw else _Terminal.of(stdout, env)
            view = None if terminal is None else terminal.view(stdout, expand=args.expand)
            try:
                code = run_command(
                    _no_flags(),
                    env=action_env,
                    stdout=stdout if view is None else view,
                    stderr=stderr,
                    install_signal_handlers=False,
                )
            finally:
                if view is not None:
                    view.finish()
        if terminal is None:
            _print_raw_results(stdout, layout, code)
        else:
            _print_results(stdout, layout, code, terminal)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            stdout.write(f"(removed {root}; run with --keep to look at the files)\n")
    return code


class _Layout:
    """Where the runner would put things: the workspace and, beside it, its own files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "workspace"
        self.runner = root / "runner"
        self.home = root / "home"
        self.temp = self.runner / "temp"
        for folder in (self.workspace, self.runner, self.home, self.temp):
            folder.mkdir(parents=True, exist_ok=True)
        self.output = self.runner / "github_output"
        self.state = self.runner / "github_state"
        self.summary = self.runner / "step_summary.md"
        self.event = self.runner / "event.json"
        for path in (self.output, self.state, self.summary):
            path.write_text("", encoding="utf-8")

    def runner_env(
        self, api_url: str, token: str, flow: str, commit: str, scale: float
    ) -> dict[str, str]:
        self.event.write_text(
            json.dumps({"ref": "refs/heads/main", "after": commit}), encoding="utf-8"
        )
        env = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": str(self.home),  # so the user's own ~/.ectf-config is not read
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STATE": str(self.state),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_EVENT_PATH": str(self.event),
            "GITHUB_SHA": commit,
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REPOSITORY": DEMO_REPOSITORY,
            "GITHUB_SERVER_URL": "https://github.com",
            "RUNNER_TEMP": str(self.temp),
        }
        inputs = {spec.name: spec.default for spec in INPUTS}
        inputs.update(
            {
                "token": token,
                "api-url": api_url,
                "flow": flow,
                # Polling at the adaptive pace would dwarf a sped-up flow.
                "poll-interval": "auto" if scale >= 1 else f"{max(0.05, 2 * scale):g}",
            }
        )
        if flow == "submit":  # approve the package, and wait for the organizers' step
            inputs["pending-inputs"] = "team_approval: {approve: true}"
            inputs["on-pending"] = "wait"
        if flow == "remote":
            inputs["target-team"] = DEMO_TARGET
        for name, value in inputs.items():
            env[input_env_names(name)[0]] = value
        return env


def _no_flags() -> argparse.Namespace:
    return argparse.Namespace(**{spec.name.replace("-", "_"): None for spec in INPUTS})


def _root(workspace: str | None) -> tuple[Path, bool]:
    if workspace is None:
        return Path(tempfile.mkdtemp(prefix="ectf-demo-")), True
    root = Path(workspace).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise InvalidInput("--workspace", f"{workspace!r} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    return root, False


@dataclass(frozen=True)
class _Terminal:
    """How stdout is drawn on, decided once from the stream and the environment."""

    color: bool
    width: int

    @classmethod
    def of(cls, stdout: TextIO, env: Mapping[str, str]) -> _Terminal:
        from .render import terminal_width, use_color

        return cls(use_color(stdout, env), terminal_width(stdout, env))

    def view(self, stdout: TextIO, *, expand: bool) -> GitHubView:
        from .render import DEFAULT_FOLD_LINES, GitHubView

        return GitHubView(stdout, color=self.color, fold=None if expand else DEFAULT_FOLD_LINES)


def _print_raw_results(stdout: TextIO, layout: _Layout, code: int) -> None:
    """The outputs, the summary's markdown source and the files, after the protocol."""
    outputs = read_file_commands(layout.output.read_text(encoding="utf-8"))
    lines = [*_result_lines(outputs, code), *_output_lines(outputs)]
    lines += [RULE, f"Job summary ({layout.summary}):", RULE, layout.summary.read_text("utf-8")]
    lines += _file_lines(layout, outputs)
    stdout.write("\n".join(lines) + "\n")
    stdout.flush()


def _print_results(stdout: TextIO, layout: _Layout, code: int, terminal: _Terminal) -> None:
    """The summary as the job's page shows it, then the outputs and the files."""
    from .render import render_summary_file

    outputs = read_file_commands(layout.output.read_text(encoding="utf-8"))
    summary = render_summary_file(layout.summary, width=terminal.width, color=terminal.color)
    lines = _result_lines(outputs, code)
    lines += [f"Job summary ({layout.summary}), as GitHub shows it:", RULE, summary.rstrip("\n")]
    lines += [RULE, *_output_lines(outputs), *_file_lines(layout, outputs)]
    stdout.write("\n".join(lines) + "\n")
    stdout.flush()


def _result_lines(outputs: Mapping[str, str], code: int) -> list[str]:
    status = clean(outputs.get("status", "?"))
    return [RULE, f"Result: {status} (the step's exit code: {code})", RULE]


def _output_lines(outputs: Mapping[str, str]) -> list[str]:
    """Every output but `jobs`, then a line per job (names come from the server)."""
    lines = ["Outputs:"]
    lines += [f"  {name}: {clean(value)}" for name, value in outputs.items() if name != "jobs"]
    for job in json.loads(outputs.get("jobs") or "[]"):
        folder = job.get("artifacts_dir")
        lines.append(
            f"  jobs[] {clean(job.get('name'))}: {clean(job.get('status'))}"
            + (f" -> {clean(folder)}" if folder else "")
        )
    return lines


def _file_lines(layout: _Layout, outputs: Mapping[str, str]) -> list[str]:
    workspace = layout.workspace
    lines = [RULE, "Files:"]
    artifacts = outputs.get("artifacts-path")
    if artifacts and (workspace / artifacts).is_dir():
        count = sum(1 for p in (workspace / artifacts).rglob("*") if p.is_file())
        lines.append(f"  artifacts:    {workspace / artifacts} ({count} files)")
    if outputs.get("junit-path"):
        lines.append(f"  JUnit report: {workspace / outputs['junit-path']}")
    lines.append(f"  job summary:  {layout.summary}")
    lines.append(f"  outputs:      {layout.output}")
    return lines


def read_file_commands(text: str) -> dict[str, str]:
    """Values written in the runner's file-command format (`name<<delimiter` records,
    or `name=value` lines), as the runner reads them back."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            index += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values
