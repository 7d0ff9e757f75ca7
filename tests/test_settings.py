"""Inputs -> Settings: every input, both spellings, precedence, and every bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ectf_action.edges import input_env_names
from ectf_action.errors import InvalidInput
from ectf_action.results import RunStatus
from ectf_action.settings import (
    INPUT_NAMES,
    Settings,
    load_settings,
    token_candidates,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
HEAD_SHA = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def actions_env(workspace: Path, **inputs: str) -> dict[str, str]:
    """What the runner passes: GITHUB_* and every input (runner's spelling)."""
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_SHA": SHA,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "team/design",
        "INPUT_TOKEN": "secret-token",
    }
    for name, value in inputs.items():
        env[input_env_names(name)[0]] = value
    return env


def load(env: dict[str, str], home: Path, cwd: Path, **flags: str | None) -> Settings:
    return load_settings(flags, env, home=home, cwd=cwd)


def test_defaults_inside_actions(workspace: Path, home: Path) -> None:
    settings = load(actions_env(workspace), home, Path("/"))
    assert settings.flow == "test"
    assert settings.api_url == "https://api.ectf.mitre.org"
    assert settings.token == "secret-token"
    assert settings.git_url == "ssh://git@github.com/team/design.git"
    assert settings.commit == SHA
    assert settings.target_team is None and dict(settings.params) == {}
    assert settings.timeout_seconds == 90 * 60
    assert settings.poll_schedule.is_auto
    assert (settings.on_conflict, settings.on_pending) == ("wait", "exit")
    assert dict(settings.pending_inputs) == {}
    assert settings.artifacts_path == workspace.resolve() / "ectf-artifacts"
    assert settings.download_artifacts == "all"
    assert settings.max_artifact_bytes == 512 * 1024 * 1024
    assert settings.junit_path == workspace.resolve() / "ectf-junit.xml"
    assert settings.job_summary is True
    assert settings.fail_on == {RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TIMED_OUT}
    assert settings.skip_without_token is True
    assert settings.in_actions and settings.workspace == workspace.resolve()
    assert settings.queue_body() == {
        "git_url": "ssh://git@github.com/team/design.git",
        "commit_hash": SHA,
    }


def test_every_input_read_from_the_runners_spelling(workspace: Path, home: Path) -> None:
    env = actions_env(
        workspace,
        **{
            "api-url": "http://127.0.0.1:8000/",
            "flow": "submit",
            "git-url": "ssh://git@example.com/a/b.git",
            "commit": HEAD_SHA.upper(),
            "params": "extra: 1",
            "timeout-minutes": "2.5",
            "poll-interval": "7",
            "on-conflict": "cancel",
            "on-pending": "fail",
            "pending-inputs": '{"team_approval": {"approve": true}}',
            "artifacts-path": "out/artifacts",
            "download-artifacts": "failed",
            "max-artifact-mb": "1.5",
            "junit-path": "reports/junit.xml",
            "job-summary": "false",
            "fail-on": "failed, pending",
            "skip-without-token": "FALSE",
        },
    )
    settings = load(env, home, Path("/"))
    assert settings.api_url == "http://127.0.0.1:8000"
    assert settings.flow == "submit"
    assert settings.git_url == "ssh://git@example.com/a/b.git"
    assert settings.commit == HEAD_SHA
    assert settings.queue_body() == {
        "extra": 1,
        "git_url": "ssh://git@example.com/a/b.git",
        "commit_hash": HEAD_SHA,
    }
    assert settings.timeout_seconds == 150.0
    assert settings.poll_schedule.fixed == 7.0
    assert (settings.on_conflict, settings.on_pending) == ("cancel", "fail")
    assert settings.pending_inputs == {"team_approval": {"approve": True}}
    assert settings.artifacts_path == workspace.resolve() / "out/artifacts"
    assert settings.relative(settings.artifacts_path) == "out/artifacts"
    assert settings.download_artifacts == "failed"
    assert settings.max_artifact_bytes == int(1.5 * 1024 * 1024)
    assert settings.junit_path == workspace.resolve() / "reports/junit.xml"
    assert settings.job_summary is False
    assert settings.fail_on == {RunStatus.FAILED, RunStatus.PENDING}
    assert settings.skip_without_token is False


