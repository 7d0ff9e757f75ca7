"""The zips the simulator generates: sizes, kinds, logs that end as the job ended."""

from __future__ import annotations

import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ectf_action.simulator.artifacts import BuildCancelled, LogContext, build_zip, render_log
from ectf_action.simulator.scenario import ArtifactSpec

START = datetime(2026, 1, 29, 14, 53, 48, tzinfo=UTC)


def context(outcome: str = "succeeded", template: str = "build", **kwargs: object) -> LogContext:
    return LogContext(
        flow_name="test",
        job_name=str(kwargs.pop("job_name", "build")),
        team="sim-team",
        outcome=outcome,
        template=template,
        params={"git_url": "ssh://git@github.com/t/d.git", "commit_hash": "abcdef123456789"},
        started_at=START,
        duration=4.0,
        seed="s",
    )


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_kinds_and_exact_sizes(tmp_path: Path) -> None:
    specs = [
        ArtifactSpec("a.txt", "text", size=100_000),
        ArtifactSpec("b.bin", "random", size=70_000, compress=False),
        ArtifactSpec("c.bin", "zeros", size=3 * 1024 * 1024 + 5),
        ArtifactSpec("d/port.out", "port"),
        ArtifactSpec("e.md", "content", text="# héllo\n"),
        ArtifactSpec("f/{i}.txt", "text", size=10, count=3),
        ArtifactSpec("g.txt", "text"),  # the default size
    ]
    zip_path = tmp_path / "out.zip"
    size = build_zip(zip_path, specs, context())
    assert size == zip_path.stat().st_size
    files = entries(zip_path)
    assert list(files) == [
        "a.txt",
        "b.bin",
        "c.bin",
        "d/port.out",
        "e.md",
        "f/0.txt",
        "f/1.txt",
        "f/2.txt",
        "g.txt",
    ]
    assert len(files["a.txt"]) == 100_000 and files["a.txt"].startswith(b"00000000 ")
    assert len(files["b.bin"]) == 70_000
    assert files["c.bin"] == bytes(3 * 1024 * 1024 + 5)
    assert 1 <= int(files["d/port.out"]) <= 65535
    assert files["e.md"].decode() == "# héllo\n"
    assert all(len(files[f"f/{i}.txt"]) == 10 for i in range(3))
    assert len(files["g.txt"]) == 4096
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.getinfo("b.bin").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("c.bin").compress_size < 100_000
        assert archive.getinfo("a.txt").date_time == (2026, 1, 29, 14, 53, 48)


def test_random_files_repeat_for_a_seed_and_differ_between_files(tmp_path: Path) -> None:
    specs = [ArtifactSpec("x/{i}.bin", "random", size=4096, count=2)]
    build_zip(tmp_path / "1.zip", specs, context())
    build_zip(tmp_path / "2.zip", specs, context())
    one, two = entries(tmp_path / "1.zip"), entries(tmp_path / "2.zip")
    assert one == two and one["x/0.bin"] != one["x/1.bin"]


def test_files_for_one_outcome_only(tmp_path: Path) -> None:
    specs = [
        ArtifactSpec("build.log", "log"),
        ArtifactSpec("hsm.bin", "random", size=10, when="succeeded"),
        ArtifactSpec("core.txt", "content", text="crash\n", when="failed"),
    ]
    build_zip(tmp_path / "ok.zip", specs, context("succeeded"))
    build_zip(tmp_path / "bad.zip", specs, context("failed"))
    assert set(entries(tmp_path / "ok.zip")) == {"build.log", "hsm.bin"}
    assert set(entries(tmp_path / "bad.zip")) == {"build.log", "core.txt"}


@pytest.mark.parametrize(
    ("template", "outcome", "last"),
    [
        ("pull", "succeeded", "Repository pulled successfully"),
        ("pull", "failed", "pull-repo failed with exit code 128"),
        ("build", "succeeded", "Build succeeded: hsm.bin"),
        ("build", "failed", "Build failed with exit code 2"),
        ("test", "succeeded", "test_functional succeeded"),
        ("test", "failed", "test_functional failed"),
        ("package", "succeeded", "package succeeded"),
        ("ports", "succeeded", "get_ports succeeded"),
        ("remote", "failed", "run_remote_scenario failed"),
        ("generic", "succeeded", "test_functional succeeded"),
    ],
)
def test_logs_end_as_the_job_ended(template: str, outcome: str, last: str) -> None:
    log = render_log(context(outcome, template, job_name="test_functional"))
    lines = log.splitlines()
    assert lines[0].startswith("2026-01-29T14:53:48.000Z ")
    assert last in lines[-1]
    stamps = [line[:24] for line in lines]
    assert stamps == sorted(stamps)  # time moves forward
    assert max(stamps) <= "2026-01-29T14:53:52.000Z"


def test_failed_tests_name_the_failing_case() -> None:
    log = render_log(context("failed", "test", job_name="test_security"))
    assert "FAILED" in log and "AssertionError" in log and "1 failed" in log


def test_a_sized_log_keeps_its_ending(tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    build_zip(tmp_path / "log.zip", [ArtifactSpec("b.log", "log", size=size)], context("failed"))
    log = entries(tmp_path / "log.zip")["b.log"]
    assert size - 200 < len(log) <= size
    assert log.endswith(b"Build failed with exit code 2\n")
    assert b"debug: step 1:" in log


def test_a_cancelled_build_leaves_no_file(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BuildCancelled):
        build_zip(
            tmp_path / "x.zip", [ArtifactSpec("a", "zeros", size=10)], context(), cancel=cancel
        )
    assert list(tmp_path.iterdir()) == []
