"""The simulator's engine, driven by a hand-moved clock: job graphs, pending jobs, cancel."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ectf_action.crypto import decrypt_file
from ectf_action.simulator import ApiFailure, Engine, Scenario, default_scenario, load_scenario

GIT = "ssh://git@github.com/team/design.git"


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


def make_engine(clock: HandClock, tmp_path: Path, scenario: Scenario | None = None) -> Engine:
    return Engine(scenario or default_scenario(), workdir=tmp_path, clock=clock)


@pytest.fixture
def engine(clock: HandClock, tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(clock, tmp_path)
    yield eng
    eng.stop()


def team(engine: Engine, name: str = "sim-team"):  # type: ignore[no-untyped-def]
    spec = engine.scenario.team(name)
    assert spec is not None
    return spec


def at(engine: Engine, clock: HandClock, seconds: float) -> dict[str, str]:
    """Move the clock to *seconds* after the start and return the newest flow's statuses."""
    clock.now = 100.0 + seconds
    engine.tick()
    return engine.flows()[0].statuses


def queue_test(engine: Engine, commit: str = "abc1234", flow: str = "test") -> str:
    return engine.queue_flow(team(engine), flow, {"git_url": GIT, "commit_hash": commit})


def test_test_flow_runs_its_graph_in_time(engine: Engine, clock: HandClock) -> None:
    queue_test(engine)
    assert at(engine, clock, 0.0) == {
        "pull-repo": "queued",
        "build": "queued",
        "test_functional": "queued",
        "test_security": "queued",
    }
    assert at(engine, clock, 0.6)["pull-repo"] == "running"  # after the queue delay
    assert at(engine, clock, 2.4)["pull-repo"] == "running"
    statuses = at(engine, clock, 2.6)
    assert statuses["pull-repo"] == "succeeded" and statuses["build"] == "running"
    statuses = at(engine, clock, 6.6)
    assert statuses["build"] == "succeeded"
    assert statuses["test_functional"] == statuses["test_security"] == "running"
    assert not engine.flows()[0].completed
    assert set(at(engine, clock, 9.6).values()) == {"succeeded"}
    assert engine.flows()[0].completed


def test_a_late_look_sees_the_same_history(engine: Engine, clock: HandClock) -> None:
    """Jobs start when their needs finished, not when somebody next looks."""
    flow_id = queue_test(engine)
    clock.now = 100.0 + 9.55
    snapshot = engine.flow(flow_id)
    assert snapshot is not None and snapshot.completed
    assert set(snapshot.statuses.values()) == {"succeeded"}


def test_a_failed_build_cancels_what_needs_it(engine: Engine, clock: HandClock) -> None:
    queue_test(engine, commit="badc0de1234")
    statuses = at(engine, clock, 7.0)
    assert statuses == {
        "pull-repo": "succeeded",
        "build": "failed",
        "test_functional": "canceled",
        "test_security": "canceled",
    }
    flow = engine.flows()[0]
    assert flow.completed
    assert flow.job("build").has_artifacts
    assert not flow.job("test_functional").has_artifacts


def test_the_failed_build_has_a_log_that_says_so(engine: Engine, clock: HandClock) -> None:
    queue_test(engine, commit="BADC0DE99")  # prefix matches case-insensitively
    at(engine, clock, 7.0)
    job = engine.flows()[0].job("build")
    path = engine.artifact_path(job.id)
    assert path is not None
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["build.log"]  # hsm.bin only `when: succeeded`
        log = archive.read("build.log").decode()
    assert "error:" in log and log.rstrip().endswith("Build failed with exit code 2")


def test_parallel_jobs_are_not_canceled_by_a_sibling(clock: HandClock, tmp_path: Path) -> None:
    scenario = load_scenario("outcomes:\n  - {commit_prefix: 'aa', fail: test_functional}\n")
    engine = make_engine(clock, tmp_path, scenario)
    queue_test(engine, commit="aa11")
    statuses = at(engine, clock, 10.0)
    assert statuses["test_functional"] == "failed"
    assert statuses["test_security"] == "succeeded"
    engine.stop()


