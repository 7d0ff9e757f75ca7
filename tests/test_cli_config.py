"""`ectf-action config` writes `~/.ectf-config` as the organizers' client does, private
from the first byte; `config show` says where each setting comes from, never showing
the token. Prompts are driven through the injected `Prompts`."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import assert_golden
from ectf_action.cli import build_parser
from ectf_action.cli.config import Prompts, config_write
from ectf_action.cli.context import Context
from ectf_action.config import resolve_config
from ectf_action.configfile import mask_token
from ectf_action.edges import Environment, Inputs
from test_cli import run

GOLDEN = Path(__file__).parent / "golden" / "config"
TOKEN = "tok-5ec7e7-never-printed"
GIT_URL = "ssh://git@github.com/team/design.git"
FLAGS = ["--token", TOKEN, "--git-url", GIT_URL]


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: a file made with a plain open() would be readable by everyone."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def written(home: Path) -> dict[str, str]:
    data = yaml.safe_load((home / ".ectf-config").read_text())
    assert isinstance(data, dict)
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Terminal:
    """Answers the prompts in order and records them; the token only through ask_secret."""

    def __init__(self, *answers: str, secret: str = "") -> None:
        self.answers = list(answers)
        self.secret = secret
        self.asked: list[str] = []

    def prompts(self) -> Prompts:
        return Prompts(interactive=True, ask=self._ask, ask_secret=self._ask_secret)

    def _ask(self, prompt: str) -> str:
        self.asked.append(prompt)
        return self.answers.pop(0)

    def _ask_secret(self, prompt: str) -> str:
        self.asked.append(f"(secret) {prompt}")
        return self.secret


def at_a_terminal(
    home: Path, terminal: Terminal, *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    args = build_parser().parse_args(["config", *argv])
    ctx = Context(args, env=Environment(env or {}), stdout=out, stderr=io.StringIO(), home=home)
    return config_write(ctx, terminal.prompts()), out.getvalue()


# -- writing -----------------------------------------------------------------------------


def test_flags_write_the_three_keys_as_the_organizers_client_does(tmp_path: Path) -> None:
    done = run(["config", *FLAGS, "--api-url", "http://127.0.0.1:8000/"], home=tmp_path, env={})
    assert done.code == 0, done.err
    assert done.out == f"Wrote {tmp_path}/.ectf-config (mode 0600).\n"
    assert (tmp_path / ".ectf-config").read_text() == (
        "api_url: http://127.0.0.1:8000\n"
        "git_url: ssh://git@github.com/team/design.git\n"
        "token: tok-5ec7e7-never-printed\n"
    )


def test_the_file_is_private_even_under_an_open_umask(tmp_path: Path, open_umask: None) -> None:
    assert run(["config", *FLAGS], home=tmp_path, env={}).code == 0
    assert mode(tmp_path / ".ectf-config") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ectf-config"]  # no temp left


def test_an_existing_file_is_kept_without_force(tmp_path: Path, open_umask: None) -> None:
    config = tmp_path / ".ectf-config"
    config.write_text("token: theirs\n")
    config.chmod(0o644)
    refused = run(["config", *FLAGS], home=tmp_path, env={})
    assert refused.code == 2
    assert "already exists; pass --force to replace it" in refused.err
    assert config.read_text() == "token: theirs\n"
    assert run(["config", *FLAGS, "--force"], home=tmp_path, env={}).code == 0
    assert written(tmp_path)["token"] == TOKEN and mode(config) == 0o600


def test_force_with_one_flag_keeps_the_other_values(tmp_path: Path) -> None:
    assert run(["config", *FLAGS], home=tmp_path, env={}).code == 0
    other = "ssh://git@github.com/team/other.git"
    assert run(["config", "-f", "--git-url", other], home=tmp_path, env={}).code == 0
    assert written(tmp_path) == {
        "token": TOKEN,
        "git_url": other,
        "api_url": "https://api.ectf.mitre.org",
    }


def test_without_a_terminal_the_environment_fills_in(tmp_path: Path) -> None:
    env = {"ECTF_TOKEN": TOKEN, "ECTF_GIT_URL": GIT_URL}
    assert run(["config"], home=tmp_path, env=env).code == 0
    assert written(tmp_path)["token"] == TOKEN


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--git-url", GIT_URL], "--token: required"),
        (["--token", TOKEN], "--git-url: required"),
        (["--token", TOKEN, "--git-url", "https://github.com/team/design.git"], "clones over SSH"),
        (["--token", "two words", "--git-url", GIT_URL], "--token: holds a space"),
        ([*FLAGS, "--api-url", "ftp://example.test"], "--api-url: 'ftp://example.test' is not"),
    ],
)
def test_bad_or_missing_values_write_nothing(tmp_path: Path, argv: list[str], problem: str) -> None:
    done = run(["config", *argv], home=tmp_path, env={})
    assert done.code == 2 and problem in done.err
    assert list(tmp_path.iterdir()) == []


def test_a_terminal_is_asked_for_each_value_the_token_without_echo(tmp_path: Path) -> None:
    terminal = Terminal(GIT_URL, "", secret=TOKEN)
    code, out = at_a_terminal(tmp_path, terminal)
    assert code == 0 and out == f"Wrote {tmp_path}/.ectf-config (mode 0600).\n"
    assert terminal.asked == [
        "(secret) Team API token: ",
        "Git URL (ssh://...): ",
        "API URL [https://api.ectf.mitre.org]: ",
    ]
    assert written(tmp_path) == {
        "token": TOKEN,
        "git_url": GIT_URL,
        "api_url": "https://api.ectf.mitre.org",
    }


def test_a_terminal_confirms_before_replacing_and_enter_keeps_each_value(
    tmp_path: Path,
) -> None:
    run(["config", *FLAGS], home=tmp_path, env={})
    before = (tmp_path / ".ectf-config").read_text()
    declined = Terminal("n")
    assert at_a_terminal(tmp_path, declined) == (0, f"Kept {tmp_path}/.ectf-config as it was.\n")
    assert len(declined.asked) == 1
    assert (tmp_path / ".ectf-config").read_text() == before

    terminal = Terminal("y", "", "http://127.0.0.1:8000")
    code, _ = at_a_terminal(tmp_path, terminal)
    assert code == 0
    assert terminal.asked == [
        f"{tmp_path}/.ectf-config exists. Overwrite it? [y/N] ",
        f"(secret) Team API token [Enter keeps {mask_token(TOKEN)}]: ",
        f"Git URL (ssh://...) [{GIT_URL}]: ",
        "API URL [https://api.ectf.mitre.org]: ",
    ]
    assert TOKEN not in "".join(terminal.asked)
    assert written(tmp_path)["token"] == TOKEN
    assert written(tmp_path)["api_url"] == "http://127.0.0.1:8000"


def test_our_file_is_what_we_read_back(tmp_path: Path) -> None:
    run(["config", *FLAGS, "--api-url", "http://127.0.0.1:9/api"], home=tmp_path, env={})
    config = resolve_config(Inputs({}, Environment({})), tmp_path)
    assert (config.token, config.git_url, config.api_url) == (TOKEN, GIT_URL, "http://127.0.0.1:9")
    assert set(config.sources.values()) == {"~/.ectf-config"}


# -- showing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("ectf_0123456789abcdefc0de", "...c0de"),
        ("0123456789abcdef", "...cdef"),
        ("0123456789abcde", "***"),
        ("", ""),
    ],
)
def test_the_token_is_masked_to_at_most_four_characters(token: str, shown: str) -> None:
    assert mask_token(token) == shown


def test_show_names_the_source_of_each_value(tmp_path: Path) -> None:
    (tmp_path / ".ectf-config").write_text(f"token: {TOKEN}\ngit_url: {GIT_URL}\n")
    (tmp_path / ".ectf-config").chmod(0o600)
    env = {"ECTF_API_URL": "http://127.0.0.1:8000"}
    from_file = run(["config", "show"], home=tmp_path, env=env)
    flagged = run(["config", "show", "--token", "short-flag-tok"], home=tmp_path, env={})
    nothing = run(["config", "show"], home=tmp_path / "empty", env={})
    text = "\n".join(r.out for r in (from_file, flagged, nothing)).replace(str(tmp_path), "<HOME>")
    assert_golden(GOLDEN / "show.txt", text)
    assert {from_file.code, flagged.code, nothing.code} == {0}


def test_show_json_and_a_warning_for_a_file_others_can_read(tmp_path: Path) -> None:
    config = tmp_path / ".ectf-config"
    config.write_text(f"token: {TOKEN}\ngit_url: {GIT_URL}\napi_url: http://h:1\n")
    config.chmod(0o644)
    done = run(["config", "show", "--json"], home=tmp_path, env={"ECTF_TOKEN": TOKEN})
    assert done.code == 0
    assert json.loads(done.out) == {
        "values": {
            "token": {"value": mask_token(TOKEN), "source": "ECTF_TOKEN"},
            "git_url": {"value": GIT_URL, "source": "~/.ectf-config"},
            "api_url": {"value": "http://h:1", "source": "~/.ectf-config"},
        },
        "config_file": {"path": str(config), "exists": True, "mode": "0644", "shared": True},
    }
    assert done.err == (
        f"warning: {config} is readable by other users; it holds the token: chmod 600 {config}\n"
    )
