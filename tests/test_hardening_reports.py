"""A report that cannot be written is a warning, never a crash or a lost flow.

The runner's files (`GITHUB_OUTPUT`, `GITHUB_STATE`, `GITHUB_STEP_SUMMARY`) in a folder
that does not exist, on a read-only file system and on a full disk; a disk that fills
while a job's artifacts are extracted; the JUnit report on a full disk. Through the real
entry point against the simulator (or the scripted server, for an exact zip).

Read-only and full file systems are small tmpfs mounts, which root can make here; where
`mount` is refused (a CI container without the privilege), those cases skip and say so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    ActionEnv,
    Completed,
    SecretScanner,
    distinctive_token,
    flows_of,
    make_scenario,
    parse_file_commands,
)
from ectf_action.simulator import Simulator
from hardening_support import FakeServer, ScriptedApi, assert_no_leak, flow_doc, zip_of

pytestmark = pytest.mark.e2e

PAGE = 4096
QUICK = 0.01  # the test flow's ~10 s of jobs in a tenth of a second
RUNNER_FILES = {
    "GITHUB_OUTPUT": "outputs",
    "GITHUB_STATE": "state",
    "GITHUB_STEP_SUMMARY": "job summary",
}


class Mounts:
    """Small tmpfs mounts made by one test, unmounted after it."""

    def __init__(self) -> None:
        self.made: list[Path] = []

    def tmpfs(self, folder: Path, size: str = "64k") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
        self.made.append(folder)
        return folder

    def read_only(self, folder: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    def unmount_all(self) -> None:
        for folder in reversed(self.made):
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    made = Mounts()
    yield made
    made.unmount_all()


def fill(folder: Path, *, leave: int = 0) -> None:
    """Use up the file system at *folder*, but *leave* bytes (whole pages)."""
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * PAGE):
                pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    probe = folder / ".probe"
    with pytest.raises(OSError) as full:
        probe.write_bytes(b"\0" * (leave + PAGE))
    assert full.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)


def unwritable(how: str, variable: str, root: Path, mounts: Mounts) -> Path:
    """Where the runner's *variable* file goes, made unwritable in the way *how* says."""
    name = variable.lower()
    if how == "missing folder":
        return root / "no-such-folder" / name
    folder = mounts.tmpfs(root / f"mount-{name}")
    path = folder / name
    if how == "read-only":
        path.touch()
        mounts.read_only(folder)
    else:  # full: a page of earlier records, then not a byte more
        path.write_text(f"earlier<<EOF\n{'x' * (PAGE - 100)}\nEOF\n")
        fill(folder)
    return path


def warnings_about(done: Completed, what: str) -> list[str]:
    return [line for line in done.commands("warning") if f"step's {what} could not be" in line]


