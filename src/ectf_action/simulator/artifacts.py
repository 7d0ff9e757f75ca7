"""The zips the simulated server hands out: job outputs and attack packages.

Logs read like the real thing (a git clone, a firmware build, test cases, a package
step), end the way the job ended, and are deterministic for a seed. Big files are
generated chunk by chunk straight into the zip on disk, so a 1 GB artifact never sits
in memory, and a build stops between chunks when the simulator stops.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .design import design_for
from .scenario import ArtifactSpec

CHUNK: Final = 1024 * 1024
_DEFAULT_SIZES: Final = {"text": 4096, "random": 64 * 1024, "zeros": 64 * 1024}
_ZIP64_THRESHOLD: Final = (1 << 31) - 1


class BuildCancelled(Exception):
    """The simulator stopped while a zip was being written."""


@dataclass(frozen=True)
class LogContext:
    """What a job's log talks about."""

    flow_name: str
    job_name: str
    team: str
    outcome: str  # succeeded | failed
    template: str = "generic"
    params: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 1.0
    seed: str = "0"
    design: str = "c"  # the language of the design a build job builds (design.py)

    @property
    def commit(self) -> str:
        value = self.params.get("commit_hash")
        return value if isinstance(value, str) and value else "0" * 40

    @property
    def git_url(self) -> str:
        value = self.params.get("git_url")
        return value if isinstance(value, str) and value else "ssh://git@github.com/team/design.git"

    @property
    def port(self) -> int:
        """The TCP port a `get_ports` job hands out; stable for the job."""
        digest = hashlib.sha256(f"port:{self.seed}".encode()).digest()
        return 20000 + int.from_bytes(digest[:4], "big") % 20000

    def rng(self, salt: str) -> random.Random:
        return random.Random(f"ectf-sim-artifact:{self.seed}:{salt}")


