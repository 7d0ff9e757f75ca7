"""The simulator over real HTTP, with plain `requests`: every endpoint and status code."""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ectf_action.crypto import decrypt_stream
from ectf_action.simulator import Simulator, default_scenario, load_scenario

GIT = "ssh://git@github.com/team/design.git"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64

FAST = """
time_scale: 0.01
outcomes:
  - {commit_prefix: badc0de, fail: build}
  - {commit_prefix: "5105", hang: pull-repo}   # "slow": such a flow stays active
"""
RUNNING = "5105abc"  # a commit whose flow runs until canceled
DONE = "abc1234"  # a commit whose flow completes (in about 0.1 s)


def start(yaml_text: str = FAST, **kwargs: Any) -> Simulator:
    return Simulator(load_scenario(yaml_text), **kwargs).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = start()
    yield simulator
    simulator.stop()


class Api:
    """Plain requests against the simulator, with the default team's token."""

    def __init__(self, sim: Simulator, token: str | None = None) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token or sim.token}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.sim.url + path, **kwargs)

    def queue(self, flow: str = "test", commit: str = RUNNING, **extra: Any) -> str:
        body = (
            {"target_team": "rival-team"}
            if flow == "remote"
            else {"git_url": GIT, "commit_hash": commit}
        )
        body.update(extra)
        reply = self("POST", f"/api/flow/{flow}/", json=body)
        assert reply.status_code == 201, reply.text
        return str(reply.json())


@pytest.fixture
def api(sim: Simulator) -> Api:
    return Api(sim)


def detail(reply: requests.Response) -> Any:
    return reply.json()["detail"]


# --- flows -----------------------------------------------------------------------


def test_queue_answers_201_with_a_quoted_uuid(api: Api) -> None:
    reply = api("POST", "/api/flow/test/", json={"git_url": GIT, "commit_hash": "abc"})
    assert reply.status_code == 201
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.text.startswith('"') and reply.text.endswith('"') and len(reply.text) == 38
    flows = api.sim.engine.flows("sim-team", "test")
    assert [f.id for f in flows] == [reply.json()]
    assert flows[0].params == {"git_url": GIT, "commit_hash": "abc"}


def test_extra_body_keys_are_kept_out_of_params(api: Api) -> None:
    flow_id = api.queue(priority="high")
    snapshot = api.sim.engine.flow(flow_id)
    assert snapshot is not None
    assert "priority" not in snapshot.params and snapshot.body["priority"] == "high"


@pytest.mark.parametrize(
    ("flow", "body", "loc", "kind"),
    [
        ("test", {"commit_hash": "abc"}, ["body", "git_url"], "missing"),
        ("clone", {"git_url": GIT}, ["body", "commit_hash"], "missing"),
        ("submit", {"git_url": GIT, "commit_hash": 1234}, ["body", "commit_hash"], "string_type"),
        ("remote", {"git_url": GIT}, ["body", "target_team"], "missing"),
        ("remote", {"target_team": ["a"]}, ["body", "target_team"], "string_type"),
        ("test", ["not", "an", "object"], ["body"], "model_attributes_type"),
    ],
)
def test_queue_validates_the_body(
    api: Api, flow: str, body: Any, loc: list[str], kind: str
) -> None:
    reply = api("POST", f"/api/flow/{flow}/", json=body)
    assert reply.status_code == 422
    [error] = detail(reply)
    assert error["loc"] == loc and error["type"] == kind and error["msg"]
    assert api.sim.engine.flows() == []


