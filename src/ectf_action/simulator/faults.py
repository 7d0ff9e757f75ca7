"""Fault injection: which requests the simulated server answers badly, and how.

Each rule has its own random stream, seeded from the scenario's seed and the rule's
position, and draws the same number of values for every request it matches. So a run
of the same requests in the same order repeats exactly, and adding a rule never
changes what another rule does.

Besides the transport faults (an error status, a 429, a dropped connection, latency, a
truncated body) a rule can change the shape of a reply: a proxy's HTML page (`html`), a
200 that is not JSON (`not_json`), a flow document with fields removed, added or
contradicting each other (`mangle`), a flow that is gone (`vanish`), a download that
stops sending for a while (`stall`), a server that takes the request and never answers
(`hang`), and one that quotes the caller's token back in job names and error details
(`echo`). These change only what is sent, never the state of the simulated server.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

FAULT_KINDS: Final = (
    "error",
    "rate_limit",
    "drop",
    "latency",
    "truncate",
    "html",
    "not_json",
    "mangle",
    "vanish",
    "stall",
    "hang",
    "echo",
)
STALL_THEN: Final = ("continue", "close")


@dataclass(frozen=True)
class Mangle:
    """How a flow document is changed on its way out (the flow and each of its jobs).

    `drop_fields` are removed wherever they occur, `extra_fields` added to the flow and
    to every job, `unknown_status` replaces the status of every job that has not
    finished, `completed` overrides the flow's flag.
    """

    drop_fields: tuple[str, ...] = ()
    extra_fields: tuple[tuple[str, Any], ...] = ()
    unknown_status: str | None = None
    completed: bool | None = None


@dataclass(frozen=True)
class Stall:
    """A download that sends `fraction` of its body, then nothing for `seconds`."""

    fraction: float
    seconds: float
    close: bool


@dataclass(frozen=True)
class FaultRule:
    """One kind of misbehaviour, for the requests it matches.

    `rate` is the chance per matching request; `skip` lets that many matching requests
    through first; `limit` caps how often the rule fires. `phase: after` makes `error`
    and `drop` happen after the request was carried out (the server did the work, the
    reply was lost), which is how a client learns not to queue a flow twice.
    """

    kind: str
    rate: float = 1.0
    statuses: tuple[int, ...] = (500,)
    retry_after: float = 1.0
    min_seconds: float = 0.0
    max_seconds: float = 0.0
    fraction: float = 0.5
    methods: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    skip: int = 0
    limit: int | None = None
    phase: str = "before"
    mangle: Mangle | None = None
    stall_seconds: float = 1.0
    stall_close: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "mangle" and self.mangle is None:
            raise ValueError("a mangle rule needs a Mangle")

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass(frozen=True)
class FiredFault:
    """A fault that replaces the reply: an error status, a 429, a dropped connection, an
    HTML page, a body that is not JSON, or a 404 for a flow that vanished."""

    kind: str
    status: int | None = None
    retry_after: int | None = None
    seconds: float = 0.0  # how long a `hang` holds the connection before closing it

    @property
    def label(self) -> str:
        if self.kind in ("error", "html"):
            return f"{self.kind}:{self.status}"
        return self.kind


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request."""

    latency: float = 0.0
    before: FiredFault | None = None
    after: FiredFault | None = None
    truncate: float | None = None
    mangles: tuple[Mangle, ...] = ()
    stall: Stall | None = None
    echo: bool = False
    labels: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str | None:
        return ",".join(self.labels) if self.labels else None


NO_FAULT: Final = FaultDecision()


@dataclass
class _RuleState:
    rule: FaultRule
    rng: random.Random
    seen: int = 0
    fired: int = 0


