"""Start-up cost: `ectf-action --help`, and `ectf-action run` up to its first request,
against bare `python -c pass`; then where the import time goes.

`run` is pointed at a tiny HTTP server in this process that notes the moment the first
request arrives and answers 401, so the child stops at once; the time from spawning the
child to that moment is what a user waits before anything reaches the testing server.
All three commands are run in interleaved rounds, so a burst of load from other work
on the machine hits them alike; medians are reported.

    python benchmarks/bench_startup.py            # 15 rounds
    python benchmarks/bench_startup.py --quick    # 1 round, for the smoke test
"""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib

HELP_BUDGET_MS = 150.0
TOKEN = "bench-token-not-secret"
FIRST_REQUEST_TIMEOUT = 30.0
TOP_IMPORTS = 15

# Modules whose import cost the `--help` path is meant to avoid (the CLI imports them
# inside the handlers that need them).
LAZY_CANDIDATES = (
    "requests",
    "yaml",
    "junit_xml",
    "zipfile",
    "ectf_action.client",
    "ectf_action.follow",
    "ectf_action.action",
    "ectf_action.runner",
    "ectf_action.simulator",
    "ectf_action.demo",
)


class FirstRequestServer(http.server.ThreadingHTTPServer):
    """Answers every request with 401 and remembers when the first one of a round came."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.arrived = threading.Event()
        self.first_at = 0.0
        self.first_path = ""

    def reset(self) -> None:
        self.arrived.clear()
        self.first_at = 0.0
        self.first_path = ""

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FirstRequestServer

    def _answer(self) -> None:
        now = time.monotonic()
        if not self.server.arrived.is_set():
            self.server.first_at = now
            self.server.first_path = f"{self.command} {self.path}"
            self.server.arrived.set()
        body = b'{"detail":"Invalid token"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the benchmark prints its own lines."""


@contextlib.contextmanager
def serving() -> Iterator[FirstRequestServer]:
    """A FirstRequestServer answering on a thread until the block ends."""
    with FirstRequestServer() as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join()


def time_command(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds for one run to exit (output discarded)."""
    started = time.perf_counter()
    subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=60,
    )
    return time.perf_counter() - started


def time_to_first_request(
    server: FirstRequestServer, env: dict[str, str], cwd: Path
) -> tuple[float | None, str]:
    """Seconds from spawning `run` to its first request, or None and the reason."""
    server.reset()
    argv = [*benchlib.ectf_command(), *benchlib.run_args(server.url, TOKEN)]
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = started + FIRST_REQUEST_TIMEOUT
    while not server.arrived.wait(0.005):
        if process.poll() is not None or time.monotonic() > deadline:
            break
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    if server.arrived.is_set():
        return server.first_at - started, server.first_path
    tail = (err or out).strip().splitlines()[-3:]
    return None, f"no request (exit {process.returncode}): {' / '.join(tail)}"


@dataclass(frozen=True)
class ImportEntry:
    name: str
    self_us: int
    cumulative_us: int
    depth: int
    parent: str  # the module whose import pulled this one in ("" at the top)


def python_argv(ectf: Sequence[str]) -> list[str]:
    """The program as arguments to this Python: the console script's file, or -m."""
    if len(ectf) == 1:
        return [ectf[0]]
    return ["-m", "ectf_action"]


def import_table(entries: Sequence[ImportEntry]) -> str:
    return benchlib.table(
        ["module", "cumulative ms", "self ms", "imported by"],
        [
            [
                e.name,
                f"{e.cumulative_us / 1000:.1f}",
                f"{e.self_us / 1000:.1f}",
                e.parent or "(top)",
            ]
            for e in entries
        ],
    )


def import_profile(argv: Sequence[str], env: dict[str, str], cwd: Path) -> list[ImportEntry]:
    """`python -X importtime`, parsed, each entry with the module that imported it."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return parse_importtime(run.stderr)


def parse_importtime(text: str) -> list[ImportEntry]:
    """Children are printed before their parent, one level deeper (two spaces)."""
    rows: list[tuple[str, int, int, int]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_part, cumulative, name = line.split("|", 2)
        stripped = name.lstrip(" ")
        depth = (len(name) - len(stripped) - 1) // 2
        rows.append((stripped.strip(), int(self_part.split(":")[1]), int(cumulative), depth))
    entries = []
    for index, (name, self_us, cumulative_us, depth) in enumerate(rows):
        parent = next((r[0] for r in rows[index + 1 :] if r[3] < depth), "")
        entries.append(ImportEntry(name, self_us, cumulative_us, depth, parent))
    return entries


def third_party(entries: Sequence[ImportEntry]) -> list[ImportEntry]:
    """Top-level imports of modules that are neither the standard library nor ours."""
    ours_or_stdlib = set(sys.stdlib_module_names) | {
        "ectf_action",
        "_distutils_hack",
        "sitecustomize",
        "usercustomize",
    }
    return [
        e
        for e in entries
        if e.name.split(".")[0] not in ours_or_stdlib
        and e.parent.split(".")[0] in ours_or_stdlib | {""}
    ]


def import_cost(module: str, env: dict[str, str], cwd: Path, repeats: int) -> float | None:
    """Median seconds of `python -c 'import module'` (None if it does not import)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            env=env,
            cwd=cwd,
            capture_output=True,
            check=False,
            timeout=60,
        )
        if run.returncode != 0:
            return None
        times.append(time.perf_counter() - started)
    return benchlib.median(times)


