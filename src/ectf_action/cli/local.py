"""The commands that run here rather than call one endpoint: `run` (the action, from a
shell), `demo` (the action against an embedded simulator) and `simulate` (the local
testing server). `run` and `demo` parse their own arguments, served by their modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput
from ..text import PROG
from .context import Context, Parser, add_command, examples, parse_with

RUN_EPILOG = f"""\
examples:
  {PROG} run --flow test --commit 1a2b3c4d --git-url ssh://git@github.com/team/design.git
  {PROG} run --flow submit --commit 1a2b3c4d --on-pending exit
  {PROG} run --flow remote --target-team mitre --timeout-minutes 30
  {PROG} run --flow test --commit 1a2b3c4d --wait false     queue it, report it queued
  {PROG} run --flow test --flow-id 3fa85f64-5717-4562-b3fc-2c963f66afa6   collect it
  ECTF_API_URL=http://127.0.0.1:8000 {PROG} run --flow test --commit 1a2b3c4d

Inside GitHub Actions (GITHUB_ACTIONS=true) every input is read from the environment
(INPUT_TOKEN, INPUT_API-URL, ...); a flag given here wins over it.
"""

DEMO_EPILOG = f"""\
examples:
  {PROG} demo            run the action against an embedded simulator, offline

It needs no token and no network, and prints where the artifacts, the JUnit file and
the job summary were written.
"""


def run(ctx: Context) -> int:
    from ..action import add_run_arguments, run_command

    args = _own_arguments(
        ctx,
        f"{PROG} run",
        "Queue a flow, follow it, download and extract its "
        "artifacts, and write the reports:\nthe GitHub Action, from a shell.",
        RUN_EPILOG,
        add_run_arguments,
    )
    return run_command(args, env=ctx.env, stdout=ctx.stdout, stderr=ctx.stderr)


def demo(ctx: Context) -> int:
    from ..demo import add_demo_arguments, demo_command

    args = _own_arguments(
        ctx,
        f"{PROG} demo",
        "Run the whole action against an embedded simulator,\nin a fresh temporary workspace.",
        DEMO_EPILOG,
        add_demo_arguments,
    )
    return demo_command(args, env=ctx.env, stdout=ctx.stdout, stderr=ctx.stderr)


def _own_arguments(
    ctx: Context,
    prog: str,
    description: str,
    epilog: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> argparse.Namespace:
    """The rest of the command line, parsed by the arguments its module declares."""
    parser = Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args, extras = parse_with(parser, ctx.args.rest, ctx.stdout, ctx.stderr)
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def simulate(ctx: Context) -> int:
    from pathlib import Path

    from ..simulator import run_simulate

    args = ctx.args
    if not 0 <= args.port <= 65535:
        raise InvalidInput("--port", f"{args.port} is not a port (0 to 65535; 0 picks a free one)")
    scenario = Path(args.scenario) if args.scenario else None
    if scenario is not None and not scenario.is_file():
        raise InvalidInput("--scenario", f"{str(scenario)!r} is not a file")
    # run_simulate turns SIGINT/SIGTERM into its own stop: serving ends there, normally.
    return run_simulate(
        args.host, args.port, args.token, str(scenario) if scenario else None, ctx.stdout
    )


def register(commands: Any) -> None:
    for name, handler, summary in (
        (
            "run",
            run,
            "the action: queue a flow, follow it, fetch artifacts, write reports "
            "(see `run --help`)",
        ),
        ("demo", demo, "the whole action offline, against an embedded simulator"),
    ):
        stub = commands.add_parser(name, help=summary, add_help=False)
        stub.set_defaults(handler=handler, takes_rest=True)

    p = add_command(
        commands,
        "simulate",
        simulate,
        "Serve the local testing server until "
        "interrupted;\nits base URL is the first line of output.",
        examples(
            "simulate", "simulate --port 0 --token team-token", "simulate --scenario faults.yaml"
        )
        + f"\nthen, elsewhere: ECTF_API_URL=http://127.0.0.1:8000 {PROG} flows list\n",
        brief="serve the local testing server (see `simulate --help`)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default: 8000)"
    )
    p.add_argument("--token", help="the default team's token (default: the scenario's)")
    p.add_argument("--scenario", metavar="FILE", help="YAML scenario: teams, jobs, faults")
