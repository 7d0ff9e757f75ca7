"""Where the token, API URL and git URL come from.

First found wins: a command-line flag; the environment (inside GitHub Actions the action
inputs, then the ECTF_* variables; elsewhere only ECTF_*); `~/.ectf-config`, the YAML
file the organizers' `ectf config` writes; then the default API URL. The values flow
one way, from `Inputs` (flags and action inputs, read once at the edge) down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .edges import Inputs
from .errors import InvalidInput

DEFAULT_API_URL = "https://api.ectf.mitre.org"
CONFIG_FILE_NAME = ".ectf-config"

# key of the config file -> (action input and flag name, plain environment variable)
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
    # where each value came from ("--token", "input token", "~/.ectf-config", ...)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


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
        # Every value as the text it is: a token such as `0123` or `yes` written without
        # quotes stays that token (YAML would read an octal number or a boolean).
        data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 (BaseLoader builds no objects)
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
    if parts.username is not None or parts.password is not None:
        # requests would send these as Basic auth instead of the team's token, and print
        # the password in its errors: refuse them, without echoing the value.
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise InvalidInput(
            name,
            f"holds a user name or password ({shown} with credentials before the host); the "
            "testing server takes only the team's token: remove the user:password@ part",
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            name, f"{value!r} is not an http(s) URL (expected e.g. {DEFAULT_API_URL})"
        )
    if parts.query or parts.fragment:
        raise InvalidInput(name, f"{value!r} must not hold a query or fragment")
    if text.endswith("/api"):
        text = text[: -len("/api")]  # people paste the API root; paths add /api themselves
    return text


def resolve_config(inputs: Inputs, home: Path | None = None) -> Config:
    """Resolve each value independently, first found wins."""
    env = inputs.env
    found: dict[str, str] = {}
    sources: dict[str, str] = {}
    file_values: dict[str, str] | None = None
    for key, (input_name, env_name) in _SOURCES.items():
        given = inputs.raw(input_name)
        if given:
            found[key], sources[key] = given, inputs.source(input_name)
            continue
        env_value = env.value(env_name)
        if env_value:
            found[key], sources[key] = env_value, env_name
            continue
        if file_values is None:
            file_values = read_config_file(env.home() if home is None else home)
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
