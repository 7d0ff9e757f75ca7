"""Shared by the benchmark scripts: machine facts, repeated timings, the peak memory of
one child process, and markdown tables.

Every number a script prints is measured in that same run, next to its baseline, so a
busy machine slows both sides and the ratio stays honest. Times are medians of several
runs because the machine is small (2 cores) and shared with other work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Machine:
    """What a results table must say about where it was measured."""

    cpus: int
    cpu_model: str
    python: str
    system: str
    date: str
    load: str

    def describe(self) -> str:
        return (
            f"{self.cpus} CPUs ({self.cpu_model}), Python {self.python}, {self.system}, "
            f"{self.date}, load average {self.load}"
        )


def machine() -> Machine:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    return Machine(
        cpus=os.cpu_count() or 1,
        cpu_model=model,
        python=platform.python_version(),
        system=f"{platform.system()} {platform.release()}",
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load=load,
    )


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: its wall time and its own peak resident memory."""

    seconds: float
    peak_rss: int  # bytes, from the kernel's high-water mark for this one process
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> ChildRun:
        if self.returncode != 0:
            raise RuntimeError(
                f"{what} exited with {self.returncode}:\n{self.stdout[-2000:]}{self.stderr[-2000:]}"
            )
        return self


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> ChildRun:
    """Run *argv* and measure it alone: `wait4` gives the rusage of exactly this child,
    so one run's peak memory is never mixed with another's (as RUSAGE_CHILDREN would)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            seconds=seconds,
            peak_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
            returncode=process.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """`median (min-max)` in milliseconds, for a table cell."""
    if not values:
        return "-"
    return f"{median(values) * 1000:.0f} ({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def parser(description: str, *, repeats: int) -> argparse.ArgumentParser:
    """The options every script shares: --quick (seconds, for the smoke test) and
    --repeats (how many runs each median is taken over)."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few repeats: proves the script works, measures nothing worth quoting",
    )
    result.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"runs per measurement; the median is reported (default {repeats})",
    )
    return result


def header(title: str, command: str) -> str:
    """The lines above every results table: what, where, when, and how to rerun it."""
    return f"## {title}\n\nmachine: {machine().describe()}\ncommand: `{command}`\n"


def ectf_command() -> list[str]:
    """How a user starts the program: the console script pip installed next to this
    Python, else `python -m ectf_action`."""
    script = Path(sys.executable).with_name("ectf-action")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("ectf-action")
    if found:
        return [found]
    return [sys.executable, "-m", "ectf_action"]


# The commit and repository every benchmark's `run` queues the test flow for.
COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT_URL = "ssh://git@github.com/team/design.git"


def run_args(api_url: str, token: str) -> list[str]:
    """`run`'s arguments for the test flow of COMMIT, after the program's own argv."""
    return [
        "run",
        "--flow",
        "test",
        "--commit",
        COMMIT,
        "--git-url",
        GIT_URL,
        "--token",
        token,
        "--api-url",
        api_url,
    ]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a child: ours, minus anything that would make it read a
    real configuration or behave as inside GitHub Actions."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ECTF_", "INPUT_", "GITHUB_", "RUNNER_"))
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `with` blocks still remove scratch folders and
    images when the script is stopped."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def fmt_mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"
