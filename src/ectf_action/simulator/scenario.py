"""Scenarios: what the simulated testing server does, read from YAML and validated.

A scenario names the teams, the job graph of each flow type, which commits make which
jobs fail, the timing, the upload limit and the faults to inject. Every value is
checked when the scenario is loaded, and a bad one raises `ScenarioError` naming the
key (`flows.test.jobs[1].needs: unknown job 'biuld'`), so a typo never turns into a
silently different simulation.

Anything a scenario leaves out keeps the shipped default (`default.yaml`): a flow type
that is not listed keeps the default job graph, and a missing `teams` keeps the default
teams. That lets a test write only what it changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from .faults import FAULT_KINDS, STALL_THEN, FaultRule, Mangle

FLOW_TYPES: Final = ("clone", "test", "submit", "remote")
ARTIFACT_KINDS: Final = ("log", "text", "random", "zeros", "port", "content")
JOB_OUTCOMES: Final = ("succeeded", "failed", "hang")
JOB_INPUTS: Final = ("approval", "any", "organizer")
ARTIFACT_WHEN: Final = ("always", "succeeded", "failed")
DESIGN_LANGUAGES: Final = ("c", "rust")  # simulator/design.py
LOG_TEMPLATES: Final = (
    "pull",
    "build",
    "test",
    "package",
    "ports",
    "remote",
    "approval",
    "generic",
)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
}
_MAX_ARTIFACT_BYTES = 64 * 1024**3
_MAX_ARTIFACT_COUNT = 1_000_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ScenarioError(ValueError):
    """A scenario value is wrong; the message starts with the key that holds it."""


@dataclass(frozen=True)
class ArtifactSpec:
    """One file (or, with `count`, a family of files) in a job's output zip."""

    name: str
    kind: str = "text"
    size: int | None = None
    count: int = 1
    compress: bool = True
    when: str = "always"
    text: str = ""

    def applies_to(self, outcome: str) -> bool:
        return self.when == "always" or self.when == outcome

    @property
    def total_bytes(self) -> int | None:
        return None if self.size is None else self.size * self.count


@dataclass(frozen=True)
class JobSpec:
    """One job of a flow type: what it waits for, how long it runs, how it ends."""

    name: str
    needs: tuple[str, ...] = ()
    duration: float = 1.0
    outcome: str = "succeeded"
    private: bool = False
    input: str | None = None
    resolve_after: float | None = None
    resolve_to: str = "succeeded"
    log: str = "generic"
    artifacts: tuple[ArtifactSpec, ...] = ()
    appears_after: float | None = None  # listed (and started) only this long after queueing


@dataclass(frozen=True)
class FlowSpec:
    """The job graph of one flow type (`clone`, `test`, `submit`, `remote`)."""

    name: str
    jobs: tuple[JobSpec, ...]
    queue_delay: float = 0.0

    def job(self, name: str) -> JobSpec | None:
        return next((j for j in self.jobs if j.name == name), None)


@dataclass(frozen=True)
class TeamSpec:
    """A team: its token (never shown in a repr), its phase and its stealable digest."""

    name: str
    token: str = field(repr=False)
    attack_phase: bool = False
    steal_digest: str | None = field(default=None, repr=False)
    package: tuple[ArtifactSpec, ...] | None = None
    # what decrypts the package (openssl's `-k`); None: derived from the secret
    package_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OutcomeRule:
    """Which jobs fail (or hang) for which commits or targets."""

    commit_prefix: str | None = None
    target_team: str | None = None
    flows: frozenset[str] | None = None
    fail: tuple[str, ...] = ()
    hang: tuple[str, ...] = ()
    design: str | None = None  # the language of the design its builds build

    def matches(self, flow_name: str, params: Mapping[str, Any]) -> bool:
        if self.flows is not None and flow_name not in self.flows:
            return False
        if self.commit_prefix is not None:
            commit = params.get("commit_hash")
            if not isinstance(commit, str) or not commit.lower().startswith(
                self.commit_prefix.lower()
            ):
                return False
        return self.target_team is None or params.get("target_team") == self.target_team


