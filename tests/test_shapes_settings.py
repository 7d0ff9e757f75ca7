"""The inputs of the workflow shapes: `wait` and `flow-id`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ectf_action.errors import InvalidInput
from ectf_action.settings import load_settings
from test_settings import SHA, actions_env, workspace

__all__ = ["workspace"]  # the fixture of test_settings.py, shared

FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def test_by_default_the_run_waits_and_queues(workspace: Path, tmp_path: Path) -> None:
    settings = load_settings({}, actions_env(workspace), home=tmp_path, cwd=Path("/"))
    assert (settings.wait, settings.flow_id) == (True, None)
    settings = load_settings({}, actions_env(workspace, wait="False"), home=tmp_path, cwd=Path("/"))
    assert settings.wait is False and settings.commit == SHA


@pytest.mark.parametrize(
    "spelling",
    [FLOW_ID, FLOW_ID.upper(), FLOW_ID.replace("-", ""), f" {FLOW_ID}\n"],
)
def test_a_flow_id_is_kept_in_the_servers_spelling(
    workspace: Path, tmp_path: Path, spelling: str
) -> None:
    env = actions_env(workspace, **{"flow-id": spelling})
    assert load_settings({}, env, home=tmp_path, cwd=Path("/")).flow_id == FLOW_ID


def test_a_flow_id_needs_no_commit_and_no_git_url(workspace: Path, tmp_path: Path) -> None:
    env = actions_env(workspace, **{"flow-id": FLOW_ID})
    for name in ("GITHUB_SHA", "GITHUB_REPOSITORY", "GITHUB_SERVER_URL"):
        del env[name]
    settings = load_settings({}, env, home=tmp_path, cwd=Path("/"))
    assert (settings.commit, settings.git_url) == (None, None)
    env["GITHUB_EVENT_NAME"] = "pull_request"  # no payload to read the head from: no matter
    assert load_settings({}, env, home=tmp_path, cwd=Path("/")).commit is None
    remote = actions_env(workspace, flow="remote", **{"flow-id": FLOW_ID})
    assert load_settings({}, remote, home=tmp_path, cwd=Path("/")).target_team is None


def test_without_a_flow_id_the_commit_is_still_required(workspace: Path, tmp_path: Path) -> None:
    env = actions_env(workspace)
    del env["GITHUB_SHA"]
    with pytest.raises(InvalidInput, match=r"^commit: is not given"):
        load_settings({}, env, home=tmp_path, cwd=Path("/"))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"flow-id": "3fa85f64"}, "flow-id: '3fa85f64' is not a UUID"),
        ({"flow-id": FLOW_ID, "commit": "xyz"}, "commit: 'xyz' is not a commit hash"),
        ({"flow-id": FLOW_ID, "git-url": "https://x/y.git"}, "git-url: 'https://x/y.git' is an"),
        ({"wait": "no"}, "wait: 'no' is not a boolean"),
        ({"wait": "false", "flow-id": FLOW_ID}, "wait: false leaves the flow at once"),
    ],
)
def test_bad_values_are_refused(
    workspace: Path, tmp_path: Path, inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_settings({}, actions_env(workspace, **inputs), home=tmp_path, cwd=Path("/"))
    assert str(caught.value).startswith(message)
