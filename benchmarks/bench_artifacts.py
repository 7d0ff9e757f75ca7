"""Artifacts: `ectf-action run`'s download-and-extract against the organizers' way, on
the simulator over loopback; wall time and each side's peak memory.

- ours: the whole `ectf-action run` as a subprocess. The simulator's flow has jobs that
  finish at once and then a job that waits for the organizers, so `run` follows the
  flow, downloads and extracts every job's output in parallel (`EctfClient.
  download_job_output` + `artifacts.extract_zip` on the runner's worker threads), writes
  its reports and exits with status `pending`. Because that flow stays active, every
  repetition adopts the same flow and fetches the same zips: the simulator builds them
  once, before anything is timed.
- the organizers' way: a subprocess that GETs each job's output in turn with `requests`,
  streamed to a zip in 2 KiB chunks, then `zipfile.ZipFile.extractall`.

The 8-job flow is measured twice: over loopback as it is (downloads nearly free), and
with the simulator holding every download's connection to a rate
(`downloads.bandwidth_mbps`, 25 MB/s unless `--bandwidth` says otherwise), as a link over
the internet holds one TCP connection. Both sides get the same cap.

Peak memory is the child's own high-water mark (`wait4`'s ru_maxrss). Runs alternate
between the two sides; medians are reported. Everything (the simulator's zips, the
extracted files, the children's temporary files) lives in one scratch folder that is
removed at the end; a leftover temporary file of `run` is reported.

    python benchmarks/bench_artifacts.py             # 8 jobs x 50 MiB, unlimited and at
                                                     # 25 MB/s; one job of 50, 200 MiB
    python benchmarks/bench_artifacts.py --bandwidth 10 --bandwidth 50   # other caps
    python benchmarks/bench_artifacts.py --large     # ... and one job of 1 GiB
    python benchmarks/bench_artifacts.py --quick     # tiny sizes, for the smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

from ectf_action.runner import DOWNLOAD_WORKERS
from ectf_action.simulator import Scenario, Simulator

MIB = benchlib.MIB
TOKEN = "bench-artifacts-token"
GATE_JOB = "organizer_review"
BUILD_TIMEOUT = 1800.0
TARGET_RATIO = 3.0
TARGET_RSS = 100 * MIB
# A plausible rate for one HTTPS connection from a CI runner to a cloud server, chosen
# before measuring (benchmarks/README.md says why); other values with --bandwidth.
DEFAULT_BANDWIDTH_MBPS = 25.0
MB = 1_000_000  # the simulator's bandwidth is in MB (10**6 bytes) a second

# The organizers' client, as the API facts describe it: one GET per job, no session,
# the body streamed to a zip in 2 KiB chunks; then the extraction it leaves to the user.
ORGANIZERS_WAY = """
import json, sys, zipfile
from pathlib import Path
import requests

api_url, token, flow_id, dest = sys.argv[1:5]
headers = {"Authorization": f"Bearer {token}"}
flow = requests.get(f"{api_url}/api/flow/test/{flow_id}/", headers=headers).json()
dest = Path(dest)
for job in flow["jobs"]:
    if not job["has_artifacts"] or job["private"]:
        continue
    zip_path = dest / f"{job['id']}.zip"
    response = requests.get(f"{api_url}/api/flow/test/job/{job['id']}/", headers=headers,
                            stream=True)
    response.raise_for_status()
    with open(zip_path, "wb") as out:
        for chunk in response.iter_content(chunk_size=2048):
            out.write(chunk)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest / job["name"])
    zip_path.unlink()
"""


# Each step of both sides, one job at a time, in one child: where the time goes.
BREAKDOWN = """
import json, shutil, sys, time, zipfile
from pathlib import Path
import requests
from ectf_action.artifacts import ExtractLimits, extract_zip, job_dir_name, read_log_tail
from ectf_action.client import EctfClient