def test_submit_waits_for_team_approval_then_organizers(engine: Engine, clock: HandClock) -> None:
    flow_id = queue_test(engine, flow="submit")
    statuses = at(engine, clock, 11.6)
    assert statuses["package"] == "succeeded"
    assert statuses["team_approval"] == "pending"
    assert statuses["organizer_approval"] == "queued"
    assert at(engine, clock, 500.0)["team_approval"] == "pending"  # waits for the team
    flow = engine.flow(flow_id)
    assert flow is not None and not flow.completed

    engine.job_input(team(engine), "submit", flow.job("team_approval").id, {"approve": True})
    statuses = at(engine, clock, 500.4)
    assert statuses["team_approval"] == "running"
    statuses = at(engine, clock, 500.6)
    assert statuses["team_approval"] == "succeeded"
    assert statuses["organizer_approval"] == "pending"
    assert at(engine, clock, 503.4)["organizer_approval"] == "pending"
    statuses = at(engine, clock, 504.2)  # resolved 3 s after pending, then 0.5 s running
    assert statuses["organizer_approval"] == "succeeded"
    flow = engine.flow(flow_id)
    assert flow is not None and flow.completed
    assert flow.job("team_approval").inputs == ({"approve": True},)


def test_a_rejected_package_fails_the_flow(engine: Engine, clock: HandClock) -> None:
    flow_id = queue_test(engine, flow="submit")
    at(engine, clock, 12.0)
    job = engine.flows()[0].job("team_approval")
    engine.job_input(team(engine), "submit", job.id, {"approve": False})
    statuses = at(engine, clock, 13.0)
    assert statuses["team_approval"] == "failed"
    assert statuses["organizer_approval"] == "canceled"
    snapshot = engine.flow(flow_id)
    assert snapshot is not None and snapshot.completed


def test_approval_needs_a_boolean(engine: Engine, clock: HandClock) -> None:
    queue_test(engine, flow="submit")
    at(engine, clock, 12.0)
    job = engine.flows()[0].job("team_approval")
    with pytest.raises(ApiFailure) as missing:
        engine.job_input(team(engine), "submit", job.id, {"ok": True})
    assert missing.value.status == 422
    assert missing.value.detail[0]["loc"] == ["body", "approve"]
    with pytest.raises(ApiFailure) as wrong:
        engine.job_input(team(engine), "submit", job.id, {"approve": "yes"})
    assert wrong.value.detail[0]["type"] == "bool_type"
    assert engine.flows()[0].job("team_approval").status == "pending"


def test_input_to_a_job_that_is_not_pending_is_refused(engine: Engine, clock: HandClock) -> None:
    queue_test(engine, flow="submit")
    at(engine, clock, 1.0)
    job = engine.flows()[0].job("team_approval")
    with pytest.raises(ApiFailure) as refused:
        engine.job_input(team(engine), "submit", job.id, {"approve": True})
    assert refused.value.status == 400


def test_organizers_alone_answer_a_private_job(clock: HandClock, tmp_path: Path) -> None:
    scenario = load_scenario(
        """
flows:
  submit:
    jobs:
      - {name: team_approval, input: approval, duration: 0}
      - {name: organizer_approval, needs: [team_approval], input: organizer}
"""
    )
    engine = make_engine(clock, tmp_path, scenario)
    flow_id = queue_test(engine, flow="submit")
    at(engine, clock, 0.0)
    flow = engine.flows()[0]
    engine.job_input(team(engine), "submit", flow.job("team_approval").id, {"approve": True})
    statuses = at(engine, clock, 0.1)
    assert statuses == {"team_approval": "succeeded", "organizer_approval": "pending"}
    private = engine.flows()[0].job("organizer_approval")
    assert private.private
    with pytest.raises(ApiFailure) as refused:
        engine.job_input(team(engine), "submit", private.id, {"approve": True})
    assert refused.value.status == 400
    assert at(engine, clock, 10_000.0)["organizer_approval"] == "pending"  # stays, no resolve
    snapshot = engine.flow(flow_id)
    assert snapshot is not None and not snapshot.completed
    with pytest.raises(ApiFailure) as conflict:
        queue_test(engine, flow="submit")
    assert conflict.value.status == 409
    engine.stop()


