"""Source annotations end to end: a real compiler's output, in a job's log on the
server, lands as annotations on the team's own files in the workspace.

The build runs here with the real gcc, through real make, in a folder standing for the
server's checkout (`<tmp>/server/design`, not the workspace), exactly as the testing
server would log it; the simulator serves that log as the failed build job's artifact,
and the real entry point runs with the same sources checked out in its workspace. Then
the annotations, JUnit's `file`/`line` and the summary's linked table are checked, and
a log that names a file outside the workspace gets no `file=` at all.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PUSH_SHA, ActionEnv, SecretScanner, distinctive_token
from ectf_action.simulator import Scenario, Simulator, default_scenario

pytestmark = pytest.mark.e2e

BROKEN_C = """\
#include <stdint.h>

int checksum(const uint8_t *data, int len) {
    int total = 0;
    int unused = 0;
    for (int i = 0; i < len; i++) {
        total += data[i];
    }
    return total + undeclared_helper(total);
}
"""
MAKEFILE = "all:\n\tgcc -Wall -Werror=implicit-function-declaration -c src/broken.c -o broken.o\n"
ERROR_LINE = 9  # the call of undeclared_helper
UNUSED_LINE = 5


def real_gcc_log(server_checkout: Path) -> str:
    """The build's log as the server writes it: make's directory lines, gcc's errors
    with the server's absolute paths."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc and make are needed to make a real compiler's output")
    firmware = server_checkout / "firmware"
    (firmware / "src").mkdir(parents=True)
    (firmware / "src" / "broken.c").write_text(BROKEN_C)
    (firmware / "Makefile").write_text(MAKEFILE)
    done = subprocess.run(
        ["make", "-C", str(firmware)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0, "the broken file compiled"
    log = done.stdout + done.stderr
    assert f"{firmware}" in log  # make said where it went
    return log + "Build failed with exit code 2\n"


def scenario_with_build_log(log: str, token: str) -> Scenario:
    def job(name: str, needs: list[str], files: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "needs": needs, "duration": 0.2, "artifacts": files}

    scenario = Scenario.from_dict(
        {
            "time_scale": 0.05,
            "outcomes": [{"commit_prefix": PUSH_SHA[:7], "fail": ["build"]}],
            "flows": {
                "test": {
                    "jobs": [
                        job("pull-repo", [], [{"name": "pull.log", "text": "pulled\n"}]),
                        job("build", ["pull-repo"], [{"name": "build.log", "text": log}]),
                    ]
                }
            },
        },
        base=default_scenario(),
    )
    return scenario.with_token(token)


@pytest.fixture
def ran(tmp_path: Path, secret_scanner: SecretScanner) -> Iterator[tuple[ActionEnv, Any]]:
    log = real_gcc_log(tmp_path / "server" / "design")
    token = distinctive_token()
    with Simulator(scenario_with_build_log(log, token)) as simulator:
        environment = ActionEnv(tmp_path / "runner", token, simulator.url, secret_scanner)
        checkout = environment.workspace / "firmware" / "src"
        checkout.mkdir(parents=True)
        (checkout / "broken.c").write_text(BROKEN_C)
        done = environment.run()
        yield environment, done


def test_the_compiler_error_lands_on_the_teams_own_line(ran: tuple[ActionEnv, Any]) -> None:
    environment, done = ran
    assert done.returncode == 1, done.stdout + done.stderr
    errors = done.commands("error")
    assert errors[0].startswith("::error title=eCTF flow failed::")
    assert errors[1].startswith("::error title=eCTF job build failed::")
    located = [line for line in errors if line.startswith("::error file=")]
    assert len(located) == 1, errors
    assert located[0].startswith(f"::error file=firmware/src/broken.c,line={ERROR_LINE},col="), (
        located[0]
    )
    assert "undeclared_helper" in located[0]
    warnings = [line for line in done.commands("warning") if line.startswith("::warning file=")]
    assert any(f"file=firmware/src/broken.c,line={UNUSED_LINE}," in w for w in warnings), warnings
    message = environment.outputs()["message"]
    assert f"first error (build): firmware/src/broken.c:{ERROR_LINE}:" in message


def test_junit_points_test_reporters_at_the_file_and_line(ran: tuple[ActionEnv, Any]) -> None:
    environment, _ = ran
    suite = ET.parse(environment.workspace / "ectf-junit.xml").getroot()  # noqa: S314 (ours)
    build = next(case for case in suite.iter("testcase") if case.get("name") == "build")
    assert (build.get("file"), build.get("line")) == ("firmware/src/broken.c", str(ERROR_LINE))
    failure = build.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith(f"firmware/src/broken.c:{ERROR_LINE}:")
    assert "undeclared_helper" in (failure.text or "")  # the log tail stays in the body


def test_the_summary_links_each_diagnostic_to_the_tested_commit(
    ran: tuple[ActionEnv, Any],
) -> None:
    environment, _ = ran
    summary = environment.summary()
    url = f"https://github.com/sim-team/design/blob/{PUSH_SHA}/firmware/src/broken.c"
    assert f"({url}#L{ERROR_LINE})" in summary
    assert f"({url}#L{UNUSED_LINE})" in summary
    assert "<summary>build: firmware/src/broken.c:" in summary


def test_source_annotations_false_keeps_only_the_flow_and_job_annotations(
    tmp_path: Path, secret_scanner: SecretScanner
) -> None:
    log = real_gcc_log(tmp_path / "server" / "design")
    token = distinctive_token()
    with Simulator(scenario_with_build_log(log, token)) as simulator:
        environment = ActionEnv(tmp_path / "runner", token, simulator.url, secret_scanner)
        (environment.workspace / "firmware" / "src").mkdir(parents=True)
        (environment.workspace / "firmware" / "src" / "broken.c").write_text(BROKEN_C)
        environment.set_inputs(**{"source-annotations": "false"})
        done = environment.run()
    assert done.returncode == 1
    assert not [line for line in done.stdout.splitlines() if line.startswith("::error file=")]
    assert not [line for line in done.stdout.splitlines() if line.startswith("::warning file=")]
    assert len(done.commands("error")) == 2  # the verdict and the failed job
    # JUnit still says where the error is: only the annotations are turned off
    suite = ET.parse(environment.workspace / "ectf-junit.xml").getroot()  # noqa: S314
    build = next(case for case in suite.iter("testcase") if case.get("name") == "build")
    assert build.get("file") == "firmware/src/broken.c"


def test_a_log_naming_files_outside_the_workspace_annotates_none_of_them(
    tmp_path: Path, secret_scanner: SecretScanner
) -> None:
    outside = tmp_path / "outside.c"
    outside.write_text("int x;\n")
    log = "".join(
        [
            "../../../../etc/passwd:1:1: error: climbing out\n",
            f"{outside}:1:1: error: an absolute path outside the checkout\n",
            "firmware/src/link.c:1:1: error: through a link that leaves\n",
            "/etc/hostname:1:1: error: a system file\n",
        ]
    )
    token = distinctive_token()
    with Simulator(scenario_with_build_log(log, token)) as simulator:
        environment = ActionEnv(tmp_path / "runner", token, simulator.url, secret_scanner)
        (environment.workspace / "firmware" / "src").mkdir(parents=True)
        (environment.workspace / "firmware" / "src" / "link.c").symlink_to(outside)
        done = environment.run()
    assert done.returncode == 1
    commands = done.commands("error") + done.commands("warning")
    assert not [line for line in commands if " file=" in line or "::error file=" in line], commands
    # the diagnostics still count: the first of them is the failed job's first error
    assert (
        "first error (build): ../../../../etc/passwd:1:1: error: climbing out"
        in (environment.outputs()["message"])
    )


def test_the_junit_report_reads_as_the_test_report_actions_read_it(
    ran: tuple[ActionEnv, Any],
) -> None:
    """junitparser is what EnricoMi/publish-unit-test-result-action reads JUnit with; it
    takes a test case's `file` and `line` for its annotation."""
    junitparser = pytest.importorskip("junitparser")
    environment, _ = ran
    document = junitparser.JUnitXml.fromfile(str(environment.workspace / "ectf-junit.xml"))
    cases = {case.name: case for suite in document for case in suite}
    build = cases["build"]
    (failure,) = build.result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message.startswith(f"firmware/src/broken.c:{ERROR_LINE}:")
    assert build._elem.get("file") == "firmware/src/broken.c"
    assert int(build._elem.get("line")) == ERROR_LINE
    assert cases["pull-repo"].result == []  # passed
