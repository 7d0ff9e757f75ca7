"""The runner's side of the workflow shapes, over the scripted fake server of
test_runner.py: when it decides to leave a flow running it says so at once (before
collecting downloads and before the reports), and only then."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ectf_action.clock import FakeClock
from ectf_action.results import RunStatus
from ectf_action.runner import Runner
from test_runner import FakeJob, FakeServer, clock, make_settings, sample_jobs, server

__all__ = ["clock", "server"]  # the fixtures of test_runner.py, shared

LEFT = "<left running: {}>"


def events_of_a_run(
    tmp_path: Path, server: FakeServer, clock: FakeClock, **inputs: str
) -> list[str]:
    """The live log, with the moment the runner declared the flow left running."""
    events: list[str] = []
    runner = Runner(
        make_settings(tmp_path, **inputs),
        server,
        clock=clock,
        cancel=threading.Event(),
        log=events.append,
        on_left_running=lambda status: events.append(LEFT.format(status)),
    )
    outcome = runner.run()
    events.append(f"<status {outcome.result.status.value}>")
    return events


def approval_jobs() -> list[FakeJob]:
    jobs = sample_jobs()
    jobs.append(FakeJob("team_approval", [(60, "pending")]))
    return jobs


def test_wait_false_declares_the_flow_left_before_its_last_line(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    events = events_of_a_run(tmp_path, server, clock, wait="false")
    (flow_id,) = server.flows
    assert events[-3:] == [
        LEFT.format("queued"),
        f"[ 0m00s] test flow {flow_id}: queued",
        "<status queued>",
    ]
    assert server.count("download_job_output") == 0
    assert server.count("cancel_flow") == 0


def test_a_pending_exit_declares_the_flow_left_before_the_run_ends(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = approval_jobs()
    events = events_of_a_run(tmp_path, server, clock)
    (flow_id,) = server.flows
    left = events.index(LEFT.format("pending"))
    assert left < events.index(f"[ 1m00s] test flow {flow_id}: pending")
    assert events[-1] == "<status pending>"
    assert server.count("cancel_flow") == 0


def test_an_attached_flow_is_followed_without_a_list_or_a_queue_request(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    flow = server.add_flow("", sample_jobs())
    events = events_of_a_run(tmp_path, server, clock, **{"flow-id": flow.id, "commit": ""})
    assert events[-1] == "<status succeeded>"
    assert {call[0] for call in server.calls} == {"get_flow", "download_job_output"}
    assert not [event for event in events if event.startswith("<left")]


@pytest.mark.parametrize(
    ("inputs", "status"),
    [
        ({}, RunStatus.SUCCEEDED),
        ({"timeout-minutes": "0.5"}, RunStatus.TIMED_OUT),  # cancelled by the run itself
        ({"on-pending": "fail"}, RunStatus.PENDING),  # cancelled by the run itself
    ],
)
def test_other_ends_declare_nothing(
    tmp_path: Path, server: FakeServer, clock: FakeClock, inputs: dict[str, str], status: RunStatus
) -> None:
    if "on-pending" in inputs:
        server.next_jobs = approval_jobs()
    events = events_of_a_run(tmp_path, server, clock, **inputs)
    assert events[-1] == f"<status {status.value}>"
    assert not [event for event in events if event.startswith("<left")]
