"""What every command handler runs in: its parsed arguments and the process's edges,
injected, plus the checks of local values that come before any request.

Heavy modules (requests, yaml, the client) are imported inside the methods and checks:
`ectf-action --help` has to start about as fast as Python itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from ..edges import ClientFactory, Environment, Inputs, Interrupts, client_with_timeout
from ..errors import InvalidInput
from ..text import PROG

if TYPE_CHECKING:
    from pathlib import Path

    from ..client import EctfClient
    from ..clock import Clock
    from ..config import Config
    from ..follow import PollSchedule

MISSING_CREDENTIAL_HELP = (
    "pass --token, set ECTF_TOKEN, or run `ectf config` / write ~/.ectf-config"
)
FLOW_CHOICES = "clone, test, submit or remote"


class UsageError(Exception):
    """The command line does not parse; reported as one `error:` line, exit 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see `{prog} --help`)")


class ParserExit(Exception):
    """--help or --version printed what was asked; exit with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as exceptions, so `main` prints one line and returns."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


def parse_with(
    parser: argparse.ArgumentParser, argv: Sequence[str], stdout: TextIO, stderr: TextIO
) -> tuple[argparse.Namespace, list[str]]:
    """Parse with help and version text going to the given streams."""
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        return parser.parse_known_args(list(argv))


class Context:
    """Everything a handler needs, injected: parsed arguments and the process's edges.

    `home` is where `~/.ectf-config` is read from (default: the environment's home).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        env: Environment,
        stdout: TextIO,
        stderr: TextIO,
        home: Path | None = None,
        client_factory: ClientFactory | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.args = args
        self.env = env
        self.stdout = stdout
        self.stderr = stderr
        self.home = home
        self.client_factory = client_factory
        self.clock = clock
        self.interrupts = Interrupts()
        self._clients: list[EctfClient] = []

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def note(self, text: str) -> None:
        """Progress for people: stdout, or stderr when stdout carries one JSON document."""
        stream = self.stderr if self.json else self.stdout
        stream.write(text)
        stream.flush()

    def emit(self, data: Any, human: str) -> None:
        """The command's result: JSON with --json, else the human text."""
        from ..tables import render_json

        self.out(render_json(data) if self.json else human)

    def config(self) -> Config:
        from ..config import resolve_config

        flags = {
            name: getattr(self.args, name.replace("-", "_"), None)
            for name in ("token", "api-url", "git-url")
        }
        return resolve_config(Inputs(flags, self.env), self.home)

    def client(self, config: Config | None = None) -> EctfClient:
        """A client for the resolved settings; refuses before any request without a token."""
        config = config or self.config()
        if not config.token:
            raise InvalidInput("no token", MISSING_CREDENTIAL_HELP)
        timeout = getattr(self.args, "timeout", None)
        if timeout is not None and not 0 < timeout <= 3600:
            raise InvalidInput("--timeout", f"{timeout:g} must be more than 0 and at most 3600 s")
        factory = self.client_factory or client_with_timeout(timeout)
        client = factory(config.api_url, config.token)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


# -- local input checks (before any request) ----------------------------------------------


def flow_name(value: str) -> str:
    from ..validation import parse_flow_name

    return parse_flow_name(value, name="FLOW")


def uuid_argument(value: str, name: str) -> str:
    from ..validation import parse_uuid

    return parse_uuid(value, name=name)


def path_segment(value: str, name: str) -> str:
    """A name that goes into a URL path (and maybe a file name) as one segment."""
    text = value.strip()
    if not text:
        raise InvalidInput(name, "must not be empty")
    if text in (".", "..") or any(ch in text for ch in "/\\?#%") or not text.isprintable():
        raise InvalidInput(
            name, f"{value!r} must be a plain name (no /, \\, ?, #, % or control characters)"
        )
    if len(text) > 200:
        raise InvalidInput(name, "is longer than 200 characters")
    return text


def output_path(option: str | None, default_name: str, *, force: bool) -> Path:
    """Where a download goes: never over an existing file unless --force."""
    from pathlib import Path

    dest = Path(option) if option else Path(default_name)
    if dest.is_dir() or (option or "").endswith(("/", os.sep)):  # a folder, maybe a new one
        dest = dest / default_name
    if dest.is_dir():
        raise InvalidInput("--output", f"{str(dest)!r} is a directory")
    if (dest.exists() or dest.is_symlink()) and not force:
        raise InvalidInput(
            "--output", f"{str(dest)!r} already exists; pass --force to overwrite it"
        )
    return dest


def poll_schedule(text: str) -> PollSchedule:
    from ..follow import PollSchedule

    return PollSchedule.parse(text, name="--poll-interval")


def timeout_minutes(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "0"):
        return None
    from ..validation import parse_positive_number

    return parse_positive_number(value, name="--timeout-minutes")


def render_json(data: Any) -> str:
    from ..tables import render_json as render

    return render(data)


# -- building the parser ------------------------------------------------------------------


def api_options() -> argparse.ArgumentParser:
    """The options every command that talks to the server takes."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="team API token (default: $ECTF_TOKEN, then ~/.ectf-config; prefer "
        "those: a flag shows in ps)",
    )
    group.add_argument(
        "--api-url",
        metavar="URL",
        help="testing server (default: $ECTF_API_URL, then ~/.ectf-config, "
        "then https://api.ectf.mitre.org)",
    )
    group.add_argument(
        "--json", action="store_true", help="print one JSON document (sorted keys) instead of text"
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="read timeout of each request (default: 60)",
    )
    return common


def add_command(
    sub: Any,
    name: str,
    handler: Any,
    summary: str,
    epilog: str,
    parents: Sequence[argparse.ArgumentParser] = (),
    *,
    brief: str | None = None,
) -> Parser:
    """One command; *brief* is its line in the parent's help (default: the summary)."""
    parser: Parser = sub.add_parser(
        name,
        help=brief or summary,
        description=summary,
        epilog=epilog,
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_group(commands: Any, name: str, summary: str, epilog: str) -> Any:
    """A command group (`flows`, `jobs`, ...); returns its subcommands to add to."""
    group = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def examples(*lines: str) -> str:
    return "examples:\n" + "".join(f"  {PROG} {line}\n" for line in lines)


def add_flow_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", metavar="FLOW", help=f"flow type: {FLOW_CHOICES}")
