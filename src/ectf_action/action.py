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
from .errors import (
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SERVER,
    EctfError,
    InvalidInput,
    RunAborted,
    StateNotSaved,
    unexpected_problem,
)
from .ownership import give_to_workspace_owner
from .results import RunStatus
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
    """Run the action once; return its exit code. Outside GitHub Actions a person reads
    the step: it is shown as GitHub would show it (the workflow commands the step wrote,
    parsed), then its job summary."""
    environment = Environment.of(env)
    view = None if environment.in_actions else TerminalView(stdout, environment)
    try:
        return _run_command(
            args,
            environment,
            view.stream if view is not None else stdout,
            view,
            client_factory,
            clock,
            install_signal_handlers,
        )
    finally:
        if view is not None:
            view.finish()


class TerminalView:
    """The stream the step writes to outside Actions, and its summary shown after it."""

    def __init__(self, stdout: TextIO, environment: Environment) -> None:
        from .render import GitHubView, terminal_width, use_color

        self._stdout = stdout
        self._color = use_color(stdout, environment)
        self._width = terminal_width(stdout, environment)
        self.stream = GitHubView(stdout, color=self._color)
        self.summary: str | None = None

    def finish(self) -> None:
        from .render import render_markdown

        self.stream.finish()
        if self.summary:
            text = render_markdown(self.summary, width=self._width, color=self._color)
            self._stdout.write("\n" + text)
            self._stdout.flush()


def _run_command(
    args: argparse.Namespace,
    environment: Environment,
    stdout: TextIO,
    view: TerminalView | None,
    client_factory: ClientFactory | None,
    clock: Clock | None,
    install_signal_handlers: bool,
) -> int:
    from .reports import write_reports
    from .workflow import WorkflowCommands

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
        try:
            if settings.token:
                factory = client_factory or default_client
                outcome = _run(settings, commands, cancel, factory, clock)
            else:
                outcome = _skipped(settings)
        except RunAborted:  # a second signal before the run could handle it
            outcome = _ended(settings, RunStatus.CANCELED, "The run was interrupted.", True)
        except Exception as exc:  # the last resort: a bug must not cost the reports
            outcome = _ended(settings, RunStatus.ERROR, unexpected_problem(exc), False)
        exit_code = interrupts.exit_code if outcome.interrupted else outcome.exit_code
        interrupts.finishing()
        try:
            summary = write_reports(
                commands, settings, outcome, exit_code, signal_name=interrupts.name
            )
            if view is not None:
                view.summary = summary
        except Exception as exc:
            commands.error(unexpected_problem(exc), title="eCTF reports not written")
            exit_code = exit_code or EXIT_SERVER
        finally:
            for problem in give_to_workspace_owner(settings):
                commands.warning(problem, title="eCTF files not handed over")
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
    from .runner import Runner

    def saved(flow_id: str) -> None:
        """The post step cancels this flow should the workflow be cancelled; if the id
        cannot be saved for it, the run must not leave the flow running."""
        commands.set_output("flow-id", flow_id)
        if not (
            commands.save_state("flow_id", flow_id) and commands.save_state("flow", settings.flow)
        ):
            raise StateNotSaved(
                "The step could not save the flow's id in its state (GITHUB_STATE), so no "
                "post step could cancel it if the workflow were cancelled."
            )

    def left_running(status: str) -> None:
        """Saved the moment the run decides it: the post step leaves this flow alone."""
        commands.save_state(LEFT_RUNNING_STATE, status)

    try:
        client = client_factory(settings.api_url, settings.token)
        client.redact_with(commands.redactor)
        if settings.ca_bundle is not None:
            client.trust(settings.ca_bundle)
    except EctfError as exc:
        return _ended(settings, RunStatus.ERROR, str(exc), False)
    try:
        runner = Runner(
            settings,
            client,
            clock=clock or SystemClock(),
            cancel=cancel,
            log=commands.info,
            on_flow_id=saved,
            redact=commands.redactor.redact,
            on_left_running=left_running,
        )
        return runner.run()
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def _skipped(settings: Settings) -> RunOutcome:
    """A fork's pull request: no token, so nothing is queued, and the step passes."""
    from .verdict import RunOutcome

    outcome = _ended(settings, RunStatus.SKIPPED, SKIPPED_MESSAGE, False)
    return RunOutcome(outcome.result, EXIT_OK, notice=SKIPPED_MESSAGE)


def _ended(settings: Settings, status: RunStatus, message: str, interrupted: bool) -> RunOutcome:
    """An outcome without a run to report (skipped, or ended before the run could say)."""
    from .results import RunResult
    from .verdict import RunOutcome, exit_code_for

    result = RunResult(
        status, settings.flow, commit=settings.commit or "", message=message,
        api_url=settings.api_url,
    )  # fmt: skip
    return RunOutcome(result, exit_code_for(status, settings.fail_on), interrupted=interrupted)
