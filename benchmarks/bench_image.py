"""The action's image: size and cold build time (`docker build --no-cache`) against a
minimal image holding only the three runtime dependencies on the same base
(`benchmarks/minimal.Dockerfile`), and the start-up of `ectf-action --help` inside it.

The base is passed as `--build-arg PYTHON_IMAGE=...` (default python:3.12-slim, which
must be present locally: the Dockerfile's digest-pinned default cannot be pulled when no
registry is reachable). Builds of the two images alternate, so load from other work on
the machine falls on both alike. The action's image is built from the repository root,
as the GitHub runner builds it. Every image made here is removed at the end.

    python benchmarks/bench_image.py              # 3 builds of each
    python benchmarks/bench_image.py --quick      # 1 build of each, 2 start-ups

With no Docker daemon the script says so and exits 0 (nothing measured).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchlib

MINIMAL_DOCKERFILE = Path(__file__).resolve().with_name("minimal.Dockerfile")
# Compiles every module in the image to bytecode, to price the action image's
# `pip install --no-compile` (the runner starts a fresh container for every step, so
# without .pyc files every module is compiled again at every start).
COMPILED_DOCKERFILE = """\
ARG IMAGE
FROM ${IMAGE}
RUN python -m compileall -q -j 0 \\
    "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"""
BUILD_TIMEOUT = 900.0
RUN_TIMEOUT = 120.0


