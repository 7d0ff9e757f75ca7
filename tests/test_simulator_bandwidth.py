"""`downloads.bandwidth_mbps`: each download's connection held to a rate, as over the internet.

The HTTP tests assert only lower bounds: a paced download cannot finish before its
bytes were due, but a busy machine may always make it later.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from ectf_action.simulator import ScenarioError, Simulator, load_scenario
from ectf_action.simulator.server import PACED_CATCH_UP_SECONDS, SEND_CHUNK, Pacer

RATE_MBPS = 2.0
PACED = f"""
time_scale: 0.001
downloads: {{bandwidth_mbps: {RATE_MBPS}}}
teams:
  - name: sim-team
    token: sim-token
    attack_phase: true
    package: {{artifacts: [{{name: package.bin, kind: random, size: 300KB}}]}}
flows:
  clone:
    jobs:
      - name: pull-repo
        artifacts: [{{name: data.bin, kind: random, size: 1.2MB}}]
"""
GIT = "ssh://git@github.com/team/design.git"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the scenario key ----------------------------------------------------------------


def test_bandwidth_is_read_in_megabytes_a_second_and_unlimited_by_default() -> None:
    assert load_scenario("seed: 1").download_bandwidth_mbps == 0.0
    scenario = load_scenario("downloads: {bandwidth_mbps: 20}")
    assert scenario.download_bandwidth_mbps == 20.0
    assert scenario.ranges is False  # the other download key keeps its default
    assert load_scenario("downloads: {bandwidth_mbps: 2.5}").download_bandwidth_mbps == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("downloads: {bandwidth_mbps: -1}", "downloads.bandwidth_mbps: must be a number >= 0"),
        ("downloads: {bandwidth_mbps: fast}", "downloads.bandwidth_mbps: expected a number"),
        ("downloads: {bandwidth_mbps: true}", "downloads.bandwidth_mbps: expected a number"),
        ("downloads: {bandwidth_mbps: .inf}", "downloads.bandwidth_mbps: must be a number >= 0"),
        ("downloads: {bandwidth: 20}", "downloads.bandwidth: unknown key"),
    ],
)
def test_a_bad_bandwidth_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load_scenario(text)
    assert message in str(error.value)


# --- the pacing schedule ---------------------------------------------------------------


def test_each_chunk_leaves_when_the_bytes_before_it_were_due() -> None:
    clock = FakeClock()
    pacer = Pacer(1000.0, clock)
    assert pacer.delay(500) == 0.0  # the first chunk goes at once
    clock.now += 0.1
    assert pacer.delay(500) == pytest.approx(0.4)
    clock.now += 0.4
    assert pacer.delay(250) == pytest.approx(0.5)


def test_a_chunk_sent_a_little_late_is_made_up_by_the_next_ones() -> None:
    clock = FakeClock()
    pacer = Pacer(1000.0, clock)
    pacer.delay(500)
    clock.now += 0.52  # the sleep overslept by 20 ms
    assert pacer.delay(500) == 0.0
    clock.now += 0.47
    assert pacer.delay(500) == pytest.approx(0.01)  # still due at 1.0 s, as scheduled


def test_time_lost_to_a_stall_is_not_made_up_with_a_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(1000.0, clock)
    pacer.delay(500)
    clock.now += 3.0  # the reader stalled long after the next chunk was due
    assert pacer.delay(500) == 0.0
    # Only the small allowance for lateness is made up; the rate holds from here on.
    assert pacer.delay(500) == pytest.approx(0.5 - PACED_CATCH_UP_SECONDS)
    assert pacer.delay(500) == pytest.approx(1.0 - PACED_CATCH_UP_SECONDS)


def test_unlimited_never_waits_and_sends_full_chunks() -> None:
    clock = FakeClock()
    pacer = Pacer(0.0, clock)
    assert [pacer.delay(SEND_CHUNK) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.chunk_size == SEND_CHUNK


def test_chunks_shrink_at_low_rates_so_pacing_stays_smooth() -> None:
    assert Pacer(25_000_000.0).chunk_size == SEND_CHUNK
    assert Pacer(1_000_000.0).chunk_size == 20_000  # 20 ms of the rate
    assert Pacer(10_000.0).chunk_size == 4096  # never smaller than 4 KiB


# --- over HTTP -----------------------------------------------------------------------


def timed_download(url: str, token: str) -> tuple[bytes, float]:
    began = time.monotonic()
    reply = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    elapsed = time.monotonic() - began
    assert reply.status_code == 200, reply.text
    assert len(reply.content) == int(reply.headers["Content-Length"])
    return reply.content, elapsed


def earliest_finish(size: int) -> float:
    """The last chunk of *size* bytes may leave only when all bytes before it were due."""
    rate = RATE_MBPS * 1_000_000
    return (size - Pacer(rate).chunk_size) / rate


def test_a_job_output_and_a_package_arrive_no_faster_than_the_rate() -> None:
    with Simulator(load_scenario(PACED)) as sim:
        flow_id = sim.engine.queue_flow(
            sim.scenario.default, "clone", {"git_url": GIT, "commit_hash": "abc1234"}
        )
        job = sim.engine.wait_completed(flow_id, 5).job("pull-repo")
        zip_path = sim.engine.artifact_path(job.id, timeout=10)
        assert zip_path is not None

        output, seconds = timed_download(f"{sim.url}/api/flow/clone/job/{job.id}/", sim.token)
        assert output == zip_path.read_bytes()
        assert len(output) > 1_200_000
        assert seconds >= 0.9 * earliest_finish(len(output))  # about 0.58 s

        package, seconds = timed_download(f"{sim.url}/api/package/sim-team/", sim.token)
        assert len(package) > 300_000
        assert seconds >= 0.9 * earliest_finish(len(package))  # about 0.13 s


def test_stop_is_prompt_while_a_slow_download_waits_for_its_next_chunk() -> None:
    with Simulator(load_scenario(PACED.replace(f"{RATE_MBPS}", "0.01"))) as sim:
        flow_id = sim.engine.queue_flow(
            sim.scenario.default, "clone", {"git_url": GIT, "commit_hash": "abc1234"}
        )
        job = sim.engine.wait_completed(flow_id, 5).job("pull-repo")
        assert sim.engine.artifact_path(job.id, timeout=10) is not None
        reply = requests.get(
            f"{sim.url}/api/flow/clone/job/{job.id}/",
            headers={"Authorization": f"Bearer {sim.token}"},
            stream=True,
            timeout=10,
        )
        reply.raw.read(1024)  # a download of two minutes has begun
        began = time.monotonic()
        sim.stop()
        assert time.monotonic() - began < 2.0
        assert [t for t in threading.enumerate() if t.name.startswith("ectf-sim")] == []
        reply.close()
