"""The `ectf-action` command line: argv -> settings -> one library call -> output.

Only `main`'s defaults touch the process (environment, streams, home directory); the
rest works on what it is given, so tests run it in-process. Heavy modules (requests,
yaml, the client, the simulator, the action runner) are imported inside the handlers:
`ectf-action --help` has to start about as fast as Python itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from .errors import (
    EXIT_FLOW_FAILED,
    EXIT_INVALID_INPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EctfError,
    InvalidInput,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .client import EctfClient
    from .clock import Clock
    from .config import Config
    from .follow import JobChange, PollSchedule
    from .models import Flow

PROG = "ectf-action"
MISSING_CREDENTIAL_HELP = (
    "pass --token, set ECTF_TOKEN, or run `ectf config` / write ~/.ectf-config"
)
NO_GIT_URL = (
    "no git URL: pass --git-url, set ECTF_GIT_URL, or add git_url to ~/.ectf-config "
    "(e.g. ssh://git@github.com/team/design.git)"
)
EXAMPLE_FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
EXAMPLE_JOB_ID = "981b2de7-f03f-4780-9cd1-1b6a893a0221"
FLOW_CHOICES = "clone, test, submit or remote"

ClientFactory = Callable[["Config"], "EctfClient"]

TOP_EPILOG = f"""\
examples:
  {PROG} flows list                       newest flows of every type
  {PROG} flows queue test --commit 1a2b3c4d --watch
  {PROG} flows show test {EXAMPLE_FLOW_ID}
  {PROG} flows cancel test {EXAMPLE_FLOW_ID}
  {PROG} jobs download test {EXAMPLE_JOB_ID} -o build.zip
  {PROG} jobs input submit {EXAMPLE_JOB_ID} --approve
  {PROG} packages get mitre -o mitre.zip
  {PROG} flags photo team.png
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


# -- signals ------------------------------------------------------------------------------


class Interrupts:
    """SIGINT and SIGTERM turned into a cancel event while installed, remembering which
    came first; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
        self.event.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[threading.Event]:
        if threading.current_thread() is not threading.main_thread():
            yield self.event  # only the main thread may set handlers; Ctrl-C still raises
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        try:
            yield self.event
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT


# -- the context handlers run in ----------------------------------------------------------


class Context:
    """Everything a handler needs, injected: parsed arguments and the process's edges.

    `home` is None until the config file is needed: finding it costs an import.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        env: Mapping[str, str],
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
        from .tables import render_json

        self.out(render_json(data) if self.json else human)

    def config(self) -> Config:
        from .config import resolve_config

        flags = {
            "token": getattr(self.args, "token", None),
            "api_url": getattr(self.args, "api_url", None),
            "git_url": getattr(self.args, "git_url", None),
        }
        home = self.home if self.home is not None else _default_home(self.env)
        return resolve_config(flags, self.env, home)

    def client(self, config: Config | None = None) -> EctfClient:
        """A client for the resolved settings; refuses before any request without a token."""
        config = config or self.config()
        if not config.token:
            raise InvalidInput("no token", MISSING_CREDENTIAL_HELP)
        timeout = getattr(self.args, "timeout", None)
        if timeout is not None and not 0 < timeout <= 3600:
            raise InvalidInput("--timeout", f"{timeout:g} must be more than 0 and at most 3600 s")
        factory = self.client_factory or _default_client_factory(timeout)
        client = factory(config)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


def _default_client_factory(timeout: float | None) -> ClientFactory:
    def make(config: Config) -> EctfClient:
        from .client import DEFAULT_TIMEOUT, EctfClient

        connect, read = DEFAULT_TIMEOUT
        if timeout is not None:
            connect, read = min(connect, timeout), timeout
        return EctfClient(config.api_url, config.token, timeout=(connect, read))

    return make


# -- local input checks (before any request) ----------------------------------------------


def _flow_name(value: str) -> str:
    from .validation import parse_flow_name

    return parse_flow_name(value, name="FLOW")


def _uuid(value: str, name: str) -> str:
    from .validation import parse_uuid

    return parse_uuid(value, name=name)


def _path_segment(value: str, name: str) -> str:
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


def _output_path(option: str | None, default_name: str, *, force: bool) -> Path:
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


def _poll_schedule(text: str) -> PollSchedule:
    from .follow import PollSchedule

    return PollSchedule.parse(text, name="--poll-interval")


