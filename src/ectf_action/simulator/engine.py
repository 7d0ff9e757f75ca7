"""The simulated testing server's state: teams, flows, jobs, and the clock that moves them.

Everything here is independent of HTTP. The server turns requests into calls such as
`queue_flow` or `job_input`; refusals are `ApiFailure(status, detail)`, which the server
sends as FastAPI would (`{"detail": ...}`).

Jobs move in real time. A job starts when every job it needs has succeeded (at the
moment the last of them finished, not when somebody next looks), runs for its duration
(times the scenario's `time_scale`), and ends as the scenario says. A job whose needs
failed or were canceled ends `canceled`. A job with `input` turns `pending` and waits
for a PATCH, or for its `resolve_after` delay. State is brought up to date on every
read and by a scheduler thread, so what a client sees does not depend on when that
thread last woke up. Artifacts are built on a builder thread as soon as a job ends.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import queue
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from ..crypto import ExtraMissing, encrypt_file
from .artifacts import BuildCancelled, LogContext, build_zip
from .scenario import ArtifactSpec, FlowSpec, JobSpec, Scenario, TeamSpec

QUEUED: Final = "queued"
RUNNING: Final = "running"
PENDING: Final = "pending"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELED: Final = "canceled"
FINISHED: Final = frozenset({SUCCEEDED, FAILED, CANCELED})

FLAG_NAMES: Final = ("team_photo", "design_doc")


class ApiFailure(Exception):
    """A refusal with the status code and `detail` the server sends for it."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def validation_failure(loc: Sequence[str | int], msg: str, kind: str, value: Any) -> ApiFailure:
    """A 422 in FastAPI's shape for one bad field."""
    return ApiFailure(422, [{"type": kind, "loc": list(loc), "msg": msg, "input": value}])


@dataclass(frozen=True)
class JobSnapshot:
    """A job as a team would see it, plus the inputs it received (for tests)."""

    id: str
    name: str
    status: str
    has_artifacts: bool
    private: bool
    inputs: tuple[Mapping[str, Any], ...] = ()
    listed: bool = True  # False for a job added later (`appears_after`) that is not there yet

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "has_artifacts": self.has_artifacts,
            "private": self.private,
        }


@dataclass(frozen=True)
class FlowSnapshot:
    """A flow at one moment. `to_json` is the API's Flow schema."""

    id: str
    team: str
    name: str
    completed: bool
    submit_time: str
    params: Mapping[str, Any]
    body: Any
    jobs: tuple[JobSnapshot, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "submit_time": self.submit_time,
            "name": self.name,
            "completed": self.completed,
            "params": dict(self.params),
            "jobs": [job.to_json() for job in self.jobs if job.listed],
        }

    def job(self, name: str) -> JobSnapshot:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @property
    def statuses(self) -> dict[str, str]:
        return {job.name: job.status for job in self.jobs}


@dataclass
class Artifact:
    """A zip being built or ready on disk."""

    path: Path
    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    size: int = 0
    etag: str = ""  # a package's, once built


@dataclass
class _Job:
    id: str
    spec: JobSpec
    outcome: str
    status: str = QUEUED
    started_at: float | None = None
    ends_at: float | None = None
    finished_at: float | None = None
    pending_since: float | None = None
    resolve_at: float | None = None
    decision: str | None = None
    decided_at: float | None = None
    inputs: list[Mapping[str, Any]] = field(default_factory=list)
    artifact: Artifact | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class _Flow:
    id: str
    team: str
    spec: FlowSpec
    params: dict[str, Any]
    body: Any
    submit_time: datetime
    created: float
    release_at: float
    jobs: list[_Job]
    design: str = "c"
    completed: bool = False

    def job_named(self, name: str) -> _Job:
        return next(job for job in self.jobs if job.spec.name == name)


@dataclass
class _BuildOrder:
    artifact: Artifact
    files: tuple[ArtifactSpec, ...]
    context: LogContext
    # a package: the zip is encrypted with this key and salt, as the organizers' are
    key: str | None = None
    salt: bytes = b""


