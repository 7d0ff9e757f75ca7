"""Where the token, API URL and git URL come from.

First found wins: a command-line flag; the environment (inside GitHub Actions the action
inputs, then the ECTF_* variables; elsewhere only ECTF_*); `~/.ectf-config`, the YAML
file the organizers' `ectf config` writes; then the default API URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import InvalidInput

DEFAULT_API_URL = "https://api.ectf.mitre.org"
CONFIG_FILE_NAME = ".ectf-config"

# key -> (action input name, plain environment variable)
_SOURCES = {
    "token": ("token", "ECTF_TOKEN"),
    "api_url": ("api-url", "ECTF_API_URL"),
    "git_url": ("git-url", "ECTF_GIT_URL"),
}


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str = field(repr=False)
    git_url: str | None = None
    # where each value came from ("flag", "INPUT_TOKEN", "~/.ectf-config", ...): for messages
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def in_github_actions(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS", "").strip().lower() == "true"


def action_input(env: Mapping[str, str], name: str) -> str | None:
    """An input as the runner passes it to a container action; empty means not given.

    The runner keeps hyphens (`INPUT_API-URL`); the underscore spelling is accepted too,
    for people who set the variables by hand.
    """
    upper = name.replace(" ", "_").upper()
    for key in (f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"):
        value = env.get(key, "").strip()
        if value:
            return value
    return None


def read_config_file(home: Path) -> dict[str, str]:
    """The organizers' config file, if there is one; a broken file is an error, not ignored."""
    import yaml

    path = home / CONFIG_FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"~/{CONFIG_FILE_NAME}", f"cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InvalidInput(
            f"~/{CONFIG_FILE_NAME}",
            "is not valid YAML; fix it or rerun `ectf config` (keys: token, git_url, api_url)",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"~/{CONFIG_FILE_NAME}", "must be a mapping of token, git_url, api_url")
    return {k: str(v).strip() for k, v in data.items() if k in _SOURCES and v not in (None, "")}


def normalize_api_url(value: str, *, name: str = "api-url") -> str:
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            name, f"{value!r} is not an http(s) URL (expected e.g. {DEFAULT_API_URL})"
        )
    if parts.query or parts.fragment:
        raise InvalidInput(name, f"{value!r} must not hold a query or fragment")
    if text.endswith("/api"):
        text = text[: -len("/api")]  # people paste the API root; paths add /api themselves
    return text


def resolve_config(flags: Mapping[str, str | None], env: Mapping[str, str], home: Path) -> Config:
    """Resolve each value independently, first found wins."""
    found: dict[str, str] = {}
    sources: dict[str, str] = {}
    file_values: dict[str, str] | None = None
    actions = in_github_actions(env)
    for key, (input_name, env_name) in _SOURCES.items():
        flag_value = (flags.get(key) or "").strip()
        if flag_value:
            found[key], sources[key] = flag_value, f"--{input_name}"
            continue
        if actions:
            input_value = action_input(env, input_name)
            if input_value:
                found[key], sources[key] = input_value, f"input {input_name}"
                continue
        env_value = env.get(env_name, "").strip()
        if env_value:
            found[key], sources[key] = env_value, env_name
            continue
        if file_values is None:
            file_values = read_config_file(home)
        if key in file_values:
            found[key], sources[key] = file_values[key], f"~/{CONFIG_FILE_NAME}"
    api_url = found.get("api_url")
    if api_url is None:
        api_url, sources["api_url"] = DEFAULT_API_URL, "default"
    return Config(
        api_url=normalize_api_url(api_url, name=sources["api_url"]),
        token=found.get("token", ""),
        git_url=found.get("git_url"),
        sources=sources,
    )
