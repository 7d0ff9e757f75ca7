"""The small design the simulated server builds, as one model for its build log and its
source tree: every path and line the log points at exists in the tree, and holds the
code the log quotes.

Two designs, chosen by the scenario (`design: c | rust` in an outcome rule):
- `c`: CMake and make driving arm-none-eabi-gcc, in the server's checkout `/design`
  (`CMakeLists.txt`, `firmware/src/*.c`, `firmware/inc/*.h`). A build that succeeds
  still warns once or twice; one that fails has a compile error (a header's unknown type
  `In file included from` a source, and an implicit declaration made an error), or, for
  some commits, an undefined reference at link time.
- `rust`: cargo (`Cargo.toml`, `src/*.rs`): an unused variable warns; a failing build
  has `error[E0425]: cannot find value ...`.

Everything is drawn from the commit: the same commit gives the same files, lines and
log, whichever job or run asks.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .scenario import DESIGN_LANGUAGES, Scenario

CHECKOUT: Final = "/design"
BUILD_DIR: Final = f"{CHECKOUT}/firmware/build"
TOOLCHAIN_LD: Final = "/usr/lib/gcc/arm-none-eabi/13.2.1/../../../arm-none-eabi/bin/ld"

C_MODULES: Final = (
    "main",
    "host_messaging",
    "simple_crypto",
    "filesystem",
    "commands",
    "uart",
    "flash",
    "permissions",
)
RUST_MODULES: Final = ("main", "crypto", "uart", "flash", "permissions")
_WORDS: Final = (
    "frame",
    "packet",
    "page",
    "slot",
    "nonce",
    "digest",
    "channel",
    "counter",
    "header",
    "block",
    "record",
    "key",
)
_VERBS: Final = ("read", "write", "check", "load", "store", "seal", "open", "reset", "scan")


@dataclass(frozen=True)
class Design:
    """A design's files (relative path -> text) and what building it logs."""

    language: str
    commit: str
    broken: bool
    files: Mapping[str, str]
    compile_lines: tuple[str, ...]  # the compiler's and linker's output, in order
    failure_lines: tuple[str, ...] = ()  # make's or cargo's end of a failed build

    def write(self, dest: Path) -> list[Path]:
        """Lay the source tree out under *dest* (created if missing); return the files."""
        written = []
        for relative, text in sorted(self.files.items()):
            path = dest / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written


def design_for(commit: str, language: str = "c", *, broken: bool = False) -> Design:
    """The design at *commit*; *broken* when its build fails."""
    if language not in DESIGN_LANGUAGES:
        known = ", ".join(DESIGN_LANGUAGES)
        raise ValueError(f"unknown design language {language!r} (known: {known})")
    return _design(commit.lower(), language, broken)


def design_of_flow(scenario: Scenario, flow_name: str, commit: str) -> Design:
    """The design a *flow_name* flow of *commit* builds in *scenario*: its language from
    the outcome rules, broken when a job with the `build` log fails. What a demo lays
    out in its workspace before it runs that flow."""
    params = {"commit_hash": commit}
    outcomes = scenario.job_outcomes(flow_name, params)
    builds = [job.name for job in scenario.flows[flow_name].jobs if job.log == "build"]
    broken = any(outcomes[name] == "failed" for name in builds)
    return design_for(commit, scenario.design_for(flow_name, params), broken=broken)


@functools.lru_cache(maxsize=64)
def _design(commit: str, language: str, broken: bool) -> Design:
    rng = random.Random(f"ectf-sim-design:{language}:{commit}")
    return _c_design(rng, commit, broken) if language == "c" else _rust_design(rng, commit, broken)


# -- writing source files line by line ----------------------------------------------------


@dataclass
class _Source:
    """A source file built top-down, so that chosen code lands on chosen lines."""

    language: str
    lines: list[str] = field(default_factory=list)
    fillers: int = 0

    def at(self, line: int) -> None:
        """Pad with filler code so that the next line written is *line*."""
        while len(self.lines) + _FILLER_LINES + 3 < line - 1:
            self.fillers += 1
            self.lines += _filler(self.language, self.fillers)
        left = line - 1 - len(self.lines)
        if left < 0:
            raise ValueError(f"line {line} is already written")
        if left >= 3:
            self.lines += [
                "/*",
                *([" * Kept constant-time: no early exit on a mismatch."] * (left - 2)),
                " */",
            ]
        else:
            self.lines += [""] * left

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# A small helper function of each language, to fill a file up to a chosen line.
_FILLER: Final = {
    "c": (
        "static uint32_t {name}(const uint8_t *data, uint32_t len)",
        "{{",
        "    uint32_t acc = 0;",
        "    for (uint32_t n = 0; n < len; n++) {{",
        "        acc = (acc << 1) ^ data[n];",
        "    }}",
        "    return acc;",
        "}}",
        "",
    ),
    "rust": (
        "fn {name}(data: &[u8]) -> u32 {{",
        "    let mut acc: u32 = 0;",
        "    for b in data {{",
        "        acc = acc.rotate_left(1) ^ u32::from(*b);",
        "    }}",
        "    acc",
        "}}",
        "",
        "",
    ),
}
_FILLER_LINES: Final = 9