HELP_PHASES = """
import time
started = time.perf_counter()
import ectf_action.cli as cli
imported = time.perf_counter()
import contextlib, io, json
begun = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    cli.main(["--help"])
helped = time.perf_counter()
build = getattr(cli, "build_parser", None)
if build is not None:
    build()
built = time.perf_counter()
print(json.dumps([imported - started, helped - begun, built - helped]))
"""


def help_phases(env: dict[str, str], cwd: Path, repeats: int) -> dict[str, float]:
    """Inside one process: importing the CLI module, then `main(["--help"])` (which
    builds the parser tree, formats and prints), then building the tree once more to
    show its share (warm: argparse's own imports are done by then)."""
    samples: list[list[float]] = []
    for _ in range(repeats):
        run = subprocess.run(
            [sys.executable, "-c", HELP_PHASES],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        samples.append(json.loads(run.stdout))
    names = (
        "import ectf_action.cli",
        "main(['--help'])",
        "build_parser() again, warm (part of main)",
    )
    return {name: benchlib.median([s[i] for s in samples]) for i, name in enumerate(names)}


def main(argv: Sequence[str] | None = None) -> int:
    options = benchlib.parser(__doc__.splitlines()[0], repeats=15).parse_args(argv)
    rounds = 1 if options.quick else max(1, options.repeats)
    command = "python benchmarks/bench_startup.py" + (" --quick" if options.quick else "")
    print(benchlib.header("Start-up", command))
    with tempfile.TemporaryDirectory(prefix="ectf-bench-startup-") as scratch:
        cwd = Path(scratch)
        # Compiled modules are cached as after a normal pip install, but under a prefix
        # in the scratch folder: the numbers do not depend on whether this machine sets
        # PYTHONDONTWRITEBYTECODE, and the source tree is not touched.
        env = benchlib.clean_env(cwd, PYTHONPYCACHEPREFIX=str(cwd / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        ectf = benchlib.ectf_command()
        print(f"program: {' '.join(ectf)}\n")
        bare: list[float] = []
        times: dict[str, list[float]] = {}
        notes: dict[str, str] = {}
        with serving() as server:

            def help_once() -> tuple[float | None, str]:
                return time_command([*ectf, "--help"], env, cwd), ""

            def run_once() -> tuple[float | None, str]:
                return time_to_first_request(server, env, cwd)

            commands = {
                "ectf-action --help": help_once,
                "ectf-action run, to its first request": run_once,
            }
            # A warm-up of each fills the bytecode cache before anything is timed.
            time_command([sys.executable, "-c", "pass"], env, cwd)
            for measure in commands.values():
                measure()
            for _ in range(rounds):
                bare.append(time_command([sys.executable, "-c", "pass"], env, cwd))
                for name, measure in commands.items():
                    seconds, notes[name] = measure()
                    if seconds is not None:
                        times.setdefault(name, []).append(seconds)

        base = benchlib.median(bare)
        rows: list[list[object]] = [["python -c pass", benchlib.spread(bare), "-", "baseline"]]
        for key, values in times.items():
            rows.append(
                [
                    key,
                    benchlib.spread(values),
                    f"{(benchlib.median(values) - base) * 1000:+.0f}",
                    f"{benchlib.median(values) / base:.2f}x",
                ]
            )
        print(benchlib.table(["command", "ms, median (min-max)", "ms over bare", "ratio"], rows))
        print(f"\n{rounds} interleaved rounds.")
        help_times = times.get("ectf-action --help", [])
        over = (benchlib.median(help_times) - base) * 1000
        verdict = "met" if over <= HELP_BUDGET_MS else "NOT met"
        print(
            f"target `--help` within {HELP_BUDGET_MS:.0f} ms of bare Python: {verdict} "
            f"({over:+.0f} ms)"
        )
        for key, note in notes.items():
            if key.startswith("ectf-action run"):
                print(f"{key}: {note if key in times else 'no request: ' + note}")

        print("\n### Where `--help`'s time goes (in one process, median)\n")
        print(
            benchlib.table(
                ["phase", "ms"],
                [
                    [k, f"{v * 1000:.1f}"]
                    for k, v in help_phases(env, cwd, 1 if options.quick else rounds).items()
                ],
            )
        )

        print("\n### Import profile of `ectf-action --help` (python -X importtime)\n")
        entries = import_profile([*python_argv(ectf), "--help"], env, cwd)
        top = sorted(entries, key=lambda e: e.cumulative_us, reverse=True)[:TOP_IMPORTS]
        print(import_table(top))
        help_modules = {e.name for e in entries}
        ours = sorted(
            (e for e in entries if e.name.startswith("ectf_action")), key=lambda e: e.name
        )
        print(
            "\nour modules on the --help path: "
            + ", ".join(f"{e.name} ({e.cumulative_us / 1000:.1f} ms)" for e in ours)
        )
        outside = third_party(entries)
        if outside:
            print("third-party modules imported on the --help path:")
            for e in outside:
                print(f"  {e.name} ({e.cumulative_us / 1000:.1f} ms), imported by {e.parent}")
        else:
            print("no third-party module is imported on the --help path")

        with serving() as server:
            run_entries = import_profile(
                [*python_argv(ectf), *benchlib.run_args(server.url, TOKEN)], env, cwd
            )
        run_modules = {e.name for e in run_entries}
        print("\n### Import profile of `ectf-action run` (to its exit after a 401)\n")
        top = sorted(run_entries, key=lambda e: e.cumulative_us, reverse=True)[:TOP_IMPORTS]
        print(import_table(top))
        print(
            f"\nmodules imported: --help {len(help_modules)}, run {len(run_modules)} "
            f"({len(run_modules - help_modules)} more)"
        )

        print("\n### Where lazy imports pay\n")
        print("Median wall time of `python -c 'import X'` less bare Python: what")
        print("`--help` would pay for each module if the CLI imported it at the top.\n")
        cost_repeats = 1 if options.quick else max(3, rounds // 2)
        rows = []
        modules = ("ectf_action.cli", *LAZY_CANDIDATES)
        for module in modules[:3] if options.quick else modules:
            cost = import_cost(module, env, cwd, cost_repeats)
            if cost is None:
                continue
            on_help = "yes" if module in help_modules else "no (lazy)"
            on_run = "yes" if module in run_modules else "no"
            rows.append([module, f"{(cost - base) * 1000:.0f}", on_help, on_run])
        print(benchlib.table(["module", "ms over bare", "on --help path", "on run path"], rows))
        print(f"\nload average at the end: {benchlib.machine().load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
