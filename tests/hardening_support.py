"""What the hardening suites share: a scaled clock, fast clients, an in-process run of
the action, a purpose-built eCTF server whose replies a test scripts, and the checks
(no token anywhere, no workflow command from server text, nothing outside its folder).

The scripted server exists for what the simulator does not do: serve an exact zip (the
hostile corpus) as a job's output, and script each reply of a test exactly. Bodies of the
wrong shape, a flow that vanishes and stalled downloads are simulator faults now
(tests/test_hardening_simulated.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import PUSH_SHA, ActionEnv, Completed, LiveRun, SecretScanner
from ectf_action.action import add_run_arguments, run_command
from ectf_action.client import EctfClient

GIT_URL = "ssh://git@github.com/sim-team/design.git"
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
_ID_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


# -- time and clients -------------------------------------------------------------------------


class ScaledClock:
    """The runner's clock, running faster than the wall: one runner second lasts
    *factor* real seconds. Every wait the runner makes (polls, download backoff,
    conflict retries, the timeout) shrinks alike, so its logic is unchanged."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def now(self) -> float:
        return time.monotonic() / self.factor

    def wait(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        real = max(0.0, seconds) * self.factor
        if cancel is None:
            time.sleep(real)
            return False
        return cancel.wait(real)


def fast_client_factory(**overrides: Any) -> Callable[[str, str], EctfClient]:
    """Real clients with a tiny backoff, so that retries cost milliseconds."""
    options: dict[str, Any] = {"backoff_factor": 0.01, "timeout": (5.0, 10.0)}
    options.update(overrides)

    def factory(api_url: str, token: str) -> EctfClient:
        return EctfClient(api_url, token, **options)

    return factory


# -- running the action in this process --------------------------------------------------------


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def commands(self, name: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(f"::{name}")]


def run_action(
    environment: ActionEnv,
    *argv: str,
    client_factory: Callable[[str, str], EctfClient] | None = None,
    clock: Any = None,
) -> Ran:
    """`run` as the entry point does it (no signal handlers), its streams handed to the
    environment's secret scanner."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = run_command(
        parser.parse_args(list(argv)),
        env=environment.env,
        stdout=stdout,
        stderr=stderr,
        client_factory=client_factory,
        clock=clock,
        install_signal_handlers=False,
    )
    seconds = time.monotonic() - started
    environment.completed(code, stdout.getvalue(), stderr.getvalue())
    return Ran(code, stdout.getvalue(), stderr.getvalue(), seconds)


# -- running the real entry point, timed and never left behind ------------------------------

_RUNNING: list[subprocess.Popen[str]] = []


def launch_within(environment: ActionEnv, *args: str) -> LiveRun:
    """`environment.launch`, the process killed by `reap_runs` should the test end first."""
    live = environment.launch(*args)
    _RUNNING.append(live.process)
    return live


def finish_within(live: LiveRun, *, limit: float) -> Completed:
    """The run's end; fails (after killing it) when it is still running after *limit* s,
    so a run that is not bounded costs the suite seconds, not minutes."""
    try:
        live.process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        live.process.kill()
        tail = live.finish(timeout=10).stdout.splitlines()[-12:]
        pytest.fail(f"still running after {limit:g} s; its log ends: {tail}")
    return live.finish(timeout=10)


def run_within(environment: ActionEnv, *args: str, limit: float) -> tuple[Completed, float]:
    """The run and its seconds from start to exit; fails as `finish_within` does."""
    started = time.monotonic()
    done = finish_within(launch_within(environment, *args), limit=limit)
    return done, time.monotonic() - started


def reap_runs() -> None:
    """Kill what a failed test left running (an autouse fixture's teardown)."""
    while _RUNNING:
        process = _RUNNING.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def assert_no_leak(scanner: SecretScanner, root: Path, token: str) -> None:
    """The token is in no stream handed to *scanner* and in no file under *root*."""
    scanner.add_folder(root)
    leaks = scanner.leaks(token)
    assert not leaks, f"the token leaked into: {leaks}"


def tree(folder: Path) -> dict[str, bytes]:
    """Every regular file under *folder*, by relative posix path."""
    if not folder.exists():
        return {}
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def zip_of(files: Mapping[str, str | bytes]) -> bytes:
    """A zip holding *files* (name -> content), as a job's output."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def leftovers(*folders: Path) -> list[Path]:
    """Partial downloads or zips left behind."""
    found: list[Path] = []
    for folder in folders:
        found += [p for p in folder.rglob("*") if p.name.endswith((".part", ".zip"))]
    return found


# -- workflow commands as the runner reads them -------------------------------------------------

_RUNNER_LINES = re.compile(r"\r\n|\r|\n")
# A command starts a line ("::name"), or, in the legacy form, stands anywhere in it ("##[name").
_COMMAND = re.compile(r"^\s*::|##\[")


def runner_lines(stdout: str) -> list[str]:
    """stdout split as the runner's ReadLine does: a lone CR ends a line too."""
    return _RUNNER_LINES.split(stdout)


@dataclass
class Fence:
    token: str
    lines: list[str] = field(default_factory=list)


def commands_outside_fences(stdout: str) -> tuple[list[str], list[Fence]]:
    """The lines the runner would process as commands, and the stop-commands fences
    (with the lines inside them). An unclosed fence is reported as a command line."""
    commands: list[str] = []
    fences: list[Fence] = []
    current: Fence | None = None
    for line in runner_lines(stdout):
        if current is not None:
            if line.strip().lower() == f"::{current.token}::".lower():
                current = None
            else:
                current.lines.append(line)
            continue
        if not _COMMAND.search(line):
            continue
        stripped = line.strip()
        if stripped.startswith("::stop-commands::"):
            current = Fence(stripped[len("::stop-commands::") :])
            fences.append(current)
            continue
        commands.append(line)
    if current is not None:
        commands.append(f"<unclosed stop-commands fence {current.token}>")
    return commands, fences


# -- a scripted eCTF server -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Reply:
    """What the scripted server sends. `slow` sends the body in `chunk`-byte pieces
    `slow` seconds apart; `truncate` sends that many bytes of it (with the full length
    announced) and closes; `drop` closes the connection without a reply."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    slow: float = 0.0
    chunk: int = 16 * 1024
    truncate: int | None = None
    drop: bool = False


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def detail(status: int, text: Any) -> Reply:
    return json_reply(status, {"detail": text})


@dataclass(frozen=True)
class Record:
    method: str
    path: str
    status: int | None
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server keeps records instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        owner = self.server.owner
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, path, query, dict(self.headers.items()), body)
        try:
            reply = owner.app(request)
        except Exception as exc:  # a broken script must show in the test, not hang it
            owner.errors.append(f"{type(exc).__name__}: {exc}")
            reply = Reply(500, b"script error", "text/plain")
        owner.note(Record(self.command, path, None if reply.drop else reply.status, time.time()))
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(reply, owner.stopping)

    def _send(self, reply: Reply, stopping: threading.Event) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.status not in (204, 304):
                self.send_header("Content-Length", str(len(reply.body)))
            if reply.truncate is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            data = reply.body if reply.truncate is None else reply.body[: reply.truncate]
            if reply.status in (204, 304):
                data = b""
            step = max(1, reply.chunk) if reply.slow else max(1, len(data))
            for start in range(0, len(data), step):
                if reply.slow and stopping.wait(reply.slow):
                    self.close_connection = True
                    return
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                self.server.owner.sent(len(data[start : start + step]))
            if reply.truncate is not None:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: FakeServer, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """With TLS, the handshake is the handler thread's (on its first read), so a
        client that refuses the certificate never holds up the others."""
        connection, address = super().get_request()
        if self.tls is None:
            return connection, address
        wrapped = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a refused handshake is what a TLS test expects."""


class FakeServer:
    """An HTTP server on a free loopback port whose every reply comes from *app*; with
    *tls* (a server context), HTTPS."""

    def __init__(
        self, app: Callable[[Request], Reply], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.app = app
        self.records: list[Record] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._server = _Server(self, tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        scheme = "http" if self._server.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def note(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def sent(self, size: int) -> None:
        with self._lock:
            self.bytes_sent += size

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        assert not self.errors, self.errors


def job_id(name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, name.encode("utf-8", "surrogatepass").hex()))


def flow_doc(
    jobs: Sequence[tuple[str, str]] | Mapping[str, str],
    *,
    completed: bool | None = None,
    artifacts: Sequence[str] = (),
    flow_id: str = FLOW_ID,
    commit: str = PUSH_SHA,
) -> dict[str, Any]:
    """A Flow object as the server sends it; `completed` defaults to "every job ended"."""
    pairs = list(jobs.items()) if isinstance(jobs, Mapping) else list(jobs)
    if completed is None:
        completed = all(status in ("succeeded", "failed", "canceled") for _, status in pairs)
    return {
        "id": flow_id,
        "submit_time": "2026-01-02T03:04:05.000000Z",
        "name": "test",
        "completed": completed,
        "params": {"git_url": GIT_URL, "commit_hash": commit},
        "jobs": [
            {
                "id": job_id(name),
                "name": name,
                "status": status,
                "has_artifacts": name in artifacts,
                "private": False,
            }
            for name, status in pairs
        ],
    }


Poll = Mapping[str, Any] | Reply


class ScriptedApi:
    """The eCTF API for one team and one test flow, whose polls follow a script.

    The n-th status request gets `polls[n]` (the last one repeats): a Flow object or a
    raw Reply. Listing flows shows nothing until the flow is queued. A cancel marks
    every unfinished job canceled from then on. `artifacts` maps a job name to the zip
    bytes (or the Reply) its download gets.
    """

    def __init__(
        self,
        token: str,
        polls: Sequence[Poll],
        artifacts: Mapping[str, bytes | Reply] | None = None,
        *,
        queue_reply: Reply | None = None,
    ) -> None:
        self.token = token
        self.polls = list(polls)
        self.artifacts = dict(artifacts or {})
        self.queue_reply = queue_reply
        self.queued = 0
        self.poll_count = 0
        self.cancelled = threading.Event()
        self.download_started = threading.Event()
        self._lock = threading.Lock()
        self._last: Mapping[str, Any] | None = None

    def __call__(self, request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return detail(401, "Invalid token")
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] != ["api", "flow"] or len(parts) < 3 or parts[2] != "test":
            return detail(404, "Not Found")
        rest = parts[3:]
        if request.method == "GET" and not rest:
            return json_reply(200, [self._current()] if self.queued else [])
        if request.method == "POST" and not rest:
            with self._lock:
                self.queued += 1
            return self.queue_reply or json_reply(201, FLOW_ID)
        if request.method == "GET" and len(rest) == 1:
            return self._poll()
        if request.method == "POST" and rest[1:] == ["cancel"]:
            self.cancelled.set()
            return Reply(204, content_type=None)
        if request.method == "GET" and len(rest) == 2 and rest[0] == "job":
            return self._download(rest[1])
        if request.method == "PATCH":
            return Reply(204, content_type=None)
        return detail(404, "Not Found")

    def _poll(self) -> Reply:
        with self._lock:
            step = self.polls[min(self.poll_count, len(self.polls) - 1)]
            self.poll_count += 1
        if isinstance(step, Reply):
            return step
        doc = self._cancelled(step) if self.cancelled.is_set() else step
        self._last = doc
        return json_reply(200, doc)

    def _current(self) -> Mapping[str, Any]:
        """The flow as listed: as last polled, or just queued when not polled yet."""
        if self._last is not None:
            return self._last
        first = next((p for p in self.polls if not isinstance(p, Reply)), None)
        if first is None:
            return flow_doc([("pull-repo", "queued")])
        jobs = [{**job, "status": "queued"} for job in first.get("jobs", [])]
        return {**first, "jobs": jobs, "completed": False}

    @staticmethod
    def _cancelled(doc: Mapping[str, Any]) -> dict[str, Any]:
        jobs = [
            {**job, "status": "canceled"}
            if job.get("status") not in ("succeeded", "failed", "canceled")
            else job
            for job in doc.get("jobs", [])
        ]
        return {**doc, "jobs": jobs, "completed": True}

    def _download(self, wanted: str) -> Reply:
        for name, data in self.artifacts.items():
            if job_id(name) == wanted:
                self.download_started.set()
                if isinstance(data, Reply):
                    return data
                return Reply(200, data, "application/zip")
        return detail(400, "Job has no output")


@dataclass
class Served:
    """A scripted server and a runner-like environment pointed at it."""

    server: FakeServer
    api: ScriptedApi
    environment: ActionEnv


@contextlib.contextmanager
def scripted(
    root: Path,
    token: str,
    scanner: SecretScanner,
    polls: Sequence[Poll],
    artifacts: Mapping[str, bytes | Reply] | None = None,
    **options: Any,
) -> Iterator[Served]:
    """Serve a ScriptedApi; afterwards check that the token is nowhere under *root*."""
    api = ScriptedApi(token, polls, artifacts, **options)
    with FakeServer(api) as server:
        environment = ActionEnv(root, token, server.url, scanner)
        yield Served(server, api, environment)
    assert_no_leak(scanner, root, token)