@pytest.mark.parametrize("moment", [0.0, 1.0, 3.0, 7.0])
def test_cancel_at_any_point_ends_every_unfinished_job(
    engine: Engine, clock: HandClock, moment: float
) -> None:
    flow_id = queue_test(engine)
    before = at(engine, clock, moment)
    engine.cancel_flow(team(engine), "test", flow_id)
    after = engine.flows()[0]
    assert after.completed
    for name, status in before.items():
        expected = status if status in ("succeeded", "failed") else "canceled"
        assert after.statuses[name] == expected
    assert at(engine, clock, 100.0) == after.statuses  # nothing moves afterwards
    with pytest.raises(ApiFailure) as again:
        engine.cancel_flow(team(engine), "test", flow_id)
    assert again.value.status == 400


def test_cancel_a_pending_submit(engine: Engine, clock: HandClock) -> None:
    flow_id = queue_test(engine, flow="submit")
    at(engine, clock, 12.0)
    engine.cancel_flow(team(engine), "submit", flow_id)
    statuses = engine.flows()[0].statuses
    assert statuses["team_approval"] == statuses["organizer_approval"] == "canceled"


def test_one_active_flow_per_type_and_team(engine: Engine, clock: HandClock) -> None:
    first = queue_test(engine)
    with pytest.raises(ApiFailure) as conflict:
        queue_test(engine)
    assert conflict.value.status == 409 and first in conflict.value.detail
    queue_test(engine, flow="clone")  # another type is fine
    rival = team(engine, "rival-team")
    engine.queue_flow(rival, "test", {"git_url": GIT, "commit_hash": "abc"})  # another team too
    at(engine, clock, 20.0)
    queue_test(engine)  # the first one has completed


def test_a_team_submits_only_once(engine: Engine, clock: HandClock) -> None:
    flow_id = queue_test(engine, commit="badc0de", flow="submit")
    at(engine, clock, 20.0)
    queue_test(engine, flow="submit")  # a failed submit does not count
    at(engine, clock, 40.0)
    job = engine.flows()[0].job("team_approval")
    engine.job_input(team(engine), "submit", job.id, {"approve": True})
    at(engine, clock, 60.0)
    assert engine.flows()[0].completed and flow_id != engine.flows()[0].id
    with pytest.raises(ApiFailure) as again:
        queue_test(engine, flow="submit")
    assert again.value.status == 400 and "already submitted" in again.value.detail


def test_list_is_newest_first_and_num_keeps_the_newest(engine: Engine, clock: HandClock) -> None:
    ids = []
    for step in range(3):
        ids.append(queue_test(engine, commit=f"abc{step}"))
        engine.cancel_flow(team(engine), "test", ids[-1])
    listed = engine.list_flows(team(engine), "test", 0)
    assert [f["id"] for f in listed] == ids[::-1]
    assert [f["id"] for f in engine.list_flows(team(engine), "test", 2)] == ids[:0:-1]
    assert engine.list_flows(team(engine, "rival-team"), "test", 0) == []
    assert engine.list_flows(team(engine), "clone", 0) == []


def test_flow_json_has_the_schema(engine: Engine) -> None:
    flow_id = queue_test(engine)
    data = engine.flow_json(team(engine), "test", flow_id)
    assert list(data) == ["id", "submit_time", "name", "completed", "params", "jobs"]
    assert data["name"] == "test" and data["params"] == {"git_url": GIT, "commit_hash": "abc1234"}
    assert data["submit_time"].endswith("Z")
    assert list(data["jobs"][0]) == ["id", "name", "status", "has_artifacts", "private"]


