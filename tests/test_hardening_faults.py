"""The fault matrix: the whole action, in this process, with a real client against the
simulator injecting faults (5xx, 429 with Retry-After, dropped connections, latency,
truncated bodies, replies lost after the work was done).

Each cell runs with several fault seeds against one fault-free reference run: a faulty
run must end the same way (exit code, outputs, the bytes extracted), with exactly one
flow queued, inside its timeout, and without the token anywhere. The scenario (and so
every id and artifact byte) is the same in all runs; a fault seed only changes which
requests the faults hit. The simulator draws each rule's faults from a stream chosen by
the scenario seed and the rule's position, so fault seed N puts N rules that match
nothing before the cell's own.

The runner's clock runs at `CLOCK_FACTOR` of real time, the simulator's jobs at
`TIME_SCALE`, and the client backs off in milliseconds, so a cell of three runs takes
about a second. `ECTF_FAULT_SEEDS=10` widens every cell (the default is 3).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ActionEnv, SecretScanner, distinctive_token
from ectf_action.simulator import RequestRecord, Scenario, Simulator, default_scenario
from hardening_support import (
    Ran,
    ScaledClock,
    assert_no_leak,
    fast_client_factory,
    leftovers,
    run_action,
    tree,
)

SEEDS = tuple(range(int(os.environ.get("ECTF_FAULT_SEEDS", "3"))))
SCENARIO_SEED = 2026
TIME_SCALE = 0.02  # the ~10 s test flow takes ~0.2 s
CLOCK_FACTOR = 0.01  # the runner's 2 s download backoff takes 20 ms
POLL_SECONDS = "0.5"  # 5 ms of real time: ~40 polls per run, so that faults meet requests
TIMEOUT_MINUTES = 30  # 1800 runner seconds: 18 s of real time
FIVE_XX = [500, 502, 503, 504]

# Cells whose few matching requests may all be spared by every seed. In the others,
# which requests a fault hits depends on the seed and on timing (how many polls a run
# makes), so one run may draw none; the seeds of a cell together always draw some.
SPARSE = frozenset(
    {
        "latency-up-to-2s",
        "lost-queue-replies",
        "rate-limit-retry-after",
        "truncated-downloads-10",
        "truncated-downloads-30",
    }
)

CELLS: dict[str, list[dict[str, Any]]] = {
    "errors-10": [{"kind": "error", "rate": 0.1, "statuses": FIVE_XX}],
    "errors-30": [{"kind": "error", "rate": 0.3, "statuses": FIVE_XX}],
    # Retry-After is whole seconds: a few honoured ones, then many of zero seconds.
    "rate-limit-retry-after": [{"kind": "rate_limit", "rate": 0.3, "retry_after": 1, "limit": 1}],
    "rate-limit-10": [{"kind": "rate_limit", "rate": 0.1, "retry_after": 0}],
    "rate-limit-30": [{"kind": "rate_limit", "rate": 0.3, "retry_after": 0}],
    "drops-10": [{"kind": "drop", "rate": 0.1}],
    "drops-30": [{"kind": "drop", "rate": 0.3}],
    "latency-up-to-2s": [{"kind": "latency", "rate": 0.05, "min": 0.2, "max": 2.0}],
    "truncated-downloads-10": [{"kind": "truncate", "rate": 0.1, "path": "/job/"}],
    "truncated-downloads-30": [{"kind": "truncate", "rate": 0.3, "path": "/job/"}],
    "truncated-replies-10": [{"kind": "truncate", "rate": 0.1, "methods": ["GET"]}],
    # The server queued the flow, then the reply was lost: never a second flow.
    "lost-queue-replies": [
        {
            "kind": "error",
            "rate": 0.5,
            "methods": ["POST"],
            "statuses": [502, 504],
            "phase": "after",
        },
        {"kind": "drop", "rate": 0.5, "methods": ["POST"], "phase": "after"},
    ],
    "everything-10": [
        {"kind": "error", "rate": 0.1, "statuses": FIVE_XX},
        {"kind": "rate_limit", "rate": 0.1, "retry_after": 0},
        {"kind": "drop", "rate": 0.1},
        {"kind": "latency", "rate": 0.03, "min": 0.1, "max": 1.0},
        {"kind": "truncate", "rate": 0.1, "methods": ["GET"]},
        {"kind": "error", "rate": 0.1, "methods": ["POST"], "statuses": [502], "phase": "after"},
    ],
}

LOG_TEXT = "step 1\nstep 2\nall good\n"


NO_MATCH = {"kind": "latency", "rate": 0.0, "path": "^$"}  # no path is empty: never drawn for


def matrix_scenario(fault_seed: int, faults: list[dict[str, Any]], token: str) -> Scenario:
    """A four-job test flow whose artifacts are the same bytes in every run (fixed text
    and seeded random data; no wall-clock timestamps), with *faults* drawn from the
    streams that *fault_seed* picks."""

    def job(name: str, needs: list[str], duration: float, *extra: dict[str, Any]) -> Any:
        files = [{"name": f"{name}.log", "text": f"{name}\n{LOG_TEXT}"}, *extra]
        return {"name": name, "needs": needs, "duration": duration, "artifacts": files}

    scenario = Scenario.from_dict(
        {
            "seed": SCENARIO_SEED,
            "time_scale": TIME_SCALE,
            "outcomes": [
                {"commit_prefix": "badc0de", "fail": ["build"]},
                {"commit_prefix": "deadbeef", "hang": ["build"]},
            ],
            "flows": {
                "test": {
                    "queue_delay": 0.5,
                    "jobs": [
                        job("pull-repo", [], 2),
                        job(
                            "build",
                            ["pull-repo"],
                            4,
                            {"name": "build/hsm.bin", "kind": "random", "size": "192KiB"},
                            {"name": "build/notes.txt", "text": "notes\n" * 500},
                        ),
                        job("test_functional", ["build"], 3),
                        job("test_security", ["build"], 3),
                    ],
                }
            },
            "faults": [NO_MATCH] * fault_seed + faults if faults else [],
        },
        base=default_scenario(),
    )
    return scenario.with_token(token)


@dataclass
class Outcome:
    code: int
    outputs: dict[str, str]
    files: dict[str, bytes]
    ran: Ran
    requests: list[RequestRecord]
    flows: int


def run_cell(root: Path, seed: int, faults: list[dict[str, Any]], commit: str | None) -> Outcome:
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(matrix_scenario(seed, faults, token)) as simulator:
        environment = ActionEnv(root, token, simulator.url, scanner)
        environment.set_inputs(
            **{"poll-interval": POLL_SECONDS, "timeout-minutes": str(TIMEOUT_MINUTES)}
        )
        if commit is not None:
            environment.set_inputs(commit=commit)
        ran = run_action(
            environment, client_factory=fast_client_factory(), clock=ScaledClock(CLOCK_FACTOR)
        )
        flows = len(simulator.engine.flows(team=simulator.team, flow_name="test"))
        requests = simulator.requests
    assert_no_leak(scanner, root, token)
    assert leftovers(environment.workspace, environment.runner_temp) == []
    return Outcome(
        ran.code,
        environment.outputs(),
        tree(environment.workspace / "ectf-artifacts"),
        ran,
        requests,
        flows,
    )


class Baselines:
    """The fault-free run of each commit, made once per module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str | None, Outcome] = {}

    def get(self, commit: str | None = None) -> Outcome:
        if commit not in self.runs:
            outcome = run_cell(self.root / (commit or "push"), 0, [], commit)
            assert outcome.code in (0, 1), outcome.ran.stdout
            assert all(r.fault is None for r in outcome.requests)
            self.runs[commit] = outcome
        return self.runs[commit]


