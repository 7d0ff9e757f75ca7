"""The action's packaging agrees with the contract, the schemas GitHub uses, and itself.

action.yml, the Dockerfile and the example workflows are what users copy and what the
runner reads; a typo there breaks every team's workflow, so each fact is pinned here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import ectf_action

ROOT = Path(__file__).resolve().parents[1]
ACTION_YML = ROOT / "action.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"
WORKFLOWS = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
# the repository's own: CI, the release, and the workflow the act test runs
REPOSITORY_WORKFLOWS = sorted(
    [*(ROOT / ".github" / "workflows").glob("*.yml"), *(ROOT / "tests" / "act").glob("*.yml")]
)
# The examples of several jobs, with actions pinned by commit: their shape is pinned in
# tests/test_shapes_examples.py.
SHAPE_WORKFLOWS = {"queue-then-collect.yml", "submit-approve.yml"}
# the examples that run the action (attack-packages.yml runs the command line instead)
ACTION_WORKFLOWS = [path for path in WORKFLOWS if path.name != "attack-packages.yml"]
ONE_JOB_WORKFLOWS = [path for path in ACTION_WORKFLOWS if path.name not in SHAPE_WORKFLOWS]
PUBLISHED_ACTION = "ectf-action/ectf-action@v1"

# The contract's "Action inputs" table, in its order: name -> default (None: required).
# git-url and commit are computed when the step runs, so action.yml leaves them empty.
CONTRACT_INPUTS: dict[str, str | None] = {
    "token": None,
    "api-url": "https://api.ectf.mitre.org",
    "flow": "test",
    "git-url": "",
    "commit": "",
    "target-team": "",
    "params": "",
    "timeout-minutes": "90",
    "poll-interval": "auto",
    "on-conflict": "wait",
    "on-pending": "exit",
    "pending-inputs": "",
    "artifacts-path": "ectf-artifacts",
    "download-artifacts": "all",
    "max-artifact-mb": "512",
    "junit-path": "ectf-junit.xml",
    "job-summary": "true",
    "fail-on": "failed,canceled,timed-out",
    "skip-without-token": "true",
    "wait": "true",
    "flow-id": "",
    "source-annotations": "true",
}
CONTRACT_OUTPUTS = [
    "flow-id", "status", "failed-jobs", "jobs", "junit-path", "artifacts-path", "message",
]  # fmt: skip
CONTRACT_FLOWS = ["clone", "test", "submit", "remote"]

_OUTPUT_REFERENCE = re.compile(r"steps\.ectf\.outputs\.([A-Za-z0-9_-]+)")
_PINNED_BASE = re.compile(r"^ARG PYTHON_IMAGE=python:3\.12-slim@sha256:[0-9a-f]{64}$", re.MULTILINE)


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def workflow_triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """PyYAML reads the bare key `on` as the boolean True (YAML 1.1); GitHub does not."""
    triggers = workflow.get("on", workflow.get(True))
    assert isinstance(triggers, dict)
    return triggers


def workflow_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def action_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in workflow_steps(workflow) if step.get("uses") == PUBLISHED_ACTION]


def dockerfile_instructions(keyword: str) -> list[str]:
    """Arguments of each `keyword` instruction, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    pattern = re.compile(rf"^{keyword}\s+(.*)$", re.MULTILINE)
    return [match.group(1).strip() for match in pattern.finditer(text)]


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with a schema bundled in the package, so no network is needed."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    return load_yaml(ACTION_YML)