def _timeout_minutes(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "0"):
        return None
    from .validation import parse_positive_number

    return parse_positive_number(value, name="--timeout-minutes")


# -- flows ---------------------------------------------------------------------------------


def _flows_list(ctx: Context) -> int:
    from .models import FLOW_NAMES
    from .tables import flow_json, flows_table, newest_first

    names = [_flow_name(ctx.args.flow)] if ctx.args.flow else list(FLOW_NAMES)
    num = ctx.args.num
    if num < 0:
        raise InvalidInput("--num", f"{num} must be 0 (all) or more")
    client = ctx.client()
    flows = newest_first(flow for name in names for flow in client.list_flows(name, num))
    if ctx.json:
        ctx.out(_json([flow_json(flow) for flow in flows]))
    elif not flows:
        ctx.out(f"No {names[0] + ' ' if len(names) == 1 else ''}flows.\n")
    else:
        ctx.out(flows_table(flows))
    return EXIT_OK


def _flows_show(ctx: Context) -> int:
    from .tables import flow_details, flow_json

    flow_name = _flow_name(ctx.args.flow)
    flow_id = _uuid(ctx.args.flow_id, "FLOW_ID")
    flow = ctx.client().get_flow(flow_name, flow_id)
    ctx.emit(flow_json(flow), flow_details(flow))
    return EXIT_OK


def _queue_body(ctx: Context, flow_name: str, config: Config) -> dict[str, Any]:
    """The queue request's body: the flow's fields, with --params/--param merged over them."""
    from .validation import parse_commit, parse_git_url, parse_mapping

    args = ctx.args
    params = parse_mapping(args.params or "", name="--params")
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput("--param", f"{item!r} is not KEY=VALUE")
        params[key.strip()] = value
    if flow_name == "remote":
        for option, given in (("--commit", args.commit), ("--git-url", args.git_url)):
            if given:
                raise InvalidInput(option, "the remote flow takes --target-team, not a commit")
        body: dict[str, Any] = {}
        if args.target_team:
            body["target_team"] = _path_segment(args.target_team, "--target-team")
        body.update(params)
        if not str(body.get("target_team") or "").strip():
            raise InvalidInput("--target-team", "the remote flow needs the team to attack")
        return body
    if args.target_team:
        raise InvalidInput("--target-team", "only the remote flow attacks a team")
    body = {"git_url": config.git_url, "commit_hash": args.commit}
    body.update({k: v for k, v in params.items() if v is not None})
    if not body.get("commit_hash"):
        raise InvalidInput(
            "--commit", "which commit should the server test? (e.g. --commit $(git rev-parse HEAD))"
        )
    if not body.get("git_url"):
        raise InvalidInput("--git-url", NO_GIT_URL)
    body["commit_hash"] = parse_commit(str(body["commit_hash"]), name="--commit")
    body["git_url"] = parse_git_url(str(body["git_url"]), name="--git-url")
    return body


def _flows_queue(ctx: Context) -> int:
    flow_name = _flow_name(ctx.args.flow)
    config = ctx.config()
    body = _queue_body(ctx, flow_name, config)
    schedule = _poll_schedule(ctx.args.poll_interval)
    deadline_minutes = _timeout_minutes(ctx.args.timeout_minutes)
    client = ctx.client(config)
    flow_id = client.queue_flow(flow_name, body)
    if not ctx.args.watch:
        ctx.emit({"flow": flow_name, "id": flow_id}, f"{flow_id}\n")
        return EXIT_OK
    ctx.note(f"Queued {flow_name} flow {flow_id}\n")
    return _watch(ctx, client, flow_name, flow_id, schedule, deadline_minutes)


def _flows_cancel(ctx: Context) -> int:
    flow_name = _flow_name(ctx.args.flow)
    flow_id = _uuid(ctx.args.flow_id, "FLOW_ID")
    ctx.client().cancel_flow(flow_name, flow_id)
    ctx.emit(
        {"canceled": True, "flow": flow_name, "id": flow_id},
        f"Canceled {flow_name} flow {flow_id}.\n",
    )
    return EXIT_OK


