"""`ectf-action config`: write `~/.ectf-config` as the organizers' `ectf config` does, and
`config show`: each setting in effect and where it comes from."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from ..errors import EXIT_OK, InvalidInput
from .context import Context, add_command, examples

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import Config

SETTINGS = ("token", "git_url", "api_url")  # the file's keys, in the order they are asked for


class Prompts(NamedTuple):
    """How `config` asks for what the flags leave out: only on a terminal, the token
    without echo. Injected, so tests answer the questions. A NamedTuple: this module is
    imported for every command, and importing `dataclasses` costs each one some 10 ms."""

    interactive: bool
    ask: Callable[[str], str]
    ask_secret: Callable[[str], str]

    @classmethod
    def terminal(cls, stdin: TextIO, stream: TextIO) -> Prompts:
        import getpass

        def ask(prompt: str) -> str:
            stream.write(prompt)
            stream.flush()
            line = stdin.readline()
            if not line:
                raise InvalidInput("config", "the input ended before every value was given")
            return line.rstrip("\r\n")

        return cls(
            interactive=stdin.isatty(),
            ask=ask,
            ask_secret=lambda prompt: getpass.getpass(prompt, stream=stream),
        )


def config_write(ctx: Context, prompts: Prompts | None = None) -> int:
    from ..configfile import config_path, render_config, write_config

    prompts = prompts or Prompts.terminal(sys.stdin, ctx.stderr)
    home = ctx.home or ctx.env.home()
    path = config_path(home)
    if (path.exists() or path.is_symlink()) and not ctx.args.force:
        if not prompts.interactive:
            raise InvalidInput(
                "--force", f"{str(path)!r} already exists; pass --force to replace it"
            )
        if prompts.ask(f"{path} exists. Overwrite it? [y/N] ").strip().lower() not in ("y", "yes"):
            ctx.out(f"Kept {path} as it was.\n")
            return EXIT_OK
    token, git_url, api_url = _values(ctx, prompts, _current(ctx, home))
    try:
        write_config(path, render_config(token, git_url, api_url))
    except OSError as exc:
        raise InvalidInput("config", f"cannot write {str(path)!r}: {exc.strerror}") from None
    ctx.out(f"Wrote {path} (mode 0600).\n")
    return EXIT_OK


def _current(ctx: Context, home: Path) -> Config | None:
    """The settings in effect without flags (environment, then the file): the defaults
    offered at the prompts and used for what the flags leave out. A file that cannot be
    read offers nothing: it is being replaced."""
    from ..config import resolve_config
    from ..edges import Inputs

    try:
        return resolve_config(Inputs({}, ctx.env), home)
    except InvalidInput:
        return None


def _values(ctx: Context, prompts: Prompts, current: Config | None) -> tuple[str, str, str]:
    from ..config import DEFAULT_API_URL, normalize_api_url
    from ..configfile import mask_token
    from ..settings import check_token
    from ..validation import parse_git_url

    defaults = {
        "token": current.token if current else "",
        "git_url": (current.git_url if current else None) or "",
        "api_url": current.api_url if current else DEFAULT_API_URL,
    }
    values: dict[str, str] = {}
    for key in SETTINGS:
        flag = getattr(ctx.args, key)
        default = defaults[key]
        if flag is not None:
            values[key] = flag.strip()
        elif not prompts.interactive:
            values[key] = default
        elif key == "token":
            hint = f" [Enter keeps {mask_token(default)}]" if default else ""
            values[key] = prompts.ask_secret(f"Team API token{hint}: ").strip() or default
        else:
            label = "Git URL (ssh://...)" if key == "git_url" else "API URL"
            hint = f" [{default}]" if default else ""
            values[key] = prompts.ask(f"{label}{hint}: ").strip() or default
    if not values["token"]:
        raise InvalidInput("--token", "required: pass --token (or run on a terminal to be asked)")
    check_token(values["token"], name="--token")
    if not values["git_url"]:
        raise InvalidInput(
            "--git-url",
            "required (the organizers' client needs it): ssh://git@<host>/<owner>/<repo>.git",
        )
    git_url = parse_git_url(values["git_url"], name="--git-url")
    api_url = normalize_api_url(values["api_url"], name="--api-url")
    return values["token"], git_url, api_url


def config_show(ctx: Context) -> int:
    from ..configfile import config_path, describe, file_state
    from ..tables import format_table

    state = file_state(config_path(ctx.home or ctx.env.home()))
    data = describe(ctx.config(), state)
    rows = [(key, item["value"] or "-", item["source"]) for key, item in data["values"].items()]
    lines = format_table(("SETTING", "VALUE", "SOURCE"), rows)
    if not state.exists:
        lines += f"\n{state.path}: none (`ectf-action config` writes it)\n"
    else:
        lines += f"\n{state.path}: mode {data['config_file']['mode']}\n"
    ctx.emit(data, lines)
    if state.shared:
        ctx.stderr.write(
            f"warning: {state.path} is readable by other users; it holds the token: "
            f"chmod 600 {state.path}\n"
        )
    return EXIT_OK


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    epilog = examples(
        "config                            ask for each value (on a terminal)",
        "config --token T --git-url ssh://git@github.com/team/design.git",
        "config --force --git-url ssh://git@github.com/team/other.git   keep the rest",
        "config show",
        "config show --json",
    ) + (
        "\nWrites ~/.ectf-config exactly as the organizers' `ectf config` does (YAML keys\n"
        "token, git_url, api_url; mode 0600), so both tools share it. A value no flag gives\n"
        "is asked for on a terminal (the token without echo), else taken from the\n"
        "settings in effect (ECTF_TOKEN, ECTF_GIT_URL, ECTF_API_URL, then the file).\n"
        "An existing file is replaced only with --force, or when you confirm.\n"
    )
    parser = add_command(
        commands,
        "config",
        config_write,
        "Write ~/.ectf-config (shared with the organizers' client), or show the settings.",
        epilog,
    )
    parser.add_argument("--token", metavar="TOKEN", help="team API token (a flag shows in ps)")
    parser.add_argument("--git-url", metavar="URL", help="ssh:// URL the server clones")
    parser.add_argument(
        "--api-url", metavar="URL", help="testing server (default: https://api.ectf.mitre.org)"
    )
    parser.add_argument("-f", "--force", action="store_true", help="replace an existing file")
    sub = parser.add_subparsers(dest="config_command", metavar="COMMAND")
    show = add_command(
        sub,
        "show",
        config_show,
        "Show each setting in effect (the token masked) and where it comes from.",
        examples(
            "config show", "config show --json", "config show --api-url http://127.0.0.1:8000"
        ),
    )
    for flag in ("--token", "--git-url", "--api-url"):  # SUPPRESS: `config --token T show` keeps T
        show.add_argument(
            flag, metavar="VALUE", default=argparse.SUPPRESS, help="as other commands"
        )
    show.add_argument("--json", action="store_true", help="print one JSON document")