def _filler(language: str, number: int) -> list[str]:
    name = f"{_VERBS[number % len(_VERBS)]}_{_WORDS[number % len(_WORDS)]}_{number}"
    return [line.format(name=name) for line in _FILLER[language]]


def _caret(column: int, width: int) -> str:
    return " " * (column - 1) + "^" + "~" * (width - 1)


def _gcc_quote(line: int, code: str, column: int, width: int) -> list[str]:
    """GCC's source excerpt under a diagnostic: the line, and a caret under the column."""
    return [f"{line:5d} | {code}", f"      | {_caret(column, width)}"]


# -- the C design -------------------------------------------------------------------------


def _c_function(rng: random.Random, module: str) -> str:
    return f"{module.split('_')[-1]}_{rng.choice(_VERBS)}_{rng.choice(_WORDS)}"


def _c_design(rng: random.Random, commit: str, broken: bool) -> Design:
    modules = list(C_MODULES)
    sources = {m: _Source("c") for m in modules}
    headers: dict[str, list[str]] = {m: [] for m in modules if m != "main"}
    for module, source in sources.items():
        source.lines += [
            "/**",
            f" * @file {module}.c",
            f" * @brief The HSM's {module.replace('_', ' ')} module.",
            " */",
            "",
            "#include <stdint.h>",
            "#include <string.h>",
            f'#include "{module if module != "main" else "commands"}.h"',
            "",
        ]
    logged: dict[str, list[str]] = {m: [] for m in modules}  # compiler output per source
    # main.c includes commands.h, so a broken header there would fail main.c first.
    pool = [m for m in modules if m not in ("main", "commands")]
    # The module that fails comes after one that warns, so a failing log warns too.
    failing_index = rng.randrange(1, len(pool))
    warned = [pool[rng.randrange(failing_index)]]
    others = [m for m in pool if m not in warned and m != pool[failing_index]]
    warned += rng.sample(others, rng.randint(0, 1))
    signedness = rng.random() < 0.5
    for module in warned:
        _c_warning(rng, module, sources[module], logged[module], signedness)
        signedness = not signedness
    failing = pool[failing_index] if broken else None
    variant = rng.choice(("compile", "compile", "link")) if broken else None
    link: list[str] = []
    if failing is not None and variant == "compile":
        _c_compile_error(rng, failing, sources[failing], headers[failing], logged[failing])
    elif failing is not None:
        link = _c_link_error(rng, failing, sources[failing], headers[failing])
    compile_lines = [
        "-- The C compiler identification is GNU 13.2.1",
        "-- Detecting C compiler ABI info - done",
        "-- Check for working C compiler: /usr/bin/arm-none-eabi-gcc - skipped",
        "-- Configuring done (0.4s)",
        "-- Generating done (0.0s)",
        f"-- Build files have been written to: {BUILD_DIR}",
        f"make: Entering directory '{BUILD_DIR}'",
        f"make[1]: Entering directory '{BUILD_DIR}'",
        f"make[2]: Entering directory '{BUILD_DIR}'",
    ]
    failure: list[str] = []
    for number, module in enumerate(modules, start=1):
        compile_lines.append(
            f"[{number * 100 // (len(modules) + 1):3d}%] Building C object "
            f"CMakeFiles/hsm.dir/firmware/src/{module}.c.obj"
        )
        compile_lines += logged[module]
        if module == failing and variant == "compile":
            compile_lines.append("cc1: some warnings being treated as errors")
            failure = [
                f"make[2]: *** [CMakeFiles/hsm.dir/build.make:{62 + 14 * number}: "
                f"CMakeFiles/hsm.dir/firmware/src/{module}.c.obj] Error 1",
                *_make_unwind(),
            ]
            break
    else:
        compile_lines.append("[100%] Linking C executable hsm.elf")
        compile_lines += link
        if link:
            failure = [
                f"make[2]: *** [CMakeFiles/hsm.dir/build.make:{83 + 14 * len(modules)}: "
                "hsm.elf] Error 1",
                *_make_unwind(),
            ]
        else:
            compile_lines += [
                f"make[2]: Leaving directory '{BUILD_DIR}'",
                "[100%] Built target hsm",
                f"make[1]: Leaving directory '{BUILD_DIR}'",
                f"make: Leaving directory '{BUILD_DIR}'",
            ]
    files = {f"firmware/src/{m}.c": source.text() for m, source in sources.items()}
    for module, declarations in headers.items():
        files[f"firmware/inc/{module}.h"] = _c_header(module, declarations)
    files["CMakeLists.txt"] = _CMAKE_LISTS
    files["firmware/arm-none-eabi.cmake"] = _CMAKE_TOOLCHAIN
    return Design("c", commit, broken, files, tuple(compile_lines), tuple(failure))