def _flows_watch(ctx: Context) -> int:
    flow_name = _flow_name(ctx.args.flow)
    flow_id = _uuid(ctx.args.flow_id, "FLOW_ID")
    schedule = _poll_schedule(ctx.args.poll_interval)
    deadline_minutes = _timeout_minutes(ctx.args.timeout_minutes)
    client = ctx.client()
    return _watch(ctx, client, flow_name, flow_id, schedule, deadline_minutes)


def _pending_hint(flow_name: str, change: JobChange) -> str:
    job = change.job
    if job.private:
        return f"           {job.name} waits for the organizers\n"
    answer = "--approve (or --reject)" if job.name == "team_approval" else "--data '{...}'"
    return f"           answer it: {PROG} jobs input {flow_name} {job.id} {answer}\n"


def _watch(
    ctx: Context,
    client: EctfClient,
    flow_name: str,
    flow_id: str,
    schedule: PollSchedule,
    timeout_minutes: float | None,
) -> int:
    """Follow a flow, one line per job status change; the exit status tells how it ended."""
    from .clock import SystemClock
    from .follow import follow_flow
    from .models import JobStatus
    from .tables import flow_json, job_change_line
    from .text import clean, format_elapsed

    clock = ctx.clock or SystemClock()
    started = clock.now()
    deadline = started + timeout_minutes * 60 if timeout_minutes is not None else None
    poll = "auto" if schedule.is_auto else f"every {schedule}s"
    ctx.note(
        f"Watching {flow_name} flow {flow_id} (poll: {poll}; Ctrl-C stops watching, "
        "the flow keeps running)\n"
    )

    def on_update(flow: Flow, changes: list[JobChange]) -> None:
        for change in changes:
            line = job_change_line(change.elapsed, change.job, change.previous)
            ctx.note(line + "\n")
            if change.job.status is JobStatus.PENDING:
                ctx.note(clean(_pending_hint(flow_name, change).rstrip("\n")) + "\n")

    with ctx.interrupts.installed() as cancel:
        result = follow_flow(
            client,
            flow_name,
            flow_id,
            clock=clock,
            schedule=schedule,
            cancel=cancel,
            deadline=deadline,
            on_update=on_update,
            started=started,
        )
    flow = result.flow
    elapsed = format_elapsed(clock.now() - started)
    if result.reason == "canceled":
        ctx.stderr.write(
            f"Stopped watching after {elapsed}; the flow keeps running. Cancel it "
            f"with: {PROG} flows cancel {flow_name} {flow_id}\n"
        )
        return ctx.interrupts.exit_code
    if ctx.json:
        document: dict[str, Any] = {
            "flow": flow_name,
            "id": flow_id,
            "reason": result.reason,
            "status": flow.status.value if flow else None,
            "details": flow_json(flow) if flow else None,
        }
        ctx.out(_json(document))
    if result.reason == "timed-out" or flow is None:
        ctx.stderr.write(
            f"error: {flow_name} flow {flow_id} did not finish within {elapsed}; it keeps running\n"
        )
        return EXIT_FLOW_FAILED
    status = flow.status
    failed = [clean(job.name) for job in flow.jobs if job.status is JobStatus.FAILED]
    detail = f" (failed: {', '.join(failed)})" if failed else ""
    ctx.note(f"Flow {flow_id} {status.value}{detail} after {elapsed}.\n")
    return EXIT_OK if status is JobStatus.SUCCEEDED else EXIT_FLOW_FAILED


# -- jobs ----------------------------------------------------------------------------------


def _interruptible_download(ctx: Context, download: Callable[[threading.Event], Any]) -> int:
    """Run a download that a signal may cancel; report the saved file."""
    from .errors import Cancelled

    with ctx.interrupts.installed() as cancel:
        try:
            result = download(cancel)
        except Cancelled:
            ctx.stderr.write("error: download interrupted; nothing was saved\n")
            return ctx.interrupts.exit_code
    data = {"path": str(result.path), "size": result.size, "content_type": result.content_type}
    ctx.emit(data, f"Saved {result.path} ({result.size:,} bytes).\n")
    return EXIT_OK


def _jobs_download(ctx: Context) -> int:
    flow_name = _flow_name(ctx.args.flow)
    job_id = _uuid(ctx.args.job_id, "JOB_ID")
    dest = _output_path(ctx.args.output, f"{job_id}.zip", force=ctx.args.force)
    client = ctx.client()
    return _interruptible_download(
        ctx, lambda cancel: client.download_job_output(flow_name, job_id, dest, cancel=cancel)
    )


