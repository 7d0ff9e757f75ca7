"""The runner's decisions, over a scripted fake server and a fake clock (no sleeping)."""

from __future__ import annotations

import dataclasses
import io
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ectf_action.clock import FakeClock
from ectf_action.errors import BadRequest, Conflict, DownloadError, NotFound, Unauthorized
from ectf_action.models import Flow, Job, JobStatus
from ectf_action.results import RunStatus
from ectf_action.runner import Runner, RunOutcome
from ectf_action.settings import Settings, load_settings

COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
OTHER_COMMIT = "ffffffffffffffffffffffffffffffffffffffff"
URL = "http://fake.invalid"


@dataclass
class FakeJob:
    """A job whose status follows a timeline of (seconds after queueing, status)."""

    name: str
    timeline: list[tuple[float, str]]
    files: dict[str, bytes] = field(default_factory=dict)
    private: bool = False
    answer_status: str = "succeeded"  # what an answered pending job turns into
    answered_at: float | None = None

    def status(self, age: float, canceled_at: float | None) -> str:
        current = "queued"
        for at, status in self.timeline:
            if age >= at:
                current = status
        if current == "pending" and self.answered_at is not None:
            current = self.answer_status
        if (
            canceled_at is not None
            and age >= canceled_at
            and current not in ("succeeded", "failed")
        ):
            return "canceled"
        return current


@dataclass
class FakeFlow:
    id: str
    name: str
    commit: str
    created: float
    jobs: list[FakeJob]
    canceled_at: float | None = None
    target_team: str | None = None

    def snapshot(self, now: float) -> Flow:
        age = now - self.created
        jobs = []
        for index, job in enumerate(self.jobs):
            status = job.status(age, self.canceled_at)
            jobs.append(
                Job(
                    id=f"{self.id[:8]}-job{index}",
                    name=job.name,
                    status=JobStatus.parse(status),
                    has_artifacts=bool(job.files) and status in ("succeeded", "failed"),
                    private=job.private,
                    raw_status=status,
                )
            )
        params = {"commit_hash": self.commit} if self.commit else {}
        if self.target_team:
            params = {"target_team": self.target_team}
        finished = all(j.status.finished for j in jobs)
        return Flow(id=self.id, name=self.name, completed=finished, params=params, jobs=tuple(jobs))


def sample_jobs(
    *, fail_build: bool = False, build_log: bytes = b"compiling\nlinking\n"
) -> list[FakeJob]:
    """pull-repo 0-10 s, build 10-40 s, test 40-60 s; a failed build cancels test."""
    return [
        FakeJob("pull-repo", [(0, "running"), (10, "succeeded")], {"pull.log": b"cloned\n"}),
        FakeJob(
            "build",
            [(10, "running"), (40, "failed" if fail_build else "succeeded")],
            {"build.log": build_log, "out/firmware.bin": b"\x00" * 64},
        ),
        FakeJob(
            "test",
            [(40, "canceled")] if fail_build else [(40, "running"), (60, "succeeded")],
            {"test.log": b"all tests passed\n"},
        ),
    ]