def contents(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def records(path: Path) -> dict[str, str]:
    """The runner's file as the runner reads it: every record whole, or this fails."""
    if not path.exists():
        return {}
    return parse_file_commands(path.read_text(encoding="utf-8"))


HOWS = ["missing folder", "read-only", "full disk"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("variable", ["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
def test_outputs_or_summary_that_cannot_be_written_are_one_warning_and_the_rest_is_written(
    tmp_path: Path, mounts: Mounts, variable: str, how: str
) -> None:
    """The flow succeeds: exit 0 (not 1 by accident), no traceback, one warning for
    that file, the other reports written, and no half record in the file."""
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(make_scenario(QUICK).with_token(token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, scanner)
        target = unwritable(how, variable, tmp_path, mounts)
        before = contents(target)
        environment.env[variable] = str(target)
        done = environment.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.commands("error") == []
    assert len(warnings_about(done, RUNNER_FILES[variable])) == 1, done.commands("warning")
    assert contents(target) == before  # a record that did not fit was cut back whole
    assert set(records(target)) <= {"earlier"}
    assert (environment.workspace / "ectf-junit.xml").is_file()
    if variable == "GITHUB_OUTPUT":
        assert "succeeded" in environment.summary()
    else:
        assert environment.outputs()["status"] == "succeeded"
        assert environment.outputs()["junit-path"] == "ectf-junit.xml"
    assert environment.state()["flow_id"]
    assert_no_leak(scanner, tmp_path, token)


@pytest.mark.parametrize("how", HOWS)
def test_a_state_that_cannot_be_saved_cancels_the_flow_and_says_why(
    tmp_path: Path, mounts: Mounts, how: str
) -> None:
    """Without the flow's id in the state no post step could cancel the flow: the run
    cancels it itself (the simulator shows it canceled), and exits 3 with one error that
    says why; the outputs, JUnit and the summary are still written."""
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(make_scenario(QUICK).with_token(token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, scanner)
        target = unwritable(how, "GITHUB_STATE", tmp_path, mounts)
        before = contents(target)
        environment.env["GITHUB_STATE"] = str(target)
        done = environment.run()
        flows = flows_of(simulator)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(flows) == 1 and flows[0].completed, flows
    assert set(flows[0].statuses.values()) <= {"canceled", "succeeded"}, flows[0].statuses
    assert "canceled" in flows[0].statuses.values()
    (error,) = done.commands("error")
    assert "GITHUB_STATE" in error and "cancelled" in error, error
    assert len(warnings_about(done, "state")) == 1, done.commands("warning")
    assert contents(target) == before
    assert set(records(target)) <= {"earlier"}
    outputs = environment.outputs()
    assert outputs["status"] == "error" and outputs["flow-id"] == flows[0].id
    assert (environment.workspace / "ectf-junit.xml").is_file()
    assert "could not save the flow's id in its state" in environment.summary()
    assert_no_leak(scanner, tmp_path, token)


# -- a disk that fills during extraction, and the JUnit report on a full disk ---------------


BUILD_LOG = b"cc -c main.c\nmain.c:3:5: error: 'key' undeclared\nBuild failed with exit code 2\n"


ARTIFACTS_DISK = "256k"  # 64 pages


def failed_build(token: str) -> ScriptedApi:
    """The build fails. Its zip holds, in this order, a file too big for the artifacts'
    disk, one that fills it exactly, and its small log: taken in the zip's order, the
    log's buffered bytes would meet the full disk only when the file is closed."""
    artifacts = zip_of(
        {
            "firmware.bin": os.urandom(80 * PAGE),
            "image.bin": os.urandom(64 * PAGE),
            "build.log": BUILD_LOG,
        }
    )
    polls = [
        flow_doc({"build": "running"}),
        flow_doc({"build": "failed"}, artifacts=["build"]),
    ]
    return ScriptedApi(token, polls, {"build": artifacts})


def test_a_disk_that_fills_during_extraction_costs_the_files_that_do_not_fit_never_the_log(
    tmp_path: Path, mounts: Mounts
) -> None:
    """The artifacts folder is a 256 KiB disk: the job's log (extracted first) is whole
    and shown in its annotation and the summary; each file that did not fit is reported
    by name and removed; no 0-byte file is left."""
    token = distinctive_token()
    scanner = SecretScanner()
    with FakeServer(failed_build(token)) as server:
        environment = ActionEnv(tmp_path, token, server.url, scanner)
        artifacts = mounts.tmpfs(environment.workspace / "ectf-artifacts", size=ARTIFACTS_DISK)
        done = environment.run()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    folder = artifacts / "build"
    assert (folder / "build.log").read_bytes() == BUILD_LOG
    assert sorted(p.name for p in folder.iterdir()) == ["build.log"]
    assert [p for p in artifacts.rglob("*") if p.is_file() and p.stat().st_size == 0] == []
    (failed,) = [e for e in done.commands("error") if "title=eCTF job build failed" in e]
    assert "'key' undeclared" in failed and "No log was found" not in failed, failed
    warnings = [w for w in done.commands("warning") if "title=eCTF job build" in w]
    for name in ("firmware.bin", "image.bin"):
        (said,) = [w for w in warnings if name in w]
        assert "No space left on device" in said, said
    assert "'key' undeclared" in environment.summary()
    assert_no_leak(scanner, tmp_path, token)


def test_a_junit_report_on_a_full_disk_leaves_no_file_behind(
    tmp_path: Path, mounts: Mounts
) -> None:
    """Nothing at junit-path, no temporary file beside it, a warning, an empty junit-path
    output, and the exit the result gives."""
    token = distinctive_token()
    scanner = SecretScanner()
    with Simulator(make_scenario(QUICK).with_token(token)) as simulator:
        environment = ActionEnv(tmp_path, token, simulator.url, scanner)
        reports = mounts.tmpfs(environment.workspace / "reports")
        fill(reports)
        environment.set_inputs(**{"junit-path": "reports/ectf-junit.xml"})
        done = environment.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in reports.iterdir()) == [".filler"]
    assert any("title=JUnit report not written" in w for w in done.commands("warning"))
    assert environment.outputs()["junit-path"] == ""
    assert "succeeded" in environment.summary()
    assert_no_leak(scanner, tmp_path, token)
