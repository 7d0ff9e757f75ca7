"""The simulated design: its build log and its source tree are one model. Every
diagnostic the log holds is found in the laid-out tree, at a line that holds the code
the log quotes, for many commits of both languages, failing or not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ectf_action.annotations import locate
from ectf_action.diagnostics import Severity, scan_lines
from ectf_action.simulator import default_scenario
from ectf_action.simulator.artifacts import LogContext, render_log
from ectf_action.simulator.design import design_for, design_of_flow
from ectf_action.sourcemap import SourceIndex

COMMITS = [
    f"{prefix}{n:02x}" + "0" * 30
    for prefix in ("badc0de", "c0ffee0", "ba5eba11")
    for n in range(12)
]
# The excerpt under a diagnostic: `  374 |     code` (GCC), `57 |     code` (rustc).
EXCERPT = re.compile(r"\s*(?P<line>\d+) \| (?P<code>.*)")


def build_log(commit: str, language: str, outcome: str) -> list[str]:
    context = LogContext(
        flow_name="test",
        job_name="build",
        team="sim-team",
        outcome=outcome,
        template="build",
        params={"commit_hash": commit},
        seed="s",
        design=language,
    )
    return render_log(context).splitlines()


@pytest.mark.parametrize("language", ["c", "rust"])
@pytest.mark.parametrize("outcome", ["failed", "succeeded"])
def test_every_diagnostic_points_at_the_code_it_quotes(
    language: str, outcome: str, tmp_path: Path
) -> None:
    seen_kinds: set[tuple[str, str]] = set()
    for commit in COMMITS:
        root = tmp_path / commit
        design_for(commit, language, broken=outcome == "failed").write(root)
        lines = build_log(commit, language, outcome)
        found = list(locate(scan_lines(lines), SourceIndex.build(root, git=None)))
        real = [item for item in found if not item.diagnostic.follow_up]
        assert real, commit
        assert any(item.diagnostic.severity is Severity.WARNING for item in real)
        assert any(item.diagnostic.severity is Severity.ERROR for item in real) == (
            outcome == "failed"
        )
        for item in real:
            assert item.file is not None and item.line is not None, item
            seen_kinds.add((item.diagnostic.tool, item.diagnostic.severity.value))
            source = (root / item.file).read_text().splitlines()
            quoted = quote_after(lines, item.diagnostic.where)
            if quoted is not None:
                number, code = quoted
                assert number == item.diagnostic.line and source[number - 1] == code, item
            elif item.diagnostic.tool == "ld":  # ld quotes nothing: the call is on the line
                symbol = re.search(r"`(\w+)'", item.diagnostic.message)
                assert symbol and f"{symbol[1]}(" in source[item.line - 1]
    if language == "c" and outcome == "failed":
        assert ("ld", "error") in seen_kinds and ("gcc", "error") in seen_kinds
    if language == "rust":
        assert ("rustc", "warning") in seen_kinds


def quote_after(lines: list[str], where: str) -> tuple[int, str] | None:
    """The excerpt line the compiler printed after the diagnostic at *where*."""
    for index, line in enumerate(lines):
        if where in line:
            for after in lines[index + 1 : index + 4]:
                text = after.split("Z ", 1)[-1]
                found = EXCERPT.fullmatch(text)
                if found:
                    return int(found["line"]), found["code"]
            return None
    raise AssertionError(f"{where} not in the log")


def test_the_same_commit_gives_the_same_design() -> None:
    one, two = design_for("badc0de1", "c", broken=True), design_for("BADC0DE1", "c", broken=True)
    assert one.files == two.files and one.compile_lines == two.compile_lines
    assert design_for("badc0de2", "c", broken=True).files != one.files


def test_the_c_tree_has_the_usual_layout(tmp_path: Path) -> None:
    written = design_for("c0ffee", "c").write(tmp_path)
    names = {path.relative_to(tmp_path).as_posix() for path in written}
    assert {
        "CMakeLists.txt",
        "firmware/src/uart.c",
        "firmware/src/main.c",
        "firmware/inc/uart.h",
    } <= names
    rust = {
        path.relative_to(tmp_path / "r").as_posix()
        for path in design_for("c0ffee", "rust").write(tmp_path / "r")
    }
    assert {"Cargo.toml", "src/main.rs"} <= rust


def test_failing_c_builds_are_cmake_and_make_driving_arm_gcc() -> None:
    logs = ["\n".join(build_log(commit, "c", "failed")) for commit in COMMITS[:12]]
    assert all("make[1]: Entering directory '/design/firmware/build'" in log for log in logs)
    assert all(log.rstrip().endswith("Build failed with exit code 2") for log in logs)
    compile_errors = [log for log in logs if "In file included from /design/firmware/src/" in log]
    link_errors = [log for log in logs if "collect2: error: ld returned 1 exit status" in log]
    assert compile_errors and link_errors and len(compile_errors) + len(link_errors) == len(logs)


def test_a_flow_says_which_design_to_lay_out() -> None:
    scenario = default_scenario()
    failing = design_of_flow(scenario, "test", "badc0de" + "1" * 33)
    assert (failing.language, failing.broken) == ("c", True)
    rust = design_of_flow(scenario, "test", "ba5eba11" + "1" * 32)
    assert (rust.language, rust.broken) == ("rust", True)
    passing = design_of_flow(
        scenario, "clone", "badc0de" + "1" * 33
    )  # the clone flow builds nothing
    assert (passing.language, passing.broken) == ("c", False)


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown design language 'go'"):
        design_for("abc", "go")
