"""The simulated testing server over HTTP, and the in-process `Simulator` that runs it.

Requests are answered the way the real FastAPI app answers them, in its order:

1. faults of the scenario (latency, then an error, a 429 or a dropped connection);
2. a body over the upload limit: 413, before anything else is read;
3. routing: 404 `Not Found`, 405 `Method Not Allowed`, or a 307 redirect to the path
   with its trailing slash (FastAPI's `redirect_slashes`);
4. body decoding: malformed JSON is a 422 `json_invalid`, a malformed multipart body
   a 400 — FastAPI decodes the body before it checks credentials;
5. the bearer token: 401;
6. validation of path, query and body together: one 422 listing every problem;
7. the endpoint itself (the engine): 400, 403, 404, 409, or success.

Downloads stream from disk in chunks, paced to `downloads.bandwidth_mbps` per
connection when the scenario sets it; a truncation fault sends the full Content-Length
and then only part of the bytes before closing the connection, a stall fault sends part
of them and then nothing for a while.

Faults that change a reply's shape act on the reply only, after the engine answered:
`mangle` rewrites the flow documents of the list and details routes, `html`, `not_json`
and `vanish` replace the reply (a proxy's page, a 200 that is not JSON, a 404).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import re
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

from ..errors import InvalidInput
from .engine import ApiFailure, Engine
from .faults import (
    FaultDecision,
    FaultInjector,
    FiredFault,
    Stall,
    echo_document,
    mangle_document,
)
from .multipart import MultipartError, boundary_of, parse_multipart
from .scenario import FLOW_TYPES, Scenario, ScenarioError, default_scenario, load_scenario

SEND_CHUNK: Final = 64 * 1024
PACED_MIN_CHUNK: Final = 4 * 1024
PACED_CHUNK_SECONDS: Final = 0.02  # a paced chunk holds at most this much of the budget
PACED_CATCH_UP_SECONDS: Final = 0.05  # lateness of a paced download that is made up later
KEEP_ALIVE_SECONDS: Final = 5.0  # uvicorn's default: an idle connection is then closed
READ_SECONDS: Final = 60.0  # a request whose body stalls this long is abandoned
MAX_RECORDS: Final = 100_000
RECORDED_BODY_BYTES: Final = 64 * 1024
ARTIFACT_WAIT_SECONDS: Final = 600.0
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC: Final = b"%PDF-"
NOT_JSON_BODY: Final = (
    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
FLOW_DOCUMENT_ENDPOINTS: Final = frozenset({"list_flows", "flow_details"})
_ENUM_TEXT: Final = ", ".join(f"'{name}'" for name in FLOW_TYPES[:-1]) + f" or '{FLOW_TYPES[-1]}'"
_UUID_RE = re.compile(
    r"^(?:urn:uuid:)?\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?$"
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. `status` is None for a dropped connection."""

    method: str
    path: str
    query: str
    status: int | None
    team: str | None
    fault: str | None = None
    body: bytes = field(default=b"", repr=False)
    started: float = 0.0
    seconds: float = 0.0

    def json(self) -> Any:
        """The request body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Reply:
    """A response to send: a small body in memory, or a file streamed from disk."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    file_range: tuple[int, int] | None = None  # inclusive byte range of `file`

    @property
    def length(self) -> int:
        if self.file is None:
            return len(self.body)
        if self.file_range is not None:
            return self.file_range[1] - self.file_range[0] + 1
        return self.file.stat().st_size


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply(status, body, "application/json", dict(headers or {}))