def _make_unwind() -> list[str]:
    return [
        f"make[2]: Leaving directory '{BUILD_DIR}'",
        "make[1]: *** [CMakeFiles/Makefile2:83: CMakeFiles/hsm.dir/all] Error 2",
        f"make[1]: Leaving directory '{BUILD_DIR}'",
        "make: *** [Makefile:91: all] Error 2",
        f"make: Leaving directory '{BUILD_DIR}'",
    ]


def _c_warning(
    rng: random.Random, module: str, source: _Source, logged: list[str], signedness: bool
) -> None:
    path = f"{CHECKOUT}/firmware/src/{module}.c"
    function = _c_function(rng, module)
    line = rng.randint(30, 240)
    if signedness:
        source.at(line - 3)
        code = "    for (i = 0; i < len; i++) {"
        source.lines += [f"int {function}(uint8_t *out, uint32_t len)", "{", "    int i;", code]
        source.lines += ["        out[i] = 0;", "    }", "    return 0;", "}", ""]
        column = code.index("<") + 1
        logged += [
            f"{path}: In function '{function}':",
            f"{path}:{line}:{column}: warning: comparison of integer expressions of different "
            "signedness: 'int' and 'uint32_t' {aka 'long unsigned int'} [-Wsign-compare]",
            *_gcc_quote(line, code, column, 1),
        ]
        return
    name = rng.choice(_WORDS) + "_count"
    source.at(line - 2)
    code = f"    uint32_t {name} = 0;"
    source.lines += [f"void {function}(const uint8_t *data)", "{", code, "    (void)data;", "}", ""]
    column = code.index(name) + 1
    logged += [
        f"{path}: In function '{function}':",
        f"{path}:{line}:{column}: warning: unused variable '{name}' [-Wunused-variable]",
        *_gcc_quote(line, code, column, len(name)),
    ]


def _c_compile_error(
    rng: random.Random, module: str, source: _Source, header: list[str], logged: list[str]
) -> None:
    path = f"{CHECKOUT}/firmware/src/{module}.c"
    prefix = module.split("_")[-1]
    declaration = f"int {prefix}_send_frame(uint8_t opcode, const frame_t *frame);"
    header += [f"int {prefix}_{verb}(uint32_t arg);" for verb in _VERBS[:6]]
    header_line = 8 + rng.randint(0, 6)
    header.insert(header_line - 8, declaration)  # _c_header puts the first one on line 8
    header_column = declaration.index("frame_t") + 1
    function = _c_function(rng, module)
    line = rng.randint(60, 400)
    source.at(line - 2)
    code = "    decrypt_frame(buf, len, key);"
    source.lines += [
        f"void {function}(uint8_t *buf, uint32_t len, const uint8_t *key)",
        "{",
        code,
        "}",
        "",
    ]
    logged += [
        f"In file included from {path}:8:",
        f"{CHECKOUT}/firmware/inc/{module}.h:{header_line}:{header_column}: error: "
        "unknown type name 'frame_t'",
        *_gcc_quote(header_line, declaration, header_column, len("frame_t")),
        f"{path}: In function '{function}':",
        f"{path}:{line}:5: error: implicit declaration of function 'decrypt_frame'; did you "
        "mean 'encrypt_frame'? [-Werror=implicit-function-declaration]",
        *_gcc_quote(line, code, 5, len("decrypt_frame")),
        "      |     encrypt_frame",
    ]


def _c_link_error(rng: random.Random, module: str, source: _Source, header: list[str]) -> list[str]:
    path = f"{CHECKOUT}/firmware/src/{module}.c"
    missing = f"{rng.choice(('flash', 'hsm', 'crypto'))}_{rng.choice(_VERBS)}_page"
    header.append(f"int {missing}(uint32_t page, uint8_t *out);")
    function = _c_function(rng, module)
    line = rng.randint(40, 300)
    source.at(line - 2)
    source.lines += [
        f"int {function}(uint32_t page, uint8_t *out)",
        "{",
        f"    return {missing}(page, out);",
        "}",
        "",
    ]
    return [
        f"{TOOLCHAIN_LD}: CMakeFiles/hsm.dir/firmware/src/{module}.c.obj: in function "
        f"`{function}':",
        f"{path}:{line}: undefined reference to `{missing}'",
        "collect2: error: ld returned 1 exit status",
    ]


