"""The action's entry points: `ectf-action run` and the post step `ectf-action-post`.

Thin on purpose: environment -> settings -> runner -> reports and outputs -> exit code.
The token is masked before anything else is printed; every non-zero exit ends with
one `::error::` that says what happened and what to do.

Kept light at import time (no HTTP library, no runner): `--help` start-up is benchmarked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from .errors import (
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EctfError,
    InvalidInput,
)
from .settings import (
    INPUTS,
    Settings,
    check_token,
    in_github_actions,
    load_settings,
    token_candidates,
)

if TYPE_CHECKING:
    from .client import EctfClient
    from .clock import Clock
    from .results import RunResult
    from .runner import RunOutcome
    from .workflow import WorkflowCommands

ClientFactory = Callable[..., "EctfClient"]

LOG_GROUP_LINES = 400  # the tail of a job's log echoed in its `::group::`
LOG_GROUP_BYTES = 128 * 1024

SKIPPED_MESSAGE = (
    "Skipped: the token input is empty, as it is in a pull request from a fork (GitHub "
    "gives forks no secrets), so nothing was queued. Set skip-without-token: false to fail "
    "instead."
)
_TITLES = {
    "succeeded": "eCTF flow succeeded",
    "failed": "eCTF flow failed",
    "canceled": "eCTF flow canceled",
    "pending": "eCTF flow waits for input",
    "timed-out": "eCTF flow timed out",
    "skipped": "eCTF flow skipped",
    "error": "eCTF run failed",
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per action input; None by default so the environment and defaults apply."""
    group = parser.add_argument_group(
        "action inputs", "a flag wins over the INPUT_* variable and the ECTF_* variables"
    )
    for spec in INPUTS:
        group.add_argument(
            f"--{spec.name}",
            dest=_dest(spec.name),
            default=None,
            metavar=spec.metavar,
            help=spec.help,
        )


def _dest(name: str) -> str:
    return name.replace("-", "_")


def run_command(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str],
    stdout: TextIO,
    stderr: TextIO,
    client_factory: ClientFactory | None = None,
    clock: Clock | None = None,
    install_signal_handlers: bool = True,
) -> int:
    """Run the action once; return its exit code."""
    from .workflow import WorkflowCommands

    flags = {spec.name: getattr(args, _dest(spec.name), None) for spec in INPUTS}
    actions = in_github_actions(env)
    commands = WorkflowCommands(
        stdout,
        output_file=_file_command_path(env, "GITHUB_OUTPUT", actions),
        state_file=_file_command_path(env, "GITHUB_STATE", actions),
        summary_file=_file_command_path(env, "GITHUB_STEP_SUMMARY", actions),
    )
    candidates = token_candidates(flags, env)
    for candidate in candidates:
        commands.add_mask(candidate)
    try:
        settings = load_settings(flags, env, home=_home(env), cwd=Path.cwd())
    except InvalidInput as exc:
        commands.set_output("status", "error")
        commands.error(
            f"{exc}. Nothing was sent to the testing server; fix this input and run again.",
            title="Invalid input",
        )
        return EXIT_INVALID_INPUT
    if settings.token not in candidates:
        commands.add_mask(settings.token)  # it came from ~/.ectf-config

    if not settings.token:
        return _skip(commands, settings)

    interrupt = _Interrupt()
    with interrupt.installed(install_signal_handlers):
        outcome = _run(settings, commands, interrupt.event, client_factory, clock)
        exit_code = outcome.exit_code
        if outcome.interrupted:
            exit_code = interrupt.exit_code()
        _report(commands, settings, outcome, exit_code, signal_name=interrupt.name())
    return exit_code


def _run(
    settings: Settings,
    commands: WorkflowCommands,
    cancel: threading.Event,
    client_factory: ClientFactory | None,
    clock: Clock | None,
) -> RunOutcome:
    from .clock import SystemClock
    from .results import RunResult, RunStatus
    from .runner import Runner, RunOutcome

    def saved(flow_id: str) -> None:
        """The post step cancels this flow should the workflow be cancelled."""
        commands.save_state("flow_id", flow_id)
        commands.save_state("flow", settings.flow)
        commands.set_output("flow-id", flow_id)

    try:
        client = (client_factory or _default_client)(settings.api_url, settings.token)
    except EctfError as exc:
        result = RunResult(
            RunStatus.ERROR, settings.flow, commit=settings.commit or "", message=str(exc),
            api_url=settings.api_url,
        )  # fmt: skip
        return RunOutcome(result, EXIT_SERVER)
    try:
        runner = Runner(
            settings,
            client,
            clock=clock or SystemClock(),
            cancel=cancel,
            log=commands.info,
            on_flow_id=saved,
        )
        return runner.run()
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def _skip(commands: WorkflowCommands, settings: Settings) -> int:
    from .results import RunResult, RunStatus
    from .runner import RunOutcome

    result = RunResult(
        RunStatus.SKIPPED, settings.flow, commit=settings.commit or "", message=SKIPPED_MESSAGE,
        api_url=settings.api_url,
    )  # fmt: skip
    outcome = RunOutcome(result, EXIT_OK, notice=SKIPPED_MESSAGE)
    _report(commands, settings, outcome, EXIT_OK, signal_name=None)
    return EXIT_OK