def test_flows_and_jobs_of_other_teams_or_types_are_not_found(engine: Engine) -> None:
    flow_id = queue_test(engine)
    job_id = engine.flows()[0].job("build").id
    rival = team(engine, "rival-team")
    for call in (
        lambda: engine.flow_json(rival, "test", flow_id),
        lambda: engine.flow_json(team(engine), "clone", flow_id),
        lambda: engine.cancel_flow(rival, "test", flow_id),
        lambda: engine.job_output(rival, "test", job_id),
        lambda: engine.job_input(team(engine), "submit", job_id, {}),
    ):
        with pytest.raises(ApiFailure) as missing:
            call()
        assert missing.value.status == 404


def test_output_of_a_job_without_artifacts_is_a_400(engine: Engine, clock: HandClock) -> None:
    queue_test(engine)
    job = engine.flows()[0].job("build")
    with pytest.raises(ApiFailure) as running:
        engine.job_output(team(engine), "test", job.id)
    assert running.value.status == 400


def test_hang_runs_until_canceled(clock: HandClock, tmp_path: Path) -> None:
    scenario = load_scenario("outcomes:\n  - {commit_prefix: 'fe', hang: build}\n")
    engine = make_engine(clock, tmp_path, scenario)
    flow_id = queue_test(engine, commit="fee")
    assert at(engine, clock, 100_000.0)["build"] == "running"
    engine.cancel_flow(team(engine), "test", flow_id)
    assert engine.flows()[0].statuses["build"] == "canceled"
    engine.stop()


def test_remote_flow_hands_out_a_port(engine: Engine, clock: HandClock) -> None:
    engine.queue_flow(team(engine), "remote", {"target_team": "rival-team"})
    statuses = at(engine, clock, 3.0)
    assert statuses == {"get_ports": "succeeded", "run_remote_scenario": "running"}
    path = engine.artifact_path(engine.flows()[0].job("get_ports").id)
    assert path is not None
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("port.out"))
        assert 1 <= int(archive.read(name)) <= 65535
    with pytest.raises(ApiFailure) as unknown:
        engine.queue_flow(team(engine, "rival-team"), "remote", {"target_team": "nobody"})
    assert unknown.value.status == 404


def test_flags_are_stable_hex_of_an_ectf_flag(engine: Engine) -> None:
    flag = engine.flag(team(engine), "team_photo")
    assert flag == engine.flag_hex("sim-team", "team_photo")
    text = bytes.fromhex(flag).decode()
    assert text.startswith("ectf{team_photo_") and text.endswith("}")
    assert flag != engine.flag_hex("rival-team", "team_photo")
    other_secret = Engine(load_scenario("secret: another"), workdir=engine.workdir)
    assert other_secret.flag_hex("sim-team", "team_photo") != flag


def test_steal_needs_the_right_digest_and_the_attack_phase(
    clock: HandClock, tmp_path: Path
) -> None:
    scenario = load_scenario(
        """
teams:
  - {name: alpha, token: a-token, attack_phase: true}
  - {name: beta, token: b-token, attack_phase: true, steal_digest: "00ff"}
  - {name: gamma, token: c-token}
"""
    )
    engine = make_engine(clock, tmp_path, scenario)
    alpha, gamma = team(engine, "alpha"), team(engine, "gamma")
    flag = engine.steal(alpha, "beta", " 00FF ")
    assert bytes.fromhex(flag).decode().startswith("ectf{steal_design_beta_")
    assert engine.steal(alpha, "alpha", engine.steal_digest("alpha"))  # own digest works too
    cases = [
        (alpha, "beta", "1234", 400),  # wrong digest
        (alpha, "gamma", engine.steal_digest("gamma"), 400),  # target not in the attack phase
        (alpha, "delta", "00ff", 404),
        (gamma, "beta", "00ff", 403),
    ]
    for who, target, digest, status in cases:
        with pytest.raises(ApiFailure) as refused:
            engine.steal(who, target, digest)
        assert refused.value.status == status, (target, digest)
    engine.stop()


