"""Faults that change a reply's shape: each kind over real HTTP, the validation of its
keys, and repeatability for a seed. None of them changes the simulated server's state."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ectf_action.simulator import FlowSnapshot, ScenarioError, Simulator, load_scenario
from ectf_action.simulator.faults import Mangle, mangle_document

GIT = "ssh://git@github.com/team/design.git"
ONE_BIG_ARTIFACT = (
    "flows:\n  clone:\n    jobs:\n      - name: pull-repo\n        artifacts:\n"
    "          - {name: a.bin, kind: random, size: 256KiB}\n"
)


def serve(faults: str, extra: str = "", seed: int = 11) -> Simulator:
    text = f"time_scale: 0.001\nseed: {seed}\n{extra}\nfaults:\n{faults}"
    return Simulator(load_scenario(text)).start()


def headers(sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.token}"}


def get(sim: Simulator, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(sim.url + path, headers=headers(sim), timeout=5, **kwargs)


def queue(sim: Simulator, flow: str = "test", commit: str = "abc") -> str:
    reply = requests.post(
        f"{sim.url}/api/flow/{flow}/",
        headers=headers(sim),
        timeout=5,
        json={"git_url": GIT, "commit_hash": commit},
    )
    assert reply.status_code == 201, reply.text
    flow_id = reply.json()
    assert isinstance(flow_id, str)
    return flow_id


def snapshot(sim: Simulator, flow_id: str) -> FlowSnapshot:
    """The engine's own view of a flow, which faults never change."""
    found = sim.engine.flow(flow_id)
    assert found is not None
    return found


@pytest.fixture
def stopper() -> Iterator[list[Simulator]]:
    started: list[Simulator] = []
    yield started
    for sim in started:
        sim.stop()


# --- html and not_json -------------------------------------------------------------


def test_html_answers_with_a_proxy_page_and_the_chosen_status(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: html, statuses: [502, 504], path: '^/api/package/'}\n")
    stopper.append(sim)
    replies = [get(sim, "/api/package/") for _ in range(20)]
    assert {r.status_code for r in replies} == {502, 504}
    for reply in replies:
        assert reply.headers["Content-Type"] == "text/html"
        assert reply.text.startswith("<html>")
        assert f"<title>{reply.status_code} " in reply.text
    assert get(sim, "/api/flow/test/").status_code == 200  # outside the rule's path
    assert {r.fault for r in sim.requests[:20]} == {"html:502", "html:504"}


def test_html_defaults_to_502_and_may_use_any_status(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: html, limit: 1}\n  - {kind: html, statuses: [200], skip: 1}\n")
    stopper.append(sim)
    first, second = get(sim, "/api/package/"), get(sim, "/api/package/")
    assert first.status_code == 502 and "502 Bad Gateway" in first.text
    assert second.status_code == 200 and "<title>200 OK</title>" in second.text


def test_not_json_is_a_200_in_plain_text(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: not_json, limit: 1}\n")
    stopper.append(sim)
    reply = get(sim, "/api/flow/test/")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain"
    assert reply.text.startswith("upstream connect error")
    with pytest.raises(ValueError):
        reply.json()
    assert get(sim, "/api/flow/test/").json() == []
    assert [r.fault for r in sim.requests] == ["not_json", None]


def test_a_replaced_reply_still_leaves_the_work_undone(stopper: list[Simulator]) -> None:
    """Like `error`, `html` and `not_json` answer before the request is carried out."""
    sim = serve("  - {kind: not_json, methods: [POST], limit: 1}\n")
    stopper.append(sim)
    lost = requests.post(
        f"{sim.url}/api/flow/test/",
        headers=headers(sim),
        timeout=5,
        json={"git_url": GIT, "commit_hash": "abc"},
    )
    assert lost.status_code == 200 and sim.engine.flows() == []
    queue(sim)
    assert len(sim.engine.flows()) == 1


# --- mangle ------------------------------------------------------------------------


