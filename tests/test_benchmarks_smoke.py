"""Every benchmark script still runs: each in its `--quick` mode, as a user would run it.

The numbers of a quick run mean nothing; what is checked is that the script gets to its
verdict lines (so an API change in the code it measures cannot silently break it) and
that it cleans up after itself. The image benchmark is driven by a stand-in `docker`
command, so it is checked here without a daemon and in a second.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
TIMEOUT = 60


def run_script(name: str, *args: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECTF_", "GITHUB_"))}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, (
        f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def test_startup_reaches_its_verdict_and_sees_the_first_request(tmp_path: Path) -> None:
    out = run_script("bench_startup.py", tmp_path=tmp_path)
    assert re.search(r"target `--help` within 150 ms of bare Python: (met|NOT met)", out)
    assert "ectf-action run, to its first request: GET /api/flow/test/" in out
    assert "| ectf_action.cli " in out  # the import profile table
    assert list(tmp_path.iterdir()) == []


def test_polling_counts_requests_for_every_flow_length(tmp_path: Path) -> None:
    out = run_script("bench_polling.py", tmp_path=tmp_path)
    for minutes in (1, 5, 20, 60):
        assert f"| {minutes} min " in out
    # A fixed 1 s poller makes one request per second plus the first one.
    assert re.search(r"\| 60 min \| fixed 1 s\s+\| 3601 ", out)
    assert "target at most one request per 10 s after the first minute: met" in out


def test_artifacts_compares_both_sides_and_removes_its_scratch(tmp_path: Path) -> None:
    out = run_script("bench_artifacts.py", tmp_path=tmp_path)
    assert "| 8 jobs x 1.0 MiB " in out
    assert "| 8 jobs x 1.0 MiB, 25 MB/s per connection " in out  # the default cap
    assert "| 1 job x 2.0 MiB " in out
    for case in ("loopback, unlimited", "25 MB/s per connection"):
        assert re.search(rf"target at least 3x faster on 8 jobs, {case}: (met|NOT met)", out)
    assert re.search(r"25 MB/s per connection: the zips alone take \d+\.\d\d s one after", out)
    assert re.search(r"target run's peak RSS under 100.0 MiB at every size: (met|NOT met)", out)
    assert "removed: True" in out
    assert "temporary files in TMPDIR" not in out  # `run` cleaned up after itself
    assert list(tmp_path.iterdir()) == []


def test_artifacts_refuses_a_bandwidth_that_is_not_a_rate(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_artifacts.py"), "--bandwidth", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "--bandwidth: expected megabytes a second, a number > 0, got '0'" in result.stderr


def test_diagnostics_scans_the_logs_next_to_grep_and_removes_its_scratch(tmp_path: Path) -> None:
    out = run_script("bench_diagnostics.py", tmp_path=tmp_path)
    assert re.search(r"\| 1\.0 MiB build log +\| \d+\.\d{3} +\| \d+\.\d{3} +\| [\d.]+x ", out)
    assert "| 4.0 MiB build log " in out
    assert re.search(r"target under 2 s for the 4\.0 MiB log: (met|NOT met)", out)
    assert re.search(r"target peak RSS under 50\.0 MiB: (met|NOT met)", out)
    assert re.search(r"target memory flat in the log's size .*: (met|NOT met)", out)
    assert "removed: True" in out
    assert list(tmp_path.iterdir()) == []


FAKE_DOCKER = """\
#!{python}
import sys
args = sys.argv[1:]
if args[0] == "info":
    sys.exit({info_status})
if args[:2] == ["image", "inspect"]:
    image = args[-1]
    print(286_900_000 if image == "python:3.12-slim" else
          291_900_000 if "-minimal:" in image else
          294_000_000 if "-compiled:" in image else 292_600_000)
    sys.exit(0)
if args[0] == "build":
    print("Step 6/7 : RUN pip install --no-cache-dir --no-compile /tmp/ectf-action")
    print("  Installing build dependencies: started")
    print("Successfully built ectf-action")
    sys.exit(0)
sys.exit(0)  # run, rmi
"""


def fake_docker(tmp_path: Path, *, info_status: int) -> Path:
    path = tmp_path / "bin" / "docker"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(FAKE_DOCKER).format(python=sys.executable, info_status=info_status)
    )
    path.chmod(0o755)
    return path


def test_image_reports_sizes_and_build_times(tmp_path: Path) -> None:
    docker = fake_docker(tmp_path, info_status=0)
    out = run_script("bench_image.py", "--docker", str(docker), tmp_path=tmp_path)
    assert "| minimal: requests pyyaml junit-xml | 291.9 MB | 5.0 MB " in out
    assert "| the action (root Dockerfile)       | 292.6 MB | 5.7 MB " in out
    assert "the action's image is 0.7 MB over the minimal one" in out
    assert "compiling every module to bytecode adds 1.4 MB" in out


def test_image_skips_with_a_reason_without_a_daemon(tmp_path: Path) -> None:
    docker = fake_docker(tmp_path, info_status=1)
    out = run_script("bench_image.py", "--docker", str(docker), tmp_path=tmp_path)
    assert "skipped: no Docker daemon answers `docker info`" in out
