"""The one place that speaks HTTP to the testing server.

One method per endpoint. Every request has a connect and a read timeout. Every retry
is decided here, by one `RetryPolicy` (retry.py): idempotent requests are retried by
urllib3's `Retry` mounted on the session (connection errors, 429 honouring a bounded
`Retry-After`, 500/502/503/504), and the client's own loops, under the same policy,
retry what urllib3 cannot. POST and PATCH are never retried blindly: queueing a flow
after an unknown outcome first looks for the flow it may have created, so a team never
gets a second flow. Callers never retry: they report.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from . import __version__
from .errors import (
    ApiError,
    Cancelled,
    Conflict,
    DownloadError,
    Forbidden,
    ProtocolError,
    TransportError,
    error_class_for,
)
from .models import Flow, parse_flow_id
from .retry import (
    IDEMPOTENT_METHODS,
    Attempt,
    RetryPolicy,
    TryAgain,
    is_transient,
    leaves_outcome_unknown,
)
from .settings import check_token

DEFAULT_TIMEOUT = (10.0, 60.0)
DOWNLOAD_CHUNK = 1024 * 1024
CANCEL_CHECK_SECONDS = 0.1
# Only these endpoints are documented to answer 403 (the attack phase); anywhere else a
# 403 means something else, and the attack-phase advice would mislead.
_ATTACK_PHASE_PATH = re.compile(r"/api/(package|flag/steal_design)(/|$)")
_FORBIDDEN_ELSEWHERE = (
    "The server refused this for your team: check that the token is your team's, and ask "
    "the organizers if it persists."
)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


def make_session(retry: Retry, pool_size: int = 8) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _BodyBrokeOff(Exception):
    """A reply's body ended before its announced length (or could not be decoded)."""


class _BrokenDownload(DownloadError):
    """A download that ended early: worth another try, unlike a complete file that is not
    a zip."""


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    content_type: str


@dataclass(frozen=True)
class PackageDownload(Download):
    """A package, with the validators that make the next request conditional."""

    etag: str = ""
    last_modified: str = ""


class _Validators(AuthBase):
    """The headers of a conditional GET. requests applies an auth handler to the prepared
    request, after the client's own headers, so this adds to them without replacing any."""

    def __init__(self, etag: str, last_modified: str) -> None:
        self.etag = etag
        self.last_modified = last_modified

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.etag:
            request.headers["If-None-Match"] = self.etag
        if self.last_modified:
            request.headers["If-Modified-Since"] = self.last_modified
        return request


