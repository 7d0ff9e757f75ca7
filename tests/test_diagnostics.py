"""Diagnostics in build logs: recorded real compiler output (tests/fixtures/diagnostics/,
each with the diagnostics it must give as a golden JSON file), the line forms one by
one, prefixes and colours, chunk boundaries, hostile lines, and the per-job limit."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from conftest import assert_golden
from ectf_action.diagnostics import (
    CHUNK_BYTES,
    Diagnostic,
    Severity,
    scan_job_log,
    scan_lines,
)

FIXTURES = Path(__file__).parent / "fixtures" / "diagnostics"
RECORDED = sorted(path.stem for path in FIXTURES.glob("*.log"))


def as_json(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic]) -> str:
    rows = [
        {key: value for key, value in dataclasses.asdict(d).items() if value not in (None, ())}
        for d in diagnostics
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def job_with_log(tmp_path: Path, text: str | bytes, name: str = "build.log") -> Path:
    job = tmp_path / "job"
    job.mkdir(exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    (job / name).write_bytes(data)
    return job


def one(lines: list[str]) -> Diagnostic:
    found = list(scan_lines(lines))
    assert len(found) == 1, found
    return found[0]


def test_every_recorded_output_has_its_golden_file() -> None:
    assert set(RECORDED) == {"arm-none-eabi-gcc", "cargo", "clang-color", "cmake-error", "collect2"}


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_outputs_give_their_diagnostics(name: str, tmp_path: Path) -> None:
    log = FIXTURES / f"{name}.log"
    shutil.copy(log, job_with_log(tmp_path, "") / "build.log")
    found = scan_job_log(tmp_path / "job", "build")
    assert all(d.job == "build" for d in found.diagnostics)
    assert_golden(FIXTURES / f"{name}.json", as_json(found.diagnostics))
    # The chunked reader and the line-by-line one agree.
    lines = log.read_text(encoding="utf-8").splitlines()
    assert list(scan_lines(lines, job="build")) == list(found.diagnostics)


def test_timestamps_and_colours_do_not_change_what_is_found() -> None:
    lines = (FIXTURES / "clang-color.log").read_text(encoding="utf-8").splitlines()
    assert "\x1b[" in "".join(lines)
    stamped = [f"2026-01-29T14:53:{i % 60:02d}.{i:03d}Z {line}" for i, line in enumerate(lines)]
    boxed = [f"#12 {i}.{i % 10}00 {line}" for i, line in enumerate(lines)]
    plain = list(scan_lines(lines))
    assert plain and list(scan_lines(stamped)) == plain == list(scan_lines(boxed))
    assert plain[0].message == "unknown type name 'frame_t'"


def test_the_clang_error_keeps_its_include_site_and_make_directory() -> None:
    lines = (FIXTURES / "clang-color.log").read_text(encoding="utf-8").splitlines()
    first = next(scan_lines(lines))
    assert (first.path, first.line, first.column) == (
        "/design/firmware/inc/host_messaging.h",
        5,
        39,
    )
    assert first.included_from == ("/design/firmware/src/uart.c", 2)
    assert first.directory == "/design/build-clang"
    assert first.severity is Severity.ERROR and first.tool == "gcc"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "src/uart.c:12:5: error: 'x' undeclared (first use in this function)",
            (
                "error",
                "gcc",
                "src/uart.c",
                12,
                5,
                None,
                "'x' undeclared (first use in this function)",
            ),
        ),
        (
            "src/uart.c:12: error: no column here",
            ("error", "gcc", "src/uart.c", 12, None, None, "no column here"),
        ),
        (
            "inc/a.h:3:10: fatal error: b.h: No such file or directory",
            ("error", "gcc", "inc/a.h", 3, 10, None, "b.h: No such file or directory"),
        ),
        (
            "main.c:4:9: warning: unused variable 'n' [-Wunused-variable]",
            ("warning", "gcc", "main.c", 4, 9, "-Wunused-variable", "unused variable 'n'"),
        ),
        (
            "main.c:5:5: error: implicit declaration of function 'f' "
            "[-Werror=implicit-function-declaration]",
            (
                "error",
                "gcc",
                "main.c",
                5,
                5,
                "-Werror=implicit-function-declaration",
                "implicit declaration of function 'f'",
            ),
        ),
        (
            r"C:\design\src\uart.c:7:1: warning: no newline at end of file",
            ("warning", "gcc", r"C:\design\src\uart.c", 7, 1, None, "no newline at end of file"),
        ),
        (
            "arm-none-eabi-gcc: error: uart.c: No such file or directory",
            ("error", "gcc", None, None, None, None, "uart.c: No such file or directory"),
        ),
        (
            "/design/src/flash.c:40: undefined reference to `flash_erase'",
            (
                "error",
                "ld",
                "/design/src/flash.c",
                40,
                None,
                None,
                "undefined reference to `flash_erase'",
            ),
        ),
        (
            "flash.c:(.text.flash_write+0x1c): undefined reference to `flash_erase'",
            ("error", "ld", "flash.c", None, None, None, "undefined reference to `flash_erase'"),
        ),
        (
            "/usr/bin/ld: main.o:(.text+0x5): undefined reference to `foo'",
            ("error", "ld", "main.o", None, None, None, "undefined reference to `foo'"),
        ),
        (
            "/usr/bin/ld: cannot find -lcrypto: No such file or directory",
            (
                "error",
                "ld",
                None,
                None,
                None,
                None,
                "cannot find -lcrypto: No such file or directory",
            ),
        ),
        (
            "arm-none-eabi-ld: warning: hsm.elf has a LOAD segment with RWX permissions",
            (
                "warning",
                "ld",
                None,
                None,
                None,
                None,
                "hsm.elf has a LOAD segment with RWX permissions",
            ),
        ),
        (
            "Makefile:12: *** missing separator.  Stop.",
            ("error", "make", "Makefile", 12, None, None, "missing separator. Stop."),
        ),
        (
            "make: *** No rule to make target 'src/x.c', needed by 'x.o'.  Stop.",
            (
                "error",
                "make",
                None,
                None,
                None,
                None,
                "No rule to make target 'src/x.c', needed by 'x.o'. Stop.",
            ),
        ),
        (
            'CMake Error: The source directory "/design/x" does not exist.',
            (
                "error",
                "cmake",
                None,
                None,
                None,
                None,
                'The source directory "/design/x" does not exist.',
            ),
        ),
        (
            "error: the commit could not be checked out",
            ("error", "log", None, None, None, None, "the commit could not be checked out"),
        ),
    ],
)
def test_line_forms(line: str, expected: tuple[object, ...]) -> None:
    found = one([line])
    got = (
        found.severity.value,
        found.tool,
        found.path,
        found.line,
        found.column,
        found.code,
        found.message,
    )
    assert got == expected


@pytest.mark.parametrize(
    "line",
    [
        "[ 45%] Building C object CMakeFiles/hsm.dir/firmware/src/error.c.obj",
        "src/t.c: In function 'handle_error':",
        "cc1: all warnings being treated as errors",
        "3 warnings and 1 error generated.",
        "For more information about this error, try `rustc --explain E0425`.",
        "Step 4/6 : RUN make -C /design/firmware # build: ld: ok",
        "    decrypt_frame(buf, len, key);  /* --> error */",
    ],
)
def test_lines_that_only_mention_errors_are_not_diagnostics(line: str) -> None:
    assert list(scan_lines([line])) == []


def test_follow_ups_are_marked() -> None:
    lines = [
        "collect2: error: ld returned 1 exit status",
        "make[2]: *** [CMakeFiles/hsm.dir/build.make:90: hsm.elf] Error 1",
        "clang: error: linker command failed with exit code 1 (use -v to see invocation)",
        'error: could not compile `hsm` (bin "hsm") due to 2 previous errors',
        "error: aborting due to 1 previous error",
        'warning: `hsm` (bin "hsm") generated 3 warnings',
    ]
    found = list(scan_lines(lines))
    assert len(found) == len(lines) and all(d.follow_up for d in found)
    assert not one(["make: *** No rule to make target 'all'.  Stop."]).follow_up


def test_notes_attach_to_the_diagnostic_before_them() -> None:
    lines = [
        "src/a.c:3:6: error: conflicting types for 'f'; have 'int(void)'",
        "src/a.c:2:6: note: previous declaration of 'f' with type 'void(void)'",
        "    2 | void f(void);",
        "src/a.c:9:1: note: a second note",
        "src/a.c:9:1: note: a third",
        "src/a.c:9:1: note: a fourth, beyond the limit",
    ]
    found = one(lines)
    assert found.notes == (
        "src/a.c:2: previous declaration of 'f' with type 'void(void)'",
        "src/a.c:9: a second note",
        "src/a.c:9: a third",
    )
    assert list(scan_lines(["src/a.c:2:6: note: an orphan note"])) == []


def test_rust_headers_take_the_location_below_them() -> None:
    lines = [
        "error[E0308]: mismatched types",
        "  --> src/uart.rs:14:20",
        "   |",
        "14 |     let n: u8 = read_len();",
        "   |            --   ^^^^^^^^^^ expected `u8`, found `u32`",
        "   |",
        "  ::: src/other.rs:3:5",
        "   = note: expected type `u8`",
        "  --> src/ignored.rs:1:1",
    ]
    found = one(lines)
    assert (found.tool, found.path, found.line, found.column, found.code) == (
        "rustc",
        "src/uart.rs",
        14,
        20,
        "E0308",
    )
    assert found.text == "mismatched types [E0308]" and found.notes == ("expected type `u8`",)


def test_make_directories_nest_and_unwind() -> None:
    lines = [
        "make: Entering directory '/design'",
        "make[1]: Entering directory '/design/firmware'",
        "src/a.c:1:1: warning: inner",
        "make[1]: Leaving directory '/design/firmware'",
        "src/b.c:1:1: warning: outer",
        "make: Leaving directory '/design'",
        "ninja: Entering directory `build'",
        "src/c.c:1:1: warning: ninja",
        "make: Entering directory \u2018/quoted\u2019",
        "src/d.c:1:1: warning: typographic quotes",
    ]
    assert [d.directory for d in scan_lines(lines)] == [
        "/design/firmware",
        "/design",
        "build",
        "/quoted",
    ]


def test_cmake_messages_come_from_the_lines_below() -> None:
    found = list(
        scan_lines(
            [
                "CMake Error at CMakeLists.txt:3 (project):",
                "  No CMAKE_C_COMPILER could be found.",
                "",
                "-- done",
            ]
        )
    )
    assert [(d.path, d.line, d.message) for d in found] == [
        ("CMakeLists.txt", 3, "No CMAKE_C_COMPILER could be found.")
    ]
    cut_short = one(["CMake Warning (dev) at cmake/arm.cmake:8 (set):"])
    assert (cut_short.severity, cut_short.message) == (Severity.WARNING, "CMake warning in set")


def padded_to(size: int, tail: str) -> bytes:
    """Filler lines so that the next byte written is at offset *size*."""
    line = b"x" * 99 + b"\n"
    count, rest = divmod(size, len(line))
    return line * count + b"y" * (rest - 1) + b"\n" + tail.encode() if rest else line * count


def test_diagnostics_across_a_chunk_boundary(tmp_path: Path) -> None:
    # A CMake header ends the first chunk and its message starts the next; a rustc
    # header and its location straddle the next boundary; a line is cut in two.
    head = padded_to(CHUNK_BYTES - len("CMake Error at CMakeLists.txt:9 (add_library):\n"), "")
    part = head + b"CMake Error at CMakeLists.txt:9 (add_library):\n  Bad library name.\n\n"
    part += padded_to(
        2 * CHUNK_BYTES - len(part) - len("error[E0425]: cannot find value `x`\n"), ""
    )
    part += b"error[E0425]: cannot find value `x`\n --> src/main.rs:3:5\n"
    part += padded_to(3 * CHUNK_BYTES - len(part) - 10, "")
    part += b"src/a.c:1:2: warning: cut across the boundary\n"
    found = scan_job_log(job_with_log(tmp_path, part), "build").diagnostics
    assert [(d.path, d.line, d.message) for d in found] == [
        ("CMakeLists.txt", 9, "Bad library name."),
        ("src/main.rs", 3, "cannot find value `x`"),
        ("src/a.c", 1, "cut across the boundary"),
    ]


def test_a_huge_line_is_cut_without_holding_it(tmp_path: Path) -> None:
    huge = b"src/a.c:1:1: error: " + b"e" * (40 * 1024 * 1024) + b"\n"
    log = huge + b"src/b.c:2:3: warning: after the huge line\n" + b"z" * (5 * 1024 * 1024)
    job = job_with_log(tmp_path, log)
    tracemalloc.start()
    try:
        found = scan_job_log(job, "build")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    first, second = found.diagnostics
    assert (
        first.path == "src/a.c" and len(first.message) == 500
    )  # cut at MAX_LINE_BYTES, shown shorter
    assert (second.path, second.message) == ("src/b.c", "after the huge line")


def test_a_job_keeps_its_first_diagnostics_and_counts_the_rest(tmp_path: Path) -> None:
    lines = [f"src/w{i}.c:{i}:1: warning: w{i}" for i in range(250)]
    lines += ["src/w0.c:0:1: warning: w0"] * 10  # a header's warning, once per file
    lines += [f"src/e{i}.c:1:1: error: e{i}" for i in range(5)]
    lines += ["make: *** [Makefile:1: all] Error 2"] * 8
    found = scan_job_log(job_with_log(tmp_path, "\n".join(lines) + "\n"), "build", limit=100)
    kept = [d for d in found.diagnostics if not d.follow_up]
    assert len(kept) == 100 and kept[0].message == "w0" and kept[-1].message == "w99"
    assert (found.warnings, found.errors, found.left_out) == (250, 5, 155)
    assert sum(d.follow_up for d in found.diagnostics) == 5  # follow-ups are capped too
    assert found.complete


def test_a_job_log_is_read_from_its_log_files_only(tmp_path: Path) -> None:
    job = job_with_log(tmp_path, "a.c:1:1: error: from the log\n", name="build.log")
    (job / "notes.txt").write_text("b.c:1:1: error: not the job's log\n")
    (job / "second.log").write_text("make: Entering directory '/x'\n")
    (job / "third.log").write_text("c.c:1:1: warning: no directory carried over\n")
    found = scan_job_log(job, "build").diagnostics
    assert [(d.path, d.directory) for d in found] == [("a.c", None), ("c.c", None)]


def test_the_scanned_bytes_are_bounded(tmp_path: Path) -> None:
    job = job_with_log(
        tmp_path, "a.c:1:1: error: early\n" + "x" * 1000 + "\nb.c:1:1: error: late\n"
    )
    found = scan_job_log(job, "build", max_bytes=100)
    assert [d.path for d in found.diagnostics] == ["a.c"] and not found.complete
    assert scan_job_log(tmp_path / "missing", "build").diagnostics == ()


def test_hostile_lines_cost_no_backtracking_blow_up() -> None:
    # Lines at the length limit built to make the rules backtrack: the whole set takes
    # about 0.2 s here; quadratic matching would take minutes.
    lines = [
        "x:1:" * 2000,
        "/ld: " * 1600,
        "In file included from " + "a:" * 4000,
        "error: " * 1100,
        "--> " + ":1" * 4000,
        "CMake Error at " + "a:1 " * 2000,
        "gcc" * 2600 + ": error: x",
        "a" * 4000 + "ld: " + "b:(" * 1000 + " undefined reference to x",
        "a " * 4000 + ": error: x",
    ]
    started = time.perf_counter()
    found = list(scan_lines(lines * 50))
    assert time.perf_counter() - started < 5
    assert all(len(d.message) <= 500 for d in found)