def build_zip(
    dest: Path,
    files: Sequence[ArtifactSpec],
    ctx: LogContext,
    *,
    cancel: threading.Event | None = None,
) -> int:
    """Write the zip for *files* to *dest* (through a temporary name); return its size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    stamp = ctx.started_at.astimezone(UTC)
    date_time = (
        max(stamp.year, 1980),
        stamp.month,
        stamp.day,
        stamp.hour,
        stamp.minute,
        stamp.second,
    )
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
            for spec in files:
                if not spec.applies_to(ctx.outcome):
                    continue
                for index in range(spec.count):
                    _check(cancel)
                    name = spec.name.replace("{i}", str(index)) if spec.count > 1 else spec.name
                    info = zipfile.ZipInfo(name, date_time=date_time)
                    info.compress_type = (
                        zipfile.ZIP_DEFLATED if spec.compress else zipfile.ZIP_STORED
                    )
                    info.external_attr = 0o644 << 16
                    size_hint = spec.size or 0
                    with archive.open(info, "w", force_zip64=size_hint >= _ZIP64_THRESHOLD) as out:
                        for chunk in file_chunks(spec, ctx, index):
                            _check(cancel)
                            out.write(chunk)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest.stat().st_size


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise BuildCancelled


def file_chunks(spec: ArtifactSpec, ctx: LogContext, index: int = 0) -> Iterator[bytes]:
    """The bytes of one file, in chunks of at most `CHUNK`."""
    size = spec.size if spec.size is not None else _DEFAULT_SIZES.get(spec.kind)
    if spec.kind == "log":
        yield from _log_chunks(ctx, spec.size)
    elif spec.kind == "content":
        yield from _split(spec.text.encode("utf-8"))
    elif spec.kind == "port":
        yield f"{ctx.port}\n".encode()
    elif spec.kind == "zeros":
        yield from _repeat(bytes(min(CHUNK, size or 0)), size or 0)
    elif spec.kind == "random":
        rng = ctx.rng(f"{spec.name}:{index}")
        remaining = size or 0
        while remaining > 0:
            step = min(CHUNK, remaining)
            yield rng.randbytes(step)
            remaining -= step
    else:
        yield from _text_chunks(ctx, spec, index, size or 0)


def _split(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


def _repeat(block: bytes, size: int) -> Iterator[bytes]:
    remaining = size
    while remaining > 0:
        step = min(len(block), remaining)
        yield block[:step]
        remaining -= step


_WORDS: Final = (
    "secure",
    "boot",
    "flash",
    "image",
    "hsm",
    "permission",
    "channel",
    "subscription",
    "decoder",
    "frame",
    "signature",
    "nonce",
    "counter",
    "firmware",
    "encrypt",
    "decrypt",
    "verify",
    "transfer",
    "interrogate",
    "listen",
    "receive",
    "write",
    "read",
    "list",
    "file",
    "slot",
    "key",
    "attestation",
    "replay",
)


def _text_chunks(ctx: LogContext, spec: ArtifactSpec, index: int, size: int) -> Iterator[bytes]:
    """Compressible text: numbered lines of a small vocabulary, a block made once and repeated."""
    rng = ctx.rng(f"{spec.name}:{index}")
    lines = [" ".join(rng.choice(_WORDS) for _ in range(9)) for _ in range(64)]
    parts: list[str] = []
    length = 0
    number = 0
    while length < min(size, CHUNK):
        line = f"{number:08d} {lines[number % len(lines)]}\n"
        parts.append(line)
        length += len(line)
        number += 1
    yield from _repeat("".join(parts).encode(), size)


# --- logs ------------------------------------------------------------------------


_STAMP_WIDTH: Final = len("2026-01-29T14:53:48.335Z ")


def render_log(ctx: LogContext, *, size: int | None = None) -> str:
    """A realistic log for the job as one string (see `iter_log`)."""
    data = "".join(iter_log(ctx, size=size)).encode("utf-8")
    return data[:size].decode("utf-8", "ignore") if size is not None else data.decode("utf-8")


def iter_log(ctx: LogContext, *, size: int | None = None) -> Iterator[str]:
    """The log's lines, newline included, timestamped across the job's duration.

    The opening and closing lines come from the job's template and end the way the job
    ended; with *size*, debug lines in between pad it to at most that many bytes (short
    of it by less than one line). Lines are produced one by one, so a log of any size
    never sits in memory.
    """
    render = _TEMPLATES.get(ctx.template, _generic)
    head, tail = render(ctx)
    fixed = sum(_STAMP_WIDTH + len(line.encode("utf-8")) + 1 for line in head + tail)
    budget = 0 if size is None else max(0, size - fixed)
    estimated = len(head) + len(tail) + budget // 60
    clock = _Stamps(ctx.started_at, ctx.duration / max(1, estimated), estimated)
    for line in head:
        yield clock.next() + line + "\n"
    remaining = budget
    for text in _fillers(ctx):
        line = clock.next() + text + "\n"
        if len(line) > remaining:
            break
        remaining -= len(line)
        yield line
    for line in tail:
        yield clock.next() + line + "\n"


class _Stamps:
    """`2026-01-29T14:53:48.335Z ` prefixes for successive lines, cheaply."""

    def __init__(self, start: datetime, step: float, last: int) -> None:
        self._start_ms = int(start.timestamp() * 1000)
        self._step_ms = step * 1000
        self._last = last
        self._number = 0
        self._second = -1
        self._prefix = ""

    def next(self) -> str:
        offset = int(self._step_ms * min(self._number, self._last))
        self._number += 1
        moment = self._start_ms + offset
        second, millis = divmod(moment, 1000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{millis:03d}Z "


def _log_chunks(ctx: LogContext, size: int | None) -> Iterator[bytes]:
    buffer: list[bytes] = []
    buffered = 0
    produced = 0
    for line in iter_log(ctx, size=size):
        data = line.encode("utf-8")
        buffer.append(data)
        buffered += len(data)
        if buffered >= CHUNK:
            chunk = b"".join(buffer)
            if size is not None:
                chunk = chunk[: size - produced]
            produced += len(chunk)
            yield chunk
            buffer, buffered = [], 0
    chunk = b"".join(buffer)
    yield chunk if size is None else chunk[: max(0, size - produced)]


def _fillers(ctx: LogContext) -> Iterator[str]:
    """Debug lines, from a pool drawn once, numbered so that no two are the same."""
    rng = ctx.rng("filler")
    pool = [
        f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} ok in {rng.randint(1, 999)} ms"
        for _ in range(251)
    ]
    number = 0
    while True:
        number += 1
        yield f"debug: step {number}: {pool[number % len(pool)]}"


Lines = tuple[list[str], list[str]]


def _pull(ctx: LogContext) -> Lines:
    rng = ctx.rng("pull")
    objects = rng.randint(400, 4000)
    head = [
        f"Cloning repository {ctx.git_url}",
        "Cloning into '/design'...",
        f"remote: Enumerating objects: {objects}, done.",
        f"remote: Counting objects: 100% ({objects}/{objects}), done.",
        f"remote: Compressing objects: 100% ({objects // 2}/{objects // 2}), done.",
        f"Receiving objects: 100% ({objects}/{objects}), {rng.uniform(0.5, 9):.2f} MiB, done.",
        f"Resolving deltas: 100% ({objects // 3}/{objects // 3}), done.",
    ]
    if ctx.outcome == "failed":
        tail = [
            f"fatal: reference is not a tree: {ctx.commit}",
            "error: the commit could not be checked out; push it and make sure the "
            "organizers' account can read the repository",
            "pull-repo failed with exit code 128",
        ]
    else:
        tail = [
            f"Checking out {ctx.commit}",
            f"HEAD is now at {ctx.commit[:7]} Design update",
            "Repository pulled successfully",
        ]
    return head, tail


def _build(ctx: LogContext) -> Lines:
    """The design's build (see `design.py`): a Docker build whose compile step is the
    output of CMake and make with arm-none-eabi-gcc, or of cargo, for this commit."""
    design = design_for(ctx.commit, ctx.design, broken=ctx.outcome == "failed")
    if design.language == "rust":
        steps = [
            "Step 1/6 : FROM rust:1.83-slim",
            "Step 2/6 : RUN rustup target add thumbv7em-none-eabihf",
            "Step 3/6 : COPY . /design",
            "Step 4/6 : RUN cd /design && cargo build --release",
        ]
        exit_code = 101
    else:
        steps = [
            "Step 1/6 : FROM ubuntu:24.04",
            "Step 2/6 : RUN apt-get update && apt-get install -y gcc-arm-none-eabi cmake make",
            "Step 3/6 : COPY . /design",
            "Step 4/6 : RUN cmake -S /design -B /design/firmware/build "
            "-DCMAKE_TOOLCHAIN_FILE=/design/firmware/arm-none-eabi.cmake "
            "&& make -C /design/firmware/build",
        ]
        exit_code = 2
    head = [f"Building design at commit {ctx.commit[:12]} for team {ctx.team}", *steps]
    head += design.compile_lines
    if ctx.outcome == "failed":
        return head, [*design.failure_lines, f"Build failed with exit code {exit_code}"]
    used = ctx.rng("build").randint(40_000, 200_000)
    tail = [
        "Memory region         Used Size  Region Size  %age Used",
        f"           FLASH:     {used} B       256 KB     {used / 2621.44:5.2f}%",
        f"             RAM:     {used // 6} B        64 KB     {used / 6 / 655.36:5.2f}%",
        "Step 5/6 : RUN python3 -m ectf.tools.gen_secrets",
        "Step 6/6 : COPY --from=build /design/build /out",
        f"Build succeeded: hsm.bin ({used} bytes, sha256 "
        f"{hashlib.sha256(f'{ctx.seed}:bin'.encode()).hexdigest()[:16]}...)",
    ]
    return head, tail


_FUNCTIONAL: Final = (
    "list_files",
    "read_file",
    "write_file",
    "listen",
    "interrogate",
    "receive_file",
    "permission_check",
    "pin_check",
    "reset_state",
)
_SECURITY: Final = (
    "no_read_without_permission",
    "no_write_without_pin",
    "replay_rejected",
    "tampered_file_rejected",
    "timing_constant",
    "wrong_pin_delay",
)


def _tests(ctx: LogContext) -> Lines:
    rng = ctx.rng("tests")
    names = _SECURITY if "secur" in ctx.job_name.lower() else _FUNCTIONAL
    failing = rng.randrange(len(names)) if ctx.outcome == "failed" else -1
    head = [
        f"Running {ctx.job_name} against {ctx.commit[:12]} ({len(names)} cases)",
        "Flashing hsm.bin to the test board... done",
        "Resetting board... done",
    ]
    for number, name in enumerate(names):
        took = rng.uniform(0.05, 3.0)
        verdict = "FAILED" if number == failing else "PASSED"
        head.append(f"[TEST] {name} ... {verdict} ({took:.2f}s)")
        if number == failing:
            head.append(f"    AssertionError: {name}: expected response 'OK', got 'ERR 0x3'")
    failed = 1 if failing >= 0 else 0
    tail = [f"{len(names) - failed} passed, {failed} failed"]
    tail.append(f"{ctx.job_name} {'failed' if failed else 'succeeded'}")
    return head, tail


def _package(ctx: LogContext) -> Lines:
    head = [
        f"Generating attack package for team {ctx.team}",
        f"Building design {ctx.commit[:12]} in release mode",
        "Collecting firmware images: hsm.bin, bootloader.bin",
        "Encrypting package with the team's handoff key",
    ]
    if ctx.outcome == "failed":
        return head, ["error: packaging failed: firmware image missing", "package failed"]
    return head, [
        "Package written: attack_package.enc",
        "Review the package, then approve it with the team_approval job",
        "package succeeded",
    ]


def _ports(ctx: LogContext) -> Lines:
    target = ctx.params.get("target_team", "unknown")
    head = [f"Allocating remote scenario ports for target team {target}"]
    if ctx.outcome == "failed":
        return head, ["error: no remote scenario port available", "get_ports failed"]
    return head, [f"Assigned TCP port {ctx.port}", "Wrote port.out", "get_ports succeeded"]


def _remote(ctx: LogContext) -> Lines:
    target = ctx.params.get("target_team", "unknown")
    head = [
        f"Waiting for remote hardware for target team {target}",
        "Flashing target design... done",
        f"Listening for the attacker on TCP port {ctx.port}",
    ]
    if ctx.outcome == "failed":
        return head, ["error: the remote board stopped responding", "run_remote_scenario failed"]
    return head, [
        "Attacker connected",
        "Scenario time elapsed; closing connection",
        "run_remote_scenario succeeded",
    ]


def _approval(ctx: LogContext) -> Lines:
    head = [f"{ctx.job_name}: waiting for input"]
    verdict = "approved" if ctx.outcome == "succeeded" else "rejected"
    return head, [f"{ctx.job_name}: {verdict}"]


def _generic(ctx: LogContext) -> Lines:
    head = [f"Starting {ctx.job_name} for team {ctx.team}"]
    return head, [f"{ctx.job_name} {ctx.outcome}"]


_TEMPLATES: Final[dict[str, Callable[[LogContext], Lines]]] = {
    "pull": _pull,
    "build": _build,
    "test": _tests,
    "package": _package,
    "ports": _ports,
    "remote": _remote,
    "approval": _approval,
    "generic": _generic,
}