class EctfClient:
    """A client for the eCTF testing server API."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 5,
        backoff_factor: float = 1.0,
        queue_attempts: int = 4,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_token(token)  # a token that cannot go in a header would fail every request
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.policy = retry or RetryPolicy.from_counts(retries, queue_attempts, backoff_factor)
        self.retry = self.policy.session_retry()
        if session is None:
            session = make_session(self.retry)
        else:
            adapter = HTTPAdapter(max_retries=self.retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"EctfClient(api_url={self.api_url!r})"

    def __enter__(self) -> EctfClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- flags -----------------------------------------------------------------------------

    def submit_team_photo(self, path: Path) -> str:
        return self._submit_flag_file("team_photo", path, "image/png")

    def submit_design_doc(self, path: Path) -> str:
        return self._submit_flag_file("design_doc", path, "application/pdf")

    def steal_design(self, team: str, digest: str) -> str:
        response = self._request("POST", f"flag/steal_design/{_seg(team)}", json=digest)
        return _flag_hex(response)

    def _submit_flag_file(self, field: str, path: Path, mime: str) -> str:
        with path.open("rb") as handle:
            response = self._request(
                "POST", f"flag/{field}", files={field: (path.name, handle, mime)}
            )
        return _flag_hex(response)

    # -- packages --------------------------------------------------------------------------

    def list_packages(self) -> list[str]:
        data = self._request("GET", "package").json()
        if not isinstance(data, list):
            raise ProtocolError("expected a list of package names")
        return [str(name) for name in data]

    def download_package(
        self, name: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Download:
        return self._download(f"package/{_seg(name)}", dest, cancel=cancel, require_zip=False)

    def download_package_if_changed(
        self,
        name: str,
        dest: Path,
        *,
        etag: str = "",
        last_modified: str = "",
        cancel: threading.Event | None = None,
    ) -> PackageDownload | None:
        """A package, unless the server says it has not changed since the validators it
        sent last time (then None: 304 Not Modified). Without validators, a plain download
        that keeps the ETag / Last-Modified the server sends, for next time. Written to
        `<dest>.part` and renamed, as every download is."""
        path = f"package/{_seg(name)}"
        validators = _Validators(etag, last_modified)

        def attempt(state: Attempt) -> PackageDownload | None:
            response = self._send("GET", path, stream=True, auth=validators)
            with contextlib.closing(response):
                if response.status_code == 304:
                    if etag or last_modified:
                        return None
                    raise ProtocolError(f"GET {self.url(path)} answered 304 to a plain request")
                if response.status_code >= 400:
                    raise self._error(response)
                size = self._save_body(response, path, dest, cancel)
            headers = response.headers
            return PackageDownload(
                dest,
                size,
                headers.get("Content-Type", ""),
                etag=headers.get("ETag", ""),
                last_modified=headers.get("Last-Modified", ""),
            )

        try:
            return self.policy.call(
                attempt,
                sleep=self._sleep,
                attempts=self.policy.body_attempts,
                cancelled=(cancel.is_set if cancel is not None else None),
            )
        except _BrokenDownload as broken:
            raise DownloadError(f"{broken} (tried {self.policy.body_attempts} times)") from None

    def _save_body(
        self,
        response: requests.Response,
        path: str,
        dest: Path,
        cancel: threading.Event | None,
        *,
        require_zip: bool = False,
    ) -> int:
        """Stream a reply's body to `<dest>.part`, check it is whole, rename it to *dest*;
        a body that broke off is worth another try (TryAgain)."""
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with part.open("wb") as handle:
                size = _stream(response, handle, cancel)
            _check_complete(part, size, _content_length(response), require_zip, self.url(path))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            if isinstance(exc, _BrokenDownload):
                raise TryAgain(exc) from None
            raise
        os.replace(part, dest)
        return size

    # -- flows -----------------------------------------------------------------------------

    def list_flows(self, flow: str, num: int = 0) -> list[Flow]:
        data = self._json(self._request("GET", f"flow/{_seg(flow)}", params={"num": num}))
        if not isinstance(data, list):
            raise ProtocolError("expected a list of flows")
        return [Flow.from_json(item) for item in data]

    def get_flow(self, flow: str, flow_id: str) -> Flow:
        return Flow.from_json(
            self._json(self._request("GET", f"flow/{_seg(flow)}/{_seg(flow_id)}"))
        )

    def find_active_flow(self, flow: str, commit: str | None = None) -> Flow | None:
        """The newest unfinished flow of this type (for this commit, when given)."""
        return self._find_active(flow, {"commit_hash": commit} if commit else {})

    def queue_flow(self, flow: str, body: Mapping[str, Any]) -> str:
        """Queue a flow and return its id; never leaves the team with two.

        A connection error or a 5xx leaves the outcome unknown: the server may have made
        the flow. Before trying again we look for an active flow with the same request;
        a retry that meets 409 does the same. Only then is the conflict reported.
        """

        def attempt(state: Attempt) -> str:
            try:
                response = self._send("POST", f"flow/{_seg(flow)}", json=dict(body))
            except TransportError as exc:
                existing = self._find_active_quietly(flow, body)
                if existing is not None:
                    return existing.id
                raise TryAgain(exc, outcome_unknown=True) from None
            status = response.status_code
            if 200 <= status < 300:  # 201 documented; a proxy may say 200
                return self._new_flow_id(flow, body, response)
            if status == 409:
                if state.outcome_unknown:
                    ours = self._find_active(flow, body)
                    if ours is not None:
                        return ours.id
                active = self._find_active_quietly(flow, {})
                raise self._error(response, active_flow_id=active.id if active else None)
            if is_transient(status):
                unknown = leaves_outcome_unknown(status)
                existing = self._find_active_quietly(flow, body) if unknown else None
                if existing is not None:
                    return existing.id
                raise TryAgain(
                    self._error(response),
                    outcome_unknown=unknown,
                    retry_after=_retry_after(response),
                )
            raise self._error(response)

        return self.policy.call(attempt, sleep=self._sleep)

    def _new_flow_id(self, flow: str, body: Mapping[str, Any], response: requests.Response) -> str:
        """The id in a success reply. The flow exists even when that reply cannot be read,
        so then it is looked up rather than left running unknown, holding the slot."""
        try:
            return parse_flow_id(self._json(response))
        except ProtocolError:
            ours = self._find_active_quietly(flow, body)
            if ours is None:
                raise
            return ours.id

    def cancel_flow(self, flow: str, flow_id: str) -> None:
        """Cancel a flow; BadRequest when it had already completed."""
        self._settle("POST", [f"flow/{_seg(flow)}/{_seg(flow_id)}/cancel"])

    def download_job_output(
        self, flow: str, job_id: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Download:
        return self._download(
            f"flow/{_seg(flow)}/job/{_seg(job_id)}", dest, cancel=cancel, require_zip=True
        )

    def send_job_input(self, flow: str, job_id: str, data: Mapping[str, Any]) -> None:
        """PATCH a pending job, at the client's path, or the rules page's when that 404/405s."""
        paths = [f"flow/{_seg(flow)}/{_seg(job_id)}", f"flow/{_seg(flow)}/job/{_seg(job_id)}"]
        self._settle("PATCH", paths, dict(data))

    def _settle(self, method: str, paths: list[str], payload: Any = None) -> None:
        """Send an action that the server refuses to repeat (400: already completed, not
        pending). So it is safe to retry after an unknown outcome, and a 400 met then
        means the earlier attempt went through."""

        def attempt(state: Attempt) -> None:
            try:
                response = self._send_with_fallback(method, paths, payload)
            except TransportError as exc:
                raise TryAgain(exc, outcome_unknown=True) from None
            status = response.status_code
            if status < 300 or (status == 400 and state.outcome_unknown):
                return
            if is_transient(status):
                raise TryAgain(
                    self._error(response),
                    outcome_unknown=leaves_outcome_unknown(status),
                    retry_after=_retry_after(response),
                )
            raise self._error(response)

        self.policy.call(attempt, sleep=self._sleep)

    def _send_with_fallback(self, method: str, paths: list[str], payload: Any) -> requests.Response:
        """The first path that the server does not answer with 404 or 405."""
        kwargs = {} if payload is None else {"json": payload}
        response = self._send(method, paths[0], **kwargs)
        for fallback in paths[1:]:
            if response.status_code not in (404, 405):
                break
            response = self._send(method, fallback, **kwargs)
        return response

    # -- transport -------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.api_url}/api/{path.strip('/')}/"

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request (with the session's retries); transport trouble becomes TransportError.

        urllib3 retries only until the headers arrive. A body that breaks off after them
        (a proxy cutting the connection) is read again here, for requests that are safe
        to repeat and whose body is read at once; a streamed download is retried by
        `_download`.
        """
        repeatable = method in IDEMPOTENT_METHODS and not kwargs.get("stream")

        def attempt(state: Attempt) -> requests.Response:
            try:
                return self._send_once(method, path, **kwargs)
            except _BodyBrokeOff as broken:
                error = TransportError(
                    f"{method} {self.url(path)} failed: the reply broke off "
                    f"({broken}). The server or a proxy dropped the connection; retry later."
                )
                if not repeatable:
                    raise error from None
                raise TryAgain(error) from None

        return self.policy.call(attempt, sleep=self._sleep, attempts=self.policy.body_attempts)

    def _send_once(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "User-Agent": f"ectf-action/{__version__}",
            "Accept": "application/json",
        }
        url = self.url(path)
        try:
            return self._session.request(
                method, url, headers=headers, timeout=self.timeout, **kwargs
            )
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise _BodyBrokeOff(_reason(exc)) from None
        except requests.exceptions.Timeout as exc:
            raise TransportError(
                f"{method} {url} timed out ({_reason(exc)}). The testing server is slow or "
                "unreachable; retry later."
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"{method} {url} failed: {_reason(exc)}. Check the API URL and your network; "
                "the server may be down, retry later."
            ) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: requests.Response, **extra: Any) -> ApiError:
        request = response.request
        method = request.method or "?"
        url = request.url or "?"
        detail = _detail(response)
        cls = error_class_for(response.status_code)
        if issubclass(cls, Conflict):
            return cls(method, url, response.status_code, detail, **extra)
        if cls is ApiError:
            return ApiError(
                method,
                url,
                response.status_code,
                detail,
                advice="The server answered with a status this client does not expect.",
            )
        if cls is Forbidden and not _ATTACK_PHASE_PATH.search(url):
            return cls(method, url, response.status_code, detail, advice=_FORBIDDEN_ELSEWHERE)
        return cls(method, url, response.status_code, detail)

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProtocolError(
                f"{response.request.method} {response.request.url} returned a body that is "
                f"not JSON ({_snippet(response)})"
            ) from None

    def _find_active(self, flow: str, body: Mapping[str, Any]) -> Flow | None:
        candidates = [f for f in self.list_flows(flow) if not f.finished and f.matches(body)]
        candidates.sort(key=lambda f: f.submit_time, reverse=True)
        return candidates[0] if candidates else None

    def _find_active_quietly(self, flow: str, body: Mapping[str, Any]) -> Flow | None:
        try:
            return self._find_active(flow, body)
        except (TransportError, ProtocolError, ApiError):
            return None

    def _download(
        self,
        path: str,
        dest: Path,
        *,
        cancel: threading.Event | None,
        require_zip: bool,
    ) -> Download:
        """Stream to `<dest>.part`, check it is whole, then rename: a partial file never
        takes the place of a complete one. A download that breaks off is tried again
        under the policy's `body_attempts`: on a congested server many do."""

        def attempt(state: Attempt) -> Download:
            response = self._send("GET", path, stream=True)
            with contextlib.closing(response):
                if response.status_code >= 400:
                    raise self._error(response)
                expected = _content_length(response)
                part = dest.with_name(dest.name + ".part")
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with part.open("wb") as handle:
                        size = _stream(response, handle, cancel)
                    _check_complete(part, size, expected, require_zip, self.url(path))
                except BaseException as exc:
                    with contextlib.suppress(OSError):
                        part.unlink()
                    if isinstance(exc, _BrokenDownload):
                        raise TryAgain(exc) from None
                    raise
            os.replace(part, dest)
            return Download(dest, size, response.headers.get("Content-Type", ""))

        attempts = self.policy.body_attempts
        try:
            return self.policy.call(
                attempt,
                sleep=self._sleep,
                attempts=attempts,
                cancelled=(cancel.is_set if cancel is not None else None),
            )
        except _BrokenDownload as broken:
            tries = f" (tried {attempts} times)" if attempts > 1 else ""
            raise DownloadError(f"{broken}{tries}") from None


