"""Scenarios: the shipped default, partial files, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ectf_action.simulator import Scenario, ScenarioError, default_scenario, load_scenario
from ectf_action.simulator.scenario import parse_size

ART = "flows:\n  test:\n    jobs:\n      - name: a\n        artifacts: "


def test_the_default_scenario_is_the_documented_one() -> None:
    scenario = default_scenario()
    assert scenario.default_team == "sim-team" and scenario.default.token == "sim-token"
    assert [t.name for t in scenario.teams] == ["sim-team", "rival-team"]
    assert all(t.attack_phase and t.package for t in scenario.teams)
    names = {flow: [j.name for j in spec.jobs] for flow, spec in scenario.flows.items()}
    assert names == {
        "clone": ["pull-repo"],
        "test": ["pull-repo", "build", "test_functional", "test_security"],
        "submit": [
            "pull-repo",
            "build",
            "test_functional",
            "test_security",
            "package",
            "team_approval",
            "organizer_approval",
        ],
        "remote": ["get_ports", "run_remote_scenario"],
    }
    submit = scenario.flows["submit"]
    approval, organizer = submit.job("team_approval"), submit.job("organizer_approval")
    assert approval is not None and approval.input == "approval" and not approval.private
    assert organizer is not None and organizer.private and organizer.resolve_after is not None
    ports = scenario.flows["remote"].job("get_ports")
    assert ports is not None and any(a.name.endswith("port.out") for a in ports.artifacts)
    c_rule, rust_rule = scenario.outcomes
    assert c_rule.commit_prefix == "badc0de" and c_rule.fail == ("build",)
    assert c_rule.design is None
    assert rust_rule.commit_prefix == "ba5eba11" and rust_rule.fail == ("build",)
    assert rust_rule.design == "rust"
    assert scenario.faults == () and scenario.time_scale == 1.0


def test_the_default_demo_finishes_well_under_a_minute() -> None:
    scenario = default_scenario()
    for flow in scenario.flows.values():
        finish: dict[str, float] = {}
        for job in flow.jobs:
            start = max((finish[n] for n in job.needs), default=flow.queue_delay)
            finish[job.name] = start + job.duration + (job.resolve_after or 0.0)
        assert max(finish.values()) < 30, flow.name


def test_a_partial_scenario_keeps_the_rest() -> None:
    scenario = load_scenario(
        """
time_scale: 0.01
flows:
  clone:
    jobs:
      - {name: pull-repo, duration: 7}