def test_mangle_drops_and_adds_fields_on_the_list_and_the_details(
    stopper: list[Simulator],
) -> None:
    sim = serve(
        "  - kind: mangle\n"
        "    drop_fields: [completed, has_artifacts]\n"
        "    extra_fields: {runner: r7, meta: {zone: b}}\n"
    )
    stopper.append(sim)
    flow_id = queue(sim)
    sim.engine.wait_completed(flow_id, 5)
    details = get(sim, f"/api/flow/test/{flow_id}/").json()
    (listed,) = get(sim, "/api/flow/test/").json()
    for document in (details, listed):
        assert "completed" not in document
        assert document["runner"] == "r7" and document["meta"] == {"zone": "b"}
        for job in document["jobs"]:
            assert "has_artifacts" not in job
            assert job["runner"] == "r7"
            assert job["status"] == "succeeded"
    # Only what is sent changes: the engine's flow is whole.
    kept = snapshot(sim, flow_id)
    assert kept.completed and all(job.has_artifacts for job in kept.jobs)
    faults = [r.fault for r in sim.requests]
    assert faults == [None, "mangle", "mangle"]  # the POST has no flow document


def test_mangle_unknown_status_changes_only_unfinished_jobs(stopper: list[Simulator]) -> None:
    sim = serve(
        "  - {kind: mangle, unknown_status: warming-up}\n",
        extra="outcomes:\n  - {commit_prefix: abc, hang: build}\n",
    )
    stopper.append(sim)
    flow_id = queue(sim)
    sim.engine.wait_for_job(flow_id, "pull-repo", "succeeded", 5)
    jobs = {j["name"]: j["status"] for j in get(sim, f"/api/flow/test/{flow_id}/").json()["jobs"]}
    assert jobs["pull-repo"] == "succeeded"
    assert jobs["build"] == "warming-up"
    assert snapshot(sim, flow_id).job("build").status == "running"


@pytest.mark.parametrize("flag", [True, False])
def test_mangle_completed_overrides_the_flag(stopper: list[Simulator], flag: bool) -> None:
    sim = serve(
        f"  - {{kind: mangle, completed: {str(flag).lower()}}}\n",
        extra="outcomes:\n  - {commit_prefix: abc, hang: build}\n",
    )
    stopper.append(sim)
    flow_id = queue(sim)
    assert get(sim, f"/api/flow/test/{flow_id}/").json()["completed"] is flag
    assert snapshot(sim, flow_id).completed is False