def _seg(value: str) -> str:
    """One path segment: a name from a user or the server can never add a path or query."""
    return quote(str(value), safe="")


def _stream(response: requests.Response, handle: BinaryIO, cancel: threading.Event | None) -> int:
    size = 0
    chunks: Iterator[bytes] = response.iter_content(chunk_size=DOWNLOAD_CHUNK)
    finished = threading.Event()
    if cancel is not None:
        threading.Thread(
            target=_close_on_cancel,
            args=(response, cancel, finished),
            name="ectf-download-cancel",
            daemon=True,
        ).start()
    try:
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                raise Cancelled("download stopped: cancel requested")
            handle.write(chunk)
            size += len(chunk)
    except requests.exceptions.RequestException as exc:
        if cancel is not None and cancel.is_set():
            raise Cancelled("download stopped: cancel requested") from None
        received = _bytes_received(response, size)
        raise _BrokenDownload(
            f"download of {response.url} broke off after {received} bytes ({_reason(exc)})"
        ) from None
    finally:
        finished.set()
    if cancel is not None and cancel.is_set():
        raise Cancelled("download stopped: cancel requested")
    return size


def _close_on_cancel(
    response: requests.Response, cancel: threading.Event, finished: threading.Event
) -> None:
    """Shut a download's connection when a cancel comes: a read blocked on a stalled
    server then returns at once, instead of holding the run (and the process's exit)
    until the read timeout, past the runner's patience."""
    while not finished.is_set():
        if cancel.wait(CANCEL_CHECK_SECONDS):
            connection = getattr(response.raw, "connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None and not finished.is_set():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


def _bytes_received(response: requests.Response, written: int) -> int:
    """Bytes read off the wire, which may be more than the whole chunks written."""
    try:
        return max(written, int(response.raw.tell()))
    except (AttributeError, TypeError, ValueError, OSError):
        return written


# What zipfile raises for a file it cannot read as a zip: names flagged UTF-8 that are
# not (UnicodeDecodeError, a ValueError), damaged headers, unsupported features.
_UNREADABLE_ZIP = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
)