"""
    )
    assert scenario.time_scale == 0.01
    job = scenario.flows["clone"].job("pull-repo")
    assert job is not None and job.duration == 7 and job.artifacts == ()
    assert scenario.flows["test"] == default_scenario().flows["test"]
    assert scenario.teams == default_scenario().teams
    assert scenario.outcomes == default_scenario().outcomes


def test_load_from_a_file_or_text(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("seed: 99\n")
    assert load_scenario(path).seed == 99
    assert load_scenario(str(path)).seed == 99
    assert load_scenario("seed: 98").seed == 98
    assert load_scenario("") == default_scenario()
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_token_override() -> None:
    scenario = default_scenario().with_token("t0ken")
    assert scenario.default.token == "t0ken"
    assert scenario.team("rival-team").token == "rival-token"  # type: ignore[union-attr]
    with pytest.raises(ScenarioError, match="already used by team 'rival-team'"):
        default_scenario().with_token("rival-token")
    with pytest.raises(ScenarioError, match="token"):
        default_scenario().with_token("")


def test_secrets_stay_out_of_reprs() -> None:
    scenario = load_scenario(
        "secret: hush-hush\nteams:\n  - {name: a, token: very-secret-token, steal_digest: d1g}\n"
    )
    text = repr(scenario)
    for secret in ("hush-hush", "very-secret-token", "d1g"):
        assert secret not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n- 2\n", "scenario: expected a mapping at the top, got a list"),
        ("seed: [\n", "scenario: not valid YAML"),
        ("speed: 1\n", "speed: unknown key"),
        ("time_scale: -1\n", "time_scale: must be a number >= 0"),
        ("time_scale: fast\n", "time_scale: expected a number, got a string"),
        ("upload_limit: lots\n", "upload_limit: expected a size"),
        ("teams: []\n", "teams: at least one team is required"),
        ("teams:\n  - {name: a}\n", "teams[0].token: required"),
        ("teams:\n  - {name: 'a b', token: t}\n", "teams[0].name:"),
        ("teams:\n  - {name: a, token: t, phase: attack}\n", "teams[0].phase: unknown key"),
        ("teams:\n  - {name: a, token: t}\n  - {name: b, token: t}\n", "teams[1].token: the same"),
        ("teams:\n  - {name: a, token: t}\n  - {name: a, token: u}\n", "teams[1].name: team 'a'"),
        ("teams:\n  - {name: a, token: t, attack_phase: yes please}\n", "teams[0].attack_phase"),
        ("default_team: nobody\n", "default_team: no team is named 'nobody'"),
        ("flows:\n  deploy: {jobs: []}\n", "flows.deploy: unknown key"),
        ("flows:\n  test: {jobs: []}\n", "flows.test.jobs: a flow needs at least one job"),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a}\n      - {name: b, needs: [biuld]}\n",
            "flows.test.jobs[1].needs: unknown job 'biuld' (known: a)",
        ),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a, needs: [b]}\n      - {name: b}\n",
            "flows.test.jobs[0].needs: unknown job 'b' (a job may only need jobs listed before it)",
        ),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a}\n      - {name: a}\n",
            "flows.test.jobs[1].name: job 'a' is listed twice",
        ),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a, outcome: maybe}\n",
            "flows.test.jobs[0].outcome: 'maybe' is not one of: succeeded, failed, hang",
        ),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a, input: typing}\n",
            "flows.test.jobs[0].input: 'typing' is not one of",
        ),
        (
            "flows:\n  test:\n    jobs:\n      - {name: a, resolve_after: 3}\n",
            "flows.test.jobs[0].resolve_after: only a job with `input`",
        ),
        (
            "flows:\n  remote:\n    jobs:\n      - {name: get_ports}\n",
            "flows.remote.jobs: the remote flow needs a job named 'run_remote_scenario'",
        ),
        (
            ART + "[{name: x, kind: video}]\n",
            "flows.test.jobs[0].artifacts[0].kind: 'video' is not one of",
        ),
        (
            ART + "[{name: ../x}]\n",
            "flows.test.jobs[0].artifacts[0].name",
        ),
        (
            ART + "[{name: x, count: 3}]\n",
            "needs an `{i}` placeholder",
        ),
        (
            ART + "[{name: x, size: 1PB}]\n",
            "flows.test.jobs[0].artifacts[0].size: expected a size",
        ),
        (
            ART + "[{name: x, kind: content}]\n",
            "flows.test.jobs[0].artifacts[0].text: required for `kind: content`",
        ),
        ("outcomes:\n  - {commit_prefix: zz, fail: build}\n", "outcomes[0].commit_prefix"),
        ("outcomes:\n  - {commit_prefix: ab}\n", "outcomes[0]: a rule needs `fail` or `hang`"),
        ("outcomes:\n  - {fail: bulid}\n", "outcomes[0].fail: no job named 'bulid'"),
        (
            "outcomes:\n  - {commit_prefix: ab, design: go}\n",
            "outcomes[0].design: 'go' is not one of: c, rust",
        ),
        (
            "outcomes:\n  - {flows: [clone], fail: build}\n",
            "outcomes[0].fail: no job named 'build' in flow(s) clone",
        ),
        ("outcomes:\n  - {target_team: x, fail: build}\n", "outcomes[0].target_team: no team"),
        ("faults:\n  - {kind: gremlins}\n", "faults[0].kind: 'gremlins' is not one of"),
        ("faults:\n  - {rate: 1.5}\n", "faults[0].rate: must be a number in [0, 1]"),
        ("faults:\n  - {statuses: [200]}\n", "faults[0].statuses[0]: expected a status code"),
        ("faults:\n  - {path: '(['}\n", "faults[0].path: not a valid regular expression"),
        ("faults:\n  - {kind: latency, min: 2, max: 1}\n", "faults[0].max: must be >= min"),
        ("faults:\n  - {phase: during}\n", "faults[0].phase: 'during' is not one of"),
        ("faults:\n  - {limit: -1}\n", "faults[0].limit: must be >= 0"),
        ("downloads: {ranges: sometimes}\n", "downloads.ranges: expected true or false"),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load_scenario(text)
    assert message in str(error.value)


def test_from_dict_without_yaml() -> None:
    scenario = Scenario.from_dict({"seed": 5, "teams": [{"name": "x", "token": "y"}]})
    assert scenario.seed == 5 and scenario.default_team == "x"
    assert scenario.default.package is None  # not in the attack phase: no package


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("64KiB", 65536),
        ("64 kb", 64000),
        ("50MB", 50_000_000),
        ("1.5GiB", 1610612736),
        ("2M", 2_000_000),
    ],
)
def test_sizes(value: object, expected: int) -> None:
    assert parse_size(value, "size") == expected


@pytest.mark.parametrize("value", [-1, True, "ten", "5ib", "1PB", [1]])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ScenarioError, match=r"^size: "):
        parse_size(value, "size")


def test_rules_choose_each_flows_outcomes_and_design() -> None:
    scenario = load_scenario(
        "outcomes:\n"
        "  - {commit_prefix: badc0de, fail: build}\n"
        "  - {commit_prefix: ba5e, design: rust}\n"
        "  - {commit_prefix: ba5eba11, fail: [build, test_functional]}\n"
        "  - {flows: [submit], commit_prefix: ba5eba11, design: c}\n"
    )
    assert scenario.design_for("test", {"commit_hash": "ba5eba110"}) == "rust"
    assert scenario.design_for("submit", {"commit_hash": "ba5eba110"}) == "c"  # the later rule
    assert scenario.design_for("test", {"commit_hash": "badc0de0"}) == "c"
    assert scenario.job_outcomes("test", {"commit_hash": "BA5EBA11"}) == {
        "pull-repo": "succeeded",
        "build": "failed",
        "test_functional": "failed",
        "test_security": "succeeded",
    }