api_url, token, flow_id, scratch = sys.argv[1:5]
scratch = Path(scratch)
headers = {"Authorization": f"Bearer {token}"}
client = EctfClient(api_url, token)
rows = []
for job in client.get_flow("test", flow_id).jobs:
    if not job.has_artifacts or job.private:
        continue
    row = {"job": job.name}
    zip_path = scratch / "job.zip"
    started = time.perf_counter()
    response = requests.get(f"{api_url}/api/flow/test/job/{job.id}/", headers=headers,
                            stream=True)
    with open(zip_path, "wb") as out:
        for chunk in response.iter_content(chunk_size=2048):
            out.write(chunk)
    row["download, 2 KiB chunks"] = time.perf_counter() - started
    zip_path.unlink()
    started = time.perf_counter()
    client.download_job_output("test", job.id, zip_path)
    row["download_job_output"] = time.perf_counter() - started
    started = time.perf_counter()
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(scratch / "theirs")
    row["zipfile extractall"] = time.perf_counter() - started
    dest = scratch / "ours" / job_dir_name(job.name)
    started = time.perf_counter()
    extract_zip(zip_path, dest, ExtractLimits(max_bytes=1 << 40, max_files=1 << 20))
    row["extract_zip"] = time.perf_counter() - started
    started = time.perf_counter()
    read_log_tail(dest)
    row["read_log_tail"] = time.perf_counter() - started
    zip_path.unlink()
    shutil.rmtree(scratch / "theirs")
    shutil.rmtree(scratch / "ours")
    rows.append(row)
print(json.dumps(rows))
"""


@dataclass(frozen=True)
class JobPlan:
    """One job of the simulated flow and the files of its output zip."""

    name: str
    files: tuple[Mapping[str, Any], ...]

    @property
    def extracted_bytes(self) -> int:
        return sum(int(f["size"]) * int(f.get("count", 1)) for f in self.files)

    @property
    def file_count(self) -> int:
        return sum(int(f.get("count", 1)) for f in self.files)


def mixed_jobs(size: int, small_file: int) -> list[JobPlan]:
    """Eight jobs of *size* bytes each: incompressible, compressible text, zeros, and one
    of many small files."""
    jobs = [
        JobPlan(f"firmware-{n}", ({"name": "build/hsm.bin", "kind": "random", "size": size},))
        for n in (1, 2, 3)
    ]
    jobs += [
        JobPlan(f"trace-{n}", ({"name": "trace.txt", "kind": "text", "size": size},))
        for n in (1, 2, 3)
    ]
    jobs.append(JobPlan("flash-image", ({"name": "flash.img", "kind": "zeros", "size": size},)))
    count = max(1, size // small_file)
    jobs.append(
        JobPlan(
            "test-cases",
            ({"name": "cases/case-{i}.txt", "kind": "text", "size": small_file, "count": count},),
        )
    )
    return jobs


def single_job(size: int) -> list[JobPlan]:
    """One job of *size* bytes: half incompressible, half compressible text."""
    half = size // 2
    return [
        JobPlan(
            "big-output",
            (
                {"name": "build/image.bin", "kind": "random", "size": half},
                {"name": "build/trace.txt", "kind": "text", "size": size - half},
            ),
        )
    ]


def scenario_for(jobs: Sequence[JobPlan], bandwidth_mbps: float = 0.0) -> Scenario:
    """A test flow whose jobs finish at once, then one that waits for the organizers;
    each download's connection held to *bandwidth_mbps* (0: unlimited)."""
    specs: list[dict[str, Any]] = [
        {"name": job.name, "duration": 0, "artifacts": [dict(f) for f in job.files]} for job in jobs
    ]
    specs.append({"name": GATE_JOB, "needs": [job.name for job in jobs], "input": "organizer"})
    return Scenario.from_dict(
        {
            "time_scale": 1.0,
            "downloads": {"bandwidth_mbps": bandwidth_mbps},
            "flows": {"test": {"queue_delay": 0, "jobs": specs}},
        }
    )


@dataclass
class Flow:
    simulator: Simulator
    flow_id: str
    zip_bytes: int
    largest_zip: int
    extracted: tuple[int, int] | None = None  # (files, bytes), from the first run