def test_packages_for_attack_phase_teams(clock: HandClock, tmp_path: Path) -> None:
    scenario = load_scenario(
        """
teams:
  - {name: alpha, token: a-token, attack_phase: true}
  - name: beta
    token: b-token
    attack_phase: true
    package: {artifacts: [{name: "beta.enc", kind: random, size: 1000}]}
  - {name: gamma, token: c-token}
"""
    )
    engine = make_engine(clock, tmp_path, scenario)
    alpha, gamma = team(engine, "alpha"), team(engine, "gamma")
    assert engine.package_names(alpha) == ["alpha", "beta"]
    artifact = engine.package_file(alpha, "beta")
    assert artifact.ready.is_set() and artifact.error is None
    package = decrypt_file(artifact.path, tmp_path / "beta.zip", engine.package_key("beta"))
    with zipfile.ZipFile(package.path) as archive:
        assert archive.namelist() == ["beta.enc"]
        assert len(archive.read("beta.enc")) == 1000
    assert engine.package_file(alpha, "beta") is artifact  # built once
    for call, status in (
        (lambda: engine.package_names(gamma), 403),
        (lambda: engine.package_file(gamma, "alpha"), 403),
        (lambda: engine.package_file(alpha, "gamma"), 404),
        (lambda: engine.package_file(alpha, "nobody"), 404),
    ):
        with pytest.raises(ApiFailure) as refused:
            call()
        assert refused.value.status == status
    engine.stop()


def test_ids_repeat_for_a_seed(clock: HandClock, tmp_path: Path) -> None:
    first = make_engine(clock, tmp_path / "a")
    second = make_engine(HandClock(), tmp_path / "b")
    assert queue_test(first) == queue_test(second)
    assert [j.id for j in first.flows()[0].jobs] == [j.id for j in second.flows()[0].jobs]
    third = make_engine(clock, tmp_path / "c", load_scenario("seed: 7"))
    assert queue_test(third) != first.flows()[0].id


def test_token_lookup(engine: Engine) -> None:
    found = engine.team_for_token("sim-token")
    assert found is not None and found.name == "sim-team"
    assert engine.team_for_token("sim-token ") is None
    assert engine.team_for_token("") is None


def test_artifacts_deterministic_for_seed(tmp_path: Path) -> None:
    contents = []
    for folder in ("one", "two"):
        own_clock = HandClock()
        engine = make_engine(own_clock, tmp_path / folder)
        queue_test(engine)
        own_clock.now += 10
        engine.tick()
        path = engine.artifact_path(engine.flows()[0].job("build").id)
        assert path is not None
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            contents.append({n: archive.read(n) for n in archive.namelist() if n != "build.log"})
    assert contents[0] == contents[1]


def test_a_rule_overrides_the_answer_to_an_input_job(clock: HandClock, tmp_path: Path) -> None:
    scenario = load_scenario(
        """
flows:
  submit:
    jobs:
      - {name: team_approval, input: approval, duration: 1}
outcomes:
  - {commit_prefix: "0f", fail: team_approval}
  - {commit_prefix: "5105", hang: team_approval}
"""
    )
    engine = make_engine(clock, tmp_path, scenario)
    for commit, expected in (("0fa", "failed"), ("5105", "running")):
        flow_id = queue_test(engine, commit=commit, flow="submit")
        at(engine, clock, 0.0)
        job = engine.flows()[0].job("team_approval")
        engine.job_input(team(engine), "submit", job.id, {"approve": True})
        clock.now += 1_000.0
        engine.tick()
        assert engine.flows()[0].statuses == {"team_approval": expected}
        if expected == "running":
            engine.cancel_flow(team(engine), "submit", flow_id)
        clock.now = 100.0
    engine.stop()