# -- reports -------------------------------------------------------------------------------


def _report(
    commands: WorkflowCommands,
    settings: Settings,
    outcome: RunOutcome,
    exit_code: int,
    *,
    signal_name: str | None,
) -> None:
    """Logs, annotations, JUnit, summary and outputs: written for every result, so a
    failed or broken run still leaves its reports."""
    result = outcome.result
    _job_logs(commands, settings, result)
    for warning in result.warnings:
        commands.warning(warning, title="eCTF run")
    junit_written = _write_junit(commands, settings, result)
    if settings.job_summary:
        from .summary import render_summary

        commands.append_summary(render_summary(result))
    outputs = {
        "status": result.status.value,
        "failed-jobs": ",".join(result.failed_jobs),
        "jobs": json.dumps([job.to_output_json() for job in result.jobs]),
        "junit-path": (
            settings.relative(settings.junit_path) if junit_written and settings.junit_path else ""
        ),
        "artifacts-path": settings.relative(settings.artifacts_path),
    }
    if result.flow_id is None:
        outputs = {"flow-id": "", **outputs}
    for name, value in outputs.items():
        commands.set_output(name, value)
    if not settings.in_actions:
        shown = {"flow-id": result.flow_id or "", **outputs}
        shown.pop("jobs")
        commands.info("outputs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if outcome.notice:
        commands.notice(outcome.notice, title=_TITLES[result.status.value])
    if exit_code == EXIT_OK:
        if not outcome.notice:
            commands.info(result.message)
        return
    message = result.message
    if signal_name is not None and outcome.interrupted:
        message = f"{message} (received {signal_name})"
    commands.error(message, title=_TITLES[result.status.value])


def _job_logs(commands: WorkflowCommands, settings: Settings, result: RunResult) -> None:
    """Each job's log in a group of its own, and an annotation per failed job."""
    from .artifacts import read_log_tail
    from .models import JobStatus
    from .text import clean

    for job in result.jobs:
        name = clean(job.name)
        if job.artifacts_dir:
            log = read_log_tail(
                settings.workspace / job.artifacts_dir,
                max_lines=LOG_GROUP_LINES,
                max_bytes=LOG_GROUP_BYTES,
            )
            if log:
                with commands.group(f"eCTF job {name}: {clean(job.job.status_text, 20)}"):
                    commands.echo_untrusted(log)
        for warning in job.warnings:
            commands.warning(warning, title=f"eCTF job {name}")
        if job.status is JobStatus.FAILED:
            tail = job.log_tail or "No log was found in the job's artifacts."
            commands.error(tail, title=f"eCTF job {name} failed")


def _write_junit(commands: WorkflowCommands, settings: Settings, result: RunResult) -> bool:
    if settings.junit_path is None:
        return False
    from .junit import render_junit

    path = settings.junit_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(commands.redact(render_junit(result)), encoding="utf-8")
    except OSError as exc:
        commands.warning(
            f"The JUnit report could not be written to {settings.relative(path)}: {exc.strerror}.",
            title="JUnit report not written",
        )
        return False
    return True


# -- signals -------------------------------------------------------------------------------


class _Interrupt:
    """SIGINT/SIGTERM only set an event (and are remembered); the runner does the rest,
    so a signal cancels the remote flow instead of killing us mid-request."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT

    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


# -- the post step -------------------------------------------------------------------------


def post_main() -> int:
    """`ectf-action-post`: runs when the workflow run was cancelled."""
    return post_command(dict(os.environ), sys.stdout)


def post_command(
    env: Mapping[str, str], stdout: TextIO, *, client_factory: ClientFactory | None = None
) -> int:
    """Cancel the flow the main step saved, if it is still active. Never fails the job:
    the run is already cancelled, and a flow that already ended is the good case."""
    from .config import resolve_config
    from .models import is_uuid
    from .validation import parse_flow_name
    from .workflow import WorkflowCommands

    commands = WorkflowCommands(stdout, output_file=None, state_file=None, summary_file=None)
    for candidate in token_candidates({}, env):
        commands.add_mask(candidate)
    flow_id = env.get("STATE_flow_id", "").strip()
    if not flow_id:
        return _cancel_unsaved_flow(commands, env, client_factory)
    try:
        flow = parse_flow_name(env.get("STATE_flow", "").strip() or "test", name="STATE_flow")
        if not is_uuid(flow_id):
            raise InvalidInput("STATE_flow_id", f"{flow_id!r} is not a flow id")
        config = resolve_config({}, env, _home(env))
        check_token(config.token, name=config.sources.get("token", "token"))
    except InvalidInput as exc:
        commands.warning(f"The eCTF flow was not cancelled: {exc}.", title="eCTF post step")
        return EXIT_OK
    commands.add_mask(config.token)
    if not config.token:
        commands.info(f"No token to cancel the {flow} flow {flow_id} with; nothing done.")
        return EXIT_OK
    return _cancel_saved_flow(commands, client_factory, config.api_url, config.token, flow, flow_id)


NOTHING_QUEUED = "The main step queued no eCTF flow; nothing to cancel."


def _cancel_unsaved_flow(
    commands: WorkflowCommands, env: Mapping[str, str], client_factory: ClientFactory | None
) -> int:
    """No flow id was saved, yet the main step may have been killed while its queue request
    was on its way (the runner kills a step 10 s after asking it to stop). A flow of this
    commit that is active now is that one, or one the main step would have followed:
    cancel it, so the team's slot is not held by a run that no longer exists."""
    try:
        settings = load_settings({}, env, home=_home(env), cwd=Path.cwd())
    except InvalidInput:
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    if not settings.token:
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    remote = settings.flow == "remote"
    try:
        client = (client_factory or _post_client)(settings.api_url, settings.token)
        try:
            active = client.find_active_flow(settings.flow, None if remote else settings.commit)
        finally:
            client.close()
    except EctfError as exc:
        commands.warning(
            f"Could not look for a {settings.flow} flow the main step may have queued: {exc}",
            title="eCTF post step",
        )
        return EXIT_OK
    if active is None or (remote and active.params.get("target_team") != settings.target_team):
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    commands.info(
        f"The main step saved no flow id, but the {settings.flow} flow {active.id} of this "
        f"{'target' if remote else 'commit'} is active: it was queued as the step stopped."
    )
    return _cancel_saved_flow(
        commands, client_factory, settings.api_url, settings.token, settings.flow, active.id
    )


def _cancel_saved_flow(
    commands: WorkflowCommands,
    client_factory: ClientFactory | None,
    api_url: str,
    token: str,
    flow: str,
    flow_id: str,
) -> int:
    from .errors import BadRequest

    what = f"the {flow} flow {flow_id}"
    try:
        client = (client_factory or _post_client)(api_url, token)
        try:
            current = client.get_flow(flow, flow_id)
            if current.finished:
                commands.info(f"{what.capitalize()} already ended; nothing to cancel.")
                return EXIT_OK
            client.cancel_flow(flow, flow_id)
        finally:
            client.close()
    except BadRequest:
        commands.info(f"{what.capitalize()} already ended; nothing to cancel.")
        return EXIT_OK
    except EctfError as exc:
        commands.warning(
            f"Could not cancel {what}: {exc} Cancel it by hand: ectf-action flows cancel "
            f"{flow} {flow_id}",
            title="eCTF flow not cancelled",
        )
        return EXIT_OK
    commands.info(f"Cancelled {what}, so the team's slot is free again.")
    return EXIT_OK


# -- edges ---------------------------------------------------------------------------------


def _default_client(api_url: str, token: str) -> EctfClient:
    from .client import EctfClient

    return EctfClient(api_url, token)


def _post_client(api_url: str, token: str) -> EctfClient:
    """Quick to give up: a post step of a cancelled run has little time."""
    from .client import EctfClient

    return EctfClient(api_url, token, timeout=(5.0, 15.0), retries=2, queue_attempts=2)


def _file_command_path(env: Mapping[str, str], name: str, actions: bool) -> Path | None:
    value = env.get(name, "").strip() if actions else ""
    return Path(value) if value else None


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "").strip()
    return Path(home) if home else Path.home()