def _jobs_input(ctx: Context) -> int:
    from .tables import mapping_line
    from .validation import parse_mapping

    flow_name = _flow_name(ctx.args.flow)
    job_id = _uuid(ctx.args.job_id, "JOB_ID")
    if ctx.args.approve or ctx.args.reject:
        data: dict[str, Any] = {"approve": bool(ctx.args.approve)}
    else:
        data = parse_mapping(ctx.args.data, name="--data")
        if not data:
            raise InvalidInput("--data", "is empty; give a mapping such as '{\"approve\": true}'")
    ctx.client().send_job_input(flow_name, job_id, data)
    ctx.emit(
        {"flow": flow_name, "job_id": job_id, "sent": data},
        f"Sent {mapping_line(data)} to job {job_id}.\n",
    )
    return EXIT_OK


# -- packages and flags --------------------------------------------------------------------


def _packages_list(ctx: Context) -> int:
    from .tables import packages_table

    names = sorted(ctx.client().list_packages())
    if ctx.json:
        ctx.out(_json(names))
    else:
        ctx.out(packages_table(names) if names else "No attack packages.\n")
    return EXIT_OK


def _packages_get(ctx: Context) -> int:
    name = _path_segment(ctx.args.name, "NAME")
    dest = _output_path(ctx.args.output, f"{name}.zip", force=ctx.args.force)
    client = ctx.client()
    return _interruptible_download(
        ctx, lambda cancel: client.download_package(name, dest, cancel=cancel)
    )


def _print_flag(ctx: Context, what: str, flag_hex: str) -> int:
    from .text import clean

    ctx.emit({"flag_hex": flag_hex}, f"{what} flag: {clean(flag_hex)}\n")
    return EXIT_OK


def _flags_photo(ctx: Context) -> int:
    from pathlib import Path

    from .validation import check_upload

    path = check_upload(Path(ctx.args.file), "png", name="FILE")
    return _print_flag(ctx, "Team photo", ctx.client().submit_team_photo(path))


def _flags_design(ctx: Context) -> int:
    from pathlib import Path

    from .validation import check_upload

    path = check_upload(Path(ctx.args.file), "pdf", name="FILE")
    return _print_flag(ctx, "Design doc", ctx.client().submit_design_doc(path))


def _flags_steal(ctx: Context) -> int:
    team = _path_segment(ctx.args.team, "TEAM")
    digest = ctx.args.digest.strip()
    if not digest or not digest.isprintable() or len(digest) > 1024:
        raise InvalidInput("DIGEST", "must be the one-line digest the HSM printed")
    return _print_flag(ctx, "Steal design", ctx.client().steal_design(team, digest))


# -- commands served by other modules ------------------------------------------------------