def test_action_yml_matches_githubs_schema() -> None:
    result = check_jsonschema("vendor.github-actions", ACTION_YML)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_workflows_match_githubs_schema() -> None:
    assert [path.name for path in WORKFLOWS] == [
        "attack-packages.yml", "nightly.yml", "on-push.yml", "pull-request.yml",
        "queue-then-collect.yml", "submit-approve.yml",
    ]  # fmt: skip
    result = check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_repository_workflows_match_githubs_schema() -> None:
    names = [path.name for path in REPOSITORY_WORKFLOWS]
    assert {"ci.yml", "release.yml", "self-test.yml"} <= set(names)
    result = check_jsonschema("vendor.github-workflows", *REPOSITORY_WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_config_matches_its_schema() -> None:
    config = ROOT / ".github" / "dependabot.yml"
    result = check_jsonschema("vendor.dependabot", config)
    assert result.returncode == 0, result.stdout + result.stderr
    ecosystems = {update["package-ecosystem"] for update in load_yaml(config)["updates"]}
    assert ecosystems == {"pip", "docker", "github-actions"}


def test_schema_check_catches_a_broken_action(tmp_path: Path) -> None:
    """Guards the two tests above against a checker that passes everything."""
    broken = tmp_path / "action.yml"
    text = ACTION_YML.read_text(encoding="utf-8")
    broken.write_text(text.replace("using: docker", "using: dockerr"), encoding="utf-8")
    assert check_jsonschema("vendor.github-actions", broken).returncode != 0


def test_metadata_for_the_marketplace(action: dict[str, Any]) -> None:
    assert action["name"]
    assert action["author"]
    assert 0 < len(action["description"]) < 125  # the Marketplace's limit
    assert set(action["branding"]) == {"icon", "color"}


def test_inputs_are_the_contracts_in_its_order(action: dict[str, Any]) -> None:
    assert list(action["inputs"]) == list(CONTRACT_INPUTS)


def test_input_defaults_are_the_contracts(action: dict[str, Any]) -> None:
    for name, expected in CONTRACT_INPUTS.items():
        spec = action["inputs"][name]
        assert spec["description"].strip(), name
        if expected is None:
            assert spec["required"] is True, name
            assert "default" not in spec, name
        else:
            assert spec["required"] is False, name
            # a string, as the runner passes it: YAML must not turn "90" into 90 or "true"
            # into True
            assert spec["default"] == expected, name


def test_computed_defaults_are_explained(action: dict[str, Any]) -> None:
    git_url = action["inputs"]["git-url"]["description"]
    commit = action["inputs"]["commit"]["description"]
    assert "GITHUB_SERVER_URL" in git_url and "GITHUB_REPOSITORY" in git_url
    assert "pull_request" in commit and "GITHUB_SHA" in commit


def test_outputs_are_the_contracts(action: dict[str, Any]) -> None:
    assert list(action["outputs"]) == CONTRACT_OUTPUTS
    for name, spec in action["outputs"].items():
        assert spec["description"].strip(), name
        assert "value" not in spec, f"{name}: a docker action's outputs take no value"


def test_runs_the_image_with_a_post_step_on_cancel(action: dict[str, Any]) -> None:
    assert action["runs"] == {
        "using": "docker",
        "image": "Dockerfile",
        "post-entrypoint": "ectf-action-post",
        "post-if": "cancelled()",
    }  # no `args`: the runner would pass them to the post step as well


def test_entrypoints_are_console_scripts_of_the_package(action: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert dockerfile_instructions("ENTRYPOINT") == ['["ectf-action", "run"]']
    assert scripts["ectf-action"] == "ectf_action.cli:main"
    assert action["runs"]["post-entrypoint"] in scripts


def test_base_image_is_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert _PINNED_BASE.search(text), "the default base image must be python:3.12-slim@sha256:..."
    assert dockerfile_instructions("FROM") == ["${PYTHON_IMAGE}"]


def test_image_is_labelled_with_source_and_version() -> None:
    labels = " ".join(dockerfile_instructions("LABEL"))
    found = dict(re.findall(r'([\w.]+)="([^"]*)"', labels))
    assert found["org.opencontainers.image.version"] == ectf_action.__version__
    assert found["org.opencontainers.image.source"].startswith("https://github.com/")


def test_image_keeps_the_runners_default_user() -> None:
    """The runner mounts the workspace owned by its own uid; root can write there."""
    assert dockerfile_instructions("USER") == []


def test_image_installs_without_dev_extras() -> None:
    runs = " ".join(dockerfile_instructions("RUN"))
    assert "pip install" in runs
    assert "[dev]" not in runs
    assert "--no-cache-dir" in runs


def test_build_context_is_deny_by_default() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!requirements.lock", "!src/"} <= set(lines)


def test_image_installs_the_pinned_runtime_dependencies() -> None:
    """Every rebuild of the image (one per job) must install the same code."""
    assert "--constraint /tmp/ectf-action/requirements.lock" in DOCKERFILE.read_text("utf-8")
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"requirements.lock does not pin {name}"


@pytest.mark.parametrize("path", ACTION_WORKFLOWS, ids=lambda path: path.name)
def test_examples_use_only_existing_inputs_and_outputs(path: Path, action: dict[str, Any]) -> None:
    workflow = load_yaml(path)
    steps = action_steps(workflow)
    assert steps, f"{path.name} does not use {PUBLISHED_ACTION}"
    for step in steps:
        given = step.get("with", {})
        assert set(given) <= set(action["inputs"]), path.name
        assert given["token"] == "${{ secrets.ECTF_TOKEN }}"
        assert step["id"] == "ectf"
    used_outputs = set(_OUTPUT_REFERENCE.findall(path.read_text(encoding="utf-8")))
    assert used_outputs, f"{path.name} does not use the action's outputs"
    assert used_outputs <= set(action["outputs"]), path.name


@pytest.mark.parametrize("path", ONE_JOB_WORKFLOWS, ids=lambda path: path.name)
def test_examples_follow_the_recommended_shape(path: Path) -> None:
    workflow = load_yaml(path)
    steps = workflow_steps(workflow)
    uses = [str(step.get("uses", "")) for step in steps]
    assert uses[0].startswith("actions/checkout@")  # source annotations need the checkout
    assert uses.index(PUBLISHED_ACTION) > 0

    uploads = [
        step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert len(uploads) == 1 and "always()" in uploads[0]["if"]
    junit = [
        u for u in uses if u.startswith(("mikepenz/action-junit-report@", "dorny/test-reporter@"))
    ]
    assert len(junit) == 1

    assert workflow["concurrency"]["group"].startswith("ectf-")
    permissions = workflow["permissions"]
    assert permissions["contents"] == "read"
    assert {scope for scope, level in permissions.items() if level == "write"} <= {"checks"}


def test_examples_cover_push_pull_request_and_schedule() -> None:
    triggers = {path.name: workflow_triggers(load_yaml(path)) for path in WORKFLOWS}
    assert "push" in triggers["on-push.yml"]
    assert "pull_request" in triggers["pull-request.yml"]
    nightly = triggers["nightly.yml"]
    assert nightly["schedule"][0]["cron"]
    dispatch_inputs = nightly["workflow_dispatch"]["inputs"]
    assert dispatch_inputs["flow"]["type"] == "choice"
    # every flow but `remote`, which needs the team's boards connected first (its comment)
    assert dispatch_inputs["flow"]["options"] == [f for f in CONTRACT_FLOWS if f != "remote"]
    assert "ectf api remote connect" in (ROOT / "examples" / "workflows" / "nightly.yml").read_text(
        encoding="utf-8"
    )


def test_pull_request_example_skips_forks_without_a_token() -> None:
    (step,) = action_steps(load_yaml(ROOT / "examples" / "workflows" / "pull-request.yml"))
    assert str(step["with"]["skip-without-token"]).lower() == "true"


def test_pull_request_example_publishes_a_check_that_fails_for_a_failed_flow() -> None:
    """dorny/test-reporter creates no check run while `use-actions-summary` is true (its
    default), and with `fail-on-error: false` its check says success for a failed flow."""
    workflow = load_yaml(ROOT / "examples" / "workflows" / "pull-request.yml")
    (reporter,) = [
        step for step in workflow_steps(workflow) if step.get("uses", "").startswith("dorny/")
    ]
    assert reporter["with"]["use-actions-summary"] is False
    assert reporter["with"]["fail-on-error"] is True
    assert reporter["with"]["reporter"] == "java-junit"
    assert workflow["permissions"]["checks"] == "write"


@pytest.mark.parametrize("name", ["on-push.yml", "nightly.yml"])
def test_junit_report_step_fails_for_a_failed_flow(name: str) -> None:
    workflow = load_yaml(ROOT / "examples" / "workflows" / name)
    (reporter,) = [
        step for step in workflow_steps(workflow) if step.get("uses", "").startswith("mikepenz/")
    ]
    assert reporter["with"]["fail_on_failure"] is True


def test_readme_documents_every_input_and_output(action: dict[str, Any]) -> None:
    assert README.exists(), "README.md is missing"
    readme = README.read_text(encoding="utf-8")
    missing = [
        name for name in [*action["inputs"], *action["outputs"]] if f"`{name}`" not in readme
    ]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


def test_the_code_knows_every_input_with_action_ymls_defaults(action: dict[str, Any]) -> None:
    """Outside Actions the flags fall back to the code's defaults: they must be the file's."""
    from ectf_action.config import DEFAULT_API_URL
    from ectf_action.settings import INPUTS

    code = {spec.name: spec.default for spec in INPUTS}
    assert list(code) == list(action["inputs"])
    code["api-url"] = code["api-url"] or DEFAULT_API_URL  # resolved with the config file
    for name, spec in action["inputs"].items():
        if name != "token":
            assert code[name] == str(spec.get("default", "")), name