def test_mangle_leaves_errors_and_other_routes_alone(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: mangle, extra_fields: {x: 1}, path: '.'}\n")
    stopper.append(sim)
    missing = get(sim, "/api/flow/test/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404 and missing.json() == {"detail": "Flow not found"}
    assert isinstance(get(sim, "/api/package/").json(), list)
    assert [r.fault for r in sim.requests] == [None, None]


def test_mangle_document_is_a_copy() -> None:
    flow = {"id": "f", "completed": False, "jobs": [{"id": "j", "status": "queued"}]}
    changed = mangle_document(
        flow, [Mangle(drop_fields=("id",), unknown_status="odd", completed=True)]
    )
    assert changed == {"completed": True, "jobs": [{"status": "odd"}]}
    assert flow == {"id": "f", "completed": False, "jobs": [{"id": "j", "status": "queued"}]}


# --- vanish ------------------------------------------------------------------------


def test_vanish_answers_404_after_skip_and_keeps_the_flow(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: vanish, skip: 2}\n")
    stopper.append(sim)
    flow_id = queue(sim)
    path = f"/api/flow/test/{flow_id}/"
    statuses = [get(sim, path).status_code for _ in range(4)]
    assert statuses == [200, 200, 404, 404]
    assert get(sim, path).json() == {"detail": "Flow not found"}
    assert get(sim, "/api/flow/test/").status_code == 200  # the list is not its path
    assert snapshot(sim, flow_id).id == flow_id
    assert [r.fault for r in sim.requests if r.path == path] == [None, None] + ["vanish"] * 3


def test_vanish_on_a_job_route_says_job(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: vanish, path: '/job/'}\n")
    stopper.append(sim)
    flow_id = queue(sim, "clone")
    job = sim.engine.wait_completed(flow_id, 5).job("pull-repo")
    reply = get(sim, f"/api/flow/clone/job/{job.id}/")
    assert reply.status_code == 404 and reply.json() == {"detail": "Job not found"}


# --- stall -------------------------------------------------------------------------


def download_url(sim: Simulator) -> str:
    flow_id = queue(sim, "clone")
    job = sim.engine.wait_completed(flow_id, 5).job("pull-repo")
    return f"{sim.url}/api/flow/clone/job/{job.id}/"


def read_with_gap(reply: requests.Response) -> tuple[bytes, float]:
    """The body, and the longest wait between two chunks."""
    received = bytearray()
    longest, last = 0.0, time.monotonic()
    for chunk in reply.iter_content(4096):
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        received += chunk
    return bytes(received), longest


def test_stall_then_continue_delivers_the_whole_body_late(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: stall, seconds: 0.4, fraction: 0.25, limit: 1}\n", ONE_BIG_ARTIFACT)
    stopper.append(sim)
    url = download_url(sim)
    reply = requests.get(url, headers=headers(sim), timeout=5, stream=True)
    assert reply.status_code == 200
    body, gap = read_with_gap(reply)
    assert len(body) == int(reply.headers["Content-Length"])
    assert 0.35 <= gap < 2.0
    _, quick = read_with_gap(requests.get(url, headers=headers(sim), timeout=5, stream=True))
    assert quick < 0.3
    assert [r.fault for r in sim.requests if "/job/" in r.path] == ["stall", None]


def test_stall_then_close_breaks_the_download(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: stall, seconds: 0.1, fraction: 0.5, then: close}\n", ONE_BIG_ARTIFACT)
    stopper.append(sim)
    reply = requests.get(download_url(sim), headers=headers(sim), timeout=5, stream=True)
    expected = int(reply.headers["Content-Length"])
    assert reply.headers["Connection"] == "close"
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in reply.iter_content(4096):
            received += chunk
    assert expected // 4 < len(received) <= expected // 2


def test_a_stall_longer_than_the_read_timeout_times_the_client_out(
    stopper: list[Simulator],
) -> None:
    sim = serve("  - {kind: stall, seconds: 3, fraction: 0.1}\n", ONE_BIG_ARTIFACT)
    stopper.append(sim)
    reply = requests.get(download_url(sim), headers=headers(sim), timeout=(5, 0.2), stream=True)
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        for _ in reply.iter_content(4096):
            pass
    assert time.monotonic() - began < 1.5


def test_stall_applies_only_to_file_downloads(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: stall, seconds: 2}\n")
    stopper.append(sim)
    began = time.monotonic()
    assert get(sim, "/api/flow/test/").json() == []
    assert time.monotonic() - began < 1.0
    assert sim.requests[0].fault is None


# --- hang and echo -----------------------------------------------------------------


def test_hang_takes_the_request_and_never_answers_nor_acts(stopper: list[Simulator]) -> None:
    """A read timeout is what a client meets; the queue request made no flow; once the
    hang ends the connection closes without a reply, recorded with no status."""
    sim = serve("  - {kind: hang, methods: [POST], seconds: 0.6}\n")
    stopper.append(sim)
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{sim.url}/api/flow/test/", headers=headers(sim), timeout=(5, 0.2),
                      json={"git_url": GIT, "commit_hash": "abc"})  # fmt: skip
    assert time.monotonic() - began < 1.0
    assert sim.engine.flows() == []
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{sim.url}/api/flow/test/", headers=headers(sim), timeout=5,
                      json={"git_url": GIT, "commit_hash": "abc"})  # fmt: skip
    assert sim.engine.flows() == []
    assert [(r.status, r.fault) for r in sim.requests] == [(None, "hang"), (None, "hang")]
    assert get(sim, "/api/flow/test/").json() == []  # only POST hangs


def test_a_hanging_request_is_let_go_when_the_simulator_stops() -> None:
    sim = serve("  - {kind: hang}\n")
    failures: list[BaseException] = []

    def call() -> None:
        try:
            get(sim, "/api/flow/test/")
        except requests.exceptions.RequestException as exc:
            failures.append(exc)

    waiting = threading.Thread(target=call)
    waiting.start()
    time.sleep(0.2)
    began = time.monotonic()
    sim.stop()
    waiting.join(5)
    assert not waiting.is_alive() and failures
    assert time.monotonic() - began < 3


