"""The hostile zip corpus (tests/hostile_zips.py) served as job outputs, end to end.

One flow whose every job hands out one hostile archive: climbing names, absolute and
drive-letter paths, backslashes, symlinks, special files, duplicates, a bomb by ratio
and one by file count, a bad CRC, an encrypted entry, non-UTF-8, control characters,
NUL and very long names, lying sizes, archives that are not zips at all. The action
must write nothing outside each job's folder, hold its caps, name every problem in the
log and the summary, and keep the rest of the report whole.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import hostile_zips
from conftest import SecretScanner
from ectf_action.artifacts import job_dir_name
from hardening_support import ScaledClock, fast_client_factory, flow_doc, run_action, scripted
from test_artifacts import EXPECTED as EXTRACTED

MAX_ARTIFACT_MB = 5
FILE_CAP = 10_000  # the runner's cap on files and folders per job
GOOD_LOG = "compiling\nlinking\ndone\n"


def bigger_count_bomb(path: Path) -> Path:
    return hostile_zips.count_bomb(path, count=FILE_CAP + 50)


def smaller_ratio_bomb(path: Path) -> Path:
    return hostile_zips.ratio_bomb(path, size=64 * hostile_zips.MIB)


# What the log and the summary must say about each archive (beyond EXTRACTED's checks).
NAMED: dict[str, str] = {
    "traversal": "climbs out with '..'",
    "absolute": "the path is absolute",
    "drive_letters": "drive letter",
    "backslashes": "climbs out with '..'",
    "symlinks": "symbolic links are not extracted",
    "special_files": "device, pipe or socket",
    "duplicates": "duplicate of an earlier entry",
    "bad_crc": "failed its CRC check",
    "encrypted": "it is encrypted",
    "control_character_names": "control characters",
    "nul_in_name": "NUL byte",
    "long_names": "over 255 bytes",
    "lying_sizes": "CRC",
    "path_conflicts": "a file is where its folder should be",
    "mixed": "climbs out with '..'",
    "ratio_bomb": f"the {MAX_ARTIFACT_MB} MiB cap on extracted bytes was reached",
    "count_bomb": f"the cap of {FILE_CAP} files and folders was reached",
    "not_a_zip": "not a readable zip",
    "truncated": "not a readable zip",
    "invalid_utf8_flagged_name": "not a readable zip",
}

BUILDERS: dict[str, Callable[[Path], Path]] = {
    **hostile_zips.SURVIVABLE,
    **hostile_zips.UNREADABLE,
    "ratio_bomb": smaller_ratio_bomb,
    "count_bomb": bigger_count_bomb,
}


def job_name(case: str) -> str:
    return "zip-" + case.replace("_", "-")


@dataclass
class Outcome:
    root: Path
    workspace: Path
    stdout: str
    code: int
    outputs: dict[str, str]
    summary: str
    zips: Path

    def job_dir(self, case: str) -> Path:
        return self.workspace / "ectf-artifacts" / job_dir_name(job_name(case))


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One run over the whole corpus, shared by the checks below."""
    root = tmp_path_factory.mktemp("hostile")
    zips = root / "zips"
    zips.mkdir()
    artifacts: dict[str, bytes] = {"good": _good_zip(zips / "good.zip").read_bytes()}
    for case, build in BUILDERS.items():
        artifacts[job_name(case)] = build(zips / f"{case}.zip").read_bytes()
    statuses = {name: "failed" if name == job_name("mixed") else "succeeded" for name in artifacts}
    polls = [flow_doc(statuses, artifacts=list(artifacts))]
    scanner = SecretScanner()
    token = f"tok-hostile-{os.getpid()}-secret"
    with scripted(root / "runner", token, scanner, polls, artifacts) as served:
        served.environment.set_inputs(
            **{"max-artifact-mb": str(MAX_ARTIFACT_MB), "poll-interval": "1"}
        )
        ran = run_action(
            served.environment, client_factory=fast_client_factory(), clock=ScaledClock(0.01)
        )
        yield Outcome(
            root,
            served.environment.workspace,
            ran.stdout,
            ran.code,
            served.environment.outputs(),
            served.environment.summary(),
            zips,
        )
    assert ran.stderr == ""


def _good_zip(path: Path) -> Path:
    entries = [("good.log", GOOD_LOG.encode()), ("bin/fw.bin", b"\1" * 64)]
    return hostile_zips.write_zip(path, entries)


