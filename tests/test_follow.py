"""Following a flow: the adaptive schedule, deadlines, cancel and passing errors."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from ectf_action.clock import FakeClock
from ectf_action.errors import InvalidInput, NotFound, ServerError, TransportError
from ectf_action.follow import AUTO_SETTLED, PollSchedule, follow_flow
from ectf_action.models import Flow, Job, JobStatus

FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def make_flow(*statuses: str, completed: bool = False) -> Flow:
    jobs = tuple(
        Job(id=f"job-{i}", name=f"job{i}", status=JobStatus.parse(s), raw_status=s)
        for i, s in enumerate(statuses)
    )
    return Flow(id=FLOW_ID, name="test", completed=completed, jobs=jobs)


class ScriptedServer:
    """Answers each poll with the flow due at the clock's current time."""

    def __init__(self, clock: FakeClock, timeline: Iterable[tuple[float, Flow | Exception]]):
        self.clock = clock
        self.timeline = sorted(timeline, key=lambda item: item[0])
        self.start = clock.now()
        self.times: list[float] = []

    @property
    def calls(self) -> int:
        return len(self.times)

    def get_flow(self, flow: str, flow_id: str) -> Flow:
        elapsed = self.clock.now() - self.start
        self.times.append(elapsed)
        current = [item for t, item in self.timeline if t <= elapsed][-1]
        if isinstance(current, Exception):
            raise current
        return current


def test_parse_schedule() -> None:
    assert PollSchedule.parse("auto").is_auto
    assert PollSchedule.parse(" 15 ").fixed == 15.0
    for bad in ("0", "-3", "fast", "nan", "99999"):
        with pytest.raises(InvalidInput, match="poll-interval"):
            PollSchedule.parse(bad)


def test_auto_schedule_starts_fast_and_settles_at_ten_seconds() -> None:
    schedule = PollSchedule()
    assert schedule.delay(0) < schedule.delay(30) < schedule.delay(120) == AUTO_SETTLED
    assert all(schedule.delay(t) <= 10 for t in range(0, 3600, 7))


@pytest.mark.parametrize("minutes", [1, 5, 20, 60])
def test_auto_polling_cost_and_delay_to_notice(minutes: int) -> None:
    clock = FakeClock()
    end = minutes * 60.0
    server = ScriptedServer(clock, [(0, make_flow("running")), (end, make_flow("succeeded"))])
    result = follow_flow(server, "test", FLOW_ID, clock=clock, schedule=PollSchedule())
    assert result.reason == "finished"
    noticed = clock.now() - server.start - end
    assert 0 <= noticed <= 10
    polls_after_first_minute = [t for t in server.times if t > 60]
    # at most one status request per 10 s on average after the first minute
    assert len(polls_after_first_minute) <= (end - 60) / 10 + 1


def test_changes_are_reported_once_each() -> None:
    clock = FakeClock()
    timeline = [
        (0, make_flow("queued", "queued")),
        (5, make_flow("running", "queued")),
        (9, make_flow("succeeded", "running")),
        (30, make_flow("succeeded", "failed", completed=True)),
    ]
    server = ScriptedServer(clock, timeline)
    seen: list[tuple[str, str | None, str]] = []

    def on_update(flow: Flow, changes: list) -> None:  # type: ignore[type-arg]
        seen.extend(
            (c.job.name, c.previous and c.previous.value, c.job.status.value) for c in changes
        )

    result = follow_flow(
        server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(2), on_update=on_update
    )
    assert result.reason == "finished"
    assert seen == [
        ("job0", None, "queued"),
        ("job1", None, "queued"),
        ("job0", "queued", "running"),
        ("job0", "running", "succeeded"),
        ("job1", "queued", "running"),
        ("job1", "running", "failed"),
    ]
    assert set(result.finished_at) == {"job-0", "job-1"}


def test_deadline_is_exact_and_one_last_look_is_taken() -> None:
    clock = FakeClock()
    server = ScriptedServer(clock, [(0, make_flow("running"))])
    start = clock.now()
    result = follow_flow(
        server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(7), deadline=start + 20
    )
    assert result.reason == "timed-out"
    assert clock.now() == start + 20
    assert clock.waits == [7, 7, 6]


def test_flow_finishing_at_the_deadline_is_not_timed_out() -> None:
    clock = FakeClock()
    server = ScriptedServer(clock, [(0, make_flow("running")), (20, make_flow("succeeded"))])
    result = follow_flow(
        server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(7), deadline=clock.now() + 20
    )
    assert result.reason == "finished"


def test_on_update_can_stop_following() -> None:
    clock = FakeClock()
    server = ScriptedServer(clock, [(0, make_flow("pending"))])
    result = follow_flow(
        server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(), on_update=lambda f, c: True
    )
    assert result.reason == "stopped" and server.calls == 1


def test_cancel_stops_at_once() -> None:
    clock = FakeClock()
    cancel = threading.Event()
    server = ScriptedServer(clock, [(0, make_flow("running"))])

    def on_update(flow: Flow, changes: list) -> None:  # type: ignore[type-arg]
        cancel.set()

    result = follow_flow(
        server,
        "test",
        FLOW_ID,
        clock=clock,
        schedule=PollSchedule(),
        cancel=cancel,
        on_update=on_update,
    )
    assert result.reason == "canceled" and server.calls == 1


def test_passing_errors_are_tolerated() -> None:
    clock = FakeClock()
    boom = TransportError("unreachable")
    server = ScriptedServer(
        clock,
        [(0, make_flow("running")), (3, boom), (10, make_flow("succeeded"))],
    )
    result = follow_flow(server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(2))
    assert result.reason == "finished"


def test_persistent_errors_propagate() -> None:
    clock = FakeClock()
    server = ScriptedServer(clock, [(0, ServerError("GET", "u", 503, "down"))])
    with pytest.raises(ServerError):
        follow_flow(
            server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(1), tolerated_errors=3
        )
    assert server.calls == 4


def test_a_vanished_flow_propagates_at_once() -> None:
    clock = FakeClock()
    server = ScriptedServer(
        clock, [(0, make_flow("running")), (5, NotFound("GET", "u", 404, "gone"))]
    )
    with pytest.raises(NotFound):
        follow_flow(server, "test", FLOW_ID, clock=clock, schedule=PollSchedule(2))