@dataclass(frozen=True)
class Scenario:
    """A whole simulation, validated. Build one with `from_dict` or `load_scenario`."""

    teams: tuple[TeamSpec, ...]
    flows: Mapping[str, FlowSpec]
    outcomes: tuple[OutcomeRule, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    seed: int = 0
    secret: str = field(default="ectf-simulator", repr=False)
    time_scale: float = 1.0
    upload_limit: int = 10 * 1024 * 1024
    ranges: bool = False
    etags: bool = False  # packages carry an ETag and honour If-None-Match (304)
    # Each download's connection is held to this many MB (10**6 bytes) a second; 0: unlimited.
    download_bandwidth_mbps: float = 0.0
    default_team: str = ""

    def __post_init__(self) -> None:
        if not self.default_team and self.teams:
            object.__setattr__(self, "default_team", self.teams[0].name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Scenario | None = None) -> Scenario:
        """Validate *data*; keys it leaves out come from *base* (the default scenario)."""
        return _parse_scenario(data, base if base is not None else default_scenario())

    def team(self, name: str) -> TeamSpec | None:
        return next((t for t in self.teams if t.name == name), None)

    def job_outcomes(self, flow_name: str, params: Mapping[str, Any]) -> dict[str, str]:
        """How each job of a flow queued with *params* ends (`succeeded`, `failed` or
        `hang`): its own `outcome`, then the matching rules in order."""
        outcomes = {job.name: job.outcome for job in self.flows[flow_name].jobs}
        for rule in self.outcomes:
            if not rule.matches(flow_name, params):
                continue
            for name in rule.fail:
                if name in outcomes:
                    outcomes[name] = "failed"
            for name in rule.hang:
                if name in outcomes:
                    outcomes[name] = "hang"
        return outcomes

    def design_for(self, flow_name: str, params: Mapping[str, Any]) -> str:
        """The language of the design that a flow queued with *params* builds: the last
        matching rule's `design`, else `c`."""
        design = "c"
        for rule in self.outcomes:
            if rule.design is not None and rule.matches(flow_name, params):
                design = rule.design
        return design

    def team_by_token(self, token: str) -> TeamSpec | None:
        return next((t for t in self.teams if t.token == token), None)

    @property
    def default(self) -> TeamSpec:
        team = self.team(self.default_team)
        assert team is not None  # guaranteed by validation
        return team

    def with_token(self, token: str) -> Scenario:
        """The same scenario where the default team uses *token*."""
        if not token:
            raise ScenarioError("token: must not be empty")
        clash = self.team_by_token(token)
        if clash is not None and clash.name != self.default_team:
            raise ScenarioError(f"token: already used by team '{clash.name}'")
        teams = tuple(
            replace(t, token=token) if t.name == self.default_team else t for t in self.teams
        )
        return replace(self, teams=teams)

    def with_time_scale(self, time_scale: float) -> Scenario:
        if not (time_scale >= 0 and math.isfinite(time_scale)):
            raise ScenarioError("time_scale: must be a finite number >= 0")
        return replace(self, time_scale=time_scale)

    def with_faults(self, faults: Sequence[FaultRule]) -> Scenario:
        return replace(self, faults=tuple(faults))


def load_scenario(path_or_text: str | Path) -> Scenario:
    """Load a scenario from a file path or from YAML text (safe loader).

    A `Path`, or a string naming an existing file, is read as a file; any other string
    is parsed as YAML.
    """
    text: str
    if isinstance(path_or_text, Path):
        text = _read_file(path_or_text)
    elif "\n" not in path_or_text and path_or_text.strip() and Path(path_or_text).is_file():
        text = _read_file(Path(path_or_text))
    else:
        text = path_or_text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"scenario: expected a mapping at the top, got {_kind(data)}")
    return Scenario.from_dict(data)


_DEFAULT: Scenario | None = None


def default_scenario() -> Scenario:
    """The scenario shipped in the package (`default.yaml`), parsed once."""
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files(__package__).joinpath("default.yaml").read_text("utf-8")
        data = yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ScenarioError("default.yaml: expected a mapping at the top")
        _DEFAULT = _parse_scenario(data, None)
    return _DEFAULT


def parse_size(value: object, where: str) -> int:
    """Bytes from an int or a string such as `50MB`, `64KiB`, `1.5 GiB`."""
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected a size, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ScenarioError(f"{where}: must not be negative")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            number, unit = match.groups()
            return int(float(number) * _SIZE_UNITS[unit.lower()])
    raise ScenarioError(f"{where}: expected a size such as 4096, '64KiB' or '50MB', got {value!r}")


