"""scripts/check_action_outputs.py, the later step of CI's and act's self-tests.

It is what turns "the action ran" into "a later step got what it needs", so it must
fail for each way the outputs or the files can be wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from test_release import load_script

check = load_script("check_action_outputs")
FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
JUNIT = """<?xml version="1.0" ?>
<testsuites>
  <testsuite name="ectf.test" tests="2">
    <testcase classname="ectf.test" name="pull-repo" time="1.0"/>
    <testcase classname="ectf.test" name="build" time="2.0">
      <failure message="x">log</failure>
    </testcase>
  </testsuite>
</testsuites>
"""


def job(name: str, status: str, artifacts_dir: str | None) -> dict[str, Any]:
    return {
        "id": f"id-{name}",
        "name": name,
        "status": status,
        "has_artifacts": artifacts_dir is not None,
        "private": False,
        "artifacts_dir": artifacts_dir,
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name in ("pull-repo", "build"):
        folder = tmp_path / "ectf-artifacts" / name
        folder.mkdir(parents=True)
        (folder / f"{name}.log").write_text("log\n")
    (tmp_path / "ectf-junit.xml").write_text(JUNIT)
    return tmp_path


def failed_flow_outputs() -> dict[str, str]:
    return {
        "flow-id": FLOW_ID,
        "status": "failed",
        "message": f"eCTF test flow {FLOW_ID}: failed; failed jobs: build",
        "failed-jobs": "build",
        "jobs": json.dumps(
            [
                job("pull-repo", "succeeded", "ectf-artifacts/pull-repo"),
                job("build", "failed", "ectf-artifacts/build"),
            ]
        ),
        "junit-path": "ectf-junit.xml",
        "artifacts-path": "ectf-artifacts",
    }


def test_outputs_that_agree_with_the_workspace_pass(workspace: Path) -> None:
    line = check.check_outputs(failed_flow_outputs(), workspace, "failed", "build")
    assert line == (
        f"action outputs checked: status failed, flow {FLOW_ID}, "
        "2 jobs (2 with artifacts under ectf-artifacts), JUnit ectf-junit.xml"
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"status": "succeeded"}, "status is 'succeeded', expected 'failed'"),
        ({"failed-jobs": ""}, "failed-jobs is ''"),
        ({"flow-id": ""}, "flow-id is not a UUID"),
        ({"message": ""}, f"message is not one line saying flow {FLOW_ID}: failed"),
        ({"message": f"eCTF test flow {FLOW_ID}: succeeded"}, "message is not one line"),
        ({"message": f"eCTF test flow {FLOW_ID}: failed\nmore"}, "message is not one line"),
        ({"message": f"eCTF test flow {FLOW_ID}: failed {'x' * 500}"}, "characters, over 500"),
        ({"jobs": "[]"}, "not a non-empty JSON array"),
        ({"junit-path": "/github/workspace/ectf-junit.xml"}, "junit-path is not a path inside"),
        ({"artifacts-path": "../ectf-artifacts"}, "artifacts-path is not a path inside"),
        ({"artifacts-path": "elsewhere"}, "artifacts folder elsewhere is not in the workspace"),
        ({"junit-path": "missing.xml"}, "cannot be read"),
    ],
)
def test_each_wrong_output_fails(workspace: Path, change: dict[str, str], error: str) -> None:
    outputs = {**failed_flow_outputs(), **change}
    with pytest.raises(check.CheckFailed, match=re.escape(error)):
        check.check_outputs(outputs, workspace, "failed", "build")


def test_a_missing_output_fails(workspace: Path) -> None:
    outputs = failed_flow_outputs()
    del outputs["jobs"]
    with pytest.raises(check.CheckFailed, match="outputs missing: jobs"):
        check.check_outputs(outputs, workspace, "failed", "build")


def test_an_empty_artifacts_folder_fails(workspace: Path) -> None:
    (workspace / "ectf-artifacts" / "build" / "build.log").unlink()
    with pytest.raises(check.CheckFailed, match=r"build's artifacts folder .* is empty"):
        check.check_outputs(failed_flow_outputs(), workspace, "failed", "build")


def test_a_junit_file_without_the_failure_fails(workspace: Path) -> None:
    (workspace / "ectf-junit.xml").write_text(
        JUNIT.replace('<failure message="x">log</failure>', "")
    )
    with pytest.raises(check.CheckFailed, match="failures \\[\\]; expected 2 and \\['build'\\]"):
        check.check_outputs(failed_flow_outputs(), workspace, "failed", "build")


def test_jobs_and_failed_jobs_must_agree(workspace: Path) -> None:
    outputs = failed_flow_outputs()
    jobs = json.loads(outputs["jobs"])
    jobs[1]["status"] = "canceled"
    outputs["jobs"] = json.dumps(jobs)
    with pytest.raises(check.CheckFailed, match="jobs says \\[\\] failed"):
        check.check_outputs(outputs, workspace, "failed", "build")


def test_main_reads_the_outputs_from_the_environment(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"FAILING": json.dumps(failed_flow_outputs()), "GITHUB_WORKSPACE": str(workspace)}
    argv = ["--outputs-from", "FAILING", "--status", "failed", "--failed-jobs", "build"]
    assert check.main(argv, environ) == 0
    assert capsys.readouterr().out.startswith("action outputs checked: status failed")
    assert check.main(["--outputs-from", "NOTHING", "--status", "failed"], environ) == 1
    assert capsys.readouterr().out.startswith("::error::NOTHING: $NOTHING does not hold")
