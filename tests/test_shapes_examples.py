"""The examples of the workflow shapes (submit-approve.yml, queue-then-collect.yml): their
shape, and their action steps run as written, job after job, against the simulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ActionEnv, Completed, SecretScanner
from ectf_action.simulator import Simulator
from test_action_metadata import PUBLISHED_ACTION, load_yaml, workflow_triggers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "workflows"
SHAPES = [EXAMPLES / "submit-approve.yml", EXAMPLES / "queue-then-collect.yml"]
_PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def action_step(workflow: dict[str, Any], job: str) -> dict[str, Any]:
    (step,) = [s for s in workflow["jobs"][job]["steps"] if s.get("uses") == PUBLISHED_ACTION]
    return step


def inputs_of(step: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The step's `with:`, its expressions replaced as GitHub would (all must be known)."""

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"unexpected expression {match.group(0)}"
        return values[match.group(1)]

    return {name: _EXPRESSION.sub(value, str(text)) for name, text in step["with"].items()}


@pytest.mark.parametrize("path", SHAPES, ids=lambda path: path.name)
def test_other_actions_are_pinned_by_commit(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if "uses:" in line]
    others = [line for line in lines if PUBLISHED_ACTION not in line]
    assert others
    for line in others:
        assert _PINNED.match(line), line


@pytest.mark.parametrize("path", SHAPES, ids=lambda path: path.name)
def test_outputs_reach_scripts_only_through_the_environment(path: Path) -> None:
    workflow = load_yaml(path)
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")
    assert workflow["concurrency"]["group"].startswith("ectf-")
    assert workflow["permissions"] == {"contents": "read"}


def test_submit_approve_takes_a_flow_id_and_an_answer() -> None:
    workflow = load_yaml(EXAMPLES / "submit-approve.yml")
    triggers = workflow_triggers(workflow)
    assert triggers["schedule"][0]["cron"]
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["flow-id"]["type"] == "string"
    assert (inputs["approve"]["type"], sorted(inputs["approve"]["options"])) == (
        "choice",
        ["false", "true"],
    )
    submit, answer = action_step(workflow, "submit"), action_step(workflow, "answer")
    assert (submit["with"]["flow"], submit["with"]["on-pending"]) == ("submit", "exit")
    assert "flow-id" not in submit["with"]
    assert answer["with"]["flow-id"] == "${{ inputs.flow-id }}"
    uploads = [
        s for s in workflow["jobs"]["submit"]["steps"] if "upload-artifact" in s.get("uses", "")
    ]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"


def test_queue_then_collect_hands_the_id_on() -> None:
    workflow = load_yaml(EXAMPLES / "queue-then-collect.yml")
    jobs = workflow["jobs"]
    assert jobs["queue"]["outputs"]["flow-id"] == "${{ steps.ectf.outputs.flow-id }}"
    assert action_step(workflow, "queue")["with"]["wait"] == "false"
    assert jobs["collect"]["needs"] == "queue"
    assert action_step(workflow, "collect")["with"]["flow-id"] == (
        "${{ needs.queue.outputs.flow-id }}"
    )


# -- run as written -------------------------------------------------------------------------


@pytest.fixture
def scanner(
    tmp_path: Path, simulator: Simulator, secret_scanner: SecretScanner
) -> Iterator[SecretScanner]:
    """Every byte the jobs wrote is scanned for the token afterwards."""
    yield secret_scanner
    secret_scanner.add_folder(tmp_path)
    assert not secret_scanner.leaks(simulator.token)


@dataclass
class Jobs:
    """The example's jobs, each run as the runner would run its action step."""

    root: Path
    simulator: Simulator
    scanner: SecretScanner
    workflow: dict[str, Any]

    def run(self, job: str, **values: str) -> tuple[ActionEnv, Completed]:
        """The job's action step, with the expressions *values* names (and the token)."""
        step = action_step(self.workflow, job)
        known = {"secrets.ECTF_TOKEN": self.simulator.token, **values}
        environment = ActionEnv(
            self.root / job, self.simulator.token, self.simulator.url, self.scanner
        )
        environment.set_inputs(**inputs_of(step, known))
        environment.set_inputs(**{"api-url": self.simulator.url, "poll-interval": "0.05"})
        return environment, environment.run()


def test_queue_then_collect_runs_as_written(
    simulator: Simulator, tmp_path: Path, scanner: SecretScanner
) -> None:
    jobs = Jobs(tmp_path, simulator, scanner, load_yaml(EXAMPLES / "queue-then-collect.yml"))
    queue, queued = jobs.run("queue")
    assert queued.returncode == 0
    flow_id = queue.outputs()["flow-id"]
    assert queue.outputs()["status"] == "queued"
    collect, done = jobs.run("collect", **{"needs.queue.outputs.flow-id": flow_id})
    assert done.returncode == 0, done.stdout
    assert (collect.outputs()["flow-id"], collect.outputs()["status"]) == (flow_id, "succeeded")
    assert [(r.method, r.path) for r in simulator.requests].count(("POST", "/api/flow/test/")) == 1


def test_submit_approve_runs_as_written(
    simulator: Simulator, tmp_path: Path, scanner: SecretScanner
) -> None:
    workflow = load_yaml(EXAMPLES / "submit-approve.yml")
    jobs = Jobs(tmp_path, simulator, scanner, workflow)
    nightly, submitted = jobs.run("submit")
    assert submitted.returncode == 0
    assert nightly.outputs()["status"] == "pending"
    assert nightly.state()["left_running"] == "pending"
    flow_id = nightly.outputs()["flow-id"]
    package = nightly.workspace / "ectf-artifacts" / "package" / "attack_package.enc"
    assert package.stat().st_size > 0  # what the upload step hands the reviewers

    answer_with = inputs_of(
        action_step(workflow, "answer"),
        {"secrets.ECTF_TOKEN": "t", "inputs.flow-id": flow_id, "inputs.approve": "true"},
    )
    assert yaml.safe_load(answer_with["pending-inputs"]) == {"team_approval": {"approve": True}}
    answer, done = jobs.run("answer", **{"inputs.flow-id": flow_id, "inputs.approve": "true"})
    assert done.returncode == 0, done.stdout
    assert answer.outputs()["status"] in ("pending", "succeeded")  # the organizers' turn
    flow = simulator.engine.flow(flow_id)
    assert flow is not None and flow.job("team_approval").inputs == ({"approve": True},)
    assert flow.statuses["team_approval"] == "succeeded"