class FaultInjector:
    """Decides, request by request, which faults fire. Thread-safe."""

    def __init__(self, rules: Sequence[FaultRule], seed: int) -> None:
        self._states = [
            _RuleState(rule, random.Random(f"ectf-sim-fault:{seed}:{index}"))
            for index, rule in enumerate(rules)
        ]
        self._lock = threading.Lock()

    def decide(self, method: str, path: str) -> FaultDecision:
        if not self._states:
            return NO_FAULT
        latency = 0.0
        before: FiredFault | None = None
        after: FiredFault | None = None
        truncate: float | None = None
        mangles: list[Mangle] = []
        stall: Stall | None = None
        echo = False
        labels: list[str] = []
        with self._lock:
            for state in self._states:
                rule = state.rule
                if not rule.matches(method, path):
                    continue
                state.seen += 1
                # Always three draws per matching request, so streams stay aligned.
                chance = state.rng.random()
                pick = state.rng.randrange(len(rule.statuses))
                spread = state.rng.random()
                if state.seen <= rule.skip or chance >= rule.rate:
                    continue
                if rule.limit is not None and state.fired >= rule.limit:
                    continue
                if rule.kind == "latency":
                    latency += rule.min_seconds + (rule.max_seconds - rule.min_seconds) * spread
                    labels.append("latency")
                elif rule.kind == "truncate":
                    if truncate is not None:
                        continue
                    truncate = rule.fraction
                    labels.append("truncate")
                elif rule.kind == "mangle" and rule.mangle is not None:
                    mangles.append(rule.mangle)
                    labels.append("mangle")
                elif rule.kind == "stall":
                    if stall is not None:
                        continue
                    stall = Stall(rule.fraction, rule.stall_seconds, rule.stall_close)
                    labels.append("stall")
                elif rule.kind == "echo":
                    if echo:
                        continue
                    echo = True
                    labels.append("echo")
                else:
                    fired = _fire(rule, pick)
                    if rule.phase == "after" and rule.kind in ("error", "drop"):
                        if after is not None:
                            continue
                        after = fired
                    else:
                        if before is not None:
                            continue
                        before = fired
                    labels.append(fired.label)
                state.fired += 1
        if not labels:
            return NO_FAULT
        return FaultDecision(
            latency=latency,
            before=before,
            after=after,
            truncate=truncate,
            mangles=tuple(mangles),
            stall=stall,
            echo=echo,
            labels=tuple(labels),
        )


def _fire(rule: FaultRule, pick: int) -> FiredFault:
    if rule.kind in ("drop", "not_json", "vanish"):
        return FiredFault(rule.kind)
    if rule.kind == "hang":
        return FiredFault("hang", seconds=rule.stall_seconds)
    if rule.kind == "html":
        return FiredFault("html", status=rule.statuses[pick])
    if rule.kind == "rate_limit":
        return FiredFault(
            "rate_limit", status=rule.statuses[pick], retry_after=math.ceil(rule.retry_after)
        )
    return FiredFault("error", status=rule.statuses[pick])


FINISHED_STATUSES: Final = frozenset({"succeeded", "failed", "canceled"})


def mangle_document(document: Any, mangles: Sequence[Mangle]) -> Any:
    """A flow, or a list of flows, changed by *mangles* (a new object; the input is kept)."""
    if isinstance(document, list):
        return [mangle_document(item, mangles) for item in document]
    if not isinstance(document, dict):
        return document
    flow = dict(document)
    jobs = [dict(job) if isinstance(job, dict) else job for job in flow.get("jobs") or []]
    for mangle in mangles:
        for job in jobs:
            if not isinstance(job, dict):
                continue
            if mangle.unknown_status is not None and job.get("status") not in FINISHED_STATUSES:
                job["status"] = mangle.unknown_status
            job.update(mangle.extra_fields)
            for name in mangle.drop_fields:
                job.pop(name, None)
        if mangle.completed is not None:
            flow["completed"] = mangle.completed
        flow.update(mangle.extra_fields)
        for name in mangle.drop_fields:
            flow.pop(name, None)
    if "jobs" in flow:
        flow["jobs"] = jobs
    return flow


def echo_document(document: Any, token: str) -> Any:
    """A flow (or list of flows) whose job names quote *token*, as a careless server
    that logs the caller's credentials into what it returns would (a new object)."""
    if isinstance(document, list):
        return [echo_document(item, token) for item in document]
    if not isinstance(document, dict):
        return document
    flow = dict(document)
    if isinstance(flow.get("jobs"), list):
        flow["jobs"] = [
            {**job, "name": f"{job.get('name')} (token {token})"} if isinstance(job, dict) else job
            for job in flow["jobs"]
        ]
    if "detail" in flow:
        flow["detail"] = f"{flow['detail']} (token {token})"
    return flow