def test_queue_without_a_body_or_with_broken_json(api: Api) -> None:
    empty = api("POST", "/api/flow/test/")
    assert empty.status_code == 422 and detail(empty)[0]["loc"] == ["body"]
    broken = api(
        "POST",
        "/api/flow/test/",
        data=b'{"git_url": ',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    assert detail(broken)[0]["type"] == "json_invalid" and detail(broken)[0]["loc"][0] == "body"
    form = api("POST", "/api/flow/test/", data={"git_url": GIT, "commit_hash": "abc"})
    assert form.status_code == 422  # a form body is not a JSON object
    assert detail(form)[0]["type"] == "model_attributes_type"


def test_broken_json_is_reported_before_credentials(sim: Simulator) -> None:
    reply = requests.post(
        f"{sim.url}/api/flow/test/",
        data=b"{",
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 422


def test_second_active_flow_of_a_type_is_a_409(api: Api) -> None:
    first = api.queue()
    reply = api("POST", "/api/flow/test/", json={"git_url": GIT, "commit_hash": "def"})
    assert reply.status_code == 409 and first in detail(reply)
    assert len(api.sim.engine.flows()) == 1


def test_a_team_submits_once(sim: Simulator) -> None:
    sim.stop()
    quick = start(
        FAST
        + """
flows:
  submit:
    jobs:
      - {name: pull-repo, duration: 0}
"""
    )
    try:
        api = Api(quick)
        flow_id = api.queue("submit", commit=DONE)
        quick.engine.wait_completed(flow_id, 5)
        again = api("POST", "/api/flow/submit/", json={"git_url": GIT, "commit_hash": "x"})
        assert again.status_code == 400 and "already submitted" in detail(again)
    finally:
        quick.stop()


def test_unknown_flow_type_is_a_422_like_an_enum(api: Api) -> None:
    for method, path in (
        ("GET", "/api/flow/tests/"),
        ("POST", "/api/flow/deploy/"),
        ("GET", "/api/flow/Test/00000000-0000-4000-8000-000000000000/"),
    ):
        reply = api(method, path, json={})
        assert reply.status_code == 422, path
        assert detail(reply)[0]["loc"] == ["path", "flow"]
        assert detail(reply)[0]["type"] == "enum"


def test_list_flows_newest_first_with_num(api: Api) -> None:
    ids = []
    for commit in ("5105a1", "5105b2", "5105c3"):
        ids.append(api.queue(commit=commit))
        assert api("POST", f"/api/flow/test/{ids[-1]}/cancel/").status_code == 204
    everything = api("GET", "/api/flow/test/", params={"num": 0})
    assert [f["id"] for f in everything.json()] == ids[::-1]
    assert [f["id"] for f in api("GET", "/api/flow/test/").json()] == ids[::-1]
    two = api("GET", "/api/flow/test/", params={"num": "2"})
    assert [f["id"] for f in two.json()] == ids[:0:-1]
    assert api("GET", "/api/flow/clone/").json() == []


@pytest.mark.parametrize(("num", "kind"), [("-1", "greater_than_equal"), ("x", "int_parsing")])
def test_list_flows_refuses_a_bad_num(api: Api, num: str, kind: str) -> None:
    reply = api("GET", "/api/flow/test/", params={"num": num})
    assert reply.status_code == 422
    assert detail(reply)[0]["loc"] == ["query", "num"] and detail(reply)[0]["type"] == kind


def test_paths_without_the_slash_redirect_with_307(api: Api) -> None:
    reply = api("GET", "/api/flow/test", params={"num": 1}, allow_redirects=False)
    assert reply.status_code == 307
    assert reply.headers["Location"] == f"{api.sim.url}/api/flow/test/?num=1"
    flow_id = str(api("POST", "/api/flow/test", json={"git_url": GIT, "commit_hash": "a"}).json())
    assert api.sim.engine.flow(flow_id) is not None  # the POST followed the redirect with its body
    statuses = [(r.method, r.status) for r in api.sim.requests[-2:]]
    assert statuses == [("POST", 307), ("POST", 201)]


def test_flow_details(api: Api) -> None:
    flow_id = api.queue()
    reply = api("GET", f"/api/flow/test/{flow_id}/")
    assert reply.status_code == 200
    body = reply.json()
    assert body["id"] == flow_id and body["name"] == "test" and body["completed"] is False
    assert [j["name"] for j in body["jobs"]] == [
        "pull-repo",
        "build",
        "test_functional",
        "test_security",
    ]
    assert (
        api("GET", f"/api/flow/test/{flow_id.replace('-', '').upper()}/").json()["id"] == flow_id
    )  # FastAPI accepts any UUID spelling


def test_unknown_or_malformed_flow_ids(api: Api) -> None:
    unknown = api("GET", "/api/flow/test/3fa85f64-5717-4562-b3fc-2c963f66afa6/")
    assert unknown.status_code == 404 and detail(unknown) == "Flow not found"
    malformed = api("GET", "/api/flow/test/not-a-uuid/")
    assert malformed.status_code == 422
    assert detail(malformed)[0]["loc"] == ["path", "flow_id"]
    assert detail(malformed)[0]["type"] == "uuid_parsing"
    other_team = Api(api.sim, "rival-token")
    flow_id = api.queue()
    assert other_team("GET", f"/api/flow/test/{flow_id}/").status_code == 404


def test_a_flow_runs_to_completion_in_real_time(api: Api) -> None:
    flow_id = api.queue(commit=DONE)
    seen: set[str] = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        flow = api("GET", f"/api/flow/test/{flow_id}/").json()
        seen.update(j["status"] for j in flow["jobs"])
        if flow["completed"]:
            break
        time.sleep(0.005)
    assert flow["completed"]
    assert {j["status"] for j in flow["jobs"]} == {"succeeded"}
    assert {"queued", "running"} <= seen


def test_cancel(api: Api) -> None:
    flow_id = api.queue()
    reply = api("POST", f"/api/flow/test/{flow_id}/cancel/")
    assert reply.status_code == 204 and reply.content == b""
    flow = api("GET", f"/api/flow/test/{flow_id}/").json()
    assert flow["completed"] and {j["status"] for j in flow["jobs"]} == {"canceled"}
    again = api("POST", f"/api/flow/test/{flow_id}/cancel/")
    assert again.status_code == 400
    assert (
        api("POST", "/api/flow/test/3fa85f64-5717-4562-b3fc-2c963f66afa6/cancel/").status_code
        == 404
    )
    assert api("POST", "/api/flow/test/123/cancel/").status_code == 422
    assert api("GET", f"/api/flow/test/{flow_id}/cancel/").status_code == 405


def test_a_completed_flow_cannot_be_canceled(api: Api) -> None:
    flow_id = api.queue("clone", commit=DONE)
    api.sim.engine.wait_completed(flow_id, 5)
    assert api("POST", f"/api/flow/clone/{flow_id}/cancel/").status_code == 400


# --- job output and input --------------------------------------------------------


def test_job_output_is_the_zip(api: Api) -> None:
    flow_id = api.queue(commit=DONE)
    flow = api.sim.engine.wait_completed(flow_id, 5)
    job = flow.job("build")
    reply = api("GET", f"/api/flow/test/job/{job.id}/")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/zip"
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        assert archive.testzip() is None
        assert set(archive.namelist()) == {"build.log", "build/hsm.bin", "build/hsm.map"}
        assert len(archive.read("build/hsm.bin")) == 96 * 1024
    path = api.sim.engine.artifact_path(job.id)
    assert path is not None and path.read_bytes() == reply.content


def test_job_output_refusals(api: Api) -> None:
    flow_id = api.queue()
    job = api.sim.engine.flows()[0].job("build")
    running = api("GET", f"/api/flow/test/job/{job.id}/")
    assert running.status_code == 400 and detail(running) == "Job has no output"
    assert api("GET", "/api/flow/test/job/3fa85f64-5717-4562-b3fc-2c963f66afa6/").status_code == 404
    assert api("GET", f"/api/flow/clone/job/{job.id}/").status_code == 404
    assert api("GET", "/api/flow/test/job/nope/").status_code == 422
    assert flow_id


@pytest.mark.parametrize("shape", ["/api/flow/submit/{job}/", "/api/flow/submit/job/{job}/"])
def test_both_patch_paths_answer_a_pending_job(sim: Simulator, shape: str) -> None:
    sim.stop()
    quick = start(
        FAST
        + """
flows:
  submit:
    jobs:
      - {name: team_approval, input: approval, duration: 0}
"""
    )
    try:
        api = Api(quick)
        flow_id = api.queue("submit")
        flow = quick.engine.wait_for_job(flow_id, "team_approval", "pending", 5)
        path = shape.format(job=flow.job("team_approval").id)
        reply = api("PATCH", path, json={"approve": True})
        assert reply.status_code == 204 and reply.content == b""
        done = quick.engine.wait_completed(flow_id, 5)
        assert done.job("team_approval").status == "succeeded"
        assert done.job("team_approval").inputs == ({"approve": True},)
        again = api("PATCH", path, json={"approve": True})
        assert again.status_code == 400  # not pending any more
        assert quick.requests[-2].json() == {"approve": True}
    finally:
        quick.stop()


def test_patch_refusals(api: Api) -> None:
    api.queue("submit")
    job = api.sim.engine.flows()[0].job("team_approval")
    not_pending = api("PATCH", f"/api/flow/submit/{job.id}/", json={"approve": True})
    assert not_pending.status_code == 400
    unknown = api("PATCH", "/api/flow/submit/3fa85f64-5717-4562-b3fc-2c963f66afa6/", json={})
    assert unknown.status_code == 404
    no_body = api("PATCH", f"/api/flow/submit/{job.id}/")
    assert no_body.status_code == 422 and detail(no_body)[0]["loc"] == ["body"]
    not_object = api("PATCH", f"/api/flow/submit/job/{job.id}/", json=[1])
    assert not_object.status_code == 422 and detail(not_object)[0]["type"] == "dict_type"
    bad_id = api("PATCH", "/api/flow/submit/xyz/", json={})
    assert bad_id.status_code == 422 and detail(bad_id)[0]["loc"] == ["path", "job_id"]


# --- packages --------------------------------------------------------------------


def test_packages(api: Api) -> None:
    names = api("GET", "/api/package/")
    assert names.status_code == 200 and names.json() == ["sim-team", "rival-team"]
    package = api("GET", "/api/package/rival-team/")
    assert package.status_code == 200
    assert int(package.headers["Content-Length"]) == len(package.content)
    plain = io.BytesIO()
    decrypt_stream(io.BytesIO(package.content), plain, api.sim.engine.package_key("rival-team"))
    with zipfile.ZipFile(plain) as archive:
        assert "hsm.bin" in archive.namelist()
    assert api("GET", "/api/package/nobody/").status_code == 404
    assert api("GET", "/api/package/rival-team", allow_redirects=False).status_code == 307


def test_packages_and_steal_need_the_attack_phase(sim: Simulator) -> None:
    sim.stop()
    quick = start(
        """
teams:
  - {name: builder, token: b-token}
  - {name: target, token: t-token, attack_phase: true}
"""
    )
    try:
        api = Api(quick)
        assert api("GET", "/api/package/").status_code == 403
        assert api("GET", "/api/package/target/").status_code == 403
        steal = api("POST", "/api/flag/steal_design/target/", json="00")
        assert steal.status_code == 403 and detail(steal)
    finally:
        quick.stop()


# --- flags -----------------------------------------------------------------------


def test_team_photo_and_design_doc_flags(api: Api) -> None:
    photo = api("POST", "/api/flag/team_photo/", files={"team_photo": ("us.png", PNG)})
    assert photo.status_code == 200
    assert photo.json() == {"flag_hex": api.sim.engine.flag_hex("sim-team", "team_photo")}
    design = api("POST", "/api/flag/design_doc/", files={"design_doc": ("d.pdf", PDF)})
    assert design.status_code == 200
    assert design.json() == {"flag_hex": api.sim.engine.flag_hex("sim-team", "design_doc")}


@pytest.mark.parametrize(
    ("files", "loc", "fragment"),
    [
        ({"team_photo": ("us.png", PDF)}, ["body", "team_photo"], "not a PNG"),
        ({"photo": ("us.png", PNG)}, ["body", "team_photo"], "required"),
        ({"team_photo": (None, "text")}, ["body", "team_photo"], "UploadFile"),
    ],
)
def test_team_photo_validation(api: Api, files: Any, loc: list[str], fragment: str) -> None:
    reply = api("POST", "/api/flag/team_photo/", files=files)
    assert reply.status_code == 422
    assert detail(reply)[0]["loc"] == loc and fragment in detail(reply)[0]["msg"]


def test_design_doc_must_be_a_pdf(api: Api) -> None:
    reply = api("POST", "/api/flag/design_doc/", files={"design_doc": ("d.pdf", PNG)})
    assert reply.status_code == 422 and "not a PDF" in detail(reply)[0]["msg"]
    no_form = api("POST", "/api/flag/design_doc/", json={"design_doc": "x"})
    assert no_form.status_code == 422 and detail(no_form)[0]["type"] == "missing"


def test_malformed_multipart_is_a_400(api: Api) -> None:
    reply = api(
        "POST",
        "/api/flag/team_photo/",
        data=b'--xyz\r\nContent-Disposition: form-data; name="team_photo"\r\n\r\nno end',
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert reply.status_code == 400 and detail(reply) == "There was an error parsing the body"


def test_uploads_over_the_limit_are_a_413(sim: Simulator) -> None:
    sim.stop()
    small = start("upload_limit: 1KiB")
    try:
        api = Api(small)
        reply = api(
            "POST", "/api/flag/team_photo/", files={"team_photo": ("big.png", PNG + b"\x00" * 2048)}
        )
        assert reply.status_code == 413
        assert reply.headers.get("Connection") == "close"
        chunked = api(
            "POST",
            "/api/flag/team_photo/",
            data=iter([b"a" * 700, b"b" * 700]),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert chunked.status_code == 413
        fits = api("POST", "/api/flag/team_photo/", files={"team_photo": ("ok.png", PNG)})
        assert fits.status_code == 200
    finally:
        small.stop()


def test_steal_design(api: Api) -> None:
    digest = api.sim.engine.steal_digest("rival-team")
    good = api("POST", "/api/flag/steal_design/rival-team/", json=digest)
    assert good.status_code == 200
    assert good.json() == {
        "flag_hex": api.sim.engine.flag_hex("sim-team", "steal_design_rival-team")
    }
    wrong = api("POST", "/api/flag/steal_design/rival-team/", json="00" * 32)
    assert wrong.status_code == 400
    unknown = api("POST", "/api/flag/steal_design/nobody/", json=digest)
    assert unknown.status_code == 404
    not_string = api("POST", "/api/flag/steal_design/rival-team/", json={"digest": digest})
    assert not_string.status_code == 422 and detail(not_string)[0]["type"] == "string_type"
    missing = api("POST", "/api/flag/steal_design/rival-team/")
    assert missing.status_code == 422 and detail(missing)[0]["type"] == "missing"


# --- authentication and routing --------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", "Basic c2ltLXRva2Vu", "Bearer", "sim-token"]
)
def test_bad_credentials_are_a_401(sim: Simulator, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in (
        ("GET", "/api/flow/test/"),
        ("GET", "/api/package/"),
        ("POST", "/api/flow/test/"),
    ):
        reply = requests.request(
            method,
            sim.url + path,
            headers=headers,
            timeout=5,
            json={"git_url": GIT, "commit_hash": "a"},
        )
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert isinstance(detail(reply), str)
    assert sim.engine.flows() == []
    assert all(r.team is None for r in sim.requests)


def test_each_team_has_its_own_token(sim: Simulator) -> None:
    rival = Api(sim, "rival-token")
    rival.queue()
    assert [f.team for f in sim.engine.flows()] == ["rival-team"]
    assert sim.requests[-1].team == "rival-team"


def test_unknown_paths_and_methods(api: Api) -> None:
    for path in ("/", "/api/", "/api/flow/", "/docs", "/api/flag/team_photo/extra/"):
        reply = api("GET", path)
        assert reply.status_code == 404 and detail(reply) == "Not Found", path
    wrong = api("DELETE", "/api/flow/test/")
    assert wrong.status_code == 405 and detail(wrong) == "Method Not Allowed"
    assert wrong.headers["Allow"] == "GET, POST"
    head = api("HEAD", "/api/package/")
    assert head.status_code == 405 and head.content == b""


def test_token_override_and_records(sim: Simulator) -> None:
    sim.stop()
    custom = Simulator(token="my-own-token").start()
    try:
        assert custom.token == "my-own-token"
        assert custom.url.startswith("http://127.0.0.1:")
        reply = requests.get(
            custom.url + "/api/flow/test/?num=3",
            timeout=5,
            headers={"Authorization": "Bearer my-own-token"},
        )
        assert reply.status_code == 200
        [record] = custom.requests
        assert (record.method, record.path, record.query, record.status, record.team) == (
            "GET",
            "/api/flow/test/",
            "num=3",
            200,
            "sim-team",
        )
        assert "my-own-token" not in repr(custom.scenario) + repr(record)
        custom.clear_requests()
        assert custom.requests == []
    finally:
        custom.stop()


# --- downloads -------------------------------------------------------------------


BIG = """
time_scale: 0.001
flows:
  clone:
    jobs:
      - name: pull-repo
        artifacts:
          - {name: big.bin, kind: random, size: 6MiB}
          - {name: zeros.bin, kind: zeros, size: 20MiB}
          - {name: "many/file_{i}.txt", kind: text, size: 64, count: 2000}
"""

SMALL = """
time_scale: 0.001
flows:
  clone:
    jobs:
      - name: pull-repo
        artifacts:
          - {name: data.bin, kind: random, size: 256KiB}
"""

STREAM = """
time_scale: 0.001
flows:
  clone:
    jobs:
      - name: pull-repo
        artifacts:
          - {name: zeros.bin, kind: zeros, size: 24MiB, compress: false}
"""


def test_big_artifacts_and_many_files_stream_intact() -> None:
    with start(BIG) as sim:
        api = Api(sim)
        flow_id = api.queue("clone")
        job = sim.engine.wait_completed(flow_id, 5).job("pull-repo")
        reply = api("GET", f"/api/flow/clone/job/{job.id}/", stream=True)
        assert reply.status_code == 200
        data = b"".join(reply.iter_content(256 * 1024))
        assert len(data) == int(reply.headers["Content-Length"]) > 6 * 1024 * 1024
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            assert len(names) == 2002
            assert archive.getinfo("big.bin").file_size == 6 * 1024 * 1024
            assert archive.getinfo("zeros.bin").compress_size < 1024 * 1024  # compressible
            assert len(archive.read("many/file_1999.txt")) == 64


def test_ranges_only_when_the_scenario_allows_them() -> None:
    with start(SMALL) as plain:
        api = Api(plain)
        job = plain.engine.wait_completed(api.queue("clone"), 5).job("pull-repo")
        whole = api("GET", f"/api/flow/clone/job/{job.id}/", headers={"Range": "bytes=10-"})
        assert whole.status_code == 200 and "Accept-Ranges" not in whole.headers
    with start(SMALL + "downloads: {ranges: true}\n") as ranged:
        api = Api(ranged)
        job = ranged.engine.wait_completed(api.queue("clone"), 5).job("pull-repo")
        url = f"/api/flow/clone/job/{job.id}/"
        full = api("GET", url).content
        part = api("GET", url, headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == full[100:]
        assert part.headers["Content-Range"] == f"bytes 100-{len(full) - 1}/{len(full)}"
        tail = api("GET", url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == full[-10:]
        beyond = api("GET", url, headers={"Range": f"bytes={len(full)}-"})
        assert beyond.status_code == 416


def test_stop_is_prompt_with_open_connections() -> None:
    sim = start(STREAM)
    api = Api(sim)
    job = sim.engine.wait_completed(api.queue("clone"), 5).job("pull-repo")
    idle = socket.create_connection(("127.0.0.1", sim.port))  # a keep-alive client, silent
    reply = api("GET", f"/api/flow/clone/job/{job.id}/", stream=True)
    reply.raw.read(1024)  # a download in progress, not read further
    began = time.monotonic()
    sim.stop()
    assert time.monotonic() - began < 2.0
    alive = [t for t in threading.enumerate() if t.name.startswith("ectf-sim")]
    assert alive == []
    idle.close()
    reply.close()


def test_many_simulators_start_and_stop_quickly() -> None:
    began = time.monotonic()
    for _ in range(10):
        with Simulator(default_scenario()) as sim:
            assert requests.get(sim.url + "/api/package/", timeout=5).status_code == 401
    assert time.monotonic() - began < 5.0