# --- parsing ---------------------------------------------------------------------


def _read_file(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise ScenarioError(f"scenario: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"scenario: {path} is not UTF-8 text") from exc


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class _Section:
    """Reads one mapping of the scenario, naming the key in every error."""

    def __init__(self, data: object, where: str, allowed: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where}: expected a mapping, got {_kind(data)}")
        for key in data:
            if key not in allowed:
                raise ScenarioError(
                    f"{self._at(where, key)}: unknown key (known keys: {', '.join(allowed)})"
                )
        self.data: Mapping[str, Any] = data
        self.where = where

    @staticmethod
    def _at(where: str, key: object) -> str:
        return f"{where}.{key}" if where else str(key)

    def at(self, key: str) -> str:
        return self._at(self.where, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        if key not in self.data or self.data[key] is None:
            if required or default is None:
                raise ScenarioError(f"{self.at(key)}: required")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ScenarioError(f"{self.at(key)}: expected a string, got {_kind(value)}")
        return str(value)

    def optional_string(self, key: str) -> str | None:
        if self.data.get(key) is None:
            return None
        return self.string(key)

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise ScenarioError(f"{self.at(key)}: {value!r} is not one of: {', '.join(choices)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise ScenarioError(f"{self.at(key)}: expected true or false, got {_kind(value)}")
        return value

    def number(
        self,
        key: str,
        default: float | None,
        *,
        minimum: float = 0.0,
        maximum: float = math.inf,
    ) -> float:
        if key not in self.data or self.data[key] is None:
            if default is None:
                raise ScenarioError(f"{self.at(key)}: required")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{self.at(key)}: expected a number, got {_kind(value)}")
        number = float(value)
        if not math.isfinite(number) or number < minimum or number > maximum:
            bounds = f">= {minimum:g}" if maximum == math.inf else f"in [{minimum:g}, {maximum:g}]"
            raise ScenarioError(f"{self.at(key)}: must be a number {bounds}, got {value!r}")
        return number

    def optional_number(self, key: str, *, minimum: float = 0.0) -> float | None:
        if self.data.get(key) is None:
            return None
        return self.number(key, None, minimum=minimum)

    def integer(self, key: str, default: int | None, *, minimum: int = 0) -> int:
        if key not in self.data or self.data[key] is None:
            if default is None:
                raise ScenarioError(f"{self.at(key)}: required")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{self.at(key)}: expected a whole number, got {_kind(value)}")
        if value < minimum:
            raise ScenarioError(f"{self.at(key)}: must be >= {minimum}, got {value}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings."""
        value = self.data.get(key)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ScenarioError(f"{self.at(key)}: expected a string or a list of strings")
        out = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise ScenarioError(f"{self.at(key)}[{index}]: expected a non-empty string")
            out.append(item)
        return tuple(out)

    def items(self, key: str) -> list[tuple[str, Any]]:
        """A list under *key*, each element with its own `where`."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ScenarioError(f"{self.at(key)}: expected a list, got {_kind(value)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]


_TOP_KEYS = (
    "seed",
    "secret",
    "time_scale",
    "upload_limit",
    "downloads",
    "default_team",
    "teams",
    "flows",
    "outcomes",
    "faults",
)


def _parse_scenario(data: Mapping[str, Any], base: Scenario | None) -> Scenario:
    top = _Section(data, "", _TOP_KEYS)
    seed = top.integer("seed", base.seed if base else 0, minimum=-(2**63))
    secret = top.string("secret", base.secret if base else "ectf-simulator")
    if not secret:
        raise ScenarioError("secret: must not be empty")
    time_scale = top.number("time_scale", base.time_scale if base else 1.0)
    upload_limit = parse_size(
        top.raw("upload_limit")
        if top.has("upload_limit")
        else (base.upload_limit if base else 10 * 1024 * 1024),
        "upload_limit",
    )
    ranges = base.ranges if base else False
    etags = base.etags if base else False
    bandwidth_mbps = base.download_bandwidth_mbps if base else 0.0
    if top.has("downloads"):
        downloads = _Section(
            top.raw("downloads"), "downloads", ("ranges", "etags", "bandwidth_mbps")
        )
        ranges = downloads.boolean("ranges", ranges)
        etags = downloads.boolean("etags", etags)
        bandwidth_mbps = downloads.number("bandwidth_mbps", bandwidth_mbps)

    if top.has("teams") or base is None:
        teams = _parse_teams(top.items("teams"))
        default_team = top.string("default_team", teams[0].name if teams else "")
    else:
        teams = base.teams
        default_team = top.string("default_team", base.default_team)
    if not teams:
        raise ScenarioError("teams: at least one team is required")
    if not any(t.name == default_team for t in teams):
        raise ScenarioError(f"default_team: no team is named {default_team!r}")

    flows: dict[str, FlowSpec] = dict(base.flows) if base else {}
    if top.has("flows"):
        flow_section = _Section(top.raw("flows"), "flows", FLOW_TYPES)
        for flow_name in FLOW_TYPES:
            if flow_section.has(flow_name):
                flows[flow_name] = _parse_flow(
                    flow_name, flow_section.raw(flow_name), flow_section.at(flow_name)
                )
    missing = [name for name in FLOW_TYPES if name not in flows]
    if missing:
        raise ScenarioError(f"flows: missing flow type(s): {', '.join(missing)}")

    if top.has("outcomes") or base is None:
        outcomes = tuple(
            _parse_outcome(where, item, flows) for where, item in top.items("outcomes")
        )
    else:
        outcomes = base.outcomes
    for index, rule in enumerate(outcomes):
        if rule.target_team is not None and not any(t.name == rule.target_team for t in teams):
            raise ScenarioError(
                f"outcomes[{index}].target_team: no team is named {rule.target_team!r}"
            )

    if top.has("faults") or base is None:
        faults = tuple(_parse_fault(where, item) for where, item in top.items("faults"))
    else:
        faults = base.faults

    return Scenario(
        teams=teams,
        flows=flows,
        outcomes=outcomes,
        faults=faults,
        seed=seed,
        secret=secret,
        time_scale=time_scale,
        upload_limit=upload_limit,
        ranges=ranges,
        etags=etags,
        download_bandwidth_mbps=bandwidth_mbps,
        default_team=default_team,
    )


def _parse_teams(items: list[tuple[str, Any]]) -> tuple[TeamSpec, ...]:
    teams: list[TeamSpec] = []
    for where, item in items:
        section = _Section(
            item,
            where,
            ("name", "token", "attack_phase", "steal_digest", "package", "package_key"),
        )
        name = section.string("name", required=True)
        if not _NAME_RE.match(name):
            raise ScenarioError(
                f"{section.at('name')}: {name!r} must be 1-64 letters, digits, '.', '_' or '-'"
            )
        token = section.string("token", required=True)
        if not token or any(c.isspace() for c in token):
            raise ScenarioError(f"{section.at('token')}: must be non-empty, without spaces")
        digest = section.optional_string("steal_digest")
        package_key = section.optional_string("package_key")
        if package_key == "":
            raise ScenarioError(f"{section.at('package_key')}: must not be empty")
        attack_phase = section.boolean("attack_phase", False)
        package: tuple[ArtifactSpec, ...] | None
        raw_package = section.raw("package")
        if raw_package is None:
            package = _DEFAULT_PACKAGE if attack_phase else None
        elif raw_package is False:
            package = None
        elif raw_package is True:
            package = _DEFAULT_PACKAGE
        else:
            pkg = _Section(raw_package, section.at("package"), ("artifacts",))
            package = tuple(_parse_artifact(w, a) for w, a in pkg.items("artifacts"))
            if not package:
                raise ScenarioError(f"{pkg.at('artifacts')}: a package needs at least one file")
        for other in teams:
            if other.name == name:
                raise ScenarioError(f"{section.at('name')}: team {name!r} is listed twice")
            if other.token == token:
                raise ScenarioError(f"{section.at('token')}: the same token as team {other.name!r}")
        teams.append(
            TeamSpec(
                name=name,
                token=token,
                attack_phase=attack_phase,
                steal_digest=digest,
                package=package,
                package_key=package_key,
            )
        )
    return tuple(teams)


# What a team's package holds once decrypted (it is served encrypted with its key).
_DEFAULT_PACKAGE = (
    ArtifactSpec(name="hsm.bin", kind="random", size=32 * 1024, compress=False),
    ArtifactSpec(name="README.txt", kind="content", text="The attack package of a design.\n"),
)


def _parse_flow(flow_name: str, data: object, where: str) -> FlowSpec:
    section = _Section(data, where, ("queue_delay", "jobs"))
    queue_delay = section.number("queue_delay", 0.0)
    jobs: list[JobSpec] = []
    for job_where, item in section.items("jobs"):
        job = _parse_job(item, job_where)
        if any(j.name == job.name for j in jobs):
            raise ScenarioError(f"{job_where}.name: job {job.name!r} is listed twice")
        known = [j.name for j in jobs]
        for need in job.needs:
            if need not in known:
                hint = (
                    "a job may only need jobs listed before it"
                    if need in _job_names(section.items("jobs"))
                    else f"known: {', '.join(known) or 'none'}"
                )
                raise ScenarioError(f"{job_where}.needs: unknown job {need!r} ({hint})")
        jobs.append(job)
    if not jobs:
        raise ScenarioError(f"{where}.jobs: a flow needs at least one job")
    if flow_name == "remote":
        for required in ("get_ports", "run_remote_scenario"):
            if not any(j.name == required for j in jobs):
                raise ScenarioError(
                    f"{where}.jobs: the remote flow needs a job named {required!r} "
                    "(the organizers' client looks for it)"
                )
    return FlowSpec(name=flow_name, jobs=tuple(jobs), queue_delay=queue_delay)


def _job_names(items: list[tuple[str, Any]]) -> set[str]:
    return {
        str(item["name"])
        for _, item in items
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    }


def _default_log_template(job_name: str) -> str:
    name = job_name.lower()
    if "pull" in name or "clone" in name:
        return "pull"
    if "build" in name:
        return "build"
    if "test" in name:
        return "test"
    if "package" in name:
        return "package"
    if "port" in name:
        return "ports"
    if "remote" in name:
        return "remote"
    if "approv" in name:
        return "approval"
    return "generic"


def _parse_job(data: object, where: str) -> JobSpec:
    section = _Section(
        data,
        where,
        (
            "name",
            "needs",
            "duration",
            "outcome",
            "private",
            "input",
            "resolve_after",
            "resolve_to",
            "log",
            "artifacts",
            "appears_after",
        ),
    )
    name = section.string("name", required=True)
    if not name.strip():
        raise ScenarioError(f"{section.at('name')}: must not be empty")
    input_kind = section.optional_string("input")
    if input_kind is not None and input_kind not in JOB_INPUTS:
        raise ScenarioError(
            f"{section.at('input')}: {input_kind!r} is not one of: {', '.join(JOB_INPUTS)}"
        )
    resolve_after = section.optional_number("resolve_after")
    if resolve_after is not None and input_kind is None:
        raise ScenarioError(
            f"{section.at('resolve_after')}: only a job with `input` waits to be resolved"
        )
    private = section.boolean("private", input_kind == "organizer")
    artifacts = tuple(_parse_artifact(w, a) for w, a in section.items("artifacts"))
    if private and artifacts:
        raise ScenarioError(f"{section.at('artifacts')}: a private job has no team-visible output")
    return JobSpec(
        name=name,
        needs=section.strings("needs"),
        duration=section.number("duration", 1.0),
        outcome=section.choice("outcome", JOB_OUTCOMES, "succeeded"),
        private=private,
        input=input_kind,
        resolve_after=resolve_after,
        resolve_to=section.choice("resolve_to", ("succeeded", "failed"), "succeeded"),
        log=section.choice("log", LOG_TEMPLATES, _default_log_template(name)),
        artifacts=artifacts,
        appears_after=section.optional_number("appears_after"),
    )


def _parse_artifact(where: str, data: object) -> ArtifactSpec:
    section = _Section(data, where, ("name", "kind", "size", "count", "compress", "when", "text"))
    name = section.string("name", required=True)
    _check_artifact_name(name, section.at("name"))
    kind = section.choice("kind", ARTIFACT_KINDS, "content" if section.has("text") else "text")
    size = parse_size(section.raw("size"), section.at("size")) if section.has("size") else None
    if size is not None and size > _MAX_ARTIFACT_BYTES:
        raise ScenarioError(f"{section.at('size')}: at most {_MAX_ARTIFACT_BYTES} bytes")
    count = section.integer("count", 1, minimum=1)
    if count > _MAX_ARTIFACT_COUNT:
        raise ScenarioError(f"{section.at('count')}: at most {_MAX_ARTIFACT_COUNT}")
    if count > 1 and "{i}" not in name:
        raise ScenarioError(
            f"{section.at('name')}: with `count` > 1 the name needs an `{{i}}` placeholder"
        )
    text = section.string("text", "")
    if section.has("text") and kind != "content":
        raise ScenarioError(f"{section.at('text')}: only a `kind: content` file has text")
    if kind == "content" and not section.has("text"):
        raise ScenarioError(f"{section.at('text')}: required for `kind: content`")
    return ArtifactSpec(
        name=name,
        kind=kind,
        size=size,
        count=count,
        compress=section.boolean("compress", kind != "random"),
        when=section.choice("when", ARTIFACT_WHEN, "always"),
        text=text,
    )


def _check_artifact_name(name: str, where: str) -> None:
    """Scenario file names are ours, so they must be plain relative paths."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise ScenarioError(f"{where}: {name!r} must be a relative path with '/' separators")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ScenarioError(f"{where}: {name!r} must not have empty, '.' or '..' parts")
    try:
        name.replace("{i}", "0").format()
    except (IndexError, KeyError, ValueError) as exc:
        raise ScenarioError(f"{where}: {name!r}: the only placeholder allowed is {{i}}") from exc


def _parse_outcome(where: str, data: object, flows: Mapping[str, FlowSpec]) -> OutcomeRule:
    section = _Section(
        data, where, ("commit_prefix", "target_team", "flows", "fail", "hang", "design")
    )
    commit_prefix = section.optional_string("commit_prefix")
    if commit_prefix is not None and not re.fullmatch(r"[0-9a-fA-F]{1,40}", commit_prefix):
        raise ScenarioError(f"{section.at('commit_prefix')}: expected hex digits")
    flow_names = section.strings("flows")
    for name in flow_names:
        if name not in FLOW_TYPES:
            raise ScenarioError(
                f"{section.at('flows')}: {name!r} is not one of: {', '.join(FLOW_TYPES)}"
            )
    fail = section.strings("fail")
    hang = section.strings("hang")
    design = section.optional_string("design")
    if design is not None and design not in DESIGN_LANGUAGES:
        raise ScenarioError(
            f"{section.at('design')}: {design!r} is not one of: {', '.join(DESIGN_LANGUAGES)}"
        )
    if not fail and not hang and design is None:
        raise ScenarioError(
            f"{where}: a rule needs `fail` or `hang` (the jobs it changes), or `design`"
        )
    scope = flow_names or FLOW_TYPES
    known = {j.name for f in scope for j in flows[f].jobs}
    for key, names in (("fail", fail), ("hang", hang)):
        for name in names:
            if name not in known:
                raise ScenarioError(
                    f"{section.at(key)}: no job named {name!r} in flow(s) {', '.join(scope)}"
                )
    return OutcomeRule(
        commit_prefix=commit_prefix,
        target_team=section.optional_string("target_team"),
        flows=frozenset(flow_names) if flow_names else None,
        fail=fail,
        hang=hang,
        design=design,
    )


def _parse_fault(where: str, data: object) -> FaultRule:
    section = _Section(
        data,
        where,
        (
            "kind",
            "rate",
            "statuses",
            "retry_after",
            "min",
            "max",
            "fraction",
            "methods",
            "path",
            "skip",
            "limit",
            "phase",
            "drop_fields",
            "extra_fields",
            "unknown_status",
            "completed",
            "seconds",
            "then",
        ),
    )
    kind = section.choice("kind", FAULT_KINDS, "error")
    _only_for(
        section, kind, "mangle", ("drop_fields", "extra_fields", "unknown_status", "completed")
    )
    _only_for(section, kind, "stall", ("then",))
    if section.has("seconds") and kind not in ("stall", "hang"):
        raise ScenarioError(f"{section.at('seconds')}: only a `stall` or `hang` rule has seconds")
    if section.has("phase") and kind in SHAPE_KINDS:
        raise ScenarioError(f"{section.at('phase')}: only an `error` or `drop` rule has a phase")
    statuses: tuple[int, ...] = (500,)
    if section.has("statuses"):
        raw = section.raw("statuses")
        values = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(values, list) or not values:
            raise ScenarioError(f"{section.at('statuses')}: expected a list of status codes")
        lowest = 200 if kind == "html" else 400  # a captive portal's page is a 200
        for index, status in enumerate(values):
            if (
                isinstance(status, bool)
                or not isinstance(status, int)
                or not lowest <= status <= 599
            ):
                raise ScenarioError(
                    f"{section.at('statuses')}[{index}]: expected a status code {lowest}-599"
                )
        statuses = tuple(values)
    if kind == "rate_limit" and not section.has("statuses"):
        statuses = (429,)
    if kind == "html" and not section.has("statuses"):
        statuses = (502,)
    if section.has("statuses") and kind in SHAPE_KINDS and kind != "html":
        raise ScenarioError(
            f"{section.at('statuses')}: only an `error`, `rate_limit` or `html` rule has statuses"
        )
    methods = section.strings("methods")
    path = section.optional_string("path")
    if path is None and kind == "vanish":
        path = VANISH_PATH
    if path is None and kind == "mangle":
        path = MANGLE_PATH
    if path is None and kind == "stall":
        path = DOWNLOAD_PATH
    try:
        pattern = re.compile(path) if path is not None else None
    except re.error as exc:
        raise ScenarioError(f"{section.at('path')}: not a valid regular expression: {exc}") from exc
    minimum = section.number("min", 0.0)
    maximum = section.number("max", minimum)
    if maximum < minimum:
        raise ScenarioError(f"{section.at('max')}: must be >= min ({minimum:g})")
    limit = section.raw("limit")
    return FaultRule(
        kind=kind,
        rate=section.number("rate", 1.0, maximum=1.0),
        statuses=statuses,
        retry_after=section.number("retry_after", 1.0),
        min_seconds=minimum,
        max_seconds=maximum,
        fraction=section.number("fraction", 0.5, maximum=1.0),
        methods=frozenset(m.upper() for m in methods) if methods else None,
        path=pattern,
        skip=section.integer("skip", 0),
        limit=None if limit is None else section.integer("limit", None),
        phase=section.choice("phase", ("before", "after"), "before"),
        mangle=_parse_mangle(section) if kind == "mangle" else None,
        stall_seconds=section.number("seconds", HANG_SECONDS if kind == "hang" else 1.0),
        stall_close=section.choice("then", STALL_THEN, "continue") == "close",
    )


# The kinds that change a reply's shape (no phase; only `html` has statuses).
SHAPE_KINDS: Final = ("html", "not_json", "mangle", "vanish", "stall", "hang", "echo")
HANG_SECONDS: Final = 3600.0  # a hang holds the connection this long (or until the server stops)
# A flow's own routes (details, cancel, a job's output or input); not the list.
VANISH_PATH: Final = r"^/api/flow/[^/]+/[^/]+/"
# A job's output and a package: the routes that stream a file.
DOWNLOAD_PATH: Final = r"^/api/(flow/[^/]+/job|package)/[^/]+/$"
# The flow list and a flow's details (other routes have no flow document to change).
MANGLE_PATH: Final = r"^/api/flow/[^/]+/([^/]+/)?$"


def _only_for(section: _Section, kind: str, owner: str, keys: Sequence[str]) -> None:
    """Keys that belong to one kind of fault are an error on any other."""
    if kind == owner:
        return
    for key in keys:
        if section.has(key):
            raise ScenarioError(f"{section.at(key)}: only a `{owner}` rule has this key")


def _parse_mangle(section: _Section) -> Mangle:
    drop_fields = section.strings("drop_fields")
    extra = section.raw("extra_fields")
    if extra is not None and not isinstance(extra, Mapping):
        raise ScenarioError(f"{section.at('extra_fields')}: expected a mapping, got {_kind(extra)}")
    extra_fields = tuple((str(key), value) for key, value in (extra or {}).items())
    unknown_status = section.optional_string("unknown_status")
    if unknown_status is not None and not unknown_status.strip():
        raise ScenarioError(f"{section.at('unknown_status')}: must not be empty")
    completed = section.boolean("completed", False) if section.has("completed") else None
    if not (drop_fields or extra_fields or unknown_status is not None or completed is not None):
        raise ScenarioError(
            f"{section.where}: a `mangle` rule needs drop_fields, extra_fields, "
            "unknown_status or completed"
        )
    return Mangle(drop_fields, extra_fields, unknown_status, completed)