def _c_header(module: str, declarations: list[str]) -> str:
    guard = f"{module.upper()}_H"
    lines = [
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        f"/* {module.replace('_', ' ')}: the functions other modules call */",
        "",
        *(declarations or [f"int {module.split('_')[-1]}_init(void);"]),
        "",
        f"#endif /* {guard} */",
    ]
    return "\n".join(lines) + "\n"


_CMAKE_LISTS: Final = """\
cmake_minimum_required(VERSION 3.22)
project(hsm C)

file(GLOB HSM_SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/firmware/src/*.c)
add_executable(hsm.elf ${HSM_SOURCES})
set_target_properties(hsm.elf PROPERTIES OUTPUT_NAME hsm)
target_include_directories(hsm.elf PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/firmware/inc)
target_compile_options(hsm.elf PRIVATE -mcpu=cortex-m4 -mthumb -Os -g -Wall -Wextra
    -Werror=implicit-function-declaration)
"""

_CMAKE_TOOLCHAIN: Final = """\
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
"""


# -- the Rust design ----------------------------------------------------------------------


def _rust_quote(line: int, code: str, column: int, width: int, label: str) -> list[str]:
    """rustc's excerpt: a gutter as wide as the line number, the line, the carets."""
    pad = " " * len(str(line))
    return [f"{pad} |", f"{line} | {code}", f"{pad} | {' ' * (column - 1)}{'^' * width} {label}"]


def _rust_design(rng: random.Random, commit: str, broken: bool) -> Design:
    sources = {m: _Source("rust", [f"//! The HSM's {m} module."]) for m in RUST_MODULES}
    others = [m for m in RUST_MODULES if m != "main"]
    sources["main"].lines += [*(f"mod {m};" for m in others), ""]
    warned = rng.choice(others)
    line = rng.randint(20, 120)
    source = sources[warned]
    source.at(line - 1)
    code = "    let nonce = [0u8; 12];"
    source.lines += [
        f"pub fn {rng.choice(_VERBS)}_{warned}(data: &[u8]) -> u32 {{",
        code,
        "    data.iter().map(|b| u32::from(*b)).sum()",
        "}",
        "",
    ]
    pad = " " * len(str(line))
    warning = [
        "warning: unused variable: `nonce`",
        f"{pad}--> src/{warned}.rs:{line}:9",
        *_rust_quote(
            line,
            code,
            9,
            5,
            "help: if this is intentional, prefix it with an underscore: `_nonce`",
        ),
        f"{pad} |",
        f"{pad} = note: `#[warn(unused_variables)]` on by default",
        "",
    ]
    failure: list[str] = []
    compile_lines = ["    Updating crates.io index", f"   Compiling hsm v0.1.0 ({CHECKOUT})"]
    if broken:
        module = rng.choice([m for m in RUST_MODULES if m != warned])
        line = rng.randint(20, 120)
        source = sources[module]
        source.at(line - 1)
        code = "    let frame = &buf[..frame_len];"
        source.lines += [f"pub fn {module}_frame(buf: &[u8]) -> usize {{", code, "    frame.len()"]
        source.lines += ["}", ""]
        column = code.index("frame_len") + 1
        pad = " " * len(str(line))
        compile_lines += [
            "error[E0425]: cannot find value `frame_len` in this scope",
            f"{pad}--> src/{module}.rs:{line}:{column}",
            *_rust_quote(line, code, column, len("frame_len"), "not found in this scope"),
            "",
            *warning,
            "For more information about this error, try `rustc --explain E0425`.",
            'warning: `hsm` (bin "hsm") generated 1 warning',
        ]
        failure = [
            'error: could not compile `hsm` (bin "hsm") due to 1 previous error; 1 warning emitted'
        ]
    else:
        compile_lines += [
            *warning,
            'warning: `hsm` (bin "hsm") generated 1 warning',
            f"    Finished `release` profile [optimized] target(s) in {rng.uniform(8, 40):.2f}s",
        ]
    sources["main"].lines += [
        "fn main() {",
        "    let frame = [0u8; 64];",
        '    println!("{}", frame.len());',
        "}",
    ]
    files = {f"src/{m}.rs": source.text() for m, source in sources.items()}
    files["Cargo.toml"] = _CARGO_TOML
    return Design("rust", commit, broken, files, tuple(compile_lines), tuple(failure))


_CARGO_TOML: Final = """\
[package]
name = "hsm"
version = "0.1.0"
edition = "2021"

[[bin]]
name = "hsm"
path = "src/main.rs"

[profile.release]
opt-level = "s"
"""
