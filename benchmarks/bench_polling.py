"""Polling cost: status requests made while following a flow, and how long after the
flow ends the end is noticed, for `poll-interval: auto` against fixed 1 s and 30 s
pollers.

The real `follow.follow_flow` and `PollSchedule` are driven by a fake clock (waits
return at once and move time forward), so a 60-minute flow takes milliseconds and the
counts are exact rather than sampled. The flow is a stand-in for the server's reply:
its jobs run until their end time, then succeed. Each flow length is followed with the
flow ending at many points spread over 30 s (the phase against the poll ticks), and the
notice delay is given as median and worst over those.

    python benchmarks/bench_polling.py            # 60 phases per flow length
    python benchmarks/bench_polling.py --quick    # 5 phases, for the smoke test
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import benchlib

from ectf_action.clock import FakeClock
from ectf_action.follow import AUTO_SETTLED, PollSchedule, follow_flow
from ectf_action.models import Flow, Job, JobStatus

FLOW_MINUTES = (1, 5, 20, 60)
POLLERS = ("auto", "1", "30")
PHASE_WINDOW = 30.0  # seconds over which the flow's end is moved
FIRST_MINUTE = 60.0
TARGET_SECONDS_PER_REQUEST = 10.0  # after the first minute, on average
TARGET_NOTICE = 10.0
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
GOLDEN = 0.6180339887498949
JOB_NAMES = ("pull-repo", "build", "functional_test", "security_test")


class ScriptedFlow:
    """Answers `get_flow` like the server: jobs run one after another over the flow's
    length and all have succeeded from `ends_at` on. Remembers when each request came."""

    def __init__(self, clock: FakeClock, starts_at: float, ends_at: float) -> None:
        self.clock = clock
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.request_times: list[float] = []

    def get_flow(self, flow: str, flow_id: str) -> Flow:
        now = self.clock.now()
        self.request_times.append(now)
        share = (self.ends_at - self.starts_at) / len(JOB_NAMES)
        jobs = []
        for index, name in enumerate(JOB_NAMES):
            job_end = self.starts_at + share * (index + 1)
            if now >= job_end or now >= self.ends_at:
                status = JobStatus.SUCCEEDED
            elif now >= job_end - share:
                status = JobStatus.RUNNING
            else:
                status = JobStatus.QUEUED
            jobs.append(Job(id=f"job-{index}", name=name, status=status, has_artifacts=True))
        finished = all(j.status.finished for j in jobs)
        return Flow(id=flow_id, name=flow, completed=finished, jobs=tuple(jobs))


@dataclass(frozen=True)
class Followed:
    requests: int
    requests_after_first_minute: int
    notice_delay: float
    noticed_at: float  # seconds after the flow was queued


def follow_once(schedule: PollSchedule, length: float) -> Followed:
    clock = FakeClock(start=1000.0)
    start = clock.now()
    server = ScriptedFlow(clock, start, start + length)
    result = follow_flow(server, "test", FLOW_ID, clock=clock, schedule=schedule, started=start)
    if result.reason != "finished":
        raise RuntimeError(f"following ended {result.reason}, not finished")
    noticed = clock.now() - start
    late = sum(1 for t in server.request_times if t - start > FIRST_MINUTE)
    return Followed(len(server.request_times), late, noticed - length, noticed)


@dataclass(frozen=True)
class Row:
    minutes: float
    poller: str
    requests: float
    seconds_per_request_after_first_minute: float | None
    notice_median: float
    notice_worst: float


def measure(minutes: float, poller: str, phases: int) -> Row:
    schedule = PollSchedule.parse(poller)
    runs = []
    for index in range(phases):
        # Golden-ratio steps spread the ends evenly without lining up with the ticks.
        offset = (index * GOLDEN) % 1.0
        length = minutes * 60.0 + PHASE_WINDOW * (offset - 0.5)
        runs.append(follow_once(schedule, max(1.0, length)))
    after: float | None = None
    late_requests = sum(r.requests_after_first_minute for r in runs)
    if minutes * 60.0 > FIRST_MINUTE + PHASE_WINDOW and late_requests:
        late_seconds = sum(r.noticed_at - FIRST_MINUTE for r in runs)
        after = late_seconds / late_requests
    delays = [r.notice_delay for r in runs]
    return Row(
        minutes,
        poller,
        benchlib.median([float(r.requests) for r in runs]),
        after,
        benchlib.median(delays),
        max(delays),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = benchlib.parser(__doc__.splitlines()[0], repeats=60).parse_args(argv)
    phases = 5 if options.quick else max(1, options.repeats)
    command = "python benchmarks/bench_polling.py" + (" --quick" if options.quick else "")
    print(benchlib.header("Polling cost", command))
    print(
        f"fake clock driving follow.follow_flow; {phases} end phases over "
        f"{PHASE_WINDOW:g} s per flow length\n"
    )
    rows = [measure(m, p, phases) for m in FLOW_MINUTES for p in POLLERS]
    by_key = {(r.minutes, r.poller): r for r in rows}
    table_rows: list[list[object]] = []
    for row in rows:
        auto = by_key[(row.minutes, "auto")]
        ratio = "-" if row.poller == "auto" else f"{row.requests / auto.requests:.2f}x"
        every = (
            "-"
            if row.seconds_per_request_after_first_minute is None
            else f"{row.seconds_per_request_after_first_minute:.1f}"
        )
        table_rows.append(
            [
                f"{row.minutes:g} min",
                "auto" if row.poller == "auto" else f"fixed {row.poller} s",
                f"{row.requests:.0f}",
                ratio,
                every,
                f"{row.notice_median:.1f}",
                f"{row.notice_worst:.1f}",
            ]
        )
    print(
        benchlib.table(
            [
                "flow",
                "poller",
                "status requests (median)",
                "vs auto",
                "s per request after 1st min",
                "notice delay median (s)",
                "notice delay worst (s)",
            ],
            table_rows,
        )
    )

    autos = [r for r in rows if r.poller == "auto"]
    spacing = [
        r.seconds_per_request_after_first_minute
        for r in autos
        if r.seconds_per_request_after_first_minute is not None
    ]
    worst_notice = max(r.notice_worst for r in autos)
    slow_enough = all(s >= TARGET_SECONDS_PER_REQUEST - 1e-9 for s in spacing)
    quick_enough = worst_notice <= TARGET_NOTICE + 1e-9
    print(f"\nauto settles at one request per {AUTO_SETTLED:g} s.")
    print(
        f"target at most one request per {TARGET_SECONDS_PER_REQUEST:g} s after the first "
        f"minute: {'met' if slow_enough else 'NOT met'} "
        f"(closest: one per {min(spacing, default=float('nan')):.1f} s)"
    )
    print(
        f"target completion noticed within {TARGET_NOTICE:g} s: "
        f"{'met' if quick_enough else 'NOT met'} (worst {worst_notice:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