def _check_complete(
    part: Path, size: int, expected: int | None, require_zip: bool, url: str
) -> None:
    if expected is not None and size != expected:
        raise _BrokenDownload(f"download of {url} is incomplete: {size} of {expected} bytes")
    if require_zip:
        try:
            with zipfile.ZipFile(part) as archive:
                archive.infolist()
        except _UNREADABLE_ZIP as exc:
            problem = f"download of {url} is not a readable zip ({exc})"
            # Without a length to check, a body cut short looks complete: worth another
            # try. A whole file that is not a zip will not become one.
            raise (_BrokenDownload if expected is None else DownloadError)(problem) from None


def _content_length(response: requests.Response) -> int | None:
    if response.headers.get("Content-Encoding", "identity") not in ("", "identity"):
        return None  # the length counts compressed bytes; the zip check still applies
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _flag_hex(response: requests.Response) -> str:
    data = EctfClient._json(response)
    if isinstance(data, Mapping) and isinstance(data.get("flag_hex"), str):
        return str(data["flag_hex"])
    raise ProtocolError('expected {"flag_hex": ...} in the flag reply')


def _detail(response: requests.Response) -> Any:
    """The server's `detail`, read defensively: proxies answer with HTML or nothing."""
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            data = response.json()
        except ValueError:
            return _snippet(response)
        if isinstance(data, Mapping) and "detail" in data:
            return data["detail"]
        return data
    return _snippet(response)