def test_the_underscore_spelling_is_a_fallback(workspace: Path, home: Path) -> None:
    env = actions_env(workspace)
    env["INPUT_TIMEOUT_MINUTES"] = "5"
    env["INPUT_ON-CONFLICT"] = ""  # the runner's spelling, empty: not given
    env["INPUT_ON_CONFLICT"] = "fail"
    env["INPUT_API_URL"] = "http://127.0.0.1:9"
    settings = load(env, home, Path("/"))
    assert settings.timeout_seconds == 300.0
    assert settings.on_conflict == "fail"
    assert settings.api_url == "http://127.0.0.1:9"


def test_empty_means_not_given_and_values_are_trimmed(workspace: Path, home: Path) -> None:
    env = actions_env(
        workspace, flow="", **{"timeout-minutes": "  ", "on-pending": " wait ", "commit": ""}
    )
    settings = load(env, home, Path("/"))
    assert settings.flow == "test"
    assert settings.timeout_seconds == 90 * 60
    assert settings.on_pending == "wait"
    assert settings.commit == SHA


def test_an_empty_junit_path_disables_the_report(workspace: Path, home: Path) -> None:
    settings = load(actions_env(workspace, **{"junit-path": ""}), home, Path("/"))
    assert settings.junit_path is None
    outside = load(
        {"ECTF_TOKEN": "t"},
        home,
        workspace,
        **{"junit-path": "", "commit": SHA, "git-url": "ssh://git@h/o/r.git"},
    )
    assert outside.junit_path is None


def test_a_flag_beats_the_environment(workspace: Path, home: Path) -> None:
    env = actions_env(workspace, flow="clone", **{"timeout-minutes": "5", "api-url": "http://a"})
    settings = load(
        env,
        home,
        Path("/"),
        flow="test",
        token="flag-token",
        **{"timeout-minutes": "1", "api-url": "http://b"},
    )
    assert settings.flow == "test"
    assert settings.token == "flag-token"
    assert settings.timeout_seconds == 60.0
    assert settings.api_url == "http://b"


def test_outside_actions_the_ectf_variables_and_config_file_apply(
    workspace: Path, home: Path
) -> None:
    (home / ".ectf-config").write_text(
        "token: file-token\ngit_url: ssh://git@github.com/file/repo.git\napi_url: http://file\n"
    )
    env = {"ECTF_API_URL": "http://env", "INPUT_FLOW": "remote", "GITHUB_SHA": SHA}
    settings = load(env, home, workspace)
    assert settings.in_actions is False
    assert settings.flow == "test"  # INPUT_* is only read inside Actions
    assert settings.token == "file-token"
    assert settings.api_url == "http://env"
    assert settings.git_url == "ssh://git@github.com/file/repo.git"
    assert settings.workspace == workspace.resolve()
    assert settings.artifacts_path == workspace.resolve() / "ectf-artifacts"


def test_token_repr_is_hidden(workspace: Path, home: Path) -> None:
    settings = load(actions_env(workspace), home, Path("/"))
    assert "secret-token" not in repr(settings)


