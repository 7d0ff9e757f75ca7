"""The API client: every endpoint, every documented status, retries and downloads."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests
import responses
from responses import matchers

from ectf_action import errors
from ectf_action.client import EctfClient
from ectf_action.models import JobStatus
from ectf_action.retry import IDEMPOTENT_METHODS, RETRY_STATUSES, Attempt, RetryPolicy, TryAgain

API = "https://api.example.test"
TOKEN = "tok-9f8e7d6c-secret"
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
JOB_ID = "981b2de7-f03f-4780-9cd1-1b6a893a0221"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BODY = {"git_url": "ssh://git@github.com/team/design.git", "commit_hash": COMMIT}
AUTH = matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})


def flow_json(
    flow_id: str = FLOW_ID,
    *,
    completed: bool = False,
    status: str = "running",
    commit: str = COMMIT,
    submit_time: str = "2026-01-29T14:53:48.335Z",
) -> dict[str, object]:
    return {
        "id": flow_id,
        "submit_time": submit_time,
        "name": "test",
        "completed": completed,
        "params": {"git_url": BODY["git_url"], "commit_hash": commit},
        "jobs": [
            {
                "id": JOB_ID,
                "name": "build",
                "status": status,
                "has_artifacts": True,
                "private": False,
            }
        ],
    }


def zip_bytes(files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in (files or {"build.log": b"ok\n"}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def client() -> Iterator[EctfClient]:
    sleeps: list[float] = []
    with EctfClient(API, TOKEN, retries=3, backoff_factor=0, sleep=sleeps.append) as c:
        c.sleeps = sleeps  # type: ignore[attr-defined]
        yield c


# -- endpoints ---------------------------------------------------------------------------


@responses.activate
def test_list_flows_sends_num_and_auth(client: EctfClient) -> None:
    responses.get(
        f"{API}/api/flow/test/",
        json=[flow_json()],
        match=[AUTH, matchers.query_param_matcher({"num": "5"})],
    )
    flows = client.list_flows("test", num=5)
    assert [f.id for f in flows] == [FLOW_ID]
    assert flows[0].jobs[0].status is JobStatus.RUNNING


@responses.activate
def test_get_flow_parses_jobs_and_keeps_unknown_status(client: EctfClient) -> None:
    data = flow_json(status="paused-for-lunch")
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", json=data, match=[AUTH])
    flow = client.get_flow("test", FLOW_ID)
    assert flow.jobs[0].status is JobStatus.UNKNOWN
    assert flow.jobs[0].status_text == "paused-for-lunch"
    assert not flow.finished


@responses.activate
def test_queue_returns_plain_uuid(client: EctfClient) -> None:
    responses.post(
        f"{API}/api/flow/test/",
        body=json.dumps(FLOW_ID),
        status=201,
        content_type="application/json",
        match=[AUTH, matchers.json_params_matcher(BODY)],
    )
    assert client.queue_flow("test", BODY) == FLOW_ID


@responses.activate
def test_cancel_flow(client: EctfClient) -> None:
    responses.post(f"{API}/api/flow/test/{FLOW_ID}/cancel/", status=204, match=[AUTH])
    client.cancel_flow("test", FLOW_ID)
    assert len(responses.calls) == 1


@responses.activate
def test_cancel_completed_flow_is_bad_request(client: EctfClient) -> None:
    responses.post(
        f"{API}/api/flow/test/{FLOW_ID}/cancel/",
        status=400,
        json={"detail": "Flow already completed"},
    )
    with pytest.raises(errors.BadRequest, match="Flow already completed"):
        client.cancel_flow("test", FLOW_ID)


@responses.activate
def test_job_output_streams_to_file(client: EctfClient, tmp_path: Path) -> None:
    data = zip_bytes()
    responses.get(f"{API}/api/flow/test/job/{JOB_ID}/", body=data, match=[AUTH])
    download = client.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert download.size == len(data)
    assert (tmp_path / "out.zip").read_bytes() == data
    assert not (tmp_path / "out.zip.part").exists()


@responses.activate
def test_job_without_output_is_bad_request(client: EctfClient, tmp_path: Path) -> None:
    responses.get(
        f"{API}/api/flow/test/job/{JOB_ID}/", status=400, json={"detail": "Job has no output"}
    )
    with pytest.raises(errors.BadRequest):
        client.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert not list(tmp_path.iterdir())


@responses.activate
def test_job_input_uses_the_clients_path(client: EctfClient) -> None:
    responses.patch(
        f"{API}/api/flow/submit/{JOB_ID}/",
        status=204,
        match=[AUTH, matchers.json_params_matcher({"approve": True})],
    )
    client.send_job_input("submit", JOB_ID, {"approve": True})
    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [404, 405])
@responses.activate
def test_job_input_falls_back_to_the_rules_page_path(client: EctfClient, status: int) -> None:
    responses.patch(f"{API}/api/flow/submit/{JOB_ID}/", status=status, json={"detail": "x"})
    responses.patch(f"{API}/api/flow/submit/job/{JOB_ID}/", status=204)
    client.send_job_input("submit", JOB_ID, {"approve": False})
    assert [c.request.url for c in responses.calls] == [
        f"{API}/api/flow/submit/{JOB_ID}/",
        f"{API}/api/flow/submit/job/{JOB_ID}/",
    ]


@responses.activate
def test_job_input_not_pending_is_bad_request(client: EctfClient) -> None:
    responses.patch(f"{API}/api/flow/submit/{JOB_ID}/", status=400, json={"detail": "not pending"})
    with pytest.raises(errors.BadRequest, match="not pending"):
        client.send_job_input("submit", JOB_ID, {"approve": True})
    assert len(responses.calls) == 1


@responses.activate
def test_list_packages(client: EctfClient) -> None:
    responses.get(f"{API}/api/package/", json=["mitre", "team2"], match=[AUTH])
    assert client.list_packages() == ["mitre", "team2"]


@responses.activate
def test_download_package(client: EctfClient, tmp_path: Path) -> None:
    blob = b"encrypted-not-a-zip" * 100
    responses.get(f"{API}/api/package/mitre/", body=blob, match=[AUTH])
    download = client.download_package("mitre", tmp_path / "mitre.zip")
    assert download.size == len(blob)
    assert (tmp_path / "mitre.zip").read_bytes() == blob


@responses.activate
def test_team_photo_is_multipart_field_team_photo(client: EctfClient, tmp_path: Path) -> None:
    photo = tmp_path / "team.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    responses.post(f"{API}/api/flag/team_photo/", json={"flag_hex": "ab12"}, match=[AUTH])
    assert client.submit_team_photo(photo) == "ab12"
    body = responses.calls[0].request.body
    assert isinstance(body, bytes)
    assert b'name="team_photo"; filename="team.png"' in body


@responses.activate
def test_design_doc_is_multipart_field_design_doc(client: EctfClient, tmp_path: Path) -> None:
    doc = tmp_path / "design.pdf"
    doc.write_bytes(b"%PDF-1.7\n")
    responses.post(f"{API}/api/flag/design_doc/", json={"flag_hex": "cd34"}, match=[AUTH])
    assert client.submit_design_doc(doc) == "cd34"
    body = responses.calls[0].request.body
    assert isinstance(body, bytes) and b'name="design_doc"' in body


@responses.activate
def test_steal_design_sends_a_bare_json_string(client: EctfClient) -> None:
    responses.post(
        f"{API}/api/flag/steal_design/mitre/",
        json={"flag_hex": "ef56"},
        match=[AUTH, matchers.json_params_matcher("deadbeef")],  # type: ignore[arg-type]
    )
    assert client.steal_design("mitre", "deadbeef") == "ef56"


# -- status codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "error", "advice"),
    [
        (401, "Invalid token", errors.Unauthorized, "check that it is your team's current token"),
        (403, "Not in attack phase", errors.Forbidden, "attack phase"),
        (404, "Flow not found", errors.NotFound, "Check the id"),
        (413, "Too large", errors.PayloadTooLarge, "size limit"),
        (500, "AWS outage", errors.ServerError, "retry later"),
    ],
)
@responses.activate
def test_documented_statuses_map_to_errors_that_say_what_to_do(
    client: EctfClient, status: int, detail: str, error: type[errors.ApiError], advice: str
) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", status=status, json={"detail": detail})
    with pytest.raises(error) as caught:
        client.get_flow("test", FLOW_ID)
    message = str(caught.value)
    assert detail in message and advice in message
    assert caught.value.exit_code == errors.EXIT_SERVER
    assert TOKEN not in message and TOKEN not in repr(caught.value)


@responses.activate
def test_403_outside_the_attack_endpoints_does_not_blame_the_phase(client: EctfClient) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", status=403, json={"detail": "Forbidden"})
    with pytest.raises(errors.Forbidden) as caught:
        client.get_flow("test", FLOW_ID)
    assert "attack phase" not in str(caught.value)
    assert "token is your team's" in str(caught.value)


@responses.activate
def test_422_names_the_field(client: EctfClient) -> None:
    detail = [{"loc": ["query", "num"], "msg": "must be >= 0", "type": "value_error"}]
    responses.get(f"{API}/api/flow/test/", status=422, json={"detail": detail})
    with pytest.raises(errors.ValidationFailed, match=r"query\.num: must be >= 0"):
        client.list_flows("test", num=-1)


@responses.activate
def test_html_error_page_gives_a_clear_error(client: EctfClient) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    responses.get(
        f"{API}/api/flow/test/{FLOW_ID}/", status=502, body=page, content_type="text/html"
    )
    with pytest.raises(errors.ServerError, match="HTML page: 502 Bad Gateway") as caught:
        client.get_flow("test", FLOW_ID)
    assert caught.value.status_code == 502


@responses.activate
def test_non_json_success_body_is_a_protocol_error(client: EctfClient) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", body="surprise", content_type="text/plain")
    with pytest.raises(errors.ProtocolError, match="not JSON"):
        client.get_flow("test", FLOW_ID)


@responses.activate
def test_unknown_status_code_still_has_a_message(client: EctfClient) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", status=418, body="")
    with pytest.raises(errors.ApiError, match="418"):
        client.get_flow("test", FLOW_ID)


# -- retries -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
@responses.activate
def test_idempotent_requests_are_retried_on_transient_statuses(
    client: EctfClient, status: int
) -> None:
    url = f"{API}/api/flow/test/{FLOW_ID}/"
    responses.get(url, status=status, json={"detail": "busy"})
    responses.get(url, status=status, json={"detail": "busy"})
    responses.get(url, json=flow_json())
    assert client.get_flow("test", FLOW_ID).id == FLOW_ID
    assert len(responses.calls) == 3


@responses.activate
def test_retries_are_bounded(client: EctfClient) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", status=503, json={"detail": "down"})
    with pytest.raises(errors.ServerError, match="down"):
        client.get_flow("test", FLOW_ID)
    assert len(responses.calls) == 4  # one try and three retries


@responses.activate
def test_client_errors_are_not_retried(client: EctfClient) -> None:
    responses.get(f"{API}/api/flow/test/{FLOW_ID}/", status=404, json={"detail": "nope"})
    with pytest.raises(errors.NotFound):
        client.get_flow("test", FLOW_ID)
    assert len(responses.calls) == 1


def test_retry_policy_is_exponential_with_jitter_and_idempotent_only() -> None:
    assert "POST" not in IDEMPOTENT_METHODS and "PATCH" not in IDEMPOTENT_METHODS
    assert set(RETRY_STATUSES) == {429, 500, 502, 503, 504}
    policy = RetryPolicy(backoff=1.0, backoff_max=30.0)
    delays = [policy.delay(failures) for failures in range(1, 6)]
    # jitter adds up to half the factor; the base doubles each time and is capped
    for base, delay in zip([1.0, 2.0, 4.0, 8.0, 16.0], delays, strict=True):
        assert base <= delay <= base + 0.5


@responses.activate
def test_a_post_is_sent_once_whatever_the_status(client: EctfClient) -> None:
    """Only the callers that know a repeat is safe (queueing, cancelling) send again."""
    responses.post(f"{API}/api/flag/steal_design/mitre/", status=503, json={"detail": "busy"})
    with pytest.raises(errors.ServerError):
        client.steal_design("mitre", "d")
    assert len(responses.calls) == 1


# -- the no-duplicate rule for queueing --------------------------------------------------


@responses.activate
def test_queue_is_never_blindly_retried_after_an_unknown_outcome(client: EctfClient) -> None:
    """The POST died (maybe after the server made the flow); the retry meets 409 and the
    flow found for the same commit is returned, so there is still one flow."""
    responses.post(f"{API}/api/flow/test/", body=requests.ConnectionError("reset"))
    responses.get(f"{API}/api/flow/test/", json=[])  # not visible yet
    responses.post(f"{API}/api/flow/test/", status=409, json={"detail": "Reached max active flows"})
    responses.get(f"{API}/api/flow/test/", json=[flow_json()])
    assert client.queue_flow("test", BODY) == FLOW_ID
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2


@responses.activate
def test_queue_after_502_finds_the_flow_it_made_without_posting_again(client: EctfClient) -> None:
    responses.post(f"{API}/api/flow/test/", status=502, body="<html>Bad Gateway</html>")
    responses.get(f"{API}/api/flow/test/", json=[flow_json()])
    assert client.queue_flow("test", BODY) == FLOW_ID
    assert [c.request.method for c in responses.calls] == ["POST", "GET"]


@responses.activate
def test_first_409_is_a_conflict_naming_the_active_flow(client: EctfClient) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    responses.post(f"{API}/api/flow/test/", status=409, json={"detail": "Reached max active flows"})
    responses.get(f"{API}/api/flow/test/", json=[flow_json(other, commit="f" * 40)])
    with pytest.raises(errors.Conflict) as caught:
        client.queue_flow("test", BODY)
    assert caught.value.active_flow_id == other
    assert other in str(caught.value)


@responses.activate
def test_409_after_unknown_outcome_with_another_commit_is_still_a_conflict(
    client: EctfClient,
) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    responses.post(f"{API}/api/flow/test/", status=503, json={"detail": "busy"})
    responses.get(f"{API}/api/flow/test/", json=[flow_json(other, commit="f" * 40)])
    responses.post(f"{API}/api/flow/test/", status=409, json={"detail": "Reached max active flows"})
    with pytest.raises(errors.Conflict) as caught:
        client.queue_flow("test", BODY)
    assert caught.value.active_flow_id == other


@responses.activate
def test_queue_429_waits_retry_after_then_queues(client: EctfClient) -> None:
    responses.post(
        f"{API}/api/flow/test/", status=429, headers={"Retry-After": "7"}, json={"detail": "slow"}
    )
    responses.post(f"{API}/api/flow/test/", status=201, json=FLOW_ID)
    assert client.queue_flow("test", BODY) == FLOW_ID
    assert 7.0 in client.sleeps  # type: ignore[attr-defined]
    assert [c.request.method for c in responses.calls] == ["POST", "POST"]


@responses.activate
def test_queue_gives_up_after_bounded_attempts(client: EctfClient) -> None:
    responses.post(f"{API}/api/flow/test/", status=500, json={"detail": "outage"})
    responses.get(f"{API}/api/flow/test/", json=[])
    with pytest.raises(errors.ServerError, match="outage"):
        client.queue_flow("test", BODY)
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 4


@responses.activate
def test_queue_reply_that_is_not_a_uuid_is_a_protocol_error(client: EctfClient) -> None:
    responses.post(f"{API}/api/flow/test/", status=201, json="not-a-uuid")
    with pytest.raises(errors.ProtocolError, match="not a UUID"):
        client.queue_flow("test", BODY)


@responses.activate
def test_find_active_flow_picks_newest_unfinished_for_the_commit(client: EctfClient) -> None:
    old = "11111111-2222-3333-4444-555555555555"
    done = "22222222-2222-3333-4444-555555555555"
    responses.get(
        f"{API}/api/flow/test/",
        json=[
            flow_json(old, submit_time="2026-01-01T00:00:00Z"),
            flow_json(done, completed=True, status="succeeded", submit_time="2026-01-03T00:00:00Z"),
            flow_json(FLOW_ID, submit_time="2026-01-02T00:00:00Z"),
            flow_json("33333333-2222-3333-4444-555555555555", commit="a" * 40),
        ],
    )
    active = client.find_active_flow("test", COMMIT[:7])
    assert active is not None and active.id == FLOW_ID


@responses.activate
def test_cancel_retry_that_meets_400_counts_as_done(client: EctfClient) -> None:
    url = f"{API}/api/flow/test/{FLOW_ID}/cancel/"
    responses.post(url, body=requests.ConnectionError("reset"))
    responses.post(url, status=400, json={"detail": "already completed"})
    client.cancel_flow("test", FLOW_ID)
    assert len(responses.calls) == 2


# -- downloads ---------------------------------------------------------------------------


@responses.activate
def test_download_that_is_not_a_zip_fails_and_leaves_nothing(
    client: EctfClient, tmp_path: Path
) -> None:
    responses.get(f"{API}/api/flow/test/job/{JOB_ID}/", body=b"PK\x03\x04 garbage")
    with pytest.raises(errors.DownloadError, match="not a readable zip"):
        client.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert not list(tmp_path.iterdir())


@responses.activate
def test_download_honours_cancel(client: EctfClient, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    responses.get(f"{API}/api/flow/test/job/{JOB_ID}/", body=zip_bytes())
    with pytest.raises(errors.Cancelled):
        client.download_job_output("test", JOB_ID, tmp_path / "out.zip", cancel=cancel)
    assert not list(tmp_path.iterdir())


class _Truncating(BaseHTTPRequestHandler):
    """Promises more bytes than it sends, then hangs up: a truncated download."""

    payload = zip_bytes({"big.bin": bytes(range(256)) * 400})

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class _Counting(BaseHTTPRequestHandler):
    """Fails with 503 + Retry-After, then answers; counts what it saw."""

    seen: ClassVar[list[str]] = []
    times: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        type(self).times.append(time.monotonic())
        if len(type(self).seen) == 1:
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(flow_json()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_truncated_download_is_detected_over_real_http(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = serve(_Truncating)
    with EctfClient(url, TOKEN, retries=0) as c, pytest.raises(errors.DownloadError) as caught:
        c.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert "broke off" in str(caught.value) or "incomplete" in str(caught.value)
    assert not list(tmp_path.iterdir())


class _TruncatingTwice(BaseHTTPRequestHandler):
    """Breaks the first two downloads off halfway, then sends the whole zip."""

    payload = zip_bytes({"build.log": b"compiled\n" * 2000})
    served: ClassVar[int] = 0

    def do_GET(self) -> None:
        type(self).served += 1
        whole = type(self).served > 2
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload if whole else self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_download_that_breaks_off_is_retried_with_backoff(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _TruncatingTwice.served = 0
    url = serve(_TruncatingTwice)
    sleeps: list[float] = []
    with EctfClient(url, TOKEN, retries=5, backoff_factor=1.0, sleep=sleeps.append) as c:
        saved = c.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert saved.size == len(_TruncatingTwice.payload) and _TruncatingTwice.served == 3
    # exponential backoff with up to half the base step of jitter
    assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.5 and 2.0 <= sleeps[1] <= 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["out.zip"]


def test_a_download_that_keeps_breaking_off_says_how_often_it_was_tried(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path
) -> None:
    url = serve(_Truncating)
    with (
        EctfClient(url, TOKEN, retries=2, backoff_factor=0) as c,
        pytest.raises(
            errors.DownloadError, match=r"(broke off after|incomplete:) .*\(tried 3 times\)$"
        ),
    ):
        c.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert not list(tmp_path.iterdir())


@responses.activate
def test_a_whole_download_that_is_not_a_zip_is_not_tried_again(
    client: EctfClient, tmp_path: Path
) -> None:
    """Its length matched: another try would fetch the same bytes."""
    body = b"PK\x03\x04 garbage"
    responses.get(
        f"{API}/api/flow/test/job/{JOB_ID}/",
        body=body,
        headers={"Content-Length": str(len(body))},
    )
    with pytest.raises(errors.DownloadError, match="not a readable zip"):
        client.download_job_output("test", JOB_ID, tmp_path / "out.zip")
    assert len(responses.calls) == 1


def test_the_retry_policy_backs_off_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=1.0, backoff_max=30.0, retry_after_max=60.0)
    assert [policy.delay(n, jitter=lambda: 0.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    assert policy.delay(1, jitter=lambda: 1.0) == 1.5  # jitter: up to half the base step
    assert policy.delay(3, retry_after=7) == 7.0
    assert policy.delay(1, retry_after=86400) == 60.0  # a hostile Retry-After is capped


def test_the_retry_policy_raises_the_last_error_when_attempts_run_out() -> None:
    calls: list[Attempt] = []
    sleeps: list[float] = []

    def operation(attempt: Attempt) -> str:
        calls.append(dataclasses.replace(attempt))
        raise TryAgain(errors.TransportError(f"call {attempt.number}"), outcome_unknown=True)

    with pytest.raises(errors.TransportError, match="call 3"):
        RetryPolicy(attempts=3, backoff=0).call(operation, sleep=sleeps.append)
    assert [(a.number, a.outcome_unknown) for a in calls] == [(1, False), (2, True), (3, True)]
    assert len(sleeps) == 2


def test_a_cancel_stops_the_retries() -> None:
    def operation(attempt: Attempt) -> str:
        raise TryAgain(errors.TransportError("down"))

    with pytest.raises(errors.Cancelled):
        RetryPolicy(attempts=5, backoff=0).call(
            operation, sleep=lambda _: None, cancelled=lambda: True
        )


def test_retry_over_real_http_honours_retry_after(serve) -> None:  # type: ignore[no-untyped-def]
    _Counting.seen, _Counting.times = [], []
    url = serve(_Counting)
    with EctfClient(url, TOKEN, retries=2, backoff_factor=0) as c:
        assert c.get_flow("test", FLOW_ID).id == FLOW_ID
    assert len(_Counting.seen) == 2
    assert _Counting.times[1] - _Counting.times[0] >= 0.9  # waited the 1 s Retry-After


@responses.activate
def test_a_hostile_retry_after_is_capped(client: EctfClient) -> None:
    url = f"{API}/api/flow/test/{FLOW_ID}/"
    responses.get(url, status=503, headers={"Retry-After": "86400"}, json={"detail": "x"})
    responses.get(url, json=flow_json())
    assert client.get_flow("test", FLOW_ID).id == FLOW_ID
    assert client.sleeps == [60.0]  # type: ignore[attr-defined]


def test_unreachable_server_is_a_transport_error_without_the_token() -> None:
    client = EctfClient("http://127.0.0.1:9", TOKEN, retries=1, backoff_factor=0, timeout=(1, 1))
    with client, pytest.raises(errors.TransportError) as caught:
        client.get_flow("test", FLOW_ID)
    assert "127.0.0.1:9" in str(caught.value)
    assert "Connection refused" in str(caught.value)  # the root cause, not urllib3's reprs
    assert "HTTPConnection(" not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_client_repr_hides_the_token() -> None:
    assert TOKEN not in repr(EctfClient(API, TOKEN))


@responses.activate
def test_names_are_one_path_segment(client: EctfClient) -> None:
    responses.post(f"{API}/api/flag/steal_design/a%2F..%3Fx%3D1/", json={"flag_hex": "01"})
    assert client.steal_design("a/..?x=1", "d") == "01"


@responses.activate
def test_job_input_retried_after_unknown_outcome_and_400_counts_as_done(
    client: EctfClient,
) -> None:
    url = f"{API}/api/flow/submit/{JOB_ID}/"
    responses.patch(url, status=502, body="<html>Bad Gateway</html>")
    responses.patch(url, status=400, json={"detail": "Job is not pending"})
    client.send_job_input("submit", JOB_ID, {"approve": True})
    assert len(responses.calls) == 2


@responses.activate
def test_job_input_400_on_first_try_is_an_error(client: EctfClient) -> None:
    responses.patch(f"{API}/api/flow/submit/{JOB_ID}/", status=400, json={"detail": "nope"})
    with pytest.raises(errors.BadRequest):
        client.send_job_input("submit", JOB_ID, {"approve": True})


class _Recording(BaseHTTPRequestHandler):
    """Records each request's Authorization header; redirects /api/flow/test/ once, to
    the path in `redirect_to` (on this server or another)."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    redirect_to: ClassVar[str] = ""

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/api/flow/test/") and type(self).redirect_to:
            target, type(self).redirect_to = type(self).redirect_to, ""
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("where", ["the same server", "another server"])
def test_a_redirect_never_sends_netrc_credentials(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """requests would read ~/.netrc for the redirect's host and send its password as
    Basic auth in place of the token: the token is what a redirect on the server
    carries, and nothing at all goes to another host."""
    _Recording.seen = []
    url = serve(_Recording)
    other = serve(_Recording)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))  # where requests looks for it
    _Recording.redirect_to = (url if where == "the same server" else other) + "/moved/"
    with EctfClient(url, TOKEN, retries=0) as c:
        c.list_flows("test")
    (first, first_auth), (moved, moved_auth) = _Recording.seen
    assert first.startswith("/api/flow/test/") and moved == "/moved/"
    assert first_auth == f"Bearer {TOKEN}"
    assert moved_auth == (f"Bearer {TOKEN}" if where == "the same server" else None)