def start_flow(simulator: Simulator) -> Flow:
    """Queue the flow and wait until every zip is built, so no timing includes that."""
    engine = simulator.engine
    flow_id = engine.queue_flow(
        simulator.scenario.default,
        "test",
        {"git_url": benchlib.GIT_URL, "commit_hash": benchlib.COMMIT},
    )
    snapshot = engine.wait_for_job(flow_id, GATE_JOB, "pending", timeout=60)
    sizes = []
    for job in snapshot.jobs:
        if job.name == GATE_JOB:
            continue
        path = engine.artifact_path(job.id, timeout=BUILD_TIMEOUT)
        if path is None:
            raise RuntimeError(f"the simulator built no zip for {job.name}")
        sizes.append(path.stat().st_size)
    return Flow(simulator, flow_id, sum(sizes), max(sizes))


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss: int


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under *root*."""
    files = size = 0
    for top, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(top, name)).st_size
    return files, size


def run_ours(flow: Flow, workspace: Path, env: dict[str, str], max_mb: int) -> Measured:
    dest = workspace / "ours"
    argv = [
        *benchlib.ectf_command(),
        *benchlib.run_args(flow.simulator.url, TOKEN),
        "--artifacts-path",
        "ours",
        "--max-artifact-mb",
        str(max_mb),
        "--on-pending",
        "exit",
    ]
    run = benchlib.run_child(argv, env=env, cwd=workspace).check("ectf-action run")
    if "pending" not in run.stdout + run.stderr:
        raise RuntimeError(f"ectf-action run did not stop on the pending job:\n{run.stdout}")
    measured = Measured(run.seconds, run.peak_rss)
    verify(dest, flow, "ectf-action run")
    shutil.rmtree(dest)
    return measured


def run_organizers(flow: Flow, workspace: Path, env: dict[str, str]) -> Measured:
    dest = workspace / "organizers"
    dest.mkdir()
    argv = [
        sys.executable,
        "-c",
        ORGANIZERS_WAY,
        flow.simulator.url,
        TOKEN,
        flow.flow_id,
        str(dest),
    ]
    run = benchlib.run_child(argv, env=env, cwd=workspace).check("the organizers' way")
    measured = Measured(run.seconds, run.peak_rss)
    verify(dest, flow, "the organizers' way")
    shutil.rmtree(dest)
    return measured


def verify(dest: Path, flow: Flow, who: str) -> None:
    """Both sides must have extracted the same files, or the timing means nothing."""
    got = tree_size(dest)
    expected = flow.extracted or got
    flow.extracted = expected
    if got != expected:
        raise RuntimeError(
            f"{who} extracted {got[0]} files / {got[1]} bytes, the other side "
            f"{expected[0]} / {expected[1]}"
        )


@dataclass(frozen=True)
class Comparison:
    label: str
    extracted: int
    files: int
    zip_bytes: int
    largest_zip: int
    ours: list[Measured]
    organizers: list[Measured]
    bandwidth_mbps: float = 0.0

    @property
    def speedup(self) -> float:
        return benchlib.median([m.seconds for m in self.organizers]) / benchlib.median(
            [m.seconds for m in self.ours]
        )


def compare(
    label: str, jobs: Sequence[JobPlan], scratch: Path, repeats: int, bandwidth_mbps: float = 0.0
) -> Comparison:
    workspace = scratch / "workspace"
    temp = scratch / "tmp"
    for folder in (workspace, temp):
        folder.mkdir(parents=True, exist_ok=True)
    env = benchlib.clean_env(scratch, TMPDIR=str(temp))
    extracted = sum(job.extracted_bytes for job in jobs)
    # Room for the logs `run` adds to nothing, and for rounding: the cap must not bite.
    max_mb = extracted // MIB + 64
    simulator = Simulator(
        scenario_for(jobs, bandwidth_mbps), token=TOKEN, workdir=scratch / "simulator"
    )
    with simulator:
        flow = start_flow(simulator)
        ours: list[Measured] = []
        organizers: list[Measured] = []
        for _ in range(repeats):
            organizers.append(run_organizers(flow, workspace, env))
            ours.append(run_ours(flow, workspace, env, max_mb))
            leftovers = list(temp.iterdir())
            if leftovers:
                print(
                    f"note: `ectf-action run` left {len(leftovers)} temporary files in "
                    f"TMPDIR: {', '.join(p.name for p in leftovers[:3])}"
                )
                for path in leftovers:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        files = flow.extracted[0] if flow.extracted else 0
        result = Comparison(
            label,
            extracted,
            files,
            flow.zip_bytes,
            flow.largest_zip,
            ours,
            organizers,
            bandwidth_mbps,
        )
    shutil.rmtree(scratch / "simulator", ignore_errors=True)
    return result


def breakdown(label: str, jobs: Sequence[JobPlan], scratch: Path) -> str:
    """Each step's seconds per job, measured one job at a time in one child process,
    and what they allow: fetching jobs in parallel cannot finish before the slowest job
    is fetched, so the organizers' total over our slowest job bounds the speed-up."""
    work = scratch / "breakdown"
    work.mkdir(parents=True, exist_ok=True)
    env = benchlib.clean_env(scratch, TMPDIR=str(work))
    with Simulator(scenario_for(jobs), token=TOKEN, workdir=scratch / "simulator") as sim:
        flow = start_flow(sim)
        run = benchlib.run_child(
            [sys.executable, "-c", BREAKDOWN, sim.url, TOKEN, flow.flow_id, str(work)], env=env
        ).check("the breakdown")
    shutil.rmtree(scratch / "simulator", ignore_errors=True)
    steps: list[dict[str, Any]] = json.loads(run.stdout)
    names = [k for k in steps[0] if k != "job"] if steps else []
    rows: list[list[object]] = [[step["job"], *(f"{step[n]:.2f}" for n in names)] for step in steps]
    rows.append(["all jobs", *(f"{sum(step[n] for step in steps):.2f}" for n in names)])
    theirs = sum(step[n] for step in steps for n in THEIR_STEPS)
    ours_each = {step["job"]: sum(step[n] for n in OUR_STEPS) for step in steps}
    slowest = max(ours_each, key=lambda job: ours_each[job])
    ours_all = sum(ours_each.values())
    lines = [
        f"{label}: seconds per step, one job at a time",
        "",
        benchlib.table(["job", *names], rows),
        "",
        f"the organizers' steps add up to {theirs:.2f} s; ours to {ours_all:.2f} s one job at "
        f"a time ({theirs / ours_all:.2f}x less work)",
        f"our slowest job, {slowest}, takes {ours_each[slowest]:.2f} s on its own: with every "
        f"job fetched in parallel on unlimited cores the speed-up is at most "
        f"{theirs / ours_each[slowest]:.2f}x, before start-up",
    ]
    return "\n".join(lines)


