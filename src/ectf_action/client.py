"""The one place that speaks HTTP to the testing server.

One method per endpoint. Every retry is decided here, by one `RetryPolicy` (retry.py),
in the client's own loops (the session under it retries nothing): idempotent requests
after a failed connection, a timeout, a reply cut short or a busy status (429 with its
Retry-After, 5xx); POST and PATCH never blindly: queueing a flow after an unknown
outcome first looks for the flow it may have created, so a team never gets a second
flow. Callers never retry: they report.

`bind` ties every request to a run: timeouts from the time left before its deadline,
retries only while there is time and no signal came, requests on their way abandoned
on a signal, and the live log told of each retry and of a slow reply. Every reply is
redacted of the team's token before anything reads it.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import math
import os
import re
import socket
import ssl
import struct
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, overload
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import (
    ApiError,
    Cancelled,
    Conflict,
    DownloadError,
    EctfError,
    Forbidden,
    ProtocolError,
    TransportError,
    error_class_for,
)
from .masking import Redactor
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

T = TypeVar("T")

DEFAULT_TIMEOUT = (10.0, 60.0)
DOWNLOAD_CHUNK = 1024 * 1024
CANCEL_CHECK_SECONDS = 0.1
# Past the run's deadline, or once a signal came, a request is a last word (cancelling
# the flow, one last look at it): one try, at most LAST_WORD_SECONDS of waiting, and none
# at all past GRACE_SECONDS after the deadline. This is the grace `timeout-minutes` has.
LAST_WORD_SECONDS = 3.0
GRACE_SECONDS = 15.0
# A queue request on its way when a signal comes is awaited this long: the flow it makes
# must be known to be cancelled.
QUEUE_PATIENCE_SECONDS = 1.5
SLOW_REQUEST_SECONDS = 10.0  # a request this slow is said in the live log, then every 30 s
SLOW_REQUEST_REPEAT_SECONDS = 30.0
# Only these endpoints are documented to answer 403 (the attack phase); anywhere else a
# 403 means something else, and the attack-phase advice would mislead.
_ATTACK_PHASE_PATH = re.compile(r"/api/(package|flag/steal_design)(/|$)")
_FORBIDDEN_ELSEWHERE = (
    "The server refused this for your team: check that the token is your team's, and ask "
    "the organizers if it persists."
)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


def make_session(pool_size: int = 8) -> requests.Session:
    """A session that retries nothing itself (every retry is the policy's, which knows
    the run's deadline)."""
    session = requests.Session()
    _mount(session, pool_size)
    return session


def _same_origin(first: str, second: str) -> bool:
    one, two = urlsplit(first), urlsplit(second)
    defaults = {"http": 80, "https": 443}
    return (one.scheme, one.hostname, one.port or defaults.get(one.scheme)) == (
        two.scheme,
        two.hostname,
        two.port or defaults.get(two.scheme),
    )


def _never_netrc(session: requests.Session) -> None:
    """On a redirect requests would look the new host up in `~/.netrc` and send what it
    finds in place of the token. Here the session's own auth (the token) is what a
    redirect carries, and only while it stays on the server's scheme, host and port."""

    def rebuild_auth(prepared: requests.PreparedRequest, response: requests.Response) -> None:
        stays = _same_origin(response.request.url or "", prepared.url or "")
        if "Authorization" in prepared.headers and not stays:
            del prepared.headers["Authorization"]
        if session.auth is not None and stays:
            prepared.prepare_auth(session.auth)

    setattr(session, "rebuild_auth", rebuild_auth)  # noqa: B010 (an instance's own hook)


def _mount(session: requests.Session, pool_size: int = 8) -> None:
    adapter = HTTPAdapter(max_retries=0, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


class _BearerAuth(requests.auth.AuthBase):
    """The team token as `Authorization: Bearer`. Set as the session's auth, it is what
    every request carries: requests then never replaces it with credentials from
    `~/.netrc` or the URL (proxy settings are still read from the environment)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class _Unrepeatable(TransportError):
    """A transport failure that another try cannot mend: it is raised at once."""


class DeadlineReached(_Unrepeatable):
    """A request that would end past the run's deadline and its grace."""


class UntrustedCertificate(_Unrepeatable):
    """The server's certificate did not verify: it will not verify on the next try
    either, and the fix is the CA bundle, not patience."""


class _BodyBrokeOff(Exception):
    """A reply's body ended before its announced length (or could not be decoded)."""


class _BrokenDownload(DownloadError):
    """A download that ended early: worth another try, unlike a complete file that is not
    a zip."""


@dataclass(frozen=True)
class Download:
    """A file saved whole, and the validators the server sent with it (ETag,
    Last-Modified), which make the next request for it conditional."""

    path: Path
    size: int
    content_type: str
    etag: str = ""
    last_modified: str = ""


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
        sleep: Callable[[float], None] | None = None,
        verify: str | bool = True,
        redactor: Redactor | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_token(token)  # a token that cannot go in a header would fail every request
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.policy = retry or RetryPolicy.from_counts(retries, queue_attempts, backoff_factor)
        if session is None:
            session = make_session()
        else:
            _mount(session)
        session.auth = _BearerAuth(token)
        _never_netrc(session)
        self._session = session
        self._sleep = sleep
        self._verify = verify
        self._token = token
        self._redactor = redactor or Redactor()
        self._redactor.add(token)
        self._now = monotonic
        self._deadline: float | None = None
        self._cancel: threading.Event | None = None
        self._notify: Callable[[str], None] | None = None

    def redact_with(self, redactor: Redactor) -> None:
        """Redact every secret *redactor* knows (with this client's token) from the
        replies, instead of the token alone."""
        redactor.add(self._token)
        self._redactor = redactor

    def trust(self, ca_bundle: Path) -> None:
        """Verify the server's certificate against *ca_bundle* (PEM) only."""
        self._verify = str(ca_bundle)

    def bind(
        self,
        *,
        seconds: float | None = None,
        cancel: threading.Event | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        """Tie every request from now on to a run: none waits past *seconds* from now
        (plus the grace for the last words), a set *cancel* abandons the ones on their
        way and stops the retries, and *notify* hears of retries and slow replies."""
        self._deadline = None if seconds is None else self._now() + seconds
        self._cancel = cancel
        self._notify = notify

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
        return _flag_hex(self, response)

    def _submit_flag_file(self, field: str, path: Path, mime: str) -> str:
        with path.open("rb") as handle:
            response = self._request(
                "POST", f"flag/{field}", files={field: (path.name, handle, mime)}
            )
        return _flag_hex(self, response)

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
    ) -> Download | None:
        """A package, unless the server says it has not changed since the validators it
        sent last time (then None: 304 Not Modified). Without validators, a plain download
        that keeps the ETag / Last-Modified the server sends, for next time."""
        conditions = {
            header: value
            for header, value in (("If-None-Match", etag), ("If-Modified-Since", last_modified))
            if value
        }
        return self._download(
            f"package/{_seg(name)}", dest, cancel=cancel, require_zip=False, conditions=conditions
        )

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
                response = self._send(
                    "POST", f"flow/{_seg(flow)}", json=dict(body), patience=QUEUE_PATIENCE_SECONDS
                )
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

        return self._retrying(attempt)

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
        """Cancel a flow; BadRequest when it had already completed. After a signal or
        the deadline this is a last word: one try, briefly waited for."""
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

        self._retrying(attempt)

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

    def _send(
        self, method: str, path: str, *, patience: float = 0.0, **kwargs: Any
    ) -> requests.Response:
        """One request; transport trouble becomes TransportError.

        An idempotent request is tried again under the policy when the connection fails,
        times out, the reply breaks off, or the status says the server is busy (429 with
        its Retry-After, 5xx); the last failure is raised (a status as its ApiError). POST
        and PATCH are sent once: their callers decide whether another try is safe.
        """
        idempotent = method in IDEMPOTENT_METHODS

        def attempt(state: Attempt) -> requests.Response:
            try:
                response = self._send_once(method, path, patience=patience, **kwargs)
            except _BodyBrokeOff as broken:
                error = TransportError(
                    f"{method} {self.url(path)} failed: the reply broke off "
                    f"({broken}). The server or a proxy dropped the connection; retry later."
                )
                if not idempotent:
                    raise error from None
                raise TryAgain(error) from None
            except _Unrepeatable:
                raise
            except TransportError as exc:
                if not idempotent:
                    raise
                raise TryAgain(exc) from None
            if idempotent and is_transient(response.status_code):
                busy = self._error(response)
                response.close()
                raise TryAgain(busy, retry_after=_retry_after(response))
            return response

        if not idempotent:
            return attempt(Attempt())
        return self._retrying(attempt, attempts=self.policy.read_attempts)

    def _retrying(
        self,
        attempt: Callable[[Attempt], T],
        *,
        attempts: int | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> T:
        """*attempt* under the policy, bound to the run: no retry once a signal came (or
        *cancelled* says so) or when the next try would start past the deadline; each
        retry said in the log."""
        return self.policy.call(
            attempt,
            sleep=self._wait,
            attempts=attempts,
            cancelled=cancelled or self._cancelled,
            remaining=self._time_for_retries,
            on_retry=self._say_retry,
            out_of_time=self._out_of_time,
        )

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        patience: float = 0.0,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One try, bounded by the run: its timeouts come from the time left, and it is
        abandoned *patience* seconds after a signal (a request started after the signal
        is a last word, never abandoned). *headers* add to ours (the token is the
        session's auth, which nothing replaces)."""
        headers = {
            "User-Agent": f"ectf-action/{__version__}",
            "Accept": "application/json",
            **(headers or {}),
        }
        url = self.url(path)
        timeout = self._timeouts()

        def call() -> requests.Response:
            try:
                return self._session.request(
                    method, url, headers=headers, timeout=timeout, verify=self._verify, **kwargs
                )
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                raise _BodyBrokeOff(_reason(exc)) from None
            except requests.exceptions.SSLError as exc:
                if not _is_certificate_failure(exc):
                    raise TransportError(
                        f"{method} {url} failed: {_reason(exc)}. The TLS connection broke; "
                        "retry later."
                    ) from None
                raise UntrustedCertificate(
                    f"{method} {url} failed: {_reason(exc)}. The server's certificate is not "
                    "trusted: check the API URL, and behind a proxy that signs with a private "
                    "CA, set SSL_CERT_FILE or REQUESTS_CA_BUNDLE to a PEM bundle of its CAs."
                ) from None
            except requests.exceptions.Timeout as exc:
                raise TransportError(
                    f"{method} {url} timed out ({_reason(exc)}). The testing server is slow "
                    "or unreachable; retry later."
                ) from None
            except requests.exceptions.RequestException as exc:
                raise TransportError(
                    f"{method} {url} failed: {_reason(exc)}. Check the API URL and your "
                    "network; the server may be down, retry later."
                ) from None

        return self._await(call, f"{method} {url}", patience)

    def _await(self, call: Callable[[], T], what: str, patience: float) -> T:
        """*call*'s result, waited for in a way a signal and the deadline can end: the
        call runs on a thread of its own (left to finish alone when abandoned), and a
        slow one is said in the live log."""
        if self._cancel is None and self._deadline is None and self._notify is None:
            return call()
        outcome: list[T] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(call())
            except BaseException as exc:  # handed to the waiting thread below
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="ectf-request", daemon=True).start()
        cancel = self._cancel
        last_word = cancel is not None and cancel.is_set()
        started = self._now()
        notice_at = started + SLOW_REQUEST_SECONDS
        cancelled_at: float | None = None
        while not done.wait(CANCEL_CHECK_SECONDS):
            now = self._now()
            if cancel is not None and cancel.is_set() and not last_word:
                cancelled_at = now if cancelled_at is None else cancelled_at
                if now - cancelled_at >= patience:
                    raise Cancelled(f"{what} was abandoned: the run was interrupted")
            if self._deadline is not None and now > self._deadline + GRACE_SECONDS:
                raise DeadlineReached(
                    f"{what} got no reply before the run's deadline (timeout-minutes); "
                    "the testing server is not answering."
                )
            if self._notify is not None and now >= notice_at:
                self._notify(
                    f"still waiting for the testing server: {what} has had no reply for "
                    f"{now - started:.0f} s"
                )
                notice_at += SLOW_REQUEST_REPEAT_SECONDS
        if failure:
            raise failure[0]
        return outcome[0]

    def _timeouts(self) -> tuple[float, float]:
        """(connect, read) timeouts from the time left: the defaults while there is time,
        LAST_WORD_SECONDS near and past the deadline or after a signal, and nothing past
        the grace (DeadlineReached)."""
        connect, read = self.timeout
        limit: float | None = LAST_WORD_SECONDS if self._cancelled() else None
        if self._deadline is not None:
            now = self._now()
            hard = self._deadline + GRACE_SECONDS - now
            if hard <= 0:
                raise DeadlineReached(
                    "No time is left before the run's deadline (timeout-minutes), so no more "
                    "requests are sent."
                )
            left = self._deadline - now
            allowed = left if left > LAST_WORD_SECONDS else LAST_WORD_SECONDS
            limit = min(hard, allowed if limit is None else min(limit, allowed))
        if limit is None:
            return connect, read
        limit = math.ceil(limit * 10) / 10  # said in messages: "read timeout=12.0", not 11.99994
        return min(connect, limit), min(read, limit)

    def _cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _time_for_retries(self) -> float | None:
        """Seconds in which another try may still start: none after a signal."""
        if self._cancelled():
            return 0.0
        return None if self._deadline is None else self._deadline - self._now()

    def _out_of_time(self, error: EctfError) -> EctfError:
        """The last failure when the deadline leaves no time for another try: said as
        the deadline's doing, so the message names what ended the tries (after a
        signal, the failure as it was)."""
        if self._cancelled() or self._deadline is None:
            return error
        return DeadlineReached(
            f"{error} No time was left to try again before the run's deadline (timeout-minutes)."
        )

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._cancel is not None:
            self._cancel.wait(seconds)
        else:
            time.sleep(seconds)

    def _say_retry(self, error: EctfError, number: int, attempts: int, delay: float) -> None:
        if self._notify is not None:
            self._notify(f"{_brief(error)}; trying again ({number}/{attempts}) in {delay:.0f} s")

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: requests.Response, **extra: Any) -> ApiError:
        request = response.request
        method = request.method or "?"
        url = request.url or "?"
        detail = _detail(response, self._redactor)
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

    def _json(self, response: requests.Response) -> Any:
        """The reply's JSON, with our secrets redacted from every string in it: what the
        server sends is shown in logs and reports, and it may echo the token."""
        try:
            data = response.json()
        except ValueError:
            raise ProtocolError(
                f"{response.request.method} {response.request.url} returned a body that is "
                f"not JSON ({_snippet(response, self._redactor)})"
            ) from None
        return self._redactor.redact_data(data)

    def _find_active(self, flow: str, body: Mapping[str, Any]) -> Flow | None:
        candidates = [f for f in self.list_flows(flow) if not f.finished and f.matches(body)]
        candidates.sort(key=lambda f: f.submit_time, reverse=True)
        return candidates[0] if candidates else None

    def _find_active_quietly(self, flow: str, body: Mapping[str, Any]) -> Flow | None:
        try:
            return self._find_active(flow, body)
        except (TransportError, ProtocolError, ApiError):
            return None

    @overload
    def _download(
        self, path: str, dest: Path, *, cancel: threading.Event | None, require_zip: bool
    ) -> Download: ...

    @overload
    def _download(
        self,
        path: str,
        dest: Path,
        *,
        cancel: threading.Event | None,
        require_zip: bool,
        conditions: Mapping[str, str],
    ) -> Download | None: ...

    def _download(
        self,
        path: str,
        dest: Path,
        *,
        cancel: threading.Event | None,
        require_zip: bool,
        conditions: Mapping[str, str] | None = None,
    ) -> Download | None:
        """Stream to `<dest>.part`, check it is whole, then rename: a partial file never
        takes the place of a complete one. One loop under the policy's `read_attempts`
        tries again what is worth it: no connection, a busy server, a body that broke
        off (on a congested server many do). With *conditions* (If-None-Match and the
        like), a 304 Not Modified is None."""
        url = self.url(path)

        def stop() -> str | None:
            if (cancel is not None and cancel.is_set()) or self._cancelled():
                return "cancel"
            if self._deadline is not None and self._now() > self._deadline + GRACE_SECONDS:
                return "deadline"
            return None

        def attempt(state: Attempt) -> Download | None:
            try:
                response = self._send_once("GET", path, stream=True, headers=conditions)
            except _Unrepeatable:
                raise
            except TransportError as exc:
                raise TryAgain(exc) from None
            with contextlib.closing(response):
                if response.status_code == 304:
                    if conditions:
                        return None
                    raise ProtocolError(f"GET {url} answered 304 to a plain request")
                if is_transient(response.status_code):
                    raise TryAgain(self._error(response), retry_after=_retry_after(response))
                if response.status_code >= 400:
                    raise self._error(response)
                expected = _content_length(response)
                part = dest.with_name(dest.name + ".part")
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with part.open("wb") as handle:
                        size = _stream(response, handle, url, stop)
                    _check_complete(part, size, expected, require_zip, url)
                except BaseException as exc:
                    with contextlib.suppress(OSError):
                        part.unlink()
                    if isinstance(exc, _BrokenDownload):
                        raise TryAgain(exc) from None
                    raise
            os.replace(part, dest)
            headers = response.headers
            return Download(
                dest,
                size,
                headers.get("Content-Type", ""),
                etag=headers.get("ETag", ""),
                last_modified=headers.get("Last-Modified", ""),
            )

        tries: list[int] = []

        def counted(state: Attempt) -> Download | None:
            tries.append(state.number)
            return attempt(state)

        try:
            return self._retrying(
                counted, attempts=self.policy.read_attempts, cancelled=lambda: stop() == "cancel"
            )
        except _BrokenDownload as broken:
            raise DownloadError(f"{broken} (tried {_times(len(tries))})") from None


def _seg(value: str) -> str:
    """One path segment: a name from a user or the server can never add a path or query."""
    return quote(str(value), safe="")


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


# What reading a streamed body raises when the connection fails, is shut or times out.
_BODY_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,  # a closed connection's file
)


def _stream(
    response: requests.Response,
    handle: BinaryIO,
    url: str,
    stop: Callable[[], str | None],
) -> int:
    """Copy the body to *handle*; its size. `read1` hands over what has arrived, so the
    count is the bytes really received when the body breaks off."""
    size = 0
    finished = threading.Event()
    threading.Thread(
        target=_shut_when_stopped,
        args=(response, stop, finished),
        name="ectf-download-watch",
        daemon=True,
    ).start()
    try:
        while True:
            if stop() is not None:
                break
            chunk = response.raw.read1(DOWNLOAD_CHUNK, decode_content=True)
            if not chunk:
                break
            handle.write(chunk)
            size += len(chunk)
    except _BODY_ERRORS as exc:
        if stop() is None:
            raise _BrokenDownload(
                f"download of {url} broke off after {size:,} bytes ({_reason(exc)})"
            ) from None
    finally:
        finished.set()
    why = stop()
    if why == "cancel":
        raise Cancelled(f"download stopped after {size:,} bytes: the run was interrupted")
    if why == "deadline":
        raise DeadlineReached(
            f"download of {url} stopped at the run's deadline (timeout-minutes) after "
            f"{size:,} bytes"
        )
    return size


def _shut_when_stopped(
    response: requests.Response, stop: Callable[[], str | None], finished: threading.Event
) -> None:
    """Shut a download's connection when a signal comes or the deadline passes: a read
    blocked on a stalled server then returns at once, instead of holding the run (and
    the process's exit) until the read timeout."""
    while not finished.wait(CANCEL_CHECK_SECONDS):
        if stop() is not None:
            connection = getattr(response.raw, "connection", None) or getattr(
                response.raw, "_connection", None
            )
            sock = getattr(connection, "sock", None)
            if sock is not None and not finished.is_set():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


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


def _flag_hex(client: EctfClient, response: requests.Response) -> str:
    data = client._json(response)
    if isinstance(data, Mapping) and isinstance(data.get("flag_hex"), str):
        return str(data["flag_hex"])
    raise ProtocolError('expected {"flag_hex": ...} in the flag reply')


def _detail(response: requests.Response, redactor: Redactor) -> Any:
    """The server's `detail`, read defensively (proxies answer with HTML or nothing) and
    redacted before anything cuts or shows it."""
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            data = response.json()
        except ValueError:
            return _snippet(response, redactor)
        if isinstance(data, Mapping) and "detail" in data:
            return redactor.redact_data(data["detail"])
        return redactor.redact_data(data)
    return _snippet(response, redactor)


def _snippet(response: requests.Response, redactor: Redactor, limit: int = 200) -> str:
    try:
        text = response.text
    except Exception:  # a body we cannot even decode
        return "unreadable body"
    if not text.strip():
        return f"empty body, HTTP {response.status_code} {response.reason or ''}".strip()
    if "<html" in text[:500].lower() or "<!doctype" in text[:500].lower():
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        summary = title.group(1) if title else _TAG_RE.sub(" ", text)
        text = "an HTML page: " + html.unescape(summary)
    text = _SPACE_RE.sub(" ", redactor.redact(text)).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_certificate_failure(exc: BaseException) -> bool:
    """Whether a TLS failure is the certificate's (somewhere in its chain of causes)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = _wrapped(seen) or seen.__cause__ or seen.__context__
    return False


def _wrapped(exc: BaseException) -> BaseException | None:
    """The error *exc* wraps, as requests and urllib3 nest them: its `reason`, else its
    first argument when that is an error; None when it wraps none."""
    inner = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        return inner
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], BaseException) else None


def _brief(error: EctfError) -> str:
    """An error in a few words, for a retry's line in the live log."""
    text = str(error).split(". ", 1)[0]
    return text if len(text) <= 160 else text[:157] + "..."


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
        inner = _wrapped(cause)
        if inner is None or inner is cause:
            break
        cause = inner
    text = str(cause) or str(exc.__context__ or "") or str(exc)
    text = re.sub(r"<urllib3[^>]*>", "", text)
    text = re.sub(r"^\w+Connection(Pool)?\([^)]*\):\s*", "", text)  # "HTTPSConnection(host=..):"
    return _SPACE_RE.sub(" ", text).strip()[:200] or type(exc).__name__