class Docker:
    """The docker command line, with a name prefix so this run's images are its own."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.tag_prefix = f"ectf-bench-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def unavailable(self, base: str) -> str | None:
        """Why nothing can be measured here, or None."""
        try:
            info = self.run("info", timeout=30)
        except FileNotFoundError:
            return f"`{self.executable}` is not installed"
        except subprocess.TimeoutExpired:
            return "`docker info` did not answer within 30 s"
        if info.returncode != 0:
            return (
                "no Docker daemon answers `docker info` (start one, e.g. `dockerd &`, then rerun)"
            )
        if self.run("image", "inspect", base).returncode != 0:
            return (
                f"the base image {base} is not present locally; pull or load it, or "
                "name another with --base"
            )
        return None

    def build(
        self,
        name: str,
        context: Path,
        dockerfile: Path,
        build_args: dict[str, str],
        *,
        no_cache: bool = True,
    ) -> Build:
        """Build and time it; each output line is stamped as it arrives, so the steps
        inside a `RUN` (pip's, for one) can be timed too."""
        tag = f"{self.tag_prefix}-{name}:{len(self.made)}"
        args = [self.executable, "build", "-t", tag, "-f", str(dockerfile)]
        if no_cache:
            args.append("--no-cache")
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        lines: list[tuple[float, str]] = []
        started = time.perf_counter()
        with subprocess.Popen(
            [*args, str(context)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append((time.perf_counter() - started, line.rstrip()))
            try:
                process.wait(timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            tail = "\n".join(line for _, line in lines[-40:])
            raise RuntimeError(f"docker build of {name} failed:\n{tail}")
        self.made.append(tag)
        return Build(tag, seconds, lines)

    def size(self, image: str) -> int:
        result = self.run("image", "inspect", "-f", "{{.Size}}", image)
        if result.returncode != 0:
            raise RuntimeError(f"cannot inspect {image}: {result.stderr.strip()}")
        return int(result.stdout.strip())

    def time_run(self, image: str, entrypoint: str, *args: str) -> float:
        started = time.perf_counter()
        result = self.run(
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            entrypoint,
            image,
            *args,
            timeout=RUN_TIMEOUT,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(
                f"{entrypoint} {' '.join(args)} in {image} failed: {result.stderr[-2000:]}"
            )
        return seconds

    def remove_all(self) -> None:
        if self.made:
            self.run("rmi", "--force", *self.made, timeout=120)
            self.made.clear()


@dataclass(frozen=True)
class Build:
    tag: str
    seconds: float
    lines: list[tuple[float, str]]  # (seconds since the build started, output line)

    def span(self, start: str, end: str) -> float | None:
        """Seconds from the first line holding *start* to the first after it holding
        *end*, or None when either is missing."""
        begin = next((t for t, line in self.lines if start in line), None)
        if begin is None:
            return None
        finish = next((t for t, line in self.lines if t >= begin and end in line), None)
        return None if finish is None else finish - begin


# pip's own progress lines around building our package from source (PEP 517, in an
# isolated environment into which it first installs the build backend).
OWN_BUILD_START = "Installing build dependencies: started"
OWN_BUILD_END = "Successfully built ectf-action"


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    options_parser = benchlib.parser(__doc__.splitlines()[0], repeats=3)
    options_parser.add_argument(
        "--base",
        default="python:3.12-slim",
        help="base image passed as PYTHON_IMAGE (default %(default)s)",
    )
    options_parser.add_argument(
        "--docker",
        default=os.environ.get("DOCKER", "docker"),
        help="docker executable (default: $DOCKER or docker)",
    )
    options = options_parser.parse_args(argv)
    benchlib.exit_on_sigterm()
    builds = 1 if options.quick else max(1, options.repeats)
    starts = 2 if options.quick else 10
    command = "python benchmarks/bench_image.py" + (" --quick" if options.quick else "")
    print(benchlib.header("Image", command))
    docker = Docker(options.docker)
    reason = docker.unavailable(options.base)
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    build_args = {"PYTHON_IMAGE": options.base}
    try:
        with tempfile.TemporaryDirectory(prefix="ectf-bench-image-") as scratch:
            context = Path(scratch)
            lock = benchlib.REPO / "requirements.lock"
            (context / "constraints.txt").write_text(lock.read_text() if lock.is_file() else "")
            times: dict[str, list[float]] = {"action": [], "minimal": []}
            own_build: list[float] = []
            tags: dict[str, str] = {}
            for _ in range(builds):
                minimal = docker.build("minimal", context, MINIMAL_DOCKERFILE, build_args)
                action = docker.build(
                    "action", benchlib.REPO, benchlib.REPO / "Dockerfile", build_args
                )
                tags["minimal"], tags["action"] = minimal.tag, action.tag
                times["minimal"].append(minimal.seconds)
                times["action"].append(action.seconds)
                span = action.span(OWN_BUILD_START, OWN_BUILD_END)
                if span is not None:
                    own_build.append(span)
            compiled_file = context / "compiled.Dockerfile"
            compiled_file.write_text(COMPILED_DOCKERFILE)
            compiled = docker.build("compiled", context, compiled_file, {"IMAGE": tags["action"]})
            tags["compiled"], compile_seconds = compiled.tag, compiled.seconds

            base_size = docker.size(options.base)
            sizes = {name: docker.size(tag) for name, tag in tags.items()}
            print(
                f"base {options.base}: {mb(base_size)}; {builds} cold builds of each, alternating\n"
            )
            minimal_build = benchlib.median(times["minimal"])
            rows: list[list[object]] = []
            for name, label in (
                ("minimal", "minimal: requests pyyaml junit-xml"),
                ("action", "the action (root Dockerfile)"),
            ):
                build = benchlib.median(times[name])
                rows.append(
                    [
                        label,
                        mb(sizes[name]),
                        mb(sizes[name] - base_size),
                        f"{build:.1f} ({min(times[name]):.1f}-{max(times[name]):.1f})",
                        f"{build / minimal_build:.2f}x",
                    ]
                )
            print(
                benchlib.table(
                    [
                        "image",
                        "size",
                        "over base",
                        "cold build s, median (min-max)",
                        "build vs minimal",
                    ],
                    rows,
                )
            )
            print(
                f"\nthe action's image is {mb(sizes['action'] - sizes['minimal'])} over the "
                "minimal one"
            )
            if own_build:
                print(
                    f"of the action's build, pip building ectf-action from source (isolated "
                    f"build environment with the build backend, metadata, wheel) took "
                    f"{benchlib.median(own_build):.1f} s (median)"
                )

            print(f"\n### Start-up inside the container (docker run, median of {starts})\n")
            start_times: dict[str, list[float]] = {}
            for _ in range(starts):
                for key, image, entry, args in (
                    ("python -c pass", tags["action"], "python", ("-c", "pass")),
                    (
                        "ectf-action --help (as built: --no-compile)",
                        tags["action"],
                        "ectf-action",
                        ("--help",),
                    ),
                    (
                        "ectf-action --help (modules compiled)",
                        tags["compiled"],
                        "ectf-action",
                        ("--help",),
                    ),
                    (
                        "python -c 'import ectf_action.runner' (as built)",
                        tags["action"],
                        "python",
                        ("-c", "import ectf_action.runner"),
                    ),
                    (
                        "python -c 'import ectf_action.runner' (compiled)",
                        tags["compiled"],
                        "python",
                        ("-c", "import ectf_action.runner"),
                    ),
                ):
                    start_times.setdefault(key, []).append(docker.time_run(image, entry, *args))
            bare = benchlib.median(start_times["python -c pass"])
            print(
                benchlib.table(
                    ["in the action's image", "ms, median (min-max)", "ms over python -c pass"],
                    [
                        [
                            key,
                            benchlib.spread(values),
                            f"{(benchlib.median(values) - bare) * 1000:+.0f}",
                        ]
                        for key, values in start_times.items()
                    ],
                )
            )
            print(
                f"\ncompiling every module to bytecode adds "
                f"{mb(sizes['compiled'] - sizes['action'])} to the image "
                f"(the extra layer took {compile_seconds:.1f} s to build)"
            )
            print(f"\nload average at the end: {benchlib.machine().load}")
    finally:
        docker.remove_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
