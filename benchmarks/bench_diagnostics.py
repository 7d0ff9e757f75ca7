"""Diagnostics: `diagnostics.scan_job_log` over build logs of 10 and 100 MB, in one pass,
against a plain `grep -c` over the same files; wall time and each side's peak memory.

- ours: a child process that imports `ectf_action.diagnostics` and scans one job's
  folder (its `build.log`) as the action does, then prints what it found: the job's
  first diagnostics kept, the rest counted.
- the baseline: `grep -c -E 'error|warning'` over the same file, which only counts
  lines and decodes nothing.

The logs are CI build logs with a GitHub-style timestamp on every line: make's progress
lines, compiler command lines (whose `-Werror=...` flags hold a marker word, so they
are decoded and matched like real diagnostics), and, every 200 compile steps, one of the
recorded real compiler outputs of tests/fixtures/diagnostics/ (GCC, Clang with colours,
cargo, CMake, collect2), each copy naming other files so that its diagnostics are new
ones (a job keeps its first 100 and counts the rest). Both sides read the same files
from the page cache (each file is read once before timing). Runs alternate; medians are
reported. Peak memory is the child's own high-water mark (`wait4`'s ru_maxrss),
start-up included: `python -c 'import ectf_action.diagnostics'` shows what start-up
alone costs. A child
started with vfork counts this script's own high-water mark as its floor, so the script
never holds a log in memory, and `true`'s figure is printed as that floor.

    python benchmarks/bench_diagnostics.py            # 10 and 100 MB
    python benchmarks/bench_diagnostics.py --quick    # 1 and 4 MB, for the smoke test
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchlib

MIB = benchlib.MIB
FIXTURES = benchlib.REPO / "tests" / "fixtures" / "diagnostics"
TARGET_SECONDS = 2.0
TARGET_RSS = 50 * MIB
FLAT_RSS = 5 * MIB  # "flat": the largest log costs at most this much more than the smallest
BLOCK_EVERY = 200  # compile steps between two recorded compiler outputs

SCAN = """
import json, sys
from pathlib import Path
from ectf_action.diagnostics import scan_job_log
found = scan_job_log(Path(sys.argv[1]), "build")
print(json.dumps({"kept": len(found.diagnostics), "errors": found.errors,
                  "warnings": found.warnings, "left_out": found.left_out}))
