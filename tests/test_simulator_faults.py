"""Fault injection: each kind over real HTTP, restrictions, and repeatability for a seed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from ectf_action.simulator import FaultInjector, FaultRule, Simulator, load_scenario

GIT = "ssh://git@github.com/team/design.git"


def serve(faults: str, extra: str = "") -> Simulator:
    text = f"time_scale: 0.001\nseed: 11\n{extra}\nfaults:\n{faults}"
    return Simulator(load_scenario(text)).start()


def get(sim: Simulator, path: str = "/api/flow/test/", **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sim.token}"}
    return requests.get(sim.url + path, headers=headers, timeout=5, **kwargs)


@pytest.fixture
def stopper() -> Iterator[list[Simulator]]:
    started: list[Simulator] = []
    yield started
    for sim in started:
        sim.stop()


# --- the injector alone ----------------------------------------------------------


def rule(**kwargs: Any) -> FaultRule:
    kwargs.setdefault("kind", "error")
    return FaultRule(**kwargs)


def labels(
    injector: FaultInjector, count: int, method: str = "GET", path: str = "/x/"
) -> list[str]:
    return [injector.decide(method, path).label or "-" for _ in range(count)]


def test_rate_zero_never_fires_and_rate_one_always_does() -> None:
    assert set(labels(FaultInjector([rule(rate=0.0)], 1), 200)) == {"-"}
    assert set(labels(FaultInjector([rule(rate=1.0)], 1), 20)) == {"error:500"}


def test_a_rate_fires_about_that_often() -> None:
    fired = labels(FaultInjector([rule(rate=0.25)], 3), 2000).count("error:500")
    assert 400 < fired < 600


def test_skip_and_limit() -> None:
    injector = FaultInjector([rule(skip=2, limit=3)], 0)
    assert labels(injector, 7) == ["-", "-", "error:500", "error:500", "error:500", "-", "-"]


def test_method_and_path_restrictions() -> None:
    injector = FaultInjector(
        [rule(methods=frozenset({"GET"}), path=re.compile(r"/job/[^/]+/$"))], 0
    )
    assert injector.decide("GET", "/api/flow/test/job/abc/").label == "error:500"
    assert injector.decide("POST", "/api/flow/test/job/abc/").label is None
    assert injector.decide("GET", "/api/flow/test/abc/").label is None


def test_statuses_are_drawn_from_the_list() -> None:
    injector = FaultInjector([rule(statuses=(500, 502, 503, 504))], 5)
    seen = {injector.decide("GET", "/").before.status for _ in range(200)}  # type: ignore[union-attr]
    assert seen == {500, 502, 503, 504}


def test_same_seed_same_faults_and_rules_are_independent() -> None:
    rules = [rule(rate=0.3, statuses=(502, 503)), rule(kind="latency", rate=0.5, max_seconds=1.0)]
    one = FaultInjector(rules, 42)
    two = FaultInjector(rules, 42)
    sequence_one = [one.decide("GET", "/") for _ in range(300)]
    assert sequence_one == [two.decide("GET", "/") for _ in range(300)]
    other_seed = FaultInjector(rules, 43)
    assert sequence_one != [other_seed.decide("GET", "/") for _ in range(300)]
    # Adding a rule in front leaves what the others decide unchanged.
    alone = FaultInjector(rules[:1], 42)
    with_more = FaultInjector([rules[0], rule(kind="truncate", rate=0.5)], 42)
    errors_alone = [alone.decide("GET", "/").before for _ in range(300)]
    errors_more = [with_more.decide("GET", "/").before for _ in range(300)]
    assert errors_alone == errors_more


def test_one_replacing_fault_per_phase() -> None:
    injector = FaultInjector([rule(statuses=(502,)), rule(kind="drop"), rule(phase="after")], 0)
    decision = injector.decide("GET", "/")
    assert decision.before is not None and decision.before.status == 502
    assert decision.after is not None and decision.after.kind == "error"
    assert decision.label == "error:502,error:500"


# --- over HTTP -------------------------------------------------------------------


def test_error_statuses_and_their_bodies(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: error, rate: 1, statuses: [500, 502, 503, 504]}\n")
    stopper.append(sim)
    replies = [get(sim) for _ in range(40)]
    assert {r.status_code for r in replies} == {500, 502, 503, 504}
    for reply in replies:
        if reply.status_code == 500:
            assert reply.text == "Internal Server Error"
            assert reply.headers["Content-Type"].startswith("text/plain")
        else:
            assert f"<title>{reply.status_code} " in reply.text
            assert reply.headers["Content-Type"] == "text/html"
    assert [r.fault for r in sim.requests] == [f"error:{r.status_code}" for r in replies]


def test_an_error_fault_happens_before_the_work(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: error, methods: [POST], statuses: [503], limit: 1}\n")
    stopper.append(sim)
    body = {"git_url": GIT, "commit_hash": "abc"}
    headers = {"Authorization": f"Bearer {sim.token}"}
    first = requests.post(f"{sim.url}/api/flow/test/", json=body, headers=headers, timeout=5)
    assert first.status_code == 503 and sim.engine.flows() == []
    second = requests.post(f"{sim.url}/api/flow/test/", json=body, headers=headers, timeout=5)
    assert second.status_code == 201 and len(sim.engine.flows()) == 1


def test_an_after_fault_loses_the_reply_of_work_done(stopper: list[Simulator]) -> None:
    sim = serve(
        "  - {kind: error, methods: [POST], statuses: [502], phase: after, limit: 1}\n",
        extra="outcomes:\n  - {commit_prefix: abc, hang: build}\n",  # stays active
    )
    stopper.append(sim)
    body = {"git_url": GIT, "commit_hash": "abc"}
    headers = {"Authorization": f"Bearer {sim.token}"}
    lost = requests.post(f"{sim.url}/api/flow/test/", json=body, headers=headers, timeout=5)
    assert lost.status_code == 502
    assert len(sim.engine.flows()) == 1  # queued all the same
    retry = requests.post(f"{sim.url}/api/flow/test/", json=body, headers=headers, timeout=5)
    assert retry.status_code == 409


def test_rate_limit_with_retry_after(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: rate_limit, retry_after: 2.5, limit: 1}\n")
    stopper.append(sim)
    limited = get(sim)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json() == {"detail": "Too Many Requests"}
    assert get(sim).status_code == 200
    assert [r.fault for r in sim.requests] == ["rate_limit", None]


def test_dropped_connection(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: drop, path: '^/api/package/', limit: 1}\n")
    stopper.append(sim)
    with pytest.raises(requests.ConnectionError):
        get(sim, "/api/package/")
    assert get(sim, "/api/package/").status_code == 200
    assert get(sim).status_code == 200
    dropped = sim.requests[0]
    assert dropped.status is None and dropped.fault == "drop" and dropped.path == "/api/package/"


def test_latency(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: latency, min: 0.15, max: 0.25}\n")
    stopper.append(sim)
    began = time.monotonic()
    assert get(sim).status_code == 200
    elapsed = time.monotonic() - began
    assert 0.15 <= elapsed < 1.0
    assert sim.requests[0].fault == "latency" and sim.requests[0].seconds >= 0.15


def test_truncated_download(stopper: list[Simulator]) -> None:
    sim = serve(
        "  - {kind: truncate, path: '/job/', fraction: 0.25, limit: 1}\n",
        extra="flows:\n  clone:\n    jobs:\n      - name: pull-repo\n        artifacts:\n"
        "          - {name: a.bin, kind: random, size: 300KiB}\n",
    )
    stopper.append(sim)
    headers = {"Authorization": f"Bearer {sim.token}"}
    queued = requests.post(
        f"{sim.url}/api/flow/clone/",
        headers=headers,
        timeout=5,
        json={"git_url": GIT, "commit_hash": "abc"},
    )
    job = sim.engine.wait_completed(queued.json(), 5).job("pull-repo")
    url = f"{sim.url}/api/flow/clone/job/{job.id}/"
    reply = requests.get(url, headers=headers, timeout=5, stream=True)
    assert reply.status_code == 200
    expected = int(reply.headers["Content-Length"])
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in reply.iter_content(8192):
            received += chunk
    assert 0 < len(received) <= expected // 4 + 1
    whole = requests.get(url, headers=headers, timeout=5)  # only the first was truncated
    assert len(whole.content) == expected
    assert [r.fault for r in sim.requests if "/job/" in r.path] == ["truncate", None]


def test_truncation_skips_replies_without_a_body(stopper: list[Simulator]) -> None:
    sim = serve("  - {kind: truncate}\n")
    stopper.append(sim)
    reply = requests.get(f"{sim.url}/api/flow/test", timeout=5, allow_redirects=False)
    assert reply.status_code == 307
    assert sim.requests[0].fault is None


def test_a_seeded_run_repeats(stopper: list[Simulator]) -> None:
    faults = (
        "  - {kind: error, rate: 0.3, statuses: [500, 503]}\n"
        "  - {kind: rate_limit, rate: 0.2, retry_after: 0}\n"
    )
    runs = []
    for _ in range(2):
        sim = serve(faults)
        stopper.append(sim)
        runs.append([get(sim).status_code for _ in range(40)])
    assert runs[0] == runs[1]
    assert {200, 429} <= set(runs[0]) and ({500, 503} & set(runs[0]))
