"""`timeout-minutes` is a bound, and a signal always works: the real entry point
(`python -m ectf_action run`) against a server that takes requests and never answers,
a download that stalls after the flow ended, and signals in the phases the cancel suite
(tests/test_hardening_cancel.py) does not reach: the very first request, and a queue
request on its way to a server that stopped answering.

Each claim is about seconds of wall time, so the runs are real and slow; they are all
started together the first time a test asks for one (`slow_runs`), so their seconds
overlap, and each is killed past a generous limit, so a run that is not bounded fails
in seconds instead of hanging the suite.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import ActionEnv, Completed, SecretScanner, distinctive_token, make_scenario
from ectf_action.simulator import Scenario, Simulator
from hardening_support import (
    FLOW_ID,
    FakeServer,
    Reply,
    Request,
    ScriptedApi,
    assert_no_leak,
    finish_within,
    flow_doc,
    launch_within,
    reap_runs,
    run_within,
)

pytestmark = pytest.mark.e2e

# What the client promises (client.py): a request no signal or deadline ends is said in
# the live log after this long, and the last words after the deadline get this grace.
SLOW_REQUEST_SECONDS = 10.0
GRACE_SECONDS = 15.0
QUEUE_PATIENCE_SECONDS = 1.5
LAST_WORD_SECONDS = 3.0
SIGNAL_WITHIN = 5.0
LIST_PATH = r"^/api/flow/test/$"


@dataclass
class Timed:
    """A finished run: its streams, its seconds (from its start, or from the first
    signal), its environment, and what the server saw."""

    done: Completed
    seconds: float
    environment: ActionEnv
    facts: dict[str, Any] = field(default_factory=dict)


def scenario(token: str, *faults: dict[str, Any], jobs: list[Any] | None = None) -> Scenario:
    data: dict[str, Any] = {"faults": list(faults)}
    if jobs is not None:
        data["flows"] = {"test": {"jobs": jobs}}
    return Scenario.from_dict(data, base=make_scenario()).with_token(token)


def environment_for(root: Path, url: str, token: str, **inputs: str) -> ActionEnv:
    environment = ActionEnv(root, token, url, SecretScanner())
    environment.set_inputs(**inputs)
    return environment


def checked(timed: Timed) -> Timed:
    """*timed*, once the token is found nowhere the run wrote."""
    environment = timed.environment
    assert environment.scanner is not None
    assert_no_leak(environment.scanner, environment.root, environment.token)
    return timed


def only_error(done: Completed) -> str:
    errors = done.commands("error")
    assert len(errors) == 1, done.stdout
    return errors[0]


def live_lines(done: Completed) -> list[str]:
    """The live log's own lines (`[ 0m05s] ...`), without the job logs."""
    return [line for line in done.stdout.splitlines() if re.match(r"\[ *\d+m\d\ds\] ", line)]


# -- the runs ------------------------------------------------------------------------------


def silent_server(minutes: str, limit: float) -> Callable[[Path], Timed]:
    """Every request is taken and never answered."""

    def run(root: Path) -> Timed:
        token = distinctive_token()
        with Simulator(scenario(token, {"kind": "hang"})) as simulator:
            environment = environment_for(
                root, simulator.url, token, **{"timeout-minutes": minutes}
            )
            done, seconds = run_within(environment, limit=limit)
        return checked(Timed(done, seconds, environment))

    return run


def busy_list_request(root: Path) -> Timed:
    """The first list request gets a 503, the rest are answered."""
    token = distinctive_token()
    fault = {"kind": "error", "statuses": [503], "methods": ["GET"], "path": LIST_PATH}
    with Simulator(scenario(token, {**fault, "limit": 1})) as simulator:
        environment = environment_for(root, simulator.url, token)
        done, seconds = run_within(environment, limit=30)
    return checked(Timed(done, seconds, environment))


STALL_MINUTES = 0.1