def transfer_floors(result: Comparison) -> str:
    """What the cap alone costs each side: the zips one after another (the organizers'),
    or `DOWNLOAD_WORKERS` at a time (ours, which cannot beat its largest zip either)."""
    rate = result.bandwidth_mbps * MB
    sequential = result.zip_bytes / rate
    parallel = max(result.largest_zip, result.zip_bytes / DOWNLOAD_WORKERS) / rate
    return (
        f"{result.label}: the zips alone take {sequential:.2f} s one after another and at "
        f"least {parallel:.2f} s {DOWNLOAD_WORKERS} at a time (the largest is "
        f"{benchlib.fmt_mib(result.largest_zip)}): transfer alone allows "
        f"{sequential / parallel:.2f}x"
    )


def bandwidth(text: str) -> float:
    """A --bandwidth value: MB a second per connection, more than zero."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected megabytes a second, a number > 0, got {text!r} (the unlimited case "
            "always runs)"
        )
    return value


THEIR_STEPS = ("download, 2 KiB chunks", "zipfile extractall")
OUR_STEPS = ("download_job_output", "extract_zip", "read_log_tail")


def rows_for(results: Sequence[Comparison]) -> Iterator[list[object]]:
    for r in results:
        ours_s = benchlib.median([m.seconds for m in r.ours])
        theirs_s = benchlib.median([m.seconds for m in r.organizers])
        yield [
            r.label,
            f"{r.files}",
            benchlib.fmt_mib(r.extracted),
            benchlib.fmt_mib(r.zip_bytes),
            f"{theirs_s:.2f}",
            f"{ours_s:.2f}",
            f"{r.speedup:.2f}x",
            benchlib.fmt_mib(max(m.peak_rss for m in r.organizers)),
            benchlib.fmt_mib(max(m.peak_rss for m in r.ours)),
        ]


HEADERS = [
    "case",
    "files",
    "extracted",
    "zips",
    "organizers' way s",
    "ectf-action run s",
    "speed-up",
    "organizers' peak RSS",
    "run's peak RSS",
]


def main(argv: Sequence[str] | None = None) -> int:
    options_parser = benchlib.parser(__doc__.splitlines()[0], repeats=3)
    options_parser.add_argument(
        "--large",
        action="store_true",
        help="also one job of 1 GiB (slow: the simulator builds the zip first)",
    )
    options_parser.add_argument(
        "--bandwidth",
        type=bandwidth,
        action="append",
        default=None,
        metavar="MBPS",
        help="measure the 8 jobs again with every download's connection held to MBPS "
        f"megabytes a second, on both sides; repeat for several (default "
        f"{DEFAULT_BANDWIDTH_MBPS:g})",
    )
    options_parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="folder for the zips and extracted files (default: the "
        "system's temporary folder); /dev/shm takes the disk "
        "out of the measurement",
    )
    options = options_parser.parse_args(argv)
    benchlib.exit_on_sigterm()
    repeats = 1 if options.quick else max(1, options.repeats)
    if options.quick:
        job_size, small_file, sizes = MIB, 16 * 1024, [MIB, 2 * MIB]
    else:
        job_size, small_file, sizes = 50 * MIB, 10 * 1024, [50 * MIB, 200 * MIB]
        if options.large:
            sizes.append(1024 * MIB)
    caps: list[float] = options.bandwidth or [DEFAULT_BANDWIDTH_MBPS]
    command = (
        "python benchmarks/bench_artifacts.py"
        + (" --quick" if options.quick else " --large" if options.large else "")
        + "".join(f" --bandwidth {cap:g}" for cap in options.bandwidth or ())
        + (f" --scratch {options.scratch}" if options.scratch else "")
    )
    print(benchlib.header("Artifacts", command))
    print(f"median of {repeats} alternating runs per side; peak RSS is the worst run's\n")
    with tempfile.TemporaryDirectory(prefix="ectf-bench-artifacts-", dir=options.scratch) as root:
        results = []
        label = f"8 jobs x {benchlib.fmt_mib(job_size)}"
        results.append(
            compare(label, mixed_jobs(job_size, small_file), Path(root) / "mixed", repeats)
        )
        print(benchlib.table(HEADERS, list(rows_for(results))))
        print()
        print(breakdown(label, mixed_jobs(job_size, small_file), Path(root) / "breakdown"))
        capped = []
        for cap in caps:
            capped.append(
                compare(
                    f"{label}, {cap:g} MB/s per connection",
                    mixed_jobs(job_size, small_file),
                    Path(root) / f"capped-{cap:g}",
                    repeats,
                    cap,
                )
            )
        print()
        print(benchlib.table(HEADERS, list(rows_for(capped))))
        print()
        for result in capped:
            print(transfer_floors(result))
        series = []
        for size in sizes:
            series.append(
                compare(
                    f"1 job x {benchlib.fmt_mib(size)}",
                    single_job(size),
                    Path(root) / f"single-{size}",
                    repeats,
                )
            )
        print()
        print(benchlib.table(HEADERS, list(rows_for(series))))
    print(f"\nscratch folder {root} removed: {not Path(root).exists()}")
    print(f"load average at the end: {benchlib.machine().load}")

    print()
    for result in [*results, *capped]:
        where = (
            f"{result.bandwidth_mbps:g} MB/s per connection"
            if result.bandwidth_mbps
            else "loopback, unlimited"
        )
        print(
            f"target at least {TARGET_RATIO:g}x faster on 8 jobs, {where}: "
            f"{'met' if result.speedup >= TARGET_RATIO else 'NOT met'} "
            f"({result.speedup:.2f}x)"
        )
    peaks = [max(m.peak_rss for m in r.ours) for r in [*results, *capped, *series]]
    print(
        f"target run's peak RSS under {benchlib.fmt_mib(TARGET_RSS)} at every size: "
        f"{'met' if max(peaks) < TARGET_RSS else 'NOT met'} "
        f"(highest {benchlib.fmt_mib(max(peaks))})"
    )
    singles = [max(m.peak_rss for m in r.ours) for r in series]
    print(
        f"run's peak RSS from the smallest to the largest single job: "
        f"{benchlib.fmt_mib(singles[0])} -> {benchlib.fmt_mib(singles[-1])} "
        f"({(singles[-1] - singles[0]) / MIB:+.1f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