class FakeServer:
    """The client's methods over scripted flows, timed by the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.flows: dict[str, FakeFlow] = {}
        self.next_jobs: list[FakeJob] = sample_jobs()
        self.calls: list[tuple[str, ...]] = []
        self.download_failures: dict[str, int] = {}  # job name -> failures before success
        self.inputs: list[tuple[str, Mapping[str, Any]]] = []
        self.slot_frees_after = 0.0  # seconds a cancelled flow keeps the slot
        self.silent_about_artifacts = False  # replies leave out has_artifacts
        self.on_poll: list[tuple[float, threading.Event]] = []  # set the event at that age
        self.api_url = URL
        self._lock = threading.Lock()
        self._count = 0

    def add_flow(self, commit: str, jobs: list[FakeJob], *, age: float = 0.0) -> FakeFlow:
        self._count += 1
        flow_id = f"{self._count:08d}-0000-4000-8000-000000000000"
        flow = FakeFlow(flow_id, "test", commit, self.clock.now() - age, jobs)
        self.flows[flow_id] = flow
        return flow

    def _active(self) -> FakeFlow | None:
        now = self.clock.now()
        for flow in reversed(list(self.flows.values())):
            if not flow.snapshot(now).finished:
                return flow
            if flow.canceled_at is not None and now - flow.created < (
                flow.canceled_at + self.slot_frees_after
            ):
                return flow
        return None

    # -- the client's interface --------------------------------------------------------

    def find_active_flow(self, flow: str, commit: str | None = None) -> Flow | None:
        self.calls.append(("find_active_flow", flow, commit or ""))
        now = self.clock.now()
        for candidate in reversed(list(self.flows.values())):
            snap = candidate.snapshot(now)
            if not snap.finished and (commit is None or candidate.commit == commit):
                return snap
        return None

    def queue_flow(self, flow: str, body: Mapping[str, Any]) -> str:
        self.calls.append(("queue_flow", flow, str(body.get("commit_hash"))))
        active = self._active()
        if active is not None:
            raise Conflict("POST", URL, 409, "Reached max active flows", active_flow_id=active.id)
        created = self.add_flow(str(body.get("commit_hash") or ""), self.next_jobs)
        created.target_team = body.get("target_team")
        return created.id

    def get_flow(self, flow: str, flow_id: str) -> Flow:
        self.calls.append(("get_flow", flow, flow_id))
        if flow_id not in self.flows:
            raise NotFound("GET", URL, 404, "Flow not found")
        fake = self.flows[flow_id]
        for at, event in self.on_poll:
            if self.clock.now() - fake.created >= at:
                event.set()
        flow_now = fake.snapshot(self.clock.now())
        if self.silent_about_artifacts:
            jobs = tuple(dataclasses.replace(job, has_artifacts=None) for job in flow_now.jobs)
            flow_now = dataclasses.replace(flow_now, jobs=jobs)
        return flow_now

    def cancel_flow(self, flow: str, flow_id: str) -> None:
        with self._lock:
            self.calls.append(("cancel_flow", flow, flow_id))
            fake = self.flows[flow_id]
            if fake.snapshot(self.clock.now()).finished:
                raise BadRequest("POST", URL, 400, "Flow already completed")
            fake.canceled_at = self.clock.now() - fake.created

    def download_job_output(
        self, flow: str, job_id: str, dest: Path, *, cancel: threading.Event | None = None
    ) -> Any:
        with self._lock:
            self.calls.append(("download_job_output", flow, job_id))
            job = self._job(job_id)
            if not job.files:
                raise BadRequest("GET", f"{URL}/api/flow/{flow}/job/{job_id}/", 400, "No output")
            if self.download_failures.get(job.name, 0) > 0:
                self.download_failures[job.name] -= 1
                raise DownloadError(f"download of {job_id} is incomplete: 10 of 20 bytes")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in job.files.items():
                archive.writestr(name, data)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(buffer.getvalue())
        return dest

    def send_job_input(self, flow: str, job_id: str, data: Mapping[str, Any]) -> None:
        self.calls.append(("send_job_input", flow, job_id))
        self.inputs.append((job_id, dict(data)))
        self._job(job_id).answered_at = self.clock.now()

    def _job(self, job_id: str) -> FakeJob:
        flow_prefix, index = job_id.split("-job")
        for flow in self.flows.values():
            if flow.id.startswith(flow_prefix):
                return flow.jobs[int(index)]
        raise NotFound("GET", URL, 404, "Job not found")

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call[0] == method)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def server(clock: FakeClock) -> FakeServer:
    return FakeServer(clock)


def make_settings(tmp_path: Path, **inputs: str) -> Settings:
    flags: dict[str, str | None] = {
        "token": "tok-runner-test",
        "api-url": URL,
        "git-url": "ssh://git@github.com/team/design.git",
        "commit": COMMIT,
        "poll-interval": "10",
    }
    flags.update(inputs)
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return load_settings(flags, {}, home=tmp_path, cwd=workspace)


@dataclass
class Ran:
    outcome: RunOutcome
    log: list[str]
    flow_ids: list[str]

    @property
    def status(self) -> RunStatus:
        return self.outcome.result.status

    def text(self) -> str:
        return "\n".join(self.log)


def run(
    tmp_path: Path,
    server: FakeServer,
    clock: FakeClock,
    cancel: threading.Event | None = None,
    **inputs: str,
) -> Ran:
    log: list[str] = []
    flow_ids: list[str] = []
    runner = Runner(
        make_settings(tmp_path, **inputs),
        server,
        clock=clock,
        cancel=cancel or threading.Event(),
        log=log.append,
        on_flow_id=flow_ids.append,
    )
    return Ran(runner.run(), log, flow_ids)


# -- a flow followed to the end ------------------------------------------------------------


def test_success_follows_to_the_end_and_extracts_every_job(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    ran = run(tmp_path, server, clock)
    result = ran.outcome.result
    assert ran.status is RunStatus.SUCCEEDED
    assert ran.outcome.exit_code == 0
    assert ran.flow_ids == [result.flow_id]
    assert [o.name for o in result.jobs] == ["pull-repo", "build", "test"]
    assert [o.artifacts_dir for o in result.jobs] == [
        "ectf-artifacts/pull-repo",
        "ectf-artifacts/build",
        "ectf-artifacts/test",
    ]
    workspace = tmp_path / "ws"
    assert (workspace / "ectf-artifacts/build/out/firmware.bin").read_bytes() == b"\x00" * 64
    build = result.jobs[1]
    assert (build.artifact_files, build.artifact_bytes) == (2, 64 + len(b"compiling\nlinking\n"))
    assert build.log_tail == "compiling\nlinking"
    assert build.observed_seconds == pytest.approx(30.0)
    assert result.commit == COMMIT and result.api_url == URL
    assert result.elapsed_seconds == pytest.approx(60.0)
    assert not list((tmp_path / "ws/ectf-artifacts").glob("*.zip"))


def test_polls_at_the_fixed_interval_until_the_flow_ends(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    run(tmp_path, server, clock)
    # The flow ends at 60 s: polls at 0, 10, ..., 60.
    assert server.count("get_flow") == 7
    assert clock.waits == [10.0] * 6


def test_live_log_has_one_line_per_status_change_with_elapsed_time(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    ran = run(tmp_path, server, clock)
    lines = ran.log
    assert lines[0].startswith("[ 0m00s] eCTF test flow for commit " + COMMIT)
    assert URL in lines[0] and "tok-runner-test" not in ran.text()
    assert "[ 0m10s] build      queued -> running" in lines
    assert "[ 0m40s] build      running -> succeeded" in lines
    assert "[ 0m00s] pull-repo  running" in lines
    assert lines[-1].endswith(f"test flow {ran.outcome.result.flow_id}: succeeded")


def test_failed_job_fails_the_run_and_the_canceled_job_after_it_is_not_listed(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = sample_jobs(fail_build=True, build_log=b"error: undefined reference\n")
    ran = run(tmp_path, server, clock)
    result = ran.outcome.result
    assert ran.status is RunStatus.FAILED
    assert ran.outcome.exit_code == 1
    assert result.failed_jobs == ["build"]
    assert result.jobs[1].log_tail == "error: undefined reference"
    assert "build" in result.message and "failed" in result.message


def test_fail_on_decides_the_exit_code(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = sample_jobs(fail_build=True)
    ran = run(tmp_path, server, clock, **{"fail-on": "timed-out"})
    assert ran.status is RunStatus.FAILED
    assert ran.outcome.exit_code == 0


def test_download_artifacts_failed_fetches_only_failed_jobs(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = sample_jobs(fail_build=True)
    ran = run(tmp_path, server, clock, **{"download-artifacts": "failed"})
    assert [o.artifacts_dir for o in ran.outcome.result.jobs] == [
        None,
        "ectf-artifacts/build",
        None,
    ]
    assert server.count("download_job_output") == 1


def test_download_artifacts_none_fetches_nothing(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    ran = run(tmp_path, server, clock, **{"download-artifacts": "none"})
    assert ran.status is RunStatus.SUCCEEDED
    assert server.count("download_job_output") == 0
    assert not (tmp_path / "ws/ectf-artifacts").exists()


def test_jobs_that_do_not_say_whether_they_have_artifacts_are_tried(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    """Unknown means try: the outputs arrive, and a 400 for a job without any is no warning."""
    server.silent_about_artifacts = True
    server.next_jobs = [*sample_jobs(), FakeJob("lint", [(0, "running"), (5, "succeeded")], {})]
    ran = run(tmp_path, server, clock)
    assert ran.status is RunStatus.SUCCEEDED
    assert [o.artifacts_dir for o in ran.outcome.result.jobs] == [
        "ectf-artifacts/pull-repo",
        "ectf-artifacts/build",
        "ectf-artifacts/test",
        None,
    ]
    assert all(o.warnings == [] for o in ran.outcome.result.jobs)
    assert server.count("download_job_output") == 4


def test_a_failed_download_is_reported_not_retried_by_the_runner(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    """The client retries a download that breaks off (under the one retry policy); what
    still fails reaches the runner once, and costs that job's artifacts only."""
    server.download_failures["build"] = 1
    ran = run(tmp_path, server, clock)
    result = ran.outcome.result
    assert ran.status is RunStatus.SUCCEEDED and ran.outcome.exit_code == 0
    build = result.jobs[1]
    assert build.artifacts_dir is None
    assert build.warnings == [
        "artifacts not downloaded: download of 00000001-job1 is incomplete: 10 of 20 bytes"
    ]
    downloads = [c for c in server.calls if c[0] == "download_job_output" and c[2].endswith("job1")]
    assert len(downloads) == 1
    assert result.jobs[2].artifacts_dir == "ectf-artifacts/test"
    assert any("build: artifacts not downloaded" in line for line in ran.log)