def detail_reply(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return json_reply(status, {"detail": detail}, headers)


class Pacer:
    """Holds one download to *bytes_per_second*, as a link would hold one TCP connection.

    Each chunk leaves when the chunks before it would have taken that long at the rate
    (the first at once). A chunk that leaves late, because a sleep overslept or the
    machine was busy, is made up by the next ones, up to `PACED_CATCH_UP_SECONDS`: on a
    busy machine those small delays would otherwise add up to a lower rate than asked.
    A longer stall (a reader that stopped reading) is not made up with a burst, as a
    link does not save bandwidth for later. Zero means unlimited.
    """

    def __init__(
        self, bytes_per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bytes_per_second = bytes_per_second
        self._clock = clock
        self._due: float | None = None

    @property
    def chunk_size(self) -> int:
        """64 KiB, or smaller at a low rate so that the pacing stays smooth."""
        if self.bytes_per_second <= 0:
            return SEND_CHUNK
        share = int(self.bytes_per_second * PACED_CHUNK_SECONDS)
        return max(PACED_MIN_CHUNK, min(SEND_CHUNK, share))

    def delay(self, size: int) -> float:
        """Seconds to wait before sending the next *size* bytes, which are then counted."""
        if self.bytes_per_second <= 0:
            return 0.0
        now = self._clock()
        due = now if self._due is None else max(self._due, now - PACED_CATCH_UP_SECONDS)
        self._due = due + size / self.bytes_per_second
        return max(0.0, due - now)


# --- routing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    endpoint: str
    body: str  # none | json | form
    regex: re.Pattern[str]


def _route(method: str, template: str, endpoint: str, body: str = "none") -> Route:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return Route(method, template, endpoint, body, re.compile(f"^{pattern}$"))


ROUTES: Final = (
    _route("GET", "/api/flow/{flow}/", "list_flows"),
    _route("POST", "/api/flow/{flow}/", "queue_flow", "json"),
    _route("GET", "/api/flow/{flow}/{flow_id}/", "flow_details"),
    _route("PATCH", "/api/flow/{flow}/{job_id}/", "job_input", "json"),
    _route("POST", "/api/flow/{flow}/{flow_id}/cancel/", "cancel_flow"),
    _route("GET", "/api/flow/{flow}/job/{job_id}/", "job_output"),
    _route("PATCH", "/api/flow/{flow}/job/{job_id}/", "job_input", "json"),
    _route("GET", "/api/package/", "list_packages"),
    _route("GET", "/api/package/{name}/", "get_package"),
    _route("POST", "/api/flag/team_photo/", "team_photo", "form"),
    _route("POST", "/api/flag/design_doc/", "design_doc", "form"),
    _route("POST", "/api/flag/steal_design/{team}/", "steal_design", "json"),
)


@dataclass(frozen=True)
class Resolution:
    route: Route | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    redirect: str | None = None
    allowed: tuple[str, ...] = ()


def resolve(method: str, path: str) -> Resolution:
    """Starlette's routing: the first full match, else 405 for a path match, else a slash
    redirect when the other spelling of the path would match, else 404."""
    partial: Route | None = None
    for route in ROUTES:
        match = route.regex.match(path)
        if match is None:
            continue
        if route.method == method:
            return Resolution(route=route, params=match.groupdict())
        if partial is None:
            partial = route
    if partial is not None:
        allowed = tuple(r.method for r in ROUTES if r.template == partial.template)
        return Resolution(allowed=allowed)
    if path != "/":
        other = path[:-1] if path.endswith("/") else path + "/"
        if any(route.regex.match(other) for route in ROUTES):
            return Resolution(redirect=other)
    return Resolution()


# --- validation helpers (pydantic's error shapes) --------------------------------


def _error(loc: list[str | int], msg: str, kind: str, value: Any, **ctx: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        item["ctx"] = ctx
    return item


def _check_flow(value: str, errors: list[dict[str, Any]]) -> str | None:
    if value in FLOW_TYPES:
        return value
    errors.append(
        _error(
            ["path", "flow"], f"Input should be {_ENUM_TEXT}", "enum", value, expected=_ENUM_TEXT
        )
    )
    return None


def _check_uuid(name: str, value: str, errors: list[dict[str, Any]]) -> str | None:
    match = _UUID_RE.match(value)
    if match:
        return "-".join(match.groups()).lower()
    bad = next((c for c in value if c not in "0123456789abcdefABCDEF-"), None)
    if bad is not None:
        reason = (
            "invalid character: expected an optional prefix of `urn:uuid:` followed by "
            f"[0-9a-fA-F-], found `{bad}` at {value.index(bad) + 1}"
        )
    else:
        reason = f"invalid group count or length: found {len(value.replace('-', ''))} hex digits"
    errors.append(
        _error(
            ["path", name],
            f"Input should be a valid UUID, {reason}",
            "uuid_parsing",
            value,
            error=reason,
        )
    )
    return None


_MISSING: Final = object()


class _Raw:
    """A body sent without a JSON content type: FastAPI validates the raw bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


# --- the request handler ---------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _BadBody(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def version_string(self) -> str:
        """`server: uvicorn`, as the real server sends."""
        return self.server_version

    # The six methods the API uses or a client may try; anything else gets 501.
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def handle_one_request(self) -> None:
        """Wait at most `KEEP_ALIVE_SECONDS` for the next request on a kept-alive connection."""
        self.connection.settimeout(KEEP_ALIVE_SECONDS)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the simulator keeps its own records (`Simulator.requests`)."""

    # --- the pipeline -------------------------------------------------------------

    def _handle(self) -> None:
        sim = self.server.simulator
        started = time.monotonic()
        self.connection.settimeout(READ_SECONDS)
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path) or "/"
        method = self.command
        self._team: str | None = None
        decision = sim.faults.decide(method, path)
        if decision.latency > 0 and sim.engine.stopping.wait(decision.latency):
            self.close_connection = True
            return
        body = b""
        try:
            body = self._read_body(sim.scenario.upload_limit)
        except _BodyTooLarge:
            self.close_connection = True
            reply = detail_reply(413, "Request body too large")
            self._finish(method, path, split.query, reply, decision, started, body)
            return
        except _BadBody:
            self.close_connection = True
            reply = detail_reply(400, "Invalid HTTP request body framing")
            self._finish(method, path, split.query, reply, decision, started, body)
            return
        if decision.before is not None:
            self._fault_reply(method, path, split.query, decision.before, decision, started, body)
            return
        try:
            reply = self._dispatch(method, path, split.query, body)
        except Exception as exc:  # a bug must not kill the connection silently
            sim.note(f"internal error handling {method} {path}: {type(exc).__name__}: {exc}")
            reply = Reply(500, b"Internal Server Error", "text/plain; charset=utf-8")
        if decision.after is not None:
            self._fault_reply(method, path, split.query, decision.after, decision, started, body)
            return
        if decision.echo:
            reply = _echoed(reply, self._bearer() or "")
        if decision.mangles:
            changed = _mangled(reply, method, path, decision)
            if changed is None:
                labels = tuple(x for x in decision.labels if x != "mangle")
                decision = dataclasses.replace(decision, labels=labels)
            else:
                reply = changed
        self._finish(method, path, split.query, reply, decision, started, body)

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError as exc:
            raise _BadBody from exc
        if length < 0:
            raise _BadBody
        if length > limit:
            raise _BodyTooLarge
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        data = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadBody from exc
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(data)
            if len(data) + size > limit:
                raise _BodyTooLarge
            data += self.rfile.read(size)
            self.rfile.readline(8)

    def _dispatch(self, method: str, path: str, query: str, body: bytes) -> Reply:
        resolution = resolve(method, path)
        if resolution.redirect is not None:
            return self._redirect(resolution.redirect, query)
        if resolution.route is None:
            if resolution.allowed:
                return detail_reply(
                    405, "Method Not Allowed", {"Allow": ", ".join(resolution.allowed)}
                )
            return detail_reply(404, "Not Found")
        route = resolution.route

        payload: Any = _MISSING
        form: dict[str, Any] = {}
        if route.body == "json" and body:
            payload = self._decode_json(body)
            if isinstance(payload, Reply):
                return payload
        elif route.body == "form":
            parsed = self._decode_form(body)
            if isinstance(parsed, Reply):
                return parsed
            form = parsed

        team = self._authenticate()
        if team is None:
            return detail_reply(
                401,
                "Not authenticated" if not self._bearer() else "Invalid token",
                {"WWW-Authenticate": "Bearer"},
            )
        self._team = team.name
        handler: Callable[..., Reply] = getattr(self, f"_ep_{route.endpoint}")
        try:
            return handler(team, dict(resolution.params), query, payload, form)
        except ApiFailure as failure:
            return detail_reply(failure.status, failure.detail, failure.headers)

    def _redirect(self, path: str, query: str) -> Reply:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        target = urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~")
        location = f"http://{host}{target}" + (f"?{query}" if query else "")
        return Reply(307, b"", None, {"Location": location})

    def _decode_json(self, body: bytes) -> Any:
        content_type = self.headers.get("Content-Type")
        if content_type:
            media = content_type.split(";", 1)[0].strip().lower()
            main, _, sub = media.partition("/")
            if main != "application" or not (sub == "json" or sub.endswith("+json")):
                return _Raw(body)
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return detail_reply(
                422,
                [
                    _error(
                        ["body", 0], "JSON decode error", "json_invalid", {}, error="invalid UTF-8"
                    )
                ],
            )
        except json.JSONDecodeError as exc:
            return detail_reply(
                422,
                [_error(["body", exc.pos], "JSON decode error", "json_invalid", {}, error=exc.msg)],
            )

    def _decode_form(self, body: bytes) -> dict[str, Any] | Reply:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/"):
            return {}
        try:
            parts = parse_multipart(body, boundary_of(content_type))
        except MultipartError:
            return detail_reply(400, "There was an error parsing the body")
        form: dict[str, Any] = {}
        for part in parts:
            form.setdefault(part.name, part)
        return form

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return credentials.strip()

    def _authenticate(self) -> Any:
        token = self._bearer()
        if token is None:
            return None
        return self.server.simulator.engine.team_for_token(token)

    # --- endpoints ----------------------------------------------------------------

    def _ep_list_flows(self, team: Any, params: dict[str, str], query: str, *_: Any) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        num = 0
        values = urllib.parse.parse_qs(query, keep_blank_values=True).get("num")
        if values:
            raw = values[-1]
            try:
                num = int(raw.strip())
            except ValueError:
                errors.append(
                    _error(
                        ["query", "num"],
                        "Input should be a valid integer, unable to parse string as an integer",
                        "int_parsing",
                        raw,
                    )
                )
            else:
                if num < 0:
                    errors.append(
                        _error(
                            ["query", "num"],
                            "Input should be greater than or equal to 0",
                            "greater_than_equal",
                            raw,
                            ge=0,
                        )
                    )
        if errors or flow is None:
            return detail_reply(422, errors)
        return json_reply(200, self.server.simulator.engine.list_flows(team, flow, num))

    def _ep_queue_flow(
        self, team: Any, params: dict[str, str], _query: str, payload: Any, *_: Any
    ) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        fields = ("target_team",) if flow == "remote" else ("git_url", "commit_hash")
        values = self._body_fields(payload, fields if flow else (), errors)
        if errors or flow is None:
            return detail_reply(422, errors)
        body = None if payload is _MISSING or isinstance(payload, _Raw) else payload
        flow_id = self.server.simulator.engine.queue_flow(team, flow, values, body)
        return json_reply(201, flow_id)

    def _body_fields(
        self, payload: Any, fields: tuple[str, ...], errors: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if payload is _MISSING:
            errors.append(_error(["body"], "Field required", "missing", None))
            return {}
        if isinstance(payload, _Raw) or not isinstance(payload, dict):
            shown = payload.text() if isinstance(payload, _Raw) else payload
            errors.append(
                _error(
                    ["body"],
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                    shown,
                )
            )
            return {}
        values: dict[str, Any] = {}
        for name in fields:
            if name not in payload:
                errors.append(_error(["body", name], "Field required", "missing", payload))
            elif not isinstance(payload[name], str):
                errors.append(
                    _error(
                        ["body", name],
                        "Input should be a valid string",
                        "string_type",
                        payload[name],
                    )
                )
            else:
                values[name] = payload[name]
        return values

    def _ep_flow_details(self, team: Any, params: dict[str, str], *_: Any) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        flow_id = _check_uuid("flow_id", params["flow_id"], errors)
        if errors or flow is None or flow_id is None:
            return detail_reply(422, errors)
        return json_reply(200, self.server.simulator.engine.flow_json(team, flow, flow_id))

    def _ep_cancel_flow(self, team: Any, params: dict[str, str], *_: Any) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        flow_id = _check_uuid("flow_id", params["flow_id"], errors)
        if errors or flow is None or flow_id is None:
            return detail_reply(422, errors)
        self.server.simulator.engine.cancel_flow(team, flow, flow_id)
        return Reply(204, b"", None)

    def _ep_job_output(self, team: Any, params: dict[str, str], *_: Any) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        job_id = _check_uuid("job_id", params["job_id"], errors)
        if errors or flow is None or job_id is None:
            return detail_reply(422, errors)
        artifact = self.server.simulator.engine.job_output(team, flow, job_id)
        return self._file_reply(artifact, "application/zip", f"{job_id}.zip")

    def _ep_job_input(
        self, team: Any, params: dict[str, str], _query: str, payload: Any, *_: Any
    ) -> Reply:
        errors: list[dict[str, Any]] = []
        flow = _check_flow(params["flow"], errors)
        job_id = _check_uuid("job_id", params["job_id"], errors)
        if payload is _MISSING:
            errors.append(_error(["body"], "Field required", "missing", None))
        elif isinstance(payload, _Raw) or not isinstance(payload, dict):
            shown = payload.text() if isinstance(payload, _Raw) else payload
            errors.append(
                _error(["body"], "Input should be a valid dictionary", "dict_type", shown)
            )
        if errors or flow is None or job_id is None:
            return detail_reply(422, errors)
        self.server.simulator.engine.job_input(team, flow, job_id, payload)
        return Reply(204, b"", None)

    def _ep_list_packages(self, team: Any, *_: Any) -> Reply:
        return json_reply(200, self.server.simulator.engine.package_names(team))

    def _ep_get_package(self, team: Any, params: dict[str, str], *_: Any) -> Reply:
        artifact = self.server.simulator.engine.package_file(team, params["name"])
        reply = self._file_reply(artifact, "application/octet-stream", f"{params['name']}.enc")
        if not self.server.simulator.scenario.etags or reply.status >= 300 or not artifact.etag:
            return reply
        if _etag_matches(self.headers.get("If-None-Match", ""), artifact.etag):
            return Reply(304, b"", None, {"ETag": artifact.etag})
        reply.headers["ETag"] = artifact.etag
        return reply

    def _ep_team_photo(self, team: Any, _p: Any, _q: Any, _b: Any, form: dict[str, Any]) -> Reply:
        return self._flag_upload(team, form, "team_photo", PNG_MAGIC, "PNG")

    def _ep_design_doc(self, team: Any, _p: Any, _q: Any, _b: Any, form: dict[str, Any]) -> Reply:
        return self._flag_upload(team, form, "design_doc", PDF_MAGIC, "PDF")

    def _flag_upload(
        self, team: Any, form: dict[str, Any], field_name: str, magic: bytes, kind: str
    ) -> Reply:
        part = form.get(field_name)
        if part is None:
            return detail_reply(
                422, [_error(["body", field_name], "Field required", "missing", None)]
            )
        if part.filename is None:
            return detail_reply(
                422,
                [
                    _error(
                        ["body", field_name],
                        "Value error, Expected UploadFile, received: <class 'str'>",
                        "value_error",
                        part.data.decode("utf-8", "replace")[:100],
                    )
                ],
            )
        if not part.data.startswith(magic):
            return detail_reply(
                422,
                [
                    _error(
                        ["body", field_name], f"File is not a {kind}", "value_error", part.filename
                    )
                ],
            )
        flag = self.server.simulator.engine.flag(team, field_name)
        return json_reply(200, {"flag_hex": flag})

    def _ep_steal_design(
        self, team: Any, params: dict[str, str], _query: str, payload: Any, *_: Any
    ) -> Reply:
        if payload is _MISSING:
            return detail_reply(422, [_error(["body"], "Field required", "missing", None)])
        digest = payload.text() if isinstance(payload, _Raw) else payload
        if not isinstance(digest, str):
            return detail_reply(
                422, [_error(["body"], "Input should be a valid string", "string_type", digest)]
            )
        flag = self.server.simulator.engine.steal(team, params["team"], digest)
        return json_reply(200, {"flag_hex": flag})

    def _file_reply(self, artifact: Any, content_type: str, filename: str) -> Reply:
        stopping = self.server.simulator.engine.stopping
        deadline = time.monotonic() + ARTIFACT_WAIT_SECONDS
        while not artifact.ready.wait(0.05):
            if stopping.is_set() or time.monotonic() > deadline:
                return detail_reply(503, "Output not available yet")
        if artifact.error:
            return Reply(500, b"Internal Server Error", "text/plain; charset=utf-8")
        reply = Reply(
            200,
            content_type=content_type,
            file=artifact.path,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
        if self.server.simulator.scenario.ranges:
            reply.headers["Accept-Ranges"] = "bytes"
            wanted = self.headers.get("Range")
            if wanted:
                return _apply_range(reply, wanted, artifact.path.stat().st_size)
        return reply

    # --- sending ------------------------------------------------------------------

    def _fault_reply(
        self,
        method: str,
        path: str,
        query: str,
        fault: FiredFault,
        decision: FaultDecision,
        started: float,
        body: bytes,
    ) -> None:
        if fault.kind == "hang":
            # The request was taken; no reply comes until the hang ends (or the server
            # stops), then the connection is closed without one.
            self.close_connection = True
            self.server.simulator.engine.stopping.wait(fault.seconds)
            fault = FiredFault("drop")
        if fault.kind == "drop":
            self.close_connection = True
            self.server.simulator.record(
                RequestRecord(
                    method,
                    path,
                    query,
                    None,
                    self._team,
                    decision.label,
                    body[:RECORDED_BODY_BYTES],
                    started,
                    time.monotonic() - started,
                )
            )
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.kind == "rate_limit":
            reply = detail_reply(
                fault.status or 429,
                "Too Many Requests",
                {"Retry-After": str(fault.retry_after or 0)},
            )
        elif fault.kind == "html":
            reply = _html_page(fault.status or 502)
        elif fault.kind == "not_json":
            reply = Reply(200, NOT_JSON_BODY, "text/plain")
        elif fault.kind == "vanish":
            reply = detail_reply(404, "Job not found" if "/job/" in path else "Flow not found")
        else:
            reply = _error_page(fault.status or 500)
        self._finish(
            method, path, query, reply, FaultDecision(labels=decision.labels), started, body
        )

    def _finish(
        self,
        method: str,
        path: str,
        query: str,
        reply: Reply,
        decision: FaultDecision,
        started: float,
        body: bytes,
    ) -> None:
        truncate = decision.truncate if reply.status < 300 and reply.length else None
        stall = decision.stall if reply.status < 300 and reply.file is not None else None
        unused = {"truncate"} if truncate is None else set()
        if stall is None:
            unused.add("stall")
        label = ",".join(x for x in decision.labels if x not in unused) or None
        # Recorded before sending, so a client that has its reply finds the record.
        self.server.simulator.record(
            RequestRecord(
                method,
                path,
                query,
                reply.status,
                self._team,
                label,
                body[:RECORDED_BODY_BYTES],
                started,
                time.monotonic() - started,
            )
        )
        self._send(reply, method, truncate, stall)

    def _send(
        self, reply: Reply, method: str, truncate: float | None, stall: Stall | None = None
    ) -> None:
        try:
            length = reply.length
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.status not in (204, 304):
                self.send_header("Content-Length", str(length))
            if self.close_connection or truncate is not None or (stall and stall.close):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if method == "HEAD" or reply.status in (204, 304):
                return
            limit = length if truncate is None else int(length * truncate)
            stall_at = None if stall is None else int(length * stall.fraction)
            sent = 0
            for chunk in self._chunks(reply, limit):
                if stall_at is not None and sent + len(chunk) >= stall_at:
                    head = stall_at - sent
                    self.wfile.write(chunk[:head])
                    self.wfile.flush()
                    sent, chunk, stall_at = stall_at, chunk[head:], None
                    if not self._stall(stall):
                        return
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.flush()
            if truncate is not None:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def _stall(self, stall: Stall | None) -> bool:
        """Send nothing for the stall's seconds; False when the connection is then closed."""
        stopping = self.server.simulator.engine.stopping
        if stall is None:
            return True
        if stopping.wait(stall.seconds) or stall.close:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return False
        return True

    def _chunks(self, reply: Reply, limit: int) -> Iterator[bytes]:
        if reply.file is None:
            yield reply.body[:limit]
            return
        start = reply.file_range[0] if reply.file_range else 0
        stopping = self.server.simulator.engine.stopping
        pacer = Pacer(self.server.simulator.scenario.download_bandwidth_mbps * 1_000_000)
        with reply.file.open("rb") as source:
            source.seek(start)
            remaining = limit
            while remaining > 0:
                chunk = source.read(min(pacer.chunk_size, remaining))
                if not chunk:
                    return
                wait = pacer.delay(len(chunk))
                if stopping.is_set() or (wait > 0 and stopping.wait(wait)):
                    self.close_connection = True
                    return
                remaining -= len(chunk)
                yield chunk


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison: any listed tag, `W/` or not, or `*`."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _apply_range(reply: Reply, header: str, size: int) -> Reply:
    """A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range; 416 when unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        return reply  # not a form we support: the whole file, as servers may do
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:
        start = max(0, size - int(last))
        end = size - 1
    if start >= size or start > end:
        return Reply(416, b"", None, {"Content-Range": f"bytes */{size}"})
    reply.status = 206
    reply.file_range = (start, end)
    reply.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return reply


def _echoed(reply: Reply, token: str) -> Reply:
    """*reply* quoting the caller's token in job names and error details (JSON only)."""
    if not token or reply.file is not None or "json" not in (reply.content_type or ""):
        return reply
    try:
        document = json.loads(reply.body)
    except ValueError:
        return reply
    body = json.dumps(echo_document(document, token)).encode("utf-8")
    return dataclasses.replace(reply, body=body)


def _mangled(reply: Reply, method: str, path: str, decision: FaultDecision) -> Reply | None:
    """The reply with its flow document(s) changed, for the list and details routes;
    None when this reply has no flow document."""
    if reply.status != 200 or reply.file is not None or method != "GET":
        return None
    route = resolve(method, path).route
    if route is None or route.endpoint not in FLOW_DOCUMENT_ENDPOINTS:
        return None
    document = mangle_document(json.loads(reply.body), decision.mangles)
    return json_reply(200, document, reply.headers)


def _html_page(status: int) -> Reply:
    """A reverse proxy's error page, whatever the status."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    page = (
        f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode(), "text/html")


def _error_page(status: int) -> Reply:
    """What an outage looks like: FastAPI's plain-text 500, or a load balancer's HTML page."""
    if status == 500:
        return Reply(500, b"Internal Server Error", "text/plain; charset=utf-8")
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status >= 500:
        page = (
            f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return Reply(status, page.encode(), "text/html")
    return detail_reply(status, phrase)


# --- the server and the in-process simulator -------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.simulator = simulator
        self._live: dict[threading.Thread, socket.socket] = {}
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="ectf-sim-connection",
            daemon=True,
        )
        with self._live_lock:
            self._live[thread] = request
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._live_lock:
                self._live.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and join its thread."""
        with self._live_lock:
            live = list(self._live.items())
        for _, sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in live:
            thread.join(max(0.0, deadline - time.monotonic()))


class Simulator:
    """The simulated testing server, in this process, on a free port by default.

    `token` replaces the default team's token. `log`, when given, gets one line per
    request (method, path, status, team, fault; never a token).
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        log: TextIO | None = None,
        workdir: Path | None = None,
    ) -> None:
        scenario = scenario if scenario is not None else default_scenario()
        if token is not None:
            scenario = scenario.with_token(token)
        self.scenario = scenario
        self.engine = Engine(scenario, workdir=workdir)
        self.faults = FaultInjector(scenario.faults, scenario.seed)
        self.log = log
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=MAX_RECORDS)
        self._records_lock = threading.Lock()
        self._log_lock = threading.Lock()

    def start(self) -> Simulator:
        """Listen (OSError when the address is taken) and serve on a daemon thread."""
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), self)
        self._server = server
        self.engine.start()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ectf-sim-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections, stop the engine; joins every thread."""
        server = self._server
        if server is None:
            return
        self._server = None
        self.engine.stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        server.close_connections(timeout)
        self.engine.stop(timeout)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:43817`."""
        host = self._host
        if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def token(self) -> str:
        """The default team's token."""
        return self.scenario.default.token

    @property
    def team(self) -> str:
        """The default team's name."""
        return self.scenario.default_team

    @property
    def requests(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def record(self, entry: RequestRecord) -> None:
        with self._records_lock:
            self._records.append(entry)
        status = "dropped" if entry.status is None else str(entry.status)
        extra = f" fault={entry.fault}" if entry.fault else ""
        self.note(f"{entry.method} {entry.path} -> {status} team={entry.team or '-'}{extra}")

    def note(self, line: str) -> None:
        if self.log is None:
            return
        with self._log_lock:
            try:
                self.log.write(line + "\n")
                self.log.flush()
            except (OSError, ValueError):
                self.log = None


def run_simulate(
    host: str,
    port: int,
    token: str | None,
    scenario_path: str | None,
    stdout: TextIO,
    stop: threading.Event | None = None,
) -> int:
    """Serve until *stop* is set or SIGINT/SIGTERM arrives; the base URL is stdout's first line.

    Raises `InvalidInput` for a bad scenario, token or address (nothing is served then).
    """
    try:
        scenario = load_scenario(Path(scenario_path)) if scenario_path else default_scenario()
        simulator = Simulator(scenario, host=host, port=port, token=token)
    except ScenarioError as exc:
        raise InvalidInput("scenario", str(exc)) from exc
    try:
        simulator.start()
    except OSError as exc:
        simulator.engine.stop()
        raise InvalidInput(
            "port", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    stop = stop if stop is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        stdout.write(simulator.url + "\n")
        stdout.flush()
        simulator.log = stdout
        simulator.note(
            f"# teams: {', '.join(t.name for t in scenario.teams)} "
            f"(default: {simulator.team}); stop with Ctrl-C"
        )
        while not stop.wait(0.2):
            pass
    finally:
        simulator.log = None
        simulator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
