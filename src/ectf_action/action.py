"""The action's entry point, `ectf-action run`.

Thin on purpose, a straight pipeline: environment -> settings -> runner -> reports ->
exit code, the exit code decided once, at the end. The token is masked before anything
else is printed; every non-zero exit ends with one `::error::` that says what happened
and what to do. The post step is `post.py`.

Kept light at import time (no HTTP library, no runner): `--help` start-up is benchmarked.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .edges import ClientFactory, Environment, Interrupts, default_client
from .errors import EXIT_INVALID_INPUT, EXIT_OK, EXIT_SERVER, EctfError, InvalidInput
from .settings import INPUTS, Settings, load_settings, token_candidates

if TYPE_CHECKING:
    from .clock import Clock
    from .verdict import RunOutcome
    from .workflow import WorkflowCommands

SKIPPED_MESSAGE = (
    "Skipped: the token input is empty, as it is in a pull request from a fork (GitHub "
    "gives forks no secrets), so nothing was queued. Set skip-without-token: false to fail "
    "instead."
)


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
    from .reports import write_reports
    from .workflow import WorkflowCommands

    environment = Environment.of(env)
    flags = {spec.name: getattr(args, _dest(spec.name), None) for spec in INPUTS}
    commands = WorkflowCommands(
        stdout,
        output_file=environment.file_command("GITHUB_OUTPUT"),
        state_file=environment.file_command("GITHUB_STATE"),
        summary_file=environment.file_command("GITHUB_STEP_SUMMARY"),
    )
    candidates = token_candidates(flags, environment)
    for candidate in candidates:
        commands.add_mask(candidate)
    try:
        settings = load_settings(flags, environment, cwd=Path.cwd())
    except InvalidInput as exc:
        from .message import invalid_input_line

        commands.set_output("status", "error")
        commands.set_output("message", invalid_input_line(str(exc), commands.redact))
        commands.error(
            f"{exc}. Nothing was sent to the testing server; fix this input and run again.",
            title="Invalid input",
        )
        return EXIT_INVALID_INPUT
    if settings.token not in candidates:
        commands.add_mask(settings.token)  # it came from ~/.ectf-config

    interrupts = Interrupts()
    with interrupts.installed(install_signal_handlers and bool(settings.token)) as cancel:
        if settings.token:
            outcome = _run(settings, commands, cancel, client_factory or default_client, clock)
        else:
            outcome = _skipped(settings)
        exit_code = interrupts.exit_code if outcome.interrupted else outcome.exit_code
        write_reports(commands, settings, outcome, exit_code, signal_name=interrupts.name)
    return exit_code


def _run(
    settings: Settings,
    commands: WorkflowCommands,
    cancel: threading.Event,
    client_factory: ClientFactory,
    clock: Clock | None,
) -> RunOutcome:
    from .clock import SystemClock
    from .post import LEFT_RUNNING_STATE
    from .results import RunResult, RunStatus
    from .runner import Runner
    from .verdict import RunOutcome

    def saved(flow_id: str) -> None:
        """The post step cancels this flow should the workflow be cancelled."""
        commands.save_state("flow_id", flow_id)
        commands.save_state("flow", settings.flow)
        commands.set_output("flow-id", flow_id)

    def left_running(status: str) -> None:
        """Saved the moment the run decides it: the post step leaves this flow alone."""
        commands.save_state(LEFT_RUNNING_STATE, status)

    try:
        client = client_factory(settings.api_url, settings.token)
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
            on_left_running=left_running,
        )
        return runner.run()
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def _skipped(settings: Settings) -> RunOutcome:
    """A fork's pull request: no token, so nothing is queued, and the step passes."""
    from .results import RunResult, RunStatus
    from .verdict import RunOutcome

    result = RunResult(
        RunStatus.SKIPPED, settings.flow, commit=settings.commit or "", message=SKIPPED_MESSAGE,
        api_url=settings.api_url,
    )  # fmt: skip
    return RunOutcome(result, EXIT_OK, notice=SKIPPED_MESSAGE)