def test_extraction_cap_is_a_warning(tmp_path: Path, server: FakeServer, clock: FakeClock) -> None:
    server.next_jobs = sample_jobs(build_log=b"x" * 3 * 1024 * 1024)
    ran = run(tmp_path, server, clock, **{"max-artifact-mb": "1"})
    build = ran.outcome.result.jobs[1]
    assert any("max-artifact-mb" in w for w in build.warnings)
    assert build.artifact_bytes <= 1024 * 1024


def test_a_stale_job_folder_is_replaced(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    stale = tmp_path / "ws/ectf-artifacts/build/old.log"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run\n")
    ran = run(tmp_path, server, clock)
    assert not stale.exists()
    assert ran.outcome.result.jobs[1].log_tail == "compiling\nlinking"


# -- queueing under the conflict policy ----------------------------------------------------


def test_an_active_flow_for_the_same_commit_is_followed_not_queued(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    existing = server.add_flow(COMMIT, sample_jobs(), age=20)
    ran = run(tmp_path, server, clock)
    assert server.count("queue_flow") == 0
    assert ran.outcome.result.flow_id == existing.id == ran.flow_ids[0]
    assert ran.status is RunStatus.SUCCEEDED
    assert any("following the active test flow" in line for line in ran.log)


def test_a_409_for_the_same_commit_follows_that_flow(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    existing = server.add_flow(COMMIT, sample_jobs())
    real_find = server.find_active_flow
    first = [True]

    def find_once_blind(flow: str, commit: str | None = None) -> Flow | None:
        if first[0]:  # the listing before queueing raced with another run's queue
            first[0] = False
            return None
        return real_find(flow, commit)

    server.find_active_flow = find_once_blind  # type: ignore[method-assign]
    ran = run(tmp_path, server, clock)
    assert ran.outcome.result.flow_id == existing.id
    assert server.count("queue_flow") == 1 and server.count("cancel_flow") == 0


def test_on_conflict_wait_waits_for_the_other_flow_then_queues(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    other = server.add_flow(OTHER_COMMIT, sample_jobs())
    ran = run(tmp_path, server, clock, **{"on-conflict": "wait"})
    assert ran.status is RunStatus.SUCCEEDED
    assert server.count("cancel_flow") == 0
    assert server.count("queue_flow") == 2
    new_id = ran.outcome.result.flow_id
    assert new_id != other.id and server.flows[new_id].created == pytest.approx(1060.0)
    assert any("waiting for the team's active test flow" in line for line in ran.log)


def test_on_conflict_cancel_cancels_the_other_flow_and_retries_while_the_slot_frees(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    other = server.add_flow(OTHER_COMMIT, sample_jobs())
    server.slot_frees_after = 3.0
    ran = run(tmp_path, server, clock, **{"on-conflict": "cancel"})
    assert ran.status is RunStatus.SUCCEEDED
    assert ("cancel_flow", "test", other.id) in server.calls
    assert server.count("cancel_flow") == 1
    # 409 and cancel at 0 s; 409 at 0 s and 2 s while the slot frees; queued at 4 s.
    assert server.count("queue_flow") == 4
    assert server.flows[ran.outcome.result.flow_id].created == pytest.approx(1004.0)


def test_on_conflict_fail_is_an_error_naming_the_active_flow(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    other = server.add_flow(OTHER_COMMIT, sample_jobs())
    ran = run(tmp_path, server, clock, **{"on-conflict": "fail"})
    assert ran.status is RunStatus.ERROR
    assert ran.outcome.exit_code == 3
    assert other.id in ran.outcome.result.message
    assert ran.outcome.result.flow_id is None and ran.flow_ids == []
    assert server.count("cancel_flow") == 0


def test_timeout_covers_queueing(tmp_path: Path, server: FakeServer, clock: FakeClock) -> None:
    forever = [FakeJob("build", [(0, "running")])]
    server.add_flow(OTHER_COMMIT, forever)
    ran = run(tmp_path, server, clock, **{"on-conflict": "wait", "timeout-minutes": "1.5"})
    assert ran.status is RunStatus.TIMED_OUT
    assert ran.outcome.exit_code == 1
    assert clock.now() == pytest.approx(1090.0)
    assert server.count("cancel_flow") == 0  # not ours to cancel
    assert ran.outcome.result.flow_id is None


# -- timeouts and interruptions --------------------------------------------------------------


def test_timeout_is_exact_and_cancels_the_remote_flow(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = [FakeJob("build", [(0, "running")], {"build.log": b"still going\n"})]
    ran = run(tmp_path, server, clock, **{"timeout-minutes": "0.75", "poll-interval": "20"})
    result = ran.outcome.result
    assert ran.status is RunStatus.TIMED_OUT and ran.outcome.exit_code == 1
    assert clock.waits == [20.0, 20.0, 5.0]  # the last wait ends at the deadline
    assert clock.now() == pytest.approx(1045.0)
    assert ("cancel_flow", "test", result.flow_id) in server.calls
    assert result.jobs[0].status is JobStatus.CANCELED  # read again after cancelling
    assert "0.75 minutes" in result.message and "cancelled on the server" in result.message


def test_a_signal_cancels_the_remote_flow(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    cancel = threading.Event()
    server.on_poll.append((25.0, cancel))  # a SIGTERM arrives while the build runs
    ran = run(tmp_path, server, clock, cancel=cancel)
    result = ran.outcome.result
    assert ran.outcome.interrupted
    assert ran.status is RunStatus.CANCELED
    assert ("cancel_flow", "test", result.flow_id) in server.calls
    assert "interrupted" in result.message and "cancelled on the server" in result.message
    assert clock.now() < 1040.0


def test_a_signal_before_queueing_queues_nothing(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    cancel = threading.Event()
    cancel.set()
    ran = run(tmp_path, server, clock, cancel=cancel)
    assert ran.outcome.interrupted and ran.status is RunStatus.CANCELED
    assert server.count("queue_flow") == 0


# -- pending jobs ---------------------------------------------------------------------------


def submit_flow() -> list[FakeJob]:
    return [
        FakeJob("build", [(0, "running"), (10, "succeeded")], {"build.log": b"ok\n"}),
        FakeJob("team_approval", [(10, "pending")]),
        FakeJob("organizer_approval", [(0, "queued")], private=True),
    ]


def test_pending_inputs_answer_a_job_once(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    jobs = submit_flow()
    jobs[2] = FakeJob("organizer_approval", [(0, "queued"), (40, "succeeded")], private=True)
    server.next_jobs = jobs
    ran = run(
        tmp_path,
        server,
        clock,
        flow="submit",
        **{"pending-inputs": "team_approval: {approve: true}"},
    )
    assert ran.status is RunStatus.SUCCEEDED
    assert len(server.inputs) == 1
    job_id, data = server.inputs[0]
    assert job_id.endswith("job1") and data == {"approve": True}


def test_on_pending_exit_leaves_the_flow_for_a_person(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = submit_flow()
    ran = run(tmp_path, server, clock, flow="submit")
    outcome = ran.outcome
    assert ran.status is RunStatus.PENDING and outcome.exit_code == 0
    assert server.count("cancel_flow") == 0
    assert outcome.notice is not None
    job_id = outcome.result.jobs[1].job.id
    assert "team_approval" in outcome.notice
    assert f"ectf-action jobs input submit {job_id} --approve" in outcome.notice
    assert clock.now() == pytest.approx(1010.0)


def test_on_pending_fail_cancels_the_flow_and_fails(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = submit_flow()
    ran = run(tmp_path, server, clock, flow="submit", **{"on-pending": "fail"})
    assert ran.status is RunStatus.PENDING and ran.outcome.exit_code == 1
    assert server.count("cancel_flow") == 1
    assert "team_approval" in ran.outcome.result.message


def test_on_pending_wait_keeps_polling_until_someone_answers(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    jobs = submit_flow()
    jobs[1] = FakeJob("team_approval", [(10, "pending"), (35, "succeeded")])
    jobs[2] = FakeJob("organizer_approval", [(0, "queued"), (35, "succeeded")], private=True)
    server.next_jobs = jobs
    ran = run(tmp_path, server, clock, flow="submit", **{"on-pending": "wait"})
    assert ran.status is RunStatus.SUCCEEDED
    assert clock.now() == pytest.approx(1040.0)


def test_a_private_pending_job_is_waiting_not_a_failure(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    server.next_jobs = [
        FakeJob("build", [(0, "succeeded")]),
        FakeJob("organizer_approval", [(0, "pending")], private=True),
    ]
    ran = run(tmp_path, server, clock, flow="submit", **{"on-pending": "fail"})
    assert ran.status is RunStatus.PENDING and ran.outcome.exit_code == 0
    assert server.count("cancel_flow") == 0 and server.count("send_job_input") == 0
    assert ran.outcome.notice is not None and "organizers" in ran.outcome.notice


# -- trouble of our own ----------------------------------------------------------------------


def test_a_rejected_token_is_an_error_with_exit_3(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    def refuse(flow: str, commit: str | None = None) -> Flow | None:
        raise Unauthorized("GET", URL, 401, "Invalid token")

    server.find_active_flow = refuse  # type: ignore[method-assign]
    ran = run(tmp_path, server, clock)
    assert ran.status is RunStatus.ERROR and ran.outcome.exit_code == 3
    assert "token was rejected" in ran.outcome.result.message


def test_remote_flow_sends_the_target_team(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    queued: list[Mapping[str, Any]] = []
    real_queue = server.queue_flow

    def record(flow: str, body: Mapping[str, Any]) -> str:
        queued.append(dict(body))
        return real_queue(flow, body)

    server.queue_flow = record  # type: ignore[method-assign]
    ran = run(tmp_path, server, clock, flow="remote", **{"target-team": "mitre"})
    assert queued == [{"target_team": "mitre"}]
    assert ran.status is RunStatus.SUCCEEDED
    assert "against team mitre" in ran.log[0]


def test_the_live_log_names_an_ipv6_server_as_given(
    tmp_path: Path, server: FakeServer, clock: FakeClock
) -> None:
    """The API URL cannot hold credentials (an input error), so the log shows it whole:
    an IPv6 host keeps its brackets."""
    server.api_url = "http://[::1]:8000"
    ran = run(tmp_path, server, clock, **{"api-url": "http://[::1]:8000"})
    assert "on http://[::1]:8000 (timeout" in ran.log[0]