def test_pull_request_events_use_the_head_sha(workspace: Path, home: Path, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": HEAD_SHA}}}))
    for name in ("pull_request", "pull_request_target"):
        env = actions_env(workspace)
        env.update(GITHUB_EVENT_NAME=name, GITHUB_EVENT_PATH=str(event))
        assert load(env, home, Path("/")).commit == HEAD_SHA
    push = actions_env(workspace)
    push.update(GITHUB_EVENT_PATH=str(event))
    assert load(push, home, Path("/")).commit == SHA


def test_an_explicit_commit_beats_the_pull_request_head(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": HEAD_SHA}}}))
    env = actions_env(workspace, commit="abcdef1")
    env.update(GITHUB_EVENT_NAME="pull_request", GITHUB_EVENT_PATH=str(event))
    assert load(env, home, Path("/")).commit == "abcdef1"


@pytest.mark.parametrize(
    "payload", ["not json", json.dumps({"pull_request": {}}), json.dumps([1]), None]
)
def test_a_pull_request_without_a_readable_head_is_invalid(
    workspace: Path, home: Path, tmp_path: Path, payload: str | None
) -> None:
    env = actions_env(workspace)
    env["GITHUB_EVENT_NAME"] = "pull_request"
    if payload is not None:
        event = tmp_path / "event.json"
        event.write_text(payload)
        env["GITHUB_EVENT_PATH"] = str(event)
    with pytest.raises(InvalidInput) as caught:
        load(env, home, Path("/"))
    assert caught.value.name == "commit" and "pull_request.head.sha" in str(caught.value)


def test_git_url_default_uses_the_server_host(workspace: Path, home: Path) -> None:
    env = actions_env(workspace)
    env.update(GITHUB_SERVER_URL="https://ghes.example.com:8443", GITHUB_REPOSITORY="org/repo")
    assert load(env, home, Path("/")).git_url == "ssh://git@ghes.example.com/org/repo.git"


def test_remote_needs_no_commit_or_git_url(workspace: Path, home: Path) -> None:
    settings = load({"ECTF_TOKEN": "t"}, home, workspace, flow="remote", **{"target-team": "mitre"})
    assert settings.queue_body() == {"target_team": "mitre"}
    assert settings.commit is None and settings.git_url is None


def test_empty_token_with_skip_is_allowed(workspace: Path, home: Path) -> None:
    env = actions_env(workspace)
    env["INPUT_TOKEN"] = ""
    assert load(env, home, Path("/")).token == ""


def test_token_candidates_cover_every_source() -> None:
    env = {"INPUT_TOKEN": " a ", "ECTF_TOKEN": "b", "INPUT_TOKEN_": ""}
    assert token_candidates({"token": "c"}, env) == ["c", " a ", "a", "b"]
    assert token_candidates({}, {}) == []


def test_every_input_has_a_flag_name() -> None:
    assert INPUT_NAMES == (
        "token", "api-url", "flow", "git-url", "commit", "target-team", "params",
        "timeout-minutes", "poll-interval", "on-conflict", "on-pending", "pending-inputs",
        "artifacts-path", "download-artifacts", "max-artifact-mb", "junit-path", "job-summary",
        "fail-on", "skip-without-token", "wait", "flow-id", "source-annotations",
    )  # fmt: skip


BAD_INPUTS = [
    ("flow", "deploy", "flow", "clone, test, submit, remote"),
    ("api-url", "ftp://x", "api-url", "http(s) URL"),
    ("git-url", "https://github.com/team/design.git", "git-url", "ssh"),
    ("commit", "not-a-sha", "commit", "hex"),
    ("params", "[1, 2]", "params", "mapping"),
    ("params", "a: [", "params", "YAML"),
    ("params", "commit_hash: abc", "params", "commit input"),
    ("timeout-minutes", "-5", "timeout-minutes", "> 0"),
    ("timeout-minutes", "ninety", "timeout-minutes", "not a number"),
    ("timeout-minutes", "0", "timeout-minutes", "> 0"),
    ("poll-interval", "fast", "poll-interval", "auto"),
    ("poll-interval", "-1", "poll-interval", "more than 0"),
    ("on-conflict", "queue", "on-conflict", "wait, cancel, fail"),
    ("on-pending", "approve", "on-pending", "exit, wait, fail"),
    ("pending-inputs", "team_approval: yes", "pending-inputs", "must be a mapping"),
    ("pending-inputs", "- a", "pending-inputs", "mapping"),
    ("pending-inputs", "{bad", "pending-inputs", "YAML"),
    ("download-artifacts", "some", "download-artifacts", "all, failed, none"),
    ("max-artifact-mb", "lots", "max-artifact-mb", "not a number"),
    ("max-artifact-mb", "-1", "max-artifact-mb", "> 0"),
    ("job-summary", "yes", "job-summary", "true or false"),
    ("skip-without-token", "1", "skip-without-token", "true or false"),
    ("fail-on", "failed,broken", "fail-on", "succeeded, failed"),
    ("fail-on", ",", "fail-on", "lists no result"),
    ("artifacts-path", "../outside", "artifacts-path", "outside the workspace"),
    ("artifacts-path", "/etc", "artifacts-path", "outside the workspace"),
    ("artifacts-path", ".", "artifacts-path", "workspace itself"),
    ("junit-path", "../junit.xml", "junit-path", "outside the workspace"),
]


@pytest.mark.parametrize(("name", "value", "reported", "hint"), BAD_INPUTS)
def test_a_bad_input_names_itself_and_what_is_allowed(
    workspace: Path, home: Path, name: str, value: str, reported: str, hint: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        load(actions_env(workspace, **{name: value}), home, Path("/"))
    assert caught.value.name.endswith(reported)
    assert hint in str(caught.value)


def test_remote_without_target_team_is_invalid(workspace: Path, home: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        load(actions_env(workspace, flow="remote"), home, Path("/"))
    assert caught.value.name == "target-team" and "required" in str(caught.value)


def test_a_junit_path_that_is_a_folder_is_invalid(workspace: Path, home: Path) -> None:
    (workspace / "reports").mkdir()
    with pytest.raises(InvalidInput, match="is a folder"):
        load(actions_env(workspace, **{"junit-path": "reports"}), home, Path("/"))


def test_a_symlink_out_of_the_workspace_is_refused(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    (workspace / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="outside the workspace"):
        load(actions_env(workspace, **{"artifacts-path": "link/artifacts"}), home, Path("/"))


def test_empty_token_without_skip_says_how_to_set_the_secret(workspace: Path, home: Path) -> None:
    env = actions_env(workspace, **{"skip-without-token": "false"})
    env["INPUT_TOKEN"] = ""
    with pytest.raises(InvalidInput) as caught:
        load(env, home, Path("/"))
    assert caught.value.name == "token"
    assert "secrets.ECTF_TOKEN" in str(caught.value)


def test_outside_actions_a_missing_token_is_invalid_not_skipped(
    workspace: Path, home: Path
) -> None:
    with pytest.raises(InvalidInput) as caught:
        load({}, home, workspace, commit=SHA, **{"git-url": "ssh://git@h/o/r.git"})
    assert caught.value.name == "token" and "ECTF_TOKEN" in str(caught.value)


def test_outside_actions_a_missing_commit_is_invalid(workspace: Path, home: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        load({"ECTF_TOKEN": "t"}, home, workspace, **{"git-url": "ssh://git@h/o/r.git"})
    assert caught.value.name == "commit"


def test_outside_actions_a_missing_git_url_is_invalid(workspace: Path, home: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        load({"ECTF_TOKEN": "t"}, home, workspace, commit=SHA)
    assert caught.value.name == "git-url" and "ssh://" in str(caught.value)


def test_outside_actions_paths_may_leave_the_current_folder(workspace: Path, home: Path) -> None:
    settings = load(
        {"ECTF_TOKEN": "t"}, home, workspace, commit=SHA,
        **{"git-url": "ssh://git@h/o/r.git", "artifacts-path": "../elsewhere"},
    )  # fmt: skip
    assert settings.artifacts_path == workspace.resolve().parent / "elsewhere"


def test_runner_temp_is_used_for_downloads(workspace: Path, home: Path, tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir()
    env = actions_env(workspace)
    env["RUNNER_TEMP"] = str(runner_temp)
    assert load(env, home, Path("/")).temp_root == runner_temp.resolve()
    env["RUNNER_TEMP"] = str(workspace / "ectf-artifacts")
    (workspace / "ectf-artifacts").mkdir()
    assert load(env, home, Path("/")).temp_root is None