def stalled_download(root: Path) -> Timed:
    """The flow ends at once; its one download sends 30 % of the zip, then nothing for
    600 s."""
    token = distinctive_token()
    jobs = [
        {
            "name": "build",
            "duration": 1,
            "artifacts": [
                {"name": "build.log", "kind": "log"},
                {"name": "hsm.bin", "kind": "random", "size": "256KiB"},
            ],
        }
    ]
    stall = {"kind": "stall", "fraction": 0.3, "seconds": 600}
    with Simulator(scenario(token, stall, jobs=jobs)) as simulator:
        environment = environment_for(
            root, simulator.url, token, **{"timeout-minutes": str(STALL_MINUTES)}
        )
        done, seconds = run_within(environment, limit=STALL_MINUTES * 60 + GRACE_SECONDS + 10)
        (flow,) = simulator.engine.flows(team=simulator.team, flow_name="test")
        (job,) = flow.jobs
        size = simulator.engine.artifact_path(job.id).stat().st_size
    return checked(Timed(done, seconds, environment, {"zip size": size}))


def signalled_in_the_first_request(root: Path) -> Timed:
    """The list request that starts every run is never answered; one SIGINT."""
    token = distinctive_token()
    with Simulator(hanging_list(token)) as simulator:
        environment = environment_for(root, simulator.url, token)
        live = launch_within(environment)
        live.wait_for("eCTF test flow for commit")
        time.sleep(0.5)  # the list request is on its way
        signalled = time.monotonic()
        live.process.send_signal(signal.SIGINT)
        done = finish_within(live, limit=30)
        seconds = time.monotonic() - signalled
        posts = [r for r in simulator.requests if r.method == "POST"]
    return checked(Timed(done, seconds, environment, {"posts": posts}))


def hanging_list(token: str) -> Scenario:
    return scenario(token, {"kind": "hang", "methods": ["GET"], "path": LIST_PATH})


class QueueThenSilence:
    """The scripted API whose queue request makes the flow, then never answers (its
    headers go out, its body never does); with *silent_after_queue* the server answers
    nothing at all once the flow is made, the last look for it included."""

    def __init__(self, token: str, *, silent_after_queue: bool) -> None:
        self.api = ScriptedApi(token, [flow_doc({"build": "running"})])
        self.silent_after_queue = silent_after_queue
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: Request) -> Reply:
        self.seen.append((request.method, request.path))
        if self.silent_after_queue and self.api.queued:
            return Reply(200, b"[]" * 1000, slow=600, chunk=1)
        reply = self.api(request)
        if request.method == "POST" and request.path == "/api/flow/test/":
            return Reply(201, json.dumps(FLOW_ID).encode(), slow=600, chunk=1)
        return reply


def queue_in_flight(*signals: int, silent_after_queue: bool) -> Callable[[Path], Timed]:
    """Run until the queue request is on its way, then send *signals* 0.3 s apart; the
    seconds are counted from the first signal to the exit."""

    def run(root: Path) -> Timed:
        token = distinctive_token()
        app = QueueThenSilence(token, silent_after_queue=silent_after_queue)
        with FakeServer(app) as server:
            environment = environment_for(root, server.url, token)
            live = launch_within(environment)
            deadline = time.monotonic() + 10
            while app.api.queued == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert app.api.queued == 1, live.lines
            time.sleep(0.2)
            signalled = time.monotonic()
            for number, signum in enumerate(signals):
                if number:
                    time.sleep(0.3)
                live.process.send_signal(signum)
            done = finish_within(live, limit=30)
            seconds = time.monotonic() - signalled
        facts = {"cancelled": app.api.cancelled.is_set(), "seen": app.seen}
        return checked(Timed(done, seconds, environment, facts))

    return run


RUNS: dict[str, Callable[[Path], Timed]] = {
    "silent, 0.05 min": silent_server("0.05", limit=30),
    "silent, 0.2 min": silent_server("0.2", limit=12 + GRACE_SECONDS + 5),
    "busy list": busy_list_request,
    "stalled download": stalled_download,
    "first request, SIGINT": signalled_in_the_first_request,
    "queue unanswered, SIGTERM": queue_in_flight(signal.SIGTERM, silent_after_queue=False),
    "server silent, SIGTERM": queue_in_flight(signal.SIGTERM, silent_after_queue=True),
    "server silent, SIGINT SIGTERM": queue_in_flight(
        signal.SIGINT, signal.SIGTERM, silent_after_queue=True
    ),
}


