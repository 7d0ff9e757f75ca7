"""Configuration precedence: flag > environment > ~/.ectf-config > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from ectf_action.config import DEFAULT_API_URL, Config, resolve_config
from ectf_action.edges import Environment, Inputs
from ectf_action.errors import InvalidInput


def resolve(flags: dict[str, str | None], env: dict[str, str], home: Path) -> Config:
    """The configuration as an entry point resolves it: flags and environment read once."""
    return resolve_config(Inputs(flags, Environment(env)), home)


FILE_TOKEN = "file-token-5a5a"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".ectf-config").write_text(
        f"token: {FILE_TOKEN}\napi_url: https://file.example.test\n"
        "git_url: ssh://git@github.com/team/file.git\n",
        encoding="utf-8",
    )
    return tmp_path


def test_default_api_url_when_nothing_is_set(tmp_path: Path) -> None:
    config = resolve({}, {}, tmp_path)
    assert config.api_url == DEFAULT_API_URL
    assert config.token == ""
    assert config.git_url is None


def test_config_file_is_read(home: Path) -> None:
    config = resolve({}, {}, home)
    assert config.token == FILE_TOKEN
    assert config.api_url == "https://file.example.test"
    assert config.git_url == "ssh://git@github.com/team/file.git"
    assert config.sources["token"] == "~/.ectf-config"


def test_environment_beats_the_file(home: Path) -> None:
    env = {"ECTF_TOKEN": "env-token", "ECTF_API_URL": "http://env.example.test/"}
    config = resolve({}, env, home)
    assert (config.token, config.api_url) == ("env-token", "http://env.example.test")
    assert config.git_url == "ssh://git@github.com/team/file.git"  # each value on its own


def test_flag_beats_the_environment(home: Path) -> None:
    env = {"ECTF_TOKEN": "env-token"}
    config = resolve({"token": "flag-token", "api-url": None}, env, home)
    assert config.token == "flag-token"
    assert config.sources["token"] == "--token"
    assert config.api_url == "https://file.example.test"


def test_in_actions_the_inputs_are_the_environment(home: Path) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "INPUT_TOKEN": "input-token",
        "INPUT_API-URL": "https://input.example.test",
        "INPUT_GIT-URL": "",  # empty means not given
        "ECTF_TOKEN": "env-token",
    }
    config = resolve({}, env, home)
    assert config.token == "input-token"
    assert config.api_url == "https://input.example.test"
    assert config.git_url == "ssh://git@github.com/team/file.git"


def test_inputs_are_ignored_outside_actions(tmp_path: Path) -> None:
    config = resolve({}, {"INPUT_TOKEN": "input-token"}, tmp_path)
    assert config.token == ""


def test_underscore_spelling_of_inputs_is_accepted(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "INPUT_API_URL": "https://under.example.test"}
    assert resolve({}, env, tmp_path).api_url == "https://under.example.test"


def test_token_is_not_in_the_repr(home: Path) -> None:
    assert FILE_TOKEN not in repr(resolve({}, {}, home))


@pytest.mark.parametrize("url", ["ftp://x", "api.ectf.mitre.org", "https://x/?a=1"])
def test_bad_api_url_names_its_source(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidInput, match="ECTF_API_URL"):
        resolve({}, {"ECTF_API_URL": url}, tmp_path)


def test_api_suffix_is_dropped(tmp_path: Path) -> None:
    assert resolve({"api-url": "https://x.test/api/"}, {}, tmp_path).api_url == ("https://x.test")


def test_broken_config_file_is_an_error_not_ignored(tmp_path: Path) -> None:
    (tmp_path / ".ectf-config").write_text("token: [unclosed\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        resolve({}, {}, tmp_path)
    (tmp_path / ".ectf-config").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="mapping"):
        resolve({}, {}, tmp_path)


def test_file_is_not_read_when_flags_and_env_cover_everything(tmp_path: Path) -> None:
    (tmp_path / ".ectf-config").write_text("token: [unclosed\n", encoding="utf-8")
    flags = {"token": "t", "api-url": "https://x.test", "git-url": "ssh://git@h/o/r.git"}
    assert resolve(flags, {}, tmp_path).token == "t"


def test_file_values_are_read_as_the_text_written(tmp_path: Path) -> None:
    """A hand-written token of digits, or one that reads like a YAML boolean, is that
    text: not the number 83 (octal 0123) or True."""
    (tmp_path / ".ectf-config").write_text("token: 0123\ngit_url: ssh://git@h/o/r.git\n")
    assert resolve({}, {}, tmp_path).token == "0123"
    (tmp_path / ".ectf-config").write_text("token: yes\n")
    assert resolve({}, {}, tmp_path).token == "yes"
