"""The `ectf-action` command line: argv -> settings -> one library call -> output.

One module per command group (`flows`, `jobs`, `packages`, `flags`, and `local` for
`run`, `demo` and `simulate`), each holding its handlers and its part of the parser:
a new subcommand goes in one obvious place. `context` holds what every handler runs
in. Only `main`'s defaults touch the process (environment, streams); the rest works on
what it is given, so tests run it in-process. Heavy modules are imported inside the
handlers: `ectf-action --help` has to start about as fast as Python itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from .. import __version__
from ..edges import ClientFactory, Environment
from ..errors import EXIT_INVALID_INPUT, EXIT_SIGINT, EXIT_SIGTERM, EctfError, RunAborted
from ..text import PROG
from . import config, flags, flows, jobs, local, packages
from .context import Context, Parser, ParserExit, UsageError, api_options, parse_with

if TYPE_CHECKING:
    from pathlib import Path

    from ..clock import Clock

__all__ = ["PROG", "build_parser", "main"]

FLOW_ID = flows.EXAMPLE_FLOW_ID
JOB_ID = jobs.EXAMPLE_JOB_ID

TOP_EPILOG = f"""\
examples:
  {PROG} flows list                       newest flows of every type
  {PROG} flows queue test --commit 1a2b3c4d --watch
  {PROG} flows show test {FLOW_ID}
  {PROG} flows cancel test {FLOW_ID}
  {PROG} flows download test {FLOW_ID} -o artifacts/
  {PROG} jobs download test {JOB_ID} -o build.zip
  {PROG} jobs input submit --job team_approval --flow-id {FLOW_ID} --approve
  {PROG} packages sync packages/ --keys keys.yaml   new packages, decrypted
  {PROG} packages decrypt mitre.enc --key KEY
  {PROG} flags photo team.png
  {PROG} config                                  write ~/.ectf-config, as `ectf config`
  {PROG} run --flow test --commit 1a2b3c4d      the action, outside GitHub Actions
  {PROG} simulate --port 8000                   a local testing server
  {PROG} demo                                   the whole action, offline

configuration (first found wins):
  --token / --api-url / --git-url flags; then ECTF_TOKEN, ECTF_API_URL, ECTF_GIT_URL
  (inside GitHub Actions: the action inputs first); then ~/.ectf-config, the file the
  organizers' `ectf config` writes; then the API URL https://api.ectf.mitre.org.

exit status:
  0 done; 1 a watched flow failed, was canceled or timed out; 2 invalid input or
  configuration (nothing was sent); 3 the server refused or failed; 130/143 interrupted.

Every command has its own --help with examples, e.g. `{PROG} flows queue --help`.
"""


def build_parser() -> Parser:
    """The whole command tree; cheap to build, so it is built for every call."""
    import argparse

    api = api_options()
    top = Parser(
        prog=PROG,
        description="Command-line client and GitHub Action for the eCTF testing server.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (flows, jobs, packages, flags, config):
        group.register(commands, api)
    local.register(commands)
    return top


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    home: Path | None = None,
    client_factory: ClientFactory | None = None,
    clock: Clock | None = None,
) -> int:
    """Run one command and return its exit status; errors become one `error:` line."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    environment = Environment.of(os.environ if env is None else env)
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = build_parser()
    ctx: Context | None = None
    try:
        args, extras = parse_with(parser, args_list, out, err)
        if getattr(args, "takes_rest", False):
            args.rest = extras
        elif extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        ctx = Context(
            args,
            env=environment,
            stdout=out,
            stderr=err,
            home=home,
            client_factory=client_factory,
            clock=clock,
        )
        handler: Callable[[Context], int] = args.handler
        return handler(ctx)
    except ParserExit as exc:
        return exc.status
    except UsageError as exc:
        _error_line(err, str(exc))
        return EXIT_INVALID_INPUT
    except EctfError as exc:
        _error_line(err, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error_line(err, "interrupted")
        return EXIT_SIGINT
    except RunAborted as aborted:
        _error_line(err, "interrupted")
        return EXIT_SIGTERM if aborted.signum == signal.SIGTERM else EXIT_SIGINT
    finally:
        if ctx is not None:
            ctx.close()


def _error_line(stream: TextIO, message: str) -> None:
    """One line, whatever the message holds (server text may hold newlines or escapes)."""
    text = "".join(ch if ch.isprintable() else " " for ch in message)
    stream.write(f"error: {' '.join(text.split())}\n")
    stream.flush()
