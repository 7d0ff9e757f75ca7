"""Parsing what the server returns: lenient where safe, strict where a guess would hide trouble."""

from __future__ import annotations

import pytest

from ectf_action.errors import ProtocolError
from ectf_action.models import Flow, JobStatus, parse_flow_id, worst_status

FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def job(status: str, name: str = "j") -> dict[str, object]:
    return {"id": f"id-{name}", "name": name, "status": status}


@pytest.mark.parametrize(
    "status", ["queued", "running", "pending", "succeeded", "failed", "canceled"]
)
def test_the_six_statuses(status: str) -> None:
    assert JobStatus.parse(status).value == status


def test_unknown_status_is_kept_and_not_finished() -> None:
    flow = Flow.from_json({"id": FLOW_ID, "jobs": [job("warming-up")]})
    assert flow.jobs[0].status is JobStatus.UNKNOWN
    assert flow.jobs[0].status_text == "warming-up"
    assert not flow.finished


def test_worst_status_follows_the_organizers_order() -> None:
    order = ["succeeded", "queued", "running", "pending", "canceled", "failed"]
    for i, status in enumerate(order):
        statuses = [JobStatus.parse(s) for s in order[: i + 1]]
        assert worst_status(statuses).value == status
    assert worst_status([]) is JobStatus.QUEUED


def test_failed_then_canceled_is_failed() -> None:
    flow = Flow.from_json(
        {"id": FLOW_ID, "jobs": [job("failed", "build"), job("canceled", "test")]}
    )
    assert flow.status is JobStatus.FAILED and flow.finished


def test_completed_is_honored_and_all_finished_jobs_finish_a_flow() -> None:
    assert Flow.from_json({"id": FLOW_ID, "completed": True, "jobs": [job("running")]}).finished
    assert Flow.from_json({"id": FLOW_ID, "completed": False, "jobs": [job("succeeded")]}).finished
    assert not Flow.from_json({"id": FLOW_ID, "completed": False, "jobs": []}).finished


def test_extra_and_missing_fields() -> None:
    flow = Flow.from_json({"id": FLOW_ID, "jobs": [{"id": "x", "extra": 1}], "surprise": True})
    assert flow.jobs[0].name == "x"
    assert flow.params == {} and flow.commit == ""


@pytest.mark.parametrize(
    "data",
    [None, [], "x", {"jobs": []}, {"id": FLOW_ID, "jobs": "no"}, {"id": FLOW_ID, "jobs": [1]}],
)
def test_malformed_flows_are_protocol_errors(data: object) -> None:
    with pytest.raises(ProtocolError):
        Flow.from_json(data)


def test_round_trip() -> None:
    data = {
        "id": FLOW_ID,
        "submit_time": "2026-01-29T14:53:48.335Z",
        "name": "test",
        "completed": False,
        "params": {"commit_hash": "abc1234"},
        "jobs": [
            {
                "id": "a",
                "name": "build",
                "status": "running",
                "has_artifacts": True,
                "private": False,
            }
        ],
    }
    assert Flow.from_json(data).to_json() == data


@pytest.mark.parametrize("body", [FLOW_ID, f'"{FLOW_ID}"', FLOW_ID.upper(), {"id": FLOW_ID}])
def test_queue_reply_is_a_plain_uuid(body: object) -> None:
    assert parse_flow_id(body) == FLOW_ID


@pytest.mark.parametrize("body", [None, 3, "nope", ""])
def test_bad_queue_reply(body: object) -> None:
    with pytest.raises(ProtocolError):
        parse_flow_id(body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), ("true", True), ("false", False), ("False", False), (None, False), (0, False)],
)
def test_boolean_fields_are_read_strictly(raw: object, expected: bool) -> None:
    job = {"id": "a", "status": "running", "has_artifacts": raw, "private": raw}
    flow = Flow.from_json({"id": FLOW_ID, "completed": raw, "jobs": [job]})
    assert flow.completed is expected
    assert flow.jobs[0].private is expected
    assert flow.jobs[0].has_artifacts is (None if raw is None else expected)


def test_a_missing_has_artifacts_is_unknown_not_false() -> None:
    """Unknown means try the download: a silently skipped log would be a lost result."""
    flow = Flow.from_json({"id": FLOW_ID, "jobs": [{"id": "a", "status": "failed"}]})
    assert flow.jobs[0].has_artifacts is None
