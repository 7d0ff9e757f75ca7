"""Typed views of what the testing server returns.

The server is outside our control, so parsing is lenient where leniency is safe (unknown
job statuses are kept, extra fields ignored) and strict where a wrong guess would hide a
problem (a flow without an id is a protocol error, not an empty flow).
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolError

FLOW_NAMES: tuple[str, ...] = ("clone", "test", "submit", "remote")

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def is_uuid(text: str) -> bool:
    """True when *text* has the shape FastAPI accepts as a UUID path parameter."""
    return bool(_UUID_RE.match(text.strip()))


class JobStatus(enum.StrEnum):
    """The six statuses the server uses, plus UNKNOWN for anything new it may invent."""

    SUCCEEDED = "succeeded"
    QUEUED = "queued"
    RUNNING = "running"
    PENDING = "pending"
    CANCELED = "canceled"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: object) -> JobStatus:
        text = str(raw).strip().lower() if raw is not None else ""
        if text == "cancelled":  # tolerate the British spelling
            return cls.CANCELED
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN

    @property
    def finished(self) -> bool:
        """A finished job never changes again; an unknown status is never finished."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def severity(self) -> int:
        """Rank in the organizers' order: succeeded < queued < running < pending <
        canceled < failed. UNKNOWN ranks with running: still in progress."""
        return _SEVERITY[self]


_SEVERITY = {
    JobStatus.SUCCEEDED: 0,
    JobStatus.QUEUED: 1,
    JobStatus.RUNNING: 2,
    JobStatus.UNKNOWN: 2,
    JobStatus.PENDING: 3,
    JobStatus.CANCELED: 4,
    JobStatus.FAILED: 5,
}


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    status: JobStatus
    has_artifacts: bool | None = False  # None: the server did not say
    private: bool = False
    raw_status: str = ""

    @property
    def status_text(self) -> str:
        """The status as the server spelled it (kept for unknown statuses)."""
        return self.raw_status or self.status.value

    @classmethod
    def from_json(cls, data: object) -> Job:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected a job object, got {type(data).__name__}")
        job_id = data.get("id")
        if not job_id:
            raise ProtocolError("a job in the server's reply has no id")
        raw = data.get("status")
        return cls(
            id=str(job_id),
            name=str(data.get("name") or job_id),
            status=JobStatus.parse(raw),
            has_artifacts=(
                None if data.get("has_artifacts") is None else _flag(data["has_artifacts"])
            ),
            private=_flag(data.get("private")),
            raw_status="" if raw is None else str(raw),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status_text,
            "has_artifacts": self.has_artifacts,
            "private": self.private,
        }


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    completed: bool = False
    submit_time: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    jobs: tuple[Job, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> Flow:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"expected a flow object, got {type(data).__name__}")
        flow_id = data.get("id")
        if not flow_id:
            raise ProtocolError("the server's flow has no id")
        params = data.get("params")
        jobs = data.get("jobs") or []
        if not isinstance(jobs, list):
            raise ProtocolError("the server's flow has a 'jobs' field that is not a list")
        return cls(
            id=str(flow_id),
            name=str(data.get("name") or ""),
            completed=_flag(data.get("completed")),
            submit_time=str(data.get("submit_time") or ""),
            params=dict(params) if isinstance(params, Mapping) else {},
            jobs=tuple(Job.from_json(j) for j in jobs),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "submit_time": self.submit_time,
            "name": self.name,
            "completed": self.completed,
            "params": dict(self.params),
            "jobs": [j.to_json() for j in self.jobs],
        }

    @property
    def commit(self) -> str:
        return str(self.params.get("commit_hash") or "")

    @property
    def status(self) -> JobStatus:
        """The worst job's status, the organizers' way of summing up a flow."""
        return worst_status(j.status for j in self.jobs)

    @property
    def finished(self) -> bool:
        """Nothing more will change: the server says so, or every job has finished.

        `completed` is honored, but a flow whose jobs are all finished is finished even
        when the server forgot to set it. A `completed` flow with unfinished jobs is
        also taken as finished: the server will not move it further.
        """
        return self.completed or (bool(self.jobs) and all(j.status.finished for j in self.jobs))

    def matches(self, request: Mapping[str, Any]) -> bool:
        """Whether this flow is the one *request* (a queue body) asks for, so that it is
        followed instead of queueing another: the same commit (compared by prefix, as
        people shorten hashes), or for a remote flow the same target team. Other fields
        (the git URL as the server records it, extra params) do not tell flows apart.
        An empty request matches any flow.
        """
        commit = str(request.get("commit_hash") or "").strip().lower()
        target = str(request.get("target_team") or "").strip().lower()
        if commit:
            theirs = self.commit.strip().lower()
            return bool(theirs) and (commit.startswith(theirs) or theirs.startswith(commit))
        if target:
            return str(self.params.get("target_team") or "").strip().lower() == target
        return True

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)


def _flag(value: object) -> bool:
    """A boolean field: only a real true (or the string "true") counts; "false", null,
    or anything else odd is false, so a sloppy server cannot end a flow early."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return False


def worst_status(statuses: Iterable[JobStatus]) -> JobStatus:
    """The most severe status; an empty flow counts as queued."""
    return max(statuses, key=lambda s: s.severity, default=JobStatus.QUEUED)


def parse_flow_id(body: object) -> str:
    """The queue reply is a JSON string holding a UUID; return the bare UUID."""
    if isinstance(body, Mapping) and "id" in body:  # tolerate a server that wraps it
        body = body["id"]
    if not isinstance(body, str):
        raise ProtocolError(f"expected the new flow's id as a JSON string, got {body!r:.80}")
    text = body.strip().strip('"').strip()
    if not is_uuid(text):
        raise ProtocolError(f"the server's new flow id is not a UUID: {text!r:.80}")
    return str(uuid.UUID(text))