def test_echo_quotes_the_callers_token_in_job_names_and_error_details(
    stopper: list[Simulator],
) -> None:
    sim = serve("  - {kind: echo}\n")
    stopper.append(sim)
    flow_id = queue(sim)
    listed = get(sim, "/api/flow/test/").json()
    details = get(sim, f"/api/flow/test/{flow_id}/").json()
    missing = get(sim, "/api/flow/test/00000000-0000-4000-8000-000000000000/").json()
    suffix = f" (token {sim.token})"
    assert listed[0]["jobs"] and all(j["name"].endswith(suffix) for j in listed[0]["jobs"])
    assert all(job["name"].endswith(suffix) for job in details["jobs"])
    assert missing == {"detail": f"Flow not found{suffix}"}
    assert [job.name for job in snapshot(sim, flow_id).jobs] == [
        job["name"].removesuffix(suffix) for job in details["jobs"]
    ]  # the engine's own names are unchanged


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{kind: melt}", "faults[0].kind: 'melt' is not one of"),
        ("{kind: mangle}", "faults[0]: a `mangle` rule needs drop_fields"),
        ("{kind: mangle, drop_fields: [1]}", "faults[0].drop_fields[0]: expected a non-empty"),
        ("{kind: mangle, extra_fields: [a]}", "faults[0].extra_fields: expected a mapping"),
        ("{kind: mangle, completed: yes please}", "faults[0].completed: expected true or false"),
        ("{kind: mangle, unknown_status: ' '}", "faults[0].unknown_status: must not be empty"),
        ("{kind: html, drop_fields: [x]}", "faults[0].drop_fields: only a `mangle` rule"),
        ("{kind: error, seconds: 2}", "faults[0].seconds: only a `stall` or `hang` rule"),
        ("{kind: stall, then: wait}", "faults[0].then: 'wait' is not one of: continue, close"),
        ("{kind: stall, seconds: -1}", "faults[0].seconds: must be a number >= 0"),
        ("{kind: stall, fraction: 2}", "faults[0].fraction: must be a number in [0, 1]"),
        ("{kind: vanish, phase: after}", "faults[0].phase: only an `error` or `drop` rule"),
        ("{kind: not_json, statuses: [502]}", "faults[0].statuses: only an `error`"),
        ("{kind: html, statuses: [99]}", "faults[0].statuses[0]: expected a status code"),
    ],
)
def test_bad_rules_name_the_key(rule: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(f"faults:\n  - {rule}\n")
    assert message in str(caught.value)


# --- repeatability -----------------------------------------------------------------


def test_a_seeded_run_of_shape_faults_repeats(stopper: list[Simulator]) -> None:
    faults = (
        "  - {kind: html, rate: 0.3, statuses: [502, 503]}\n"
        "  - {kind: not_json, rate: 0.2}\n"
        "  - {kind: mangle, rate: 0.4, path: '^/api/flow/test/$', extra_fields: {x: 1}}\n"
    )
    runs = []
    for _ in range(2):
        sim = serve(faults, seed=5)
        stopper.append(sim)
        runs.append(
            [(r.status_code, r.text) for r in (get(sim, "/api/flow/test/") for _ in range(40))]
        )
    assert runs[0] == runs[1]
    statuses = {status for status, _ in runs[0]}
    assert {200, 502, 503} <= statuses
    texts = {text for status, text in runs[0] if status == 200}
    assert {"[]"} < texts  # some plain lists, some not JSON


# --- jobs added mid-run ------------------------------------------------------------


def test_a_job_that_appears_after_a_while_is_listed_and_started_then(
    stopper: list[Simulator],
) -> None:
    text = (
        "time_scale: 0.02\n"
        "flows:\n  test:\n    jobs:\n"
        "      - {name: early, duration: 1}\n"
        "      - {name: late, duration: 1, appears_after: 20, artifacts: [{name: late.log}]}\n"
    )
    sim = Simulator(load_scenario(text)).start()
    stopper.append(sim)
    flow_id = queue(sim)
    path = f"/api/flow/test/{flow_id}/"
    first = get(sim, path).json()
    assert [job["name"] for job in first["jobs"]] == ["early"]
    assert not first["completed"]
    (listed,) = get(sim, "/api/flow/test/").json()
    assert [job["name"] for job in listed["jobs"]] == ["early"]
    sim.engine.wait_for_job(flow_id, "early", "succeeded", 5)
    assert snapshot(sim, flow_id).job("late").status == "queued"  # not started before it appears
    sim.engine.wait_completed(flow_id, 5)
    jobs = {job["name"]: job for job in get(sim, path).json()["jobs"]}
    assert list(jobs) == ["early", "late"]
    assert jobs["late"]["status"] == "succeeded" and jobs["late"]["has_artifacts"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "must be a number >= 0"), ("soon", "expected a number, got a string")],
)
def test_a_bad_appears_after_names_the_key(value: str, message: str) -> None:
    text = f"flows:\n  test:\n    jobs:\n      - {{name: a, appears_after: {value}}}\n"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(text)
    assert "flows.test.jobs[0].appears_after: " + message in str(caught.value)
