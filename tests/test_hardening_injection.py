"""Job logs and names that try to issue workflow commands never do.

The simulator hands out logs holding `::add-mask::`, `::set-env`, `::set-output`,
`::save-state`, `::error::`, `::stop-commands::` (with its resume line), groups, the
legacy `##[...]` forms, lone carriage returns, and jobs whose names are commands. Read
the action's stdout as the runner does (a lone CR ends a line): outside a
`::stop-commands::` fence, only the action's own commands may appear, each in its
escaped form; and no fence's token occurs in the text it guards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ActionEnv, Completed, SecretScanner, make_scenario
from ectf_action.simulator import Scenario, Simulator
from hardening_support import (
    assert_no_leak,
    commands_outside_fences,
    fast_client_factory,
    run_action,
    runner_lines,
)

HOSTILE_LOG = (
    "::add-mask::evil-mask\n"
    "::set-env name=PATH::/tmp/evil\n"
    "::set-output name=status::succeeded\n"
    "::save-state name=flow_id::00000000-0000-0000-0000-000000000000\n"
    "::error::injected error\n"
    "::warning file=a.c,line=1::injected warning\n"
    "::stop-commands::guessed\n"
    "::guessed::\n"
    "  ::error::indented\n"
    "\t::notice::tabbed\n"
    "::endgroup::\n"
    "::group::fake group\n"
    "##[error]legacy error\n"
    "##[set-env name=X;]legacy env\n"
    "##[add-mask]legacy-mask\n"
    "progress 10%\r::error::after a lone CR\n"
    "windows line\r\n::notice::after CRLF\n"
    "\x1b[31m::error::after an escape\x1b[0m\n"
    "%0A::error::percent-encoded\n"
    "last line\r::warning::no newline at the end"
)
HOSTILE_NAMES = ("::error title=owned::job", "##[warning]job", "::add-mask::job")
HOSTILE_FILE = "::warning::evil.log"
OUR_COMMANDS = re.compile(r"^::(add-mask|group|endgroup|error|warning|notice)( title=[^:]*)?::")
INJECTED_WORDS = ("evil-mask", "/tmp/evil", "legacy", "injected", "after a lone CR", "fake group")


def hostile_scenario(token: str) -> Scenario:
    logs = [
        {"name": "build.log", "text": HOSTILE_LOG},
        {"name": HOSTILE_FILE, "text": "::error::from a file name\n"},
    ]
    jobs = [
        {"name": "pull-repo", "duration": 1, "artifacts": [{"name": "pull.log", "text": "ok\n"}]},
        {"name": HOSTILE_NAMES[0], "needs": ["pull-repo"], "duration": 1, "artifacts": logs},
        {
            "name": HOSTILE_NAMES[1],
            "needs": ["pull-repo"],
            "duration": 1,
            "outcome": "failed",
            "artifacts": logs,
        },
        {"name": HOSTILE_NAMES[2], "needs": ["pull-repo"], "duration": 1, "artifacts": logs},
    ]
    scenario = Scenario.from_dict({"flows": {"test": {"jobs": jobs}}}, base=make_scenario())
    return scenario.with_token(token)


@pytest.fixture
def hostile(sim_token: str) -> Iterator[Simulator]:
    with Simulator(hostile_scenario(sim_token)) as simulator:
        yield simulator


def check_no_command_escapes(stdout: str, token: str) -> None:
    """The property itself, on the exact bytes of stdout."""
    assert "\r" not in stdout  # every line break the runner sees is one we wrote
    commands, fences = commands_outside_fences(stdout)
    assert fences, "the hostile log was not echoed at all"
    for line in commands:
        assert OUR_COMMANDS.match(line), f"not one of ours: {line!r}"
        if line.startswith("::add-mask::"):
            assert line == f"::add-mask::{token}"
        for word in INJECTED_WORDS:
            if word in line:  # quoted inside one of ours: one line, after its `::`
                assert line.index(word) > line.index("::", 2), line
    for fence in fences:
        guarded = "\n".join(fence.lines).lower()
        assert fence.token.lower() not in guarded
        assert re.fullmatch(r"[0-9a-f]{32}", fence.token)
    fenced = "\n".join(line for fence in fences for line in fence.lines)
    for line in runner_lines(HOSTILE_LOG):
        shown = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if shown.strip().startswith(("::", "##[")):
            assert shown in fenced or shown.split("\r")[-1] in fenced, shown


def test_hostile_logs_and_names_issue_no_command_through_the_entry_point(
    tmp_path: Path, hostile: Simulator, secret_scanner: SecretScanner
) -> None:
    environment = ActionEnv(tmp_path, hostile.token, hostile.url, secret_scanner)
    done: Completed = environment.run()
    assert done.returncode == 1, done.stdout + done.stderr
    check_no_command_escapes(done.stdout, hostile.token)
    commands, _ = commands_outside_fences(done.stdout)
    errors = [line for line in commands if line.startswith("::error")]
    assert len(errors) == 2  # the result first, then the failed job's annotation
    assert errors[0].startswith("::error title=eCTF flow failed::")
    assert errors[1].startswith("::error title=eCTF job ##[warning]job failed::")
    assert "%0A" in errors[1] and "::error::injected error" in errors[1]
    outputs = environment.outputs()
    assert outputs["status"] == "failed"
    assert outputs["failed-jobs"] == HOSTILE_NAMES[1]
    assert set(environment.state()) == {"flow_id", "flow"}  # no state injected
    assert_no_leak(secret_scanner, tmp_path, hostile.token)


def test_the_same_holds_in_process_with_every_group_fenced(
    tmp_path: Path, hostile: Simulator, secret_scanner: SecretScanner
) -> None:
    environment = ActionEnv(tmp_path, hostile.token, hostile.url, secret_scanner)
    ran = run_action(environment, client_factory=fast_client_factory())
    assert ran.code == 1
    check_no_command_escapes(ran.stdout, hostile.token)
    commands, fences = commands_outside_fences(ran.stdout)
    groups = [line for line in commands if line.startswith("::group::")]
    assert len(groups) == 4
    assert all(title.startswith("::group::eCTF job ") for title in groups)
    assert sum(line == "::endgroup::" for line in commands) == 4
    labelled = [fence for fence in fences if f"==> {HOSTILE_FILE} <==" in fence.lines]
    assert len(labelled) == 3  # a file name quoted by the log tail is fenced too
    assert_no_leak(secret_scanner, tmp_path, hostile.token)