"""
IMPORT_ONLY = "import ectf_action.diagnostics"
_SOURCE_NAME = re.compile(r"(\w+)\.(c|h|rs|txt):")


def write_log(path: Path, size: int) -> None:
    """A build log of *size* bytes (cut at a line's end), the same for every run."""
    blocks = [
        (FIXTURES / f"{name}.log").read_text(encoding="utf-8").splitlines()
        for name in ("arm-none-eabi-gcc", "clang-color", "cargo", "cmake-error", "collect2")
    ]
    written = 0
    step = 0
    with path.open("w", encoding="utf-8") as out:
        while written < size:
            lines: list[str] = []
            for _ in range(BLOCK_EVERY):
                step += 1
                module = f"module_{step % 97}"
                lines.append(
                    f"[{step % 100:3d}%] Building C object CMakeFiles/hsm.dir/firmware/src/"
                    f"{module}.c.obj"
                )
                lines.append(
                    "/usr/bin/arm-none-eabi-gcc -DHSM_BUILD -I/design/firmware/inc -mcpu=cortex-m4 "
                    "-mthumb -Os -g -Wall -Wextra -Werror=implicit-function-declaration -o "
                    f"CMakeFiles/hsm.dir/firmware/src/{module}.c.obj -c "
                    f"/design/firmware/src/{module}.c"
                )
            # Each copy names other files, so its diagnostics are new ones, not repeats.
            copy = step // BLOCK_EVERY
            lines += [
                _SOURCE_NAME.sub(rf"\1_{copy}.\2:", line) for line in blocks[copy % len(blocks)]
            ]
            seconds = step // 50
            text = "".join(
                f"2026-01-29T{10 + seconds // 3600 % 12:02d}:{seconds // 60 % 60:02d}:"
                f"{seconds % 60:02d}.{n % 10_000_000:07d}Z {line}\n"
                for n, line in enumerate(lines)
            )
            text = text[: size - written]
            out.write(text)
            written += len(text.encode("utf-8"))


@dataclass
class Case:
    label: str
    job: Path
    size: int
    ours: list[benchlib.ChildRun]
    grep: list[benchlib.ChildRun]
    found: dict[str, int]

    def seconds(self, runs: Sequence[benchlib.ChildRun]) -> float:
        return benchlib.median([run.seconds for run in runs])

    @property
    def ratio(self) -> float:
        return self.seconds(self.ours) / self.seconds(self.grep)


def measure(label: str, job: Path, size: int, repeats: int) -> Case:
    log = job / "build.log"
    with log.open("rb") as warm:  # into the page cache, for both sides alike, in pieces:
        while warm.read(MIB):  # this process's memory is lent to every child (below)
            pass
    case = Case(label, job, size, [], [], {})
    grep = shutil.which("grep") or "grep"
    for _ in range(repeats):
        run = benchlib.run_child([grep, "-c", "-E", "error|warning", str(log)])
        if run.returncode not in (0, 1):  # 1: no line matched
            run.check("grep -c")
        case.grep.append(run)
        ours = benchlib.run_child([sys.executable, "-c", SCAN, str(job)]).check("the scan")
        case.ours.append(ours)
        case.found = json.loads(ours.stdout)
    return case


HEADERS = [
    "log",
    "grep -c s",
    "scan s",
    "scan / grep",
    "grep peak RSS",
    "scan peak RSS",
    "found: errors / warnings (kept, + not kept)",
]


def row(case: Case) -> list[object]:
    found = case.found
    return [
        case.label,
        f"{case.seconds(case.grep):.3f}",
        f"{case.seconds(case.ours):.3f}",
        f"{case.ratio:.1f}x",
        benchlib.fmt_mib(max(run.peak_rss for run in case.grep)),
        benchlib.fmt_mib(max(run.peak_rss for run in case.ours)),
        f"{found['errors']:,} / {found['warnings']:,} ({found['kept']}, +{found['left_out']:,})",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    options = benchlib.parser(__doc__.splitlines()[0], repeats=5).parse_args(argv)
    benchlib.exit_on_sigterm()
    repeats = 1 if options.quick else max(1, options.repeats)
    sizes = [MIB, 4 * MIB] if options.quick else [10 * MIB, 100 * MIB]
    command = "python benchmarks/bench_diagnostics.py" + (" --quick" if options.quick else "")
    print(benchlib.header("Diagnostics", command))
    print(f"median of {repeats} alternating runs per side; peak RSS is the worst run's\n")
    with tempfile.TemporaryDirectory(prefix="ectf-bench-diagnostics-") as root:
        cases = []
        for size in sizes:
            job = Path(root) / f"job-{size}"
            job.mkdir()
            write_log(job / "build.log", size)
            cases.append(measure(f"{benchlib.fmt_mib(size)} build log", job, size, repeats))
        start_up = [
            benchlib.run_child([sys.executable, "-c", IMPORT_ONLY]).check("the import")
            for _ in range(repeats)
        ]
        floor = benchlib.run_child([shutil.which("true") or "true"]).check("true")
        print(benchlib.table(HEADERS, [row(case) for case in cases]))
        print(
            f"\nstart-up alone (python -c '{IMPORT_ONLY}'): "
            f"{benchlib.median([run.seconds for run in start_up]):.3f} s, "
            f"{benchlib.fmt_mib(max(run.peak_rss for run in start_up))} peak RSS; "
            f"the floor under every child's peak RSS (`true`): {benchlib.fmt_mib(floor.peak_rss)}"
        )
    print(f"scratch folder {root} removed: {not Path(root).exists()}")
    print(f"load average at the end: {benchlib.machine().load}")

    largest = cases[-1]
    seconds = largest.seconds(largest.ours)
    print()
    print(
        f"target under {TARGET_SECONDS:g} s for the {benchlib.fmt_mib(largest.size)} log: "
        f"{'met' if seconds < TARGET_SECONDS else 'NOT met'} ({seconds:.2f} s, "
        f"{largest.ratio:.1f}x grep -c)"
    )
    peaks = [max(run.peak_rss for run in case.ours) for case in cases]
    highest = max(peaks)
    print(
        f"target peak RSS under {benchlib.fmt_mib(TARGET_RSS)}: "
        f"{'met' if highest < TARGET_RSS else 'NOT met'} (highest {benchlib.fmt_mib(highest)})"
    )
    growth = peaks[-1] - peaks[0]
    print(
        f"target memory flat in the log's size (within {benchlib.fmt_mib(FLAT_RSS)} from "
        f"{benchlib.fmt_mib(cases[0].size)} to {benchlib.fmt_mib(largest.size)}): "
        f"{'met' if growth <= FLAT_RSS else 'NOT met'} ({growth / MIB:+.1f} MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
