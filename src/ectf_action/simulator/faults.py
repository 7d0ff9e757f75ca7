"""Fault injection: which requests the simulated server answers badly, and how.

Each rule has its own random stream, seeded from the scenario's seed and the rule's
position, and draws the same number of values for every request it matches. So a run
of the same requests in the same order repeats exactly, and adding a rule never
changes what another rule does.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

FAULT_KINDS: Final = ("error", "rate_limit", "drop", "latency", "truncate")


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

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass(frozen=True)
class FiredFault:
    """A fault that replaces the reply: an error status, a 429, or a dropped connection."""

    kind: str
    status: int | None = None
    retry_after: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "error":
            return f"error:{self.status}"
        return self.kind


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request."""

    latency: float = 0.0
    before: FiredFault | None = None
    after: FiredFault | None = None
    truncate: float | None = None
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
                else:
                    fired = _fire(rule, pick)
                    if rule.phase == "after" and rule.kind != "rate_limit":
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
            latency=latency, before=before, after=after, truncate=truncate, labels=tuple(labels)
        )


def _fire(rule: FaultRule, pick: int) -> FiredFault:
    if rule.kind == "drop":
        return FiredFault("drop")
    if rule.kind == "rate_limit":
        return FiredFault(
            "rate_limit", status=rule.statuses[pick], retry_after=math.ceil(rule.retry_after)
        )
    return FiredFault("error", status=rule.statuses[pick])
