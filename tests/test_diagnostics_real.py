"""Real compilers, real output: broken files are built with the compilers installed here
(gcc, clang, arm-none-eabi-gcc through real make, and rustc), and what they print goes
through the whole chain: scan the job's log, locate each diagnostic in a workspace that
is a copy of the tree at another path, plan the annotations. A compiler that is missing
is skipped with the reason; the recorded outputs in tests/fixtures/diagnostics/ cover
the same forms everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ectf_action.annotations import Annotation, JobFindings, plan_annotations
from ectf_action.diagnostics import scan_job_log
from ectf_action.sourcemap import SourceIndex

SOURCES = {
    "firmware/inc/flash.h": (
        "#include <stdint.h>\nint flash_read_page(uint32_t page, uint8_t *out);\n"
    ),
    "firmware/src/commands.c": (
        '#include <stdint.h>\n#include "flash.h"\n\n'
        "int handle_read(uint32_t page, uint8_t *out)\n{\n    unsigned int i;\n    int n = -1;\n"
        "    for (i = 0; i < n; i++) {\n        out[i] = 0;\n    }\n"
        "    return flash_read_page(page, out);\n}\n\n"
        "int main(void)\n{\n    uint8_t out[16];\n    return handle_read(1, out);\n}\n"
    ),
    "firmware/src/uart.c": '#include <stdint.h>\n#include "missing_uart.h"\n',
    "firmware/Makefile": (
        "CFLAGS = -g -Wall -Wextra -Iinc $(EXTRA)\n"
        "all: build/hsm.elf build/uart.o\n"
        "build/%.o: src/%.c\n\tmkdir -p build\n\t$(CC) $(CFLAGS) -c $< -o $@\n"
        "build/hsm.elf: build/commands.o\n\t$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@\n"
    ),
    # A second commands.c: only make's directory says which one the server built.
    "bootloader/src/commands.c": "int boot(void) { return 0; }\n",
}
C_COMPILERS = {
    "gcc": [],
    "clang": ["EXTRA=-fdiagnostics-color=always"],
    "arm-none-eabi-gcc": ["EXTRA=-mcpu=cortex-m4 -mthumb", "LDFLAGS=-nostdlib -Wl,--entry=main"],
}
ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}


def lay_out(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def job_log(tmp_path: Path, output: str) -> Path:
    job = tmp_path / "artifacts" / "build"
    job.mkdir(parents=True)
    (job / "build.log").write_text(output)
    return job


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def plan_for(tmp_path: Path, output: str, workspace: Path) -> tuple[JobFindings, list[Annotation]]:
    scanned = scan_job_log(job_log(tmp_path, output), "build")
    findings = JobFindings.of(scanned, SourceIndex.build(workspace, git=None), failed=True)
    verdict = Annotation("error", "eCTF flow failed", "The test flow failed: build.")
    return findings, list(plan_annotations(verdict, [findings]).annotations)


def line_of(workspace: Path, annotation: Annotation) -> str:
    assert annotation.file is not None and annotation.line is not None
    return (workspace / annotation.file).read_text().splitlines()[annotation.line - 1]


@pytest.mark.parametrize("compiler", sorted(C_COMPILERS))
def test_a_c_build_through_real_make(compiler: str, tmp_path: Path) -> None:
    need(compiler)
    need("make")
    server = lay_out(tmp_path / "server" / "design", SOURCES)
    workspace = lay_out(tmp_path / "workspace", SOURCES)
    done = subprocess.run(
        ["make", "-k", "-C", "firmware", f"CC={compiler}", *C_COMPILERS[compiler]],
        cwd=server,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one log, in the order it was written, as a CI job's
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout
    assert f"Entering directory '{server}/firmware'" in output
    findings, planned = plan_for(tmp_path, output, workspace)
    located = {(a.kind, a.file, a.line) for a in planned if a.file}
    assert ("warning", "firmware/src/commands.c", 8) in located  # -Wsign-compare
    assert ("error", "firmware/src/uart.c", 2) in located  # the missing include
    assert "i < n" in line_of(workspace, next(a for a in planned if a.line == 8))
    assert '"missing_uart.h"' in line_of(workspace, next(a for a in planned if a.line == 2))
    references = [
        item for item in findings.diagnostics if "undefined reference" in item.diagnostic.message
    ]
    assert references and references[0].file == "firmware/src/commands.c"
    if references[0].line is not None:  # from the debug information
        assert (
            "flash_read_page("
            in (workspace / "firmware/src/commands.c")
            .read_text()
            .splitlines()[references[0].line - 1]
        )
    first = findings.first_error  # make links before it compiles uart.c
    assert first is not None and first.startswith("firmware/src/commands.c")
    assert first.endswith("error: undefined reference to `flash_read_page'")
    assert planned[0].title == "eCTF flow failed" and planned[1].title == "eCTF job build failed"


def test_a_rustc_error_e0425(tmp_path: Path) -> None:
    need("rustc")
    files = {
        "src/main.rs": "mod crypto;\n\nfn main() {\n    let buf = [0u8; 64];\n"
        '    let frame = &buf[..frame_len];\n    println!("{}", crypto::sum(frame));\n}\n',
        "src/crypto.rs": "pub fn sum(data: &[u8]) -> u32 {\n    let nonce = [0u8; 12];\n"
        "    data.iter().map(|b| *b as u32).sum()\n}\n",
        "tools/fuzz/src/main.rs": "fn main() {}\n",
    }
    server = lay_out(tmp_path / "server", files)
    workspace = lay_out(tmp_path / "workspace", files)
    done = subprocess.run(
        [
            "rustc",
            "--edition",
            "2021",
            "--color",
            "always",
            "-o",
            str(tmp_path / "hsm"),
            "src/main.rs",
        ],
        cwd=server,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "E0425" in done.stderr
    findings, planned = plan_for(tmp_path, done.stderr, workspace)
    located = [(a.kind, a.file, a.line, a.column) for a in planned if a.file]
    assert ("error", "src/main.rs", 5, 24) in located
    assert ("warning", "src/crypto.rs", 2, 9) in located
    error = next(a for a in planned if a.file == "src/main.rs")
    assert error.title == "eCTF build: cannot find value `frame_len` in this scope [E0425]"
    assert "frame_len" in line_of(workspace, error)
    assert (
        findings.first_error
        == "src/main.rs:5:24: error: cannot find value `frame_len` in this scope [E0425]"
    )