RUN_EPILOG = f"""\
examples:
  {PROG} run --flow test --commit 1a2b3c4d --git-url ssh://git@github.com/team/design.git
  {PROG} run --flow submit --commit 1a2b3c4d --on-pending exit
  {PROG} run --flow remote --target-team mitre --timeout-minutes 30
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


def _run(ctx: Context) -> int:
    from .action import add_run_arguments, run_command

    parser = _sub_parser(
        f"{PROG} run",
        "Queue a flow, follow it, download and extract its "
        "artifacts, and write the reports:\nthe GitHub Action, from a shell.",
        RUN_EPILOG,
    )
    add_run_arguments(parser)
    args = _parse_rest(ctx, parser)
    return run_command(args, env=ctx.env, stdout=ctx.stdout, stderr=ctx.stderr)


def _demo(ctx: Context) -> int:
    from .demo import add_demo_arguments, demo_command

    parser = _sub_parser(
        f"{PROG} demo",
        "Run the whole action against an embedded simulator,\nin a fresh temporary workspace.",
        DEMO_EPILOG,
    )
    add_demo_arguments(parser)
    args = _parse_rest(ctx, parser)
    return demo_command(args, env=ctx.env, stdout=ctx.stdout, stderr=ctx.stderr)


def _sub_parser(prog: str, description: str, epilog: str) -> Parser:
    return Parser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parse_rest(ctx: Context, parser: Parser) -> argparse.Namespace:
    args, extras = parse_with(parser, ctx.args.rest, ctx.stdout, ctx.stderr)
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _simulate(ctx: Context) -> int:
    from pathlib import Path

    from .simulator import run_simulate

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


def _json(data: Any) -> str:
    from .tables import render_json

    return render_json(data)


# -- the parser ----------------------------------------------------------------------------


def _api_options() -> argparse.ArgumentParser:
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


def _add(
    sub: Any,
    name: str,
    handler: Callable[[Context], int],
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


def _examples(*lines: str) -> str:
    return "examples:\n" + "".join(f"  {PROG} {line}\n" for line in lines)


def _add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll-interval",
        default="auto",
        metavar="auto|SECONDS",
        help="seconds between status requests, or auto: often at first, "
        "then every 10 s (default: auto)",
    )
    parser.add_argument(
        "--timeout-minutes",
        metavar="MINUTES",
        help="stop watching after this long, exit 1 (default: no limit)",
    )


def _add_flow_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("flow", metavar="FLOW", help=f"flow type: {FLOW_CHOICES}")


def build_parser() -> Parser:
    """The whole command tree; cheap to build, so it is built for every call."""
    api = _api_options()
    top = Parser(
        prog=PROG,
        description="Command-line client and GitHub Action for the eCTF testing server.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    flows = _add_group(
        commands,
        "flows",
        "list, queue, show, watch and cancel flows",
        _examples(
            "flows list test",
            "flows queue test --commit 1a2b3c4d --watch",
            f"flows watch test {EXAMPLE_FLOW_ID}",
        ),
    )
    p = _add(
        flows,
        "list",
        _flows_list,
        "List your team's flows, newest first.",
        _examples("flows list", "flows list test --num 0", "flows list submit --json"),
        [api],
    )
    p.add_argument(
        "flow", nargs="?", metavar="FLOW", help=f"flow type: {FLOW_CHOICES} (default: all four)"
    )
    p.add_argument(
        "-n",
        "--num",
        type=int,
        default=10,
        metavar="N",
        help="at most N flows of each type; 0 for all (default: 10)",
    )

    p = _add(
        flows,
        "show",
        _flows_show,
        "Show a flow: its status and its jobs.",
        _examples(
            f"flows show test {EXAMPLE_FLOW_ID}", f"flows show test {EXAMPLE_FLOW_ID} --json"
        ),
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")

    p = _add(
        flows,
        "queue",
        _flows_queue,
        "Queue a flow and print its id (or follow it with --watch).",
        _examples(
            "flows queue test --commit $(git rev-parse HEAD)",
            "flows queue test --commit 1a2b3c4d --git-url "
            "ssh://git@github.com/team/design.git --watch",
            "flows queue remote --target-team mitre",
            "flows queue test --commit 1a2b3c4d --param key=value",
        )
        + "\n--params and --param are merged over the body "
        '({"git_url": ..., "commit_hash": ...};\nfor remote {"target_team": ...}).\n',
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("--commit", metavar="SHA", help="commit to test (clone, test, submit)")
    p.add_argument(
        "--git-url",
        metavar="URL",
        help="ssh:// URL the server clones (default: $ECTF_GIT_URL, then ~/.ectf-config)",
    )
    p.add_argument("--target-team", metavar="TEAM", help="team to attack (remote)")
    p.add_argument("--params", metavar="YAML|JSON", help="mapping merged into the body")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="one body field; repeatable; applied after --params",
    )
    p.add_argument("--watch", action="store_true", help="follow the flow until it ends")
    _add_watch_options(p)

    p = _add(
        flows,
        "cancel",
        _flows_cancel,
        "Cancel a queued or running flow.",
        _examples(f"flows cancel test {EXAMPLE_FLOW_ID}"),
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")

    p = _add(
        flows,
        "watch",
        _flows_watch,
        "Follow a flow: one line per job status change.\n"
        "Exit 0 if it succeeds, 1 if it fails, is canceled or times out.",
        _examples(
            f"flows watch test {EXAMPLE_FLOW_ID}",
            f"flows watch submit {EXAMPLE_FLOW_ID} --poll-interval 30 --timeout-minutes 90",
        ),
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")
    _add_watch_options(p)

    jobs = _add_group(
        commands,
        "jobs",
        "download a job's output, answer a pending job",
        _examples(
            f"jobs download test {EXAMPLE_JOB_ID}", f"jobs input submit {EXAMPLE_JOB_ID} --approve"
        ),
    )
    p = _add(
        jobs,
        "download",
        _jobs_download,
        "Download a job's output zip.",
        _examples(
            f"jobs download test {EXAMPLE_JOB_ID}",
            f"jobs download test {EXAMPLE_JOB_ID} -o out/ --force",
        ),
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("job_id", metavar="JOB_ID", help="the job's UUID (see `flows show`)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file or directory to save to (default: ./JOB_ID.zip)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = _add(
        jobs,
        "input",
        _jobs_input,
        "Give input to a pending job.",
        _examples(
            f"jobs input submit {EXAMPLE_JOB_ID} --approve",
            f'jobs input remote {EXAMPLE_JOB_ID} --data \'{{"key": "value"}}\'',
        ),
        [api],
    )
    _add_flow_argument(p)
    p.add_argument("job_id", metavar="JOB_ID", help="the pending job's UUID")
    answer = p.add_mutually_exclusive_group(required=True)
    answer.add_argument("--data", metavar="YAML|JSON", help="the mapping to send")
    answer.add_argument(
        "--approve", action="store_true", help='send {"approve": true} (team_approval)'
    )
    answer.add_argument(
        "--reject", action="store_true", help='send {"approve": false} (team_approval)'
    )

    packages = _add_group(
        commands,
        "packages",
        "attack packages (attack phase)",
        _examples("packages list", "packages get mitre"),
    )
    _add(
        packages,
        "list",
        _packages_list,
        "List the teams that have attack packages.",
        _examples("packages list", "packages list --json"),
        [api],
    )
    p = _add(
        packages,
        "get",
        _packages_get,
        "Download a team's encrypted attack package.",
        _examples("packages get mitre", "packages get mitre -o packages/ --force"),
        [api],
    )
    p.add_argument("name", metavar="NAME", help="the team (see `packages list`)")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="file or directory to save to (default: ./NAME.zip)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    flags = _add_group(
        commands,
        "flags",
        "submit for flags: team photo, design doc, steal",
        _examples(
            "flags photo team.png", "flags design design.pdf", "flags steal mitre 0a1b2c3d..."
        ),
    )
    p = _add(
        flags,
        "photo",
        _flags_photo,
        "Submit the team photo (a PNG) for its flag.",
        _examples("flags photo team.png"),
        [api],
    )
    p.add_argument("file", metavar="FILE.png")
    p = _add(
        flags,
        "design",
        _flags_design,
        "Submit the design document (a PDF) for its flag.",
        _examples("flags design design.pdf"),
        [api],
    )
    p.add_argument("file", metavar="FILE.pdf")
    p = _add(
        flags,
        "steal",
        _flags_steal,
        "Submit a digest for another team's steal-design flag (attack phase).",
        _examples("flags steal mitre 0a1b2c3d..."),
        [api],
    )
    p.add_argument("team", metavar="TEAM", help="the team whose design you attacked")
    p.add_argument("digest", metavar="DIGEST", help="the digest the HSM printed")

    for name, handler, summary in (
        (
            "run",
            _run,
            "the action: queue a flow, follow it, fetch artifacts, write reports "
            "(see `run --help`)",
        ),
        ("demo", _demo, "the whole action offline, against an embedded simulator"),
    ):
        stub = commands.add_parser(name, help=summary, add_help=False)
        stub.set_defaults(handler=handler, takes_rest=True)

    p = _add(
        commands,
        "simulate",
        _simulate,
        "Serve the local testing server until "
        "interrupted;\nits base URL is the first line of output.",
        _examples(
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
    return top


def _add_group(commands: Any, name: str, summary: str, epilog: str) -> Any:
    group = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


# -- entry point ---------------------------------------------------------------------------


def _default_home(env: Mapping[str, str]) -> Path:
    from pathlib import Path

    try:
        return Path.home()
    except RuntimeError:  # no HOME and no passwd entry: there is no config file to read
        return Path(env.get("HOME") or "/nonexistent")


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
    env = dict(os.environ) if env is None else env
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
            env=env,
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
    finally:
        if ctx is not None:
            ctx.close()


def _error_line(stream: TextIO, message: str) -> None:
    """One line, whatever the message holds (server text may hold newlines or escapes)."""
    text = "".join(ch if ch.isprintable() else " " for ch in message)
    stream.write(f"error: {' '.join(text.split())}\n")
    stream.flush()
