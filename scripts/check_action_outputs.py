"""Check what a step that ran the action left for the steps after it.

Run from a workflow step after `uses: ./`, with the step's outputs passed as JSON through
the environment (never pasted into the script):

    env:
      PASSING: ${{ toJSON(steps.passing.outputs) }}
    run: python3 scripts/check_action_outputs.py --outputs-from PASSING --status succeeded

It checks the outputs against each other and against the workspace: the status and the
failed jobs expected, a flow id, a one-line message that says both, a `jobs` array whose
artifact folders exist and hold files, a JUnit file that parses (with a failure for each
failed job) and an artifacts folder, all relative to the workspace as later steps need
them. Standard library only: it runs on a bare runner and in any job container with a
Python 3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

OUTPUTS = ("flow-id", "status", "message", "failed-jobs", "jobs", "junit-path", "artifacts-path")
MESSAGE_LIMIT = 500  # characters, as action.yml says
JOB_KEYS = {"id", "name", "status", "has_artifacts", "private", "artifacts_dir"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class CheckFailed(Exception):
    """What a later step found wrong with the action's outputs or files."""


def relative_path(value: str, what: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise CheckFailed(f"{what} is not a path inside the workspace: {value!r}")
    return path


def check_outputs(
    outputs: Mapping[str, Any], workspace: Path, status: str, failed_jobs: str
) -> str:
    """Raise CheckFailed on the first thing wrong; return a line saying what was checked."""
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise CheckFailed(f"outputs missing: {', '.join(missing)} (got {sorted(outputs)})")
    if outputs["status"] != status:
        raise CheckFailed(f"status is {outputs['status']!r}, expected {status!r}")
    if outputs["failed-jobs"] != failed_jobs:
        raise CheckFailed(f"failed-jobs is {outputs['failed-jobs']!r}, expected {failed_jobs!r}")
    if not _UUID.fullmatch(str(outputs["flow-id"])):
        raise CheckFailed(f"flow-id is not a UUID: {outputs['flow-id']!r}")
    message = str(outputs["message"])
    said = f" flow {outputs['flow-id']}: {status}"
    if not message.startswith("eCTF ") or said not in message or "\n" in message:
        raise CheckFailed(f"message is not one line saying{said}: {message!r}")
    if len(message) > MESSAGE_LIMIT:
        raise CheckFailed(f"message is {len(message)} characters, over {MESSAGE_LIMIT}")

    jobs = json.loads(outputs["jobs"])
    if not isinstance(jobs, list) or not jobs:
        raise CheckFailed(f"jobs is not a non-empty JSON array: {outputs['jobs']!r}")
    artifacts = relative_path(outputs["artifacts-path"], "artifacts-path")
    if not (workspace / artifacts).is_dir():
        raise CheckFailed(f"the artifacts folder {artifacts} is not in the workspace")
    for job in jobs:
        if not isinstance(job, dict) or set(job) != JOB_KEYS:
            raise CheckFailed(f"a job is not {sorted(JOB_KEYS)}: {job!r}")
        if job["artifacts_dir"] is None:
            continue
        folder = relative_path(job["artifacts_dir"], f"job {job['name']}'s artifacts_dir")
        if folder.parts[: len(artifacts.parts)] != artifacts.parts:
            raise CheckFailed(f"job {job['name']}'s artifacts are outside {artifacts}: {folder}")
        if not any((workspace / folder).iterdir()):
            raise CheckFailed(f"job {job['name']}'s artifacts folder {folder} is empty")
    failed = [job["name"] for job in jobs if job["status"] == "failed"]
    if ",".join(failed) != failed_jobs:
        raise CheckFailed(f"jobs says {failed} failed, failed-jobs says {failed_jobs!r}")
    extracted = sum(job["artifacts_dir"] is not None for job in jobs)
    if not extracted:
        raise CheckFailed("no job's artifacts were extracted")

    junit = relative_path(outputs["junit-path"], "junit-path")
    try:
        root = ElementTree.parse(workspace / junit).getroot()  # noqa: S314 - our own file
    except (OSError, ElementTree.ParseError) as exc:
        raise CheckFailed(f"the JUnit file {junit} cannot be read: {exc}") from exc
    if root.tag != "testsuites":
        raise CheckFailed(f"the JUnit file's root is <{root.tag}>, not <testsuites>")
    cases = root.findall("./testsuite/testcase")
    failures = sorted(case.get("name", "") for case in cases if case.find("failure") is not None)
    if len(cases) != len(jobs) or failures != sorted(failed):
        raise CheckFailed(
            f"the JUnit file has {len(cases)} cases and failures {failures}; "
            f"expected {len(jobs)} and {sorted(failed)}"
        )
    return (
        f"action outputs checked: status {status}, flow {outputs['flow-id']}, "
        f"{len(jobs)} jobs ({extracted} with artifacts under {artifacts}), JUnit {junit}"
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--outputs-from", required=True, metavar="VARIABLE",
        help="environment variable holding toJSON(steps.<id>.outputs)",
    )  # fmt: skip
    parser.add_argument("--status", required=True, help="the status output expected")
    parser.add_argument("--failed-jobs", default="", help="the failed-jobs output expected")
    parser.add_argument("--workspace", type=Path, default=None, help="default: GITHUB_WORKSPACE")
    args = parser.parse_args(argv)
    workspace = args.workspace or Path(environ.get("GITHUB_WORKSPACE", "."))
    try:
        outputs = json.loads(environ.get(args.outputs_from, "") or "null")
        if not isinstance(outputs, dict):
            raise CheckFailed(f"${args.outputs_from} does not hold the step's outputs as JSON")
        print(check_outputs(outputs, workspace, args.status, args.failed_jobs))
    except (CheckFailed, ValueError) as exc:
        print(f"::error::{args.outputs_from}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