class SlowRuns:
    """The module's runs, all started at the first request for one; `[name]` waits for
    that one (and raises what failed in it)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._pool = ThreadPoolExecutor(len(RUNS), thread_name_prefix="slow-run")
        self._futures: dict[str, Future[Timed]] = {}

    def __getitem__(self, name: str) -> Timed:
        if not self._futures:
            for number, (key, run) in enumerate(RUNS.items()):
                self._futures[key] = self._pool.submit(run, self._root / f"run{number}")
        return self._futures[name].result()

    def close(self) -> None:
        reap_runs()
        self._pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowRuns]:
    runs = SlowRuns(tmp_path_factory.mktemp("bounds"))
    yield runs
    runs.close()


# -- a server that never answers -----------------------------------------------------------


def test_a_server_that_never_answers_ends_the_run_soon_after_timeout_minutes(
    slow_runs: SlowRuns,
) -> None:
    """At timeout-minutes 0.05 (3 s) the run ends in well under 3 s + the grace, with one
    error that names the deadline."""
    ran = slow_runs["silent, 0.05 min"]
    assert ran.seconds < 12, f"the run took {ran.seconds:.1f} s"
    assert ran.done.returncode in (1, 3), ran.done.stdout + ran.done.stderr
    error = only_error(ran.done)
    assert "timeout-minutes" in error, error
    assert ran.environment.outputs()["status"] in ("error", "timed-out")
    assert "Traceback" not in ran.done.stderr


def test_a_request_without_a_reply_for_10_s_is_said_in_the_live_log(slow_runs: SlowRuns) -> None:
    """With more time (0.2 min) the silent server is said while the run waits: a person
    watching tells "the server does not answer" from "the flow is still running"."""
    ran = slow_runs["silent, 0.2 min"]
    waiting = [line for line in live_lines(ran.done) if "still waiting for the testing" in line]
    assert waiting, ran.done.stdout
    assert "/api/flow/test/" in waiting[0] and "no reply for 10 s" in waiting[0], waiting
    assert waiting[0].startswith("[ 0m10s]"), waiting
    assert ran.seconds < 12 + GRACE_SECONDS, f"the run took {ran.seconds:.1f} s"
    error = only_error(ran.done)
    assert "timeout-minutes" in error, error
    assert re.search(r"\(read timeout=\d+\.\d\)", error), error  # not 11.99994...


def test_a_retried_request_says_what_failed_the_attempt_and_when(slow_runs: SlowRuns) -> None:
    """The live log says the 503, the attempt and the wait before the next one, and the
    run then goes on to succeed."""
    ran = slow_runs["busy list"]
    assert ran.done.returncode == 0, ran.done.stdout + ran.done.stderr
    retries = [line for line in live_lines(ran.done) if "trying again" in line]
    assert len(retries) == 1, live_lines(ran.done)
    expected = r"GET \S+/api/flow/test/\S* -> 503\b.*; trying again \(2/6\) in \d+ s$"
    assert re.search(expected, retries[0]), retries


# -- a download that stalls after the flow ended ---------------------------------------------


def test_a_download_that_stalls_is_bounded_and_counts_the_bytes_that_arrived(
    slow_runs: SlowRuns,
) -> None:
    """At timeout-minutes 0.1 (6 s) the step ends within 6 s + the grace, and the warning
    counts the bytes that really arrived (30 % of the zip), and the one try it made."""
    ran = slow_runs["stalled download"]
    assert ran.seconds < STALL_MINUTES * 60 + GRACE_SECONDS, f"the run took {ran.seconds:.1f} s"
    assert ran.done.returncode == 0, ran.done.stdout + ran.done.stderr  # the flow succeeded
    warnings = [line for line in ran.done.commands("warning") if "title=eCTF job build" in line]
    assert warnings, ran.done.stdout
    counts = [int(n.replace(",", "")) for n in re.findall(r"after ([\d,]+) bytes", warnings[0])]
    assert counts == [int(ran.facts["zip size"] * 0.3)], warnings[0]
    assert "tried 6 times" not in warnings[0], warnings[0]
    jobs_output = json.loads(ran.environment.outputs()["jobs"])
    assert jobs_output[0]["artifacts_dir"] is None


# -- signals in the first request ----------------------------------------------------------


def test_a_signal_during_the_first_request_ends_the_run_within_5_s(slow_runs: SlowRuns) -> None:
    """SIGINT while the never-answered list request is on its way: the run ends within
    5 s, nothing queued, exit 130."""
    ran = slow_runs["first request, SIGINT"]
    assert ran.seconds < SIGNAL_WITHIN, f"exited {ran.seconds:.1f} s after the signal"
    assert ran.done.returncode == 130, ran.done.stdout + ran.done.stderr
    assert ran.facts["posts"] == []
    error = only_error(ran.done)
    assert "nothing was left running" in error and "(received SIGINT)" in error, error
    assert ran.environment.outputs()["status"] == "canceled"


def test_a_burst_of_signals_during_the_first_request_ends_the_run_at_once_with_its_reports(
    tmp_path: Path,
) -> None:
    """A person hammering Ctrl-C, and the runner's SIGTERM: SIGINT and SIGTERM in turn
    every 2 ms from the moment the never-answered list request is on its way, three runs
    over. Each ends at once, and still with every report (the outputs, the one error):
    the signals after the second must not break the ending they ask for, nor, once the
    reports are written, the exit (a KeyboardInterrupt traceback, another exit code)."""
    token = distinctive_token()
    with Simulator(hanging_list(token)) as simulator:
        for attempt in range(3):
            environment = environment_for(tmp_path / str(attempt), simulator.url, token)
            live = launch_within(environment)
            live.wait_for("eCTF test flow for commit")
            time.sleep(0.3)  # the list request is on its way
            signalled = time.monotonic()
            sent = 0
            while live.process.poll() is None and time.monotonic() - signalled < 2:
                live.process.send_signal((signal.SIGINT, signal.SIGTERM)[sent % 2])
                sent += 1
                time.sleep(0.002)
            done = finish_within(live, limit=30)
            seconds = time.monotonic() - signalled
            checked(Timed(done, seconds, environment))
            assert seconds < 2.0, f"exited {seconds:.1f} s after the first signal"
            assert done.returncode == 130, done.stdout + done.stderr
            assert "Traceback" not in done.stderr
            assert "The run was interrupted" in only_error(done)
            assert environment.outputs()["status"] == "canceled"


# -- signals while the queue request is on its way to a server that stopped answering ------


def test_a_signal_while_the_queue_request_goes_unanswered_cancels_the_flow_it_made(
    slow_runs: SlowRuns,
) -> None:
    """The queue request made the flow, and its reply never comes. SIGTERM: the run
    waits a little for the reply, then looks once for the flow and cancels it."""
    ran = slow_runs["queue unanswered, SIGTERM"]
    assert ran.seconds < SIGNAL_WITHIN + 1, f"exited {ran.seconds:.1f} s after the signal"
    assert ran.done.returncode == 143, ran.done.stdout + ran.done.stderr
    assert ran.facts["cancelled"]
    assert ran.facts["seen"].count(("GET", "/api/flow/test/")) == 2  # before, and once after
    error = only_error(ran.done)
    assert FLOW_ID in error and "cancelled on the server" in error, error
    assert ran.environment.state()["flow_id"] == FLOW_ID


def test_a_signal_while_the_server_stopped_answering_says_the_flow_may_exist(
    slow_runs: SlowRuns,
) -> None:
    """The queue request made the flow, then the server answers nothing, the last look
    included: the message says truthfully that a flow may have been made, and how to
    find it; the run ends within the 5 s a signal is given (the queue request awaited
    QUEUE_PATIENCE_SECONDS, the last look LAST_WORD_SECONDS)."""
    ran = slow_runs["server silent, SIGTERM"]
    assert QUEUE_PATIENCE_SECONDS + LAST_WORD_SECONDS < SIGNAL_WITHIN
    bound = SIGNAL_WITHIN + 1
    assert ran.seconds < bound, f"exited {ran.seconds:.1f} s after the signal"
    assert ran.done.returncode == 143, ran.done.stdout + ran.done.stderr
    error = only_error(ran.done)
    assert "nothing was left running" not in error, error
    assert "did not say whether it made it" in error and "flows list test" in error, error
    assert ran.environment.outputs()["status"] == "canceled"


def test_a_second_signal_while_the_queue_request_is_on_its_way_ends_the_run_at_once(
    slow_runs: SlowRuns,
) -> None:
    """SIGINT, then SIGTERM 0.3 s later, while the queue request waits for its reply:
    the run ends at once, without the last look, and says that the flow may exist."""
    ran = slow_runs["server silent, SIGINT SIGTERM"]
    assert ran.seconds < 0.3 + 1.5, f"exited {ran.seconds:.1f} s after the first signal"
    assert ran.done.returncode == 130, ran.done.stdout + ran.done.stderr
    assert "Traceback" not in ran.done.stderr
    error = only_error(ran.done)
    assert "nothing was left running" not in error, error
    assert "flows list test" in error, error