class Engine:
    """Teams, flows and jobs of one simulation. Thread-safe.

    *clock* gives monotonic seconds and *wall* the current UTC time; tests that drive
    time by hand pass their own and call `tick()` instead of starting the threads.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        workdir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.scenario = scenario
        self._clock = clock
        self._wall = wall
        self._own_workdir = workdir is None
        self.workdir = (
            workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="ectf-sim-"))
        )
        self._cond = threading.Condition(threading.RLock())
        self._flows: list[_Flow] = []  # oldest first
        self._ids = random.Random(f"ectf-sim-ids:{scenario.seed}")
        self._stopping = threading.Event()
        self._builds: queue.Queue[_BuildOrder | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._packages: dict[str, Artifact] = {}
        self._package_revisions: dict[str, int] = {}
        self._package_lock = threading.Lock()
        self._changes = 0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler and the artifact builder (daemon threads)."""
        if self._threads:
            return
        for name, target in (("scheduler", self._schedule_loop), ("builder", self._build_loop)):
            thread = threading.Thread(target=target, name=f"ectf-sim-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads (an artifact being built is abandoned) and delete the files."""
        self._stopping.set()
        self._builds.put(None)
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    def tick(self) -> None:
        """Bring every flow up to date now (what the scheduler thread does)."""
        with self._cond:
            self._advance(self._clock())
        self._drain_builds_if_idle()

    def _drain_builds_if_idle(self) -> None:
        """Without a builder thread (hand-driven tests), build queued zips right away."""
        if self._threads:
            return
        while True:
            try:
                order = self._builds.get_nowait()
            except queue.Empty:
                return
            if order is not None:
                self._build(order)

    # --- teams ---------------------------------------------------------------------

    def team_for_token(self, token: str) -> TeamSpec | None:
        """The team whose token this is (compared in constant time)."""
        found = None
        for team in self.scenario.teams:
            if hmac.compare_digest(team.token.encode(), token.encode()):
                found = team
        return found

    def flag_hex(self, team: str, flag: str) -> str:
        """The flag a team earns: `ectf{<flag>_<hmac>}` in hex, stable for the secret."""
        mac = self._mac(f"flag:{team}:{flag}")[:32]
        return f"ectf{{{flag}_{mac}}}".encode().hex()

    def steal_digest(self, team: str) -> str:
        """The digest that steals *team*'s design (the scenario's, else derived)."""
        spec = self.scenario.team(team)
        if spec is not None and spec.steal_digest:
            return spec.steal_digest
        return self._mac(f"digest:{team}")

    def _mac(self, text: str) -> str:
        return hmac.new(self.scenario.secret.encode(), text.encode(), hashlib.sha256).hexdigest()

    # --- flows ---------------------------------------------------------------------

    def list_flows(self, team: TeamSpec, flow_name: str, num: int) -> list[dict[str, Any]]:
        """The team's flows of that type, newest first; `num` > 0 keeps the newest `num`."""
        with self._cond:
            self._advance(self._clock())
            flows = [
                f for f in reversed(self._flows) if f.team == team.name and f.spec.name == flow_name
            ]
            if num > 0:
                flows = flows[:num]
            return [self._snapshot(f).to_json() for f in flows]

    def queue_flow(
        self, team: TeamSpec, flow_name: str, params: Mapping[str, Any], body: Any = None
    ) -> str:
        """Queue a flow; refuse a second active one of the type (409) or a resubmit (400)."""
        with self._cond:
            now = self._clock()
            self._advance(now)
            target = params.get("target_team")
            if flow_name == "remote" and self.scenario.team(str(target)) is None:
                raise ApiFailure(404, f"Team {target} not found")
            mine = [f for f in self._flows if f.team == team.name and f.spec.name == flow_name]
            if flow_name == "submit" and any(
                f.completed and all(j.status == SUCCEEDED for j in f.jobs) for f in mine
            ):
                raise ApiFailure(400, "Team has already submitted a design")
            active = next((f for f in reversed(mine) if not f.completed), None)
            if active is not None:
                raise ApiFailure(
                    409,
                    f"Team already has an active {flow_name} flow: {active.id}",
                )
            spec = self.scenario.flows[flow_name]
            outcomes = self.scenario.job_outcomes(flow_name, params)
            flow = _Flow(
                id=self._new_id(),
                team=team.name,
                spec=spec,
                params=dict(params),
                body=body,
                submit_time=self._wall(),
                created=now,
                release_at=now + spec.queue_delay * self.scenario.time_scale,
                jobs=[
                    _Job(id=self._new_id(), spec=job, outcome=outcomes[job.name])
                    for job in spec.jobs
                ],
                design=self.scenario.design_for(flow_name, params),
            )
            self._flows.append(flow)
            self._advance(now)
            self._changed()
            return flow.id

    def flow_json(self, team: TeamSpec, flow_name: str, flow_id: str) -> dict[str, Any]:
        with self._cond:
            self._advance(self._clock())
            return self._snapshot(self._find_flow(team, flow_name, flow_id)).to_json()

    def cancel_flow(self, team: TeamSpec, flow_name: str, flow_id: str) -> None:
        """Cancel every unfinished job; 400 when the flow has already completed."""
        with self._cond:
            now = self._clock()
            self._advance(now)
            flow = self._find_flow(team, flow_name, flow_id)
            if flow.completed:
                raise ApiFailure(400, "Flow has already completed and cannot be canceled")
            for job in flow.jobs:
                if not job.finished:
                    self._finish(flow, job, CANCELED, now)
            flow.completed = True
            self._changed()

    def job_output(self, team: TeamSpec, flow_name: str, job_id: str) -> Artifact:
        """The job's zip (possibly still being built: wait on `.ready`); 400 if none."""
        with self._cond:
            self._advance(self._clock())
            _, job = self._find_job(team, flow_name, job_id)
            if job.artifact is None:
                raise ApiFailure(400, "Job has no output")
            return job.artifact

    def job_input(
        self, team: TeamSpec, flow_name: str, job_id: str, data: Mapping[str, Any]
    ) -> None:
        """Give input to a pending job (the PATCH endpoints)."""
        with self._cond:
            now = self._clock()
            self._advance(now)
            _, job = self._find_job(team, flow_name, job_id)
            if job.status != PENDING:
                raise ApiFailure(400, f"Job is not pending (status: {job.status})")
            if job.spec.private or job.spec.input == "organizer":
                raise ApiFailure(400, "Only the organizers can give input to this job")
            decision = SUCCEEDED
            if job.spec.input == "approval":
                approve = data.get("approve")
                if not isinstance(approve, bool):
                    raise validation_failure(
                        ["body", "approve"],
                        "Input should be a valid boolean",
                        "bool_type" if "approve" in data else "missing",
                        data.get("approve", dict(data)),
                    )
                decision = SUCCEEDED if approve else FAILED
            if job.outcome in (FAILED, "hang"):
                decision = job.outcome  # a scenario rule overrides the answer
            job.inputs.append(dict(data))
            job.decision = decision
            job.decided_at = now
            self._advance(now)
            self._changed()

    # --- packages and flags --------------------------------------------------------

    def package_names(self, team: TeamSpec) -> list[str]:
        self._require_attack_phase(team)
        return [t.name for t in self.scenario.teams if t.package is not None]

    def package_file(self, team: TeamSpec, name: str) -> Artifact:
        """The attack package, encrypted with its team's key as the organizers publish
        it (`openssl enc -aes-256-cbc -pbkdf2 -salt`), built on first request."""
        self._require_attack_phase(team)
        owner = self.scenario.team(name)
        if owner is None or owner.package is None:
            raise ApiFailure(404, f"Package {name} not found")
        with self._package_lock:
            artifact = self._packages.get(name)
            if artifact is None:
                revision = self._package_revisions.get(name, 0)
                seed = f"{self.scenario.seed}:package:{name}" + (f":{revision}" if revision else "")
                artifact = Artifact(
                    path=self.workdir / "packages" / f"{_safe(name)}.{revision}.enc"
                )
                self._packages[name] = artifact
                order = _BuildOrder(
                    artifact,
                    owner.package,
                    LogContext(
                        flow_name="package",
                        job_name="package",
                        team=name,
                        outcome=SUCCEEDED,
                        seed=seed,
                    ),
                    key=self.package_key(name),
                    salt=hashlib.sha256(f"{seed}:salt".encode()).digest()[:8],
                )
                self._build(order)
        return artifact

    def package_key(self, team: str) -> str:
        """The key that decrypts *team*'s package (the scenario's, else derived)."""
        spec = self.scenario.team(team)
        if spec is not None and spec.package_key:
            return spec.package_key
        return self._mac(f"package-key:{team}")[:32]

    def republish_package(self, team: str) -> None:
        """The organizers publish *team*'s package again: the next request gets new bytes
        (new random files and a new salt), as a changed package would have."""
        with self._package_lock:
            self._packages.pop(team, None)
            self._package_revisions[team] = self._package_revisions.get(team, 0) + 1

    def flag(self, team: TeamSpec, flag_name: str) -> str:
        return self.flag_hex(team.name, flag_name)

    def steal(self, team: TeamSpec, target: str, digest: str) -> str:
        self._require_attack_phase(team)
        victim = self.scenario.team(target)
        if victim is None:
            raise ApiFailure(404, f"Team {target} not found")
        if not victim.attack_phase:
            raise ApiFailure(400, f"Team {target} is not in the attack phase")
        expected = self.steal_digest(target).strip().lower()
        if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
            raise ApiFailure(400, "Incorrect digest")
        return self.flag_hex(team.name, f"steal_design_{target}")

    def _require_attack_phase(self, team: TeamSpec) -> None:
        if not team.attack_phase:
            raise ApiFailure(403, "Team is not in the attack phase")

    # --- inspection for tests ------------------------------------------------------

    def flows(self, team: str | None = None, flow_name: str | None = None) -> list[FlowSnapshot]:
        """Flows (newest first), of one team and/or flow type when given."""
        with self._cond:
            self._advance(self._clock())
            return [
                self._snapshot(f)
                for f in reversed(self._flows)
                if (team is None or f.team == team)
                and (flow_name is None or f.spec.name == flow_name)
            ]

    def flow(self, flow_id: str) -> FlowSnapshot | None:
        with self._cond:
            self._advance(self._clock())
            found = next((f for f in self._flows if f.id == flow_id), None)
            return None if found is None else self._snapshot(found)

    def wait_for(
        self,
        flow_id: str,
        predicate: Callable[[FlowSnapshot], bool],
        timeout: float = 10.0,
    ) -> FlowSnapshot:
        """Block until *predicate* holds for the flow; TimeoutError after *timeout*."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snapshot = self.flow(flow_id)
                if snapshot is None:
                    raise KeyError(flow_id)
                if predicate(snapshot):
                    return snapshot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"flow {flow_id}: condition not met; jobs {snapshot.statuses}"
                    )
                self._cond.wait(min(remaining, 0.05))

    def wait_for_job(
        self, flow_id: str, job_name: str, statuses: str | Sequence[str], timeout: float = 10.0
    ) -> FlowSnapshot:
        wanted = {statuses} if isinstance(statuses, str) else set(statuses)
        return self.wait_for(flow_id, lambda f: f.job(job_name).status in wanted, timeout)

    def wait_completed(self, flow_id: str, timeout: float = 10.0) -> FlowSnapshot:
        return self.wait_for(flow_id, lambda f: f.completed, timeout)

    def artifact_path(self, job_id: str, timeout: float = 10.0) -> Path | None:
        """Where a job's zip is on disk, once built (None when the job has none)."""
        with self._cond:
            job = next((j for f in self._flows for j in f.jobs if j.id == job_id), None)
            artifact = None if job is None else job.artifact
        if artifact is None or not artifact.ready.wait(timeout) or artifact.error:
            return None
        return artifact.path

    # --- internals -----------------------------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _find_flow(self, team: TeamSpec, flow_name: str, flow_id: str) -> _Flow:
        for flow in self._flows:
            if flow.id == flow_id and flow.team == team.name and flow.spec.name == flow_name:
                return flow
        raise ApiFailure(404, "Flow not found")

    def _find_job(self, team: TeamSpec, flow_name: str, job_id: str) -> tuple[_Flow, _Job]:
        for flow in self._flows:
            if flow.team != team.name or flow.spec.name != flow_name:
                continue
            for job in flow.jobs:
                if job.id == job_id:
                    return flow, job
        raise ApiFailure(404, "Job not found")

    def _appears_at(self, flow: _Flow, job: _Job) -> float:
        """When a job added mid-run is listed, and may start (at once for the others)."""
        return flow.created + self._scaled(job.spec.appears_after or 0.0)

    def _snapshot(self, flow: _Flow) -> FlowSnapshot:
        now = self._clock()
        return FlowSnapshot(
            id=flow.id,
            team=flow.team,
            name=flow.spec.name,
            completed=flow.completed,
            submit_time=_iso(flow.submit_time),
            params=dict(flow.params),
            body=flow.body,
            jobs=tuple(
                JobSnapshot(
                    id=job.id,
                    name=job.spec.name,
                    status=job.status,
                    has_artifacts=job.artifact is not None,
                    private=job.spec.private,
                    inputs=tuple(dict(i) for i in job.inputs),
                    listed=job.finished or self._appears_at(flow, job) <= now,
                )
                for job in flow.jobs
            ),
        )

    def _scaled(self, seconds: float) -> float:
        return seconds * self.scenario.time_scale

    def _advance(self, now: float) -> None:
        """Move every unfinished flow to where it is at *now*. Caller holds the lock."""
        changed = False
        for flow in self._flows:
            if flow.completed:
                continue
            moved = True
            while moved:
                moved = False
                by_name = {job.spec.name: job for job in flow.jobs}
                for job in flow.jobs:
                    if self._step(flow, job, by_name, now):
                        moved = changed = True
            if all(job.finished for job in flow.jobs):
                flow.completed = True
                changed = True
        if changed:
            self._changed()

    def _step(self, flow: _Flow, job: _Job, by_name: Mapping[str, _Job], now: float) -> bool:
        """One transition of *job* if one is due at *now*; True when it moved."""
        if job.status == QUEUED:
            needs = [by_name[name] for name in job.spec.needs]
            if any(need.status in (FAILED, CANCELED) for need in needs):
                ended = max((n.finished_at or now) for n in needs if n.finished)
                self._finish(flow, job, CANCELED, ended)
                return True
            if not all(need.status == SUCCEEDED for need in needs):
                return False
            start = max(
                [flow.release_at, self._appears_at(flow, job)]
                + [n.finished_at or flow.release_at for n in needs]
            )
            if start > now:
                return False
            if job.spec.input is not None:
                job.status = PENDING
                job.pending_since = start
                if job.spec.resolve_after is not None and job.outcome != "hang":
                    job.resolve_at = start + self._scaled(job.spec.resolve_after)
            else:
                self._run(job, start, job.outcome)
            return True
        if job.status == PENDING:
            if job.decision is not None and job.decided_at is not None:
                self._run(job, job.decided_at, job.decision)
                return True
            if job.resolve_at is not None and job.resolve_at <= now:
                outcome = FAILED if job.outcome == FAILED else job.spec.resolve_to
                job.decision = outcome
                job.decided_at = job.resolve_at
                self._run(job, job.resolve_at, outcome)
                return True
            return False
        if job.status == RUNNING and job.ends_at is not None and job.ends_at <= now:
            self._finish(flow, job, FAILED if job.outcome == FAILED else SUCCEEDED, job.ends_at)
            return True
        return False

    def _run(self, job: _Job, start: float, outcome: str) -> None:
        job.status = RUNNING
        job.started_at = start
        job.outcome = outcome
        if outcome == "hang":
            job.ends_at = math.inf
        else:
            job.ends_at = start + self._scaled(job.spec.duration)

    def _finish(self, flow: _Flow, job: _Job, status: str, at: float) -> None:
        job.status = status
        job.finished_at = at
        if status == CANCELED or job.spec.private:
            return
        files = tuple(a for a in job.spec.artifacts if a.applies_to(status))
        if not files:
            return
        artifact = Artifact(path=self.workdir / "jobs" / f"{job.id}.zip")
        job.artifact = artifact
        started = job.started_at if job.started_at is not None else at
        context = LogContext(
            flow_name=flow.spec.name,
            job_name=job.spec.name,
            team=flow.team,
            outcome=status,
            template=job.spec.log,
            params=dict(flow.params),
            started_at=flow.submit_time + timedelta(seconds=max(0.0, started - flow.created)),
            duration=max(job.spec.duration, 0.001),
            seed=f"{self.scenario.seed}:{job.id}",
            design=flow.design,
        )
        self._builds.put(_BuildOrder(artifact, files, context))

    def _changed(self) -> None:
        self._changes += 1
        self._cond.notify_all()

    def _next_wake(self) -> float | None:
        moments: list[float] = []
        for flow in self._flows:
            if flow.completed:
                continue
            moments.append(flow.release_at)
            for job in flow.jobs:
                if job.status == RUNNING and job.ends_at is not None:
                    moments.append(job.ends_at)
                elif job.status == PENDING and job.resolve_at is not None:
                    moments.append(job.resolve_at)
        now = self._clock()
        future = [m for m in moments if m > now and math.isfinite(m)]
        return min(future) if future else None

    def _schedule_loop(self) -> None:
        with self._cond:
            while not self._stopping.is_set():
                self._advance(self._clock())
                wake = self._next_wake()
                timeout = 0.5 if wake is None else min(0.5, max(0.0, wake - self._clock()))
                self._cond.wait(timeout + 0.0005)

    def _build_loop(self) -> None:
        while not self._stopping.is_set():
            order = self._builds.get()
            if order is None:
                return
            self._build(order)

    def _build(self, order: _BuildOrder) -> None:
        target = order.artifact.path
        plain = target if order.key is None else target.with_name(target.name + ".zip")
        try:
            order.artifact.size = build_zip(
                plain, order.files, order.context, cancel=self._stopping
            )
            if order.key is not None:
                order.artifact.size = encrypt_file(plain, target, order.key, salt=order.salt)
                with target.open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                order.artifact.etag = f'"{digest[:32]}"'
        except BuildCancelled:
            order.artifact.error = "the simulator stopped"
        except OSError as exc:
            order.artifact.error = f"could not write the artifact: {exc}"
        except ExtraMissing as exc:
            order.artifact.error = str(exc)
        finally:
            if plain != target:
                plain.unlink(missing_ok=True)
            order.artifact.ready.set()
            with self._cond:
                self._changed()


def _iso(moment: datetime) -> str:
    """Pydantic's rendering of an aware UTC datetime: microseconds and a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