def test_the_run_reports_the_flow_as_it_ended(outcome: Outcome) -> None:
    assert outcome.code == 1, outcome.stdout
    assert outcome.outputs["status"] == "failed"
    assert outcome.outputs["failed-jobs"] == job_name("mixed")
    jobs = json.loads(outcome.outputs["jobs"])
    assert len(jobs) == len(BUILDERS) + 1
    by_name = {job["name"]: job for job in jobs}
    assert by_name["good"]["artifacts_dir"] == "ectf-artifacts/good"
    for case in hostile_zips.UNREADABLE:
        assert by_name[job_name(case)]["artifacts_dir"] is None


def test_nothing_is_written_outside_the_job_folders(outcome: Outcome) -> None:
    artifacts = (outcome.workspace / "ectf-artifacts").resolve()
    allowed_elsewhere = {
        outcome.workspace / "ectf-junit.xml",
        *(outcome.root / "runner" / "file_commands").iterdir(),
        outcome.root / "runner" / "workflow" / "event.json",
        *outcome.zips.iterdir(),
    }
    job_dirs = {outcome.job_dir(case).resolve() for case in BUILDERS} | {artifacts / "good"}
    for top, dirs, files in os.walk(outcome.root):
        for name in dirs + files:
            path = Path(top, name)
            assert not path.is_symlink(), f"a symlink was created: {path}"
        for name in files:
            path = Path(top, name)
            if path in allowed_elsewhere:
                continue
            resolved = path.resolve()
            assert any(resolved.is_relative_to(d) for d in job_dirs), f"stray file: {path}"
    assert [p.name for p in outcome.zips.iterdir() if not p.name.endswith(".zip")] == []
    assert list((outcome.root / "runner" / "runner_temp").iterdir()) == []  # no zip, no .part


@pytest.mark.parametrize("case", sorted(EXTRACTED))
def test_the_good_entries_of_each_archive_came_out(outcome: Outcome, case: str) -> None:
    folder = outcome.job_dir(case)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == EXTRACTED[case][0]


def test_the_caps_hold(outcome: Outcome) -> None:
    ratio = outcome.job_dir("ratio_bomb")
    written = sum(p.stat().st_size for p in ratio.rglob("*") if p.is_file())
    assert written <= MAX_ARTIFACT_MB * hostile_zips.MIB
    entries = sum(1 for _ in outcome.job_dir("count_bomb").rglob("*"))
    assert entries <= FILE_CAP
    for folder in (outcome.workspace / "ectf-artifacts").iterdir():
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert size <= MAX_ARTIFACT_MB * hostile_zips.MIB, folder


@pytest.mark.parametrize("case", sorted(NAMED))
def test_each_problem_is_named_in_the_log_and_the_summary(outcome: Outcome, case: str) -> None:
    name, fragment = job_name(case), NAMED[case]
    # GitHub annotates 10 warnings per step: the rest are in the log as plain lines.
    lines = outcome.stdout.splitlines()
    warnings = [line for line in lines if line.startswith(f"::warning title=eCTF job {name}::")]
    warnings += [
        following
        for line, following in zip(lines, lines[2:], strict=False)
        if line == f"warning (not annotated): eCTF job {name}: "
    ]
    assert any(fragment in line for line in warnings), warnings
    in_summary = [line for line in outcome.summary.splitlines() if line.startswith(f"- {name}: ")]
    assert any(fragment in line for line in in_summary), in_summary


def test_the_rest_of_the_report_is_intact(outcome: Outcome) -> None:
    good = outcome.workspace / "ectf-artifacts" / "good"
    assert (good / "good.log").read_text() == GOOD_LOG
    assert (good / "bin" / "fw.bin").read_bytes() == b"\1" * 64
    suite = ET.parse(outcome.workspace / "ectf-junit.xml").getroot()  # noqa: S314 (ours)
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert len(cases) == len(BUILDERS) + 1
    failure = cases[job_name("mixed")].find("failure")
    assert failure is not None and "line 2" in (failure.text or "")
    assert "| good | succeeded |" in outcome.summary
    assert "::group::eCTF job good: succeeded" in outcome.stdout
    # the failed job's block is titled with its first error line
    assert f"<summary>{job_name('mixed')}: line 2</summary>" in outcome.summary