INJECTED: Counter[str] = Counter()  # by fault kind
RUNS: Counter[str] = Counter()  # by cell
FIRED: Counter[str] = Counter()  # faults by cell


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baselines]:
    yield Baselines(tmp_path_factory.mktemp("baselines"))
    total = sum(INJECTED.values())
    print(f"\nfault matrix: {sum(RUNS.values())} runs, {total} faults injected: {dict(INJECTED)}")


def assert_same_as_baseline(run: Outcome, base: Outcome) -> None:
    context = run.ran.stdout + run.ran.stderr
    assert run.code == base.code, context
    assert run.outputs == base.outputs, context
    assert run.files.keys() == base.files.keys(), context
    assert run.files == base.files
    assert run.flows == 1, f"{run.flows} flows were queued"
    assert run.ran.commands("error") == base.ran.commands("error")
    assert "Traceback" not in context


def tally(cell: str, run: Outcome) -> int:
    fired = [r.fault for r in run.requests if r.fault]
    for label in fired:
        for part in label.split(","):
            INJECTED[part] += 1
    RUNS[cell] += 1
    FIRED[cell] += len(fired)
    return len(fired)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_faulty_server_gives_the_fault_free_result(
    tmp_path: Path, baselines: Baselines, cell: str, seed: int
) -> None:
    base = baselines.get()
    run = run_cell(tmp_path, seed, CELLS[cell], None)
    assert_same_as_baseline(run, base)
    assert run.ran.seconds < TIMEOUT_MINUTES * 60 * CLOCK_FACTOR
    tally(cell, run)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_failed_flow_stays_failed_through_faults(
    tmp_path: Path, baselines: Baselines, seed: int
) -> None:
    commit = "badc0de5e6f708192a3b4c5d6e7f8091a2b3c4d"
    base = baselines.get(commit)
    assert base.code == 1 and base.outputs["failed-jobs"] == "build"
    run = run_cell(tmp_path, seed, CELLS["everything-10"], commit)
    assert_same_as_baseline(run, base)
    tally("failed-flow", run)


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """Every 429 is followed by a pause of at least its Retry-After before the same
    request is sent again."""
    rules = [{"kind": "rate_limit", "rate": 1.0, "retry_after": 1, "limit": 3}]
    run = run_cell(tmp_path, 0, rules, None)
    assert run.code == 0, run.ran.stdout
    limited = [r for r in run.requests if r.status == 429]
    assert len(limited) == 3
    for record in limited:
        after = [
            r
            for r in run.requests
            if (r.method, r.path) == (record.method, record.path) and r.started > record.started
        ]
        assert after, f"{record.method} {record.path} was not tried again"
        pause = after[0].started - (record.started + record.seconds)
        assert pause >= 0.95, f"{record.method} {record.path} retried after {pause:.2f} s"
    tally("retry-after", run)