def _snippet(response: requests.Response, limit: int = 200) -> str:
    try:
        text = response.text
    except Exception:  # a body we cannot even decode
        return "unreadable body"
    if not text.strip():
        return f"empty body, HTTP {response.status_code} {response.reason or ''}".strip()
    if "<html" in text[:500].lower() or "<!doctype" in text[:500].lower():
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        summary = title.group(1) if title else _TAG_RE.sub(" ", text)
        text = "an HTML page: " + _SPACE_RE.sub(" ", summary).strip()
    text = _SPACE_RE.sub(" ", text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(response: requests.Response) -> float | None:
    """The reply's Retry-After in seconds (the policy caps it); None when absent."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


def _reason(exc: BaseException) -> str:
    """The root cause in a few words (e.g. "Failed to resolve 'host'"), not urllib3's
    nested reprs; never includes request headers."""
    cause: BaseException = exc
    seen = 0
    while seen < 8:  # requests -> MaxRetryError -> NewConnectionError -> OSError ...
        seen += 1
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            args = getattr(cause, "args", ())
            inner = args[0] if args and isinstance(args[0], BaseException) else None
        if inner is None or inner is cause:
            break
        cause = inner
    text = str(cause) or str(exc.__context__ or "") or str(exc)
    text = re.sub(r"<urllib3[^>]*>", "", text)
    text = re.sub(r"^\w+Connection(Pool)?\([^)]*\):\s*", "", text)  # "HTTPSConnection(host=..):"
    return _SPACE_RE.sub(" ", text).strip()[:200] or type(exc).__name__