# -- the first requests to each endpoint fail, every way a request can ---------------------------

ENDPOINTS = {
    "list": ("GET", r"^/api/flow/test/$"),
    "queue": ("POST", r"^/api/flow/test/$"),
    "poll": ("GET", r"^/api/flow/test/[0-9a-f-]{36}/$"),
    "download": ("GET", r"/job/"),
}
KINDS: dict[str, dict[str, Any]] = {
    "503": {"kind": "error", "statuses": [503]},
    "429": {"kind": "rate_limit", "retry_after": 0},
    "drop": {"kind": "drop"},
    "truncate": {"kind": "truncate"},
    "502-after-the-work": {"kind": "error", "statuses": [502], "phase": "after"},
    "drop-after-the-work": {"kind": "drop", "phase": "after"},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_the_first_three_requests_to_an_endpoint_fail(
    tmp_path: Path, baselines: Baselines, endpoint: str, kind: str
) -> None:
    """Three in a row is more than one bad moment; still the same result. (A truncated
    reply is only a fault for a reply with a body: not a 429 or a 5xx.)"""
    method, path = ENDPOINTS[endpoint]
    rule = {**KINDS[kind], "methods": [method], "path": path, "rate": 1.0, "limit": 3}
    run = run_cell(tmp_path, 0, [rule], None)
    assert_same_as_baseline(run, baselines.get())
    fired = tally(f"first-three-{endpoint}", run)
    assert fired >= 1


def test_downloads_that_always_break_off_cost_the_artifacts_not_the_result(
    tmp_path: Path, baselines: Baselines
) -> None:
    rule = {"kind": "truncate", "path": "/job/", "fraction": 0.5}
    run = run_cell(tmp_path, 0, [rule], None)
    base = baselines.get()
    assert run.code == 0 and run.flows == 1
    assert run.outputs["status"] == "succeeded"
    assert run.outputs["flow-id"] == base.outputs["flow-id"]
    assert run.files == {}
    warnings = run.ran.commands("warning")
    assert len(warnings) == 4 and all("artifacts not downloaded" in w for w in warnings)
    assert "Traceback" not in run.ran.stderr
    tally("always-truncated", run)


def test_the_timeout_cancel_gets_through_faults(tmp_path: Path) -> None:
    """A flow that never ends is cancelled at the timeout even when the cancel request
    meets a 503 and then loses its reply: the team's slot is freed."""
    rules = [
        {"kind": "error", "methods": ["POST"], "path": "/cancel/$", "statuses": [503], "limit": 1},
        {
            "kind": "drop",
            "methods": ["POST"],
            "path": "/cancel/$",
            "phase": "after",
            "skip": 1,
            "limit": 1,
        },
    ]
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(matrix_scenario(0, rules, token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, scanner)
        environment.set_inputs(
            commit="deadbeef56f708192a3b4c5d6e7f8091a2b3c4d",
            **{"poll-interval": POLL_SECONDS, "timeout-minutes": "0.5"},
        )
        ran = run_action(
            environment, client_factory=fast_client_factory(), clock=ScaledClock(CLOCK_FACTOR)
        )
        (flow,) = simulator.engine.flows(team=simulator.team, flow_name="test")
        cancels = [r for r in simulator.requests if r.path.endswith("/cancel/")]
    assert ran.code == 1, ran.stdout
    assert environment.outputs()["status"] == "timed-out"
    assert flow.statuses["build"] == "canceled" and flow.completed
    outcomes = [(r.status, r.fault) for r in cancels]
    assert outcomes == [(503, "error:503"), (None, "drop"), (400, None)]
    (error,) = ran.commands("error")
    assert "was cancelled on the server" in error
    assert ran.seconds < 30 * CLOCK_FACTOR + 5
    assert_no_leak(scanner, tmp_path, token)


def test_every_cell_injected_faults() -> None:
    """Runs after the matrix (file order): a cell whose seeds drew no fault at all
    proved nothing. Cells not run in this session (deselected) are not judged."""
    for cell in CELLS:
        if RUNS[cell] and cell not in SPARSE:
            assert FIRED[cell] > 0, f"no fault fired in {RUNS[cell]} runs of {cell}"
    assert sum(RUNS.values()) == 0 or sum(INJECTED.values()) > 0
