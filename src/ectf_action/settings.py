"""The action's inputs, read once and checked in full before anything is sent.

`load_settings` turns flags and the environment into one frozen `Settings`. Every bad
value raises `InvalidInput` naming the input and what is allowed, so a typo costs no
request and no slot on the server. Inputs arrive as the runner passes them to a
container action (`INPUT_API-URL`, hyphen kept; the underscore spelling is accepted
too); an empty value means "not given"; a flag wins over the environment.

Kept light at import time (no HTTP library): `--help` start-up is benchmarked.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from .edges import Environment, Inputs
from .errors import InvalidInput
from .results import RunStatus
from .validation import (
    parse_bool,
    parse_choice,
    parse_commit,
    parse_flow_name,
    parse_git_url,
    parse_mapping,
    parse_positive_number,
    parse_uuid,
)

if TYPE_CHECKING:
    from .follow import PollSchedule

ConflictPolicy = Literal["wait", "cancel", "fail"]
PendingPolicy = Literal["exit", "wait", "fail"]
ArtifactsMode = Literal["all", "failed", "none"]

CONFLICT_POLICIES: tuple[str, ...] = ("wait", "cancel", "fail")
PENDING_POLICIES: tuple[str, ...] = ("exit", "wait", "fail")
ARTIFACT_MODES: tuple[str, ...] = ("all", "failed", "none")
PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target"})
# Keys of the queue body that have inputs (and flags) of their own; `params` may not set
# them, or the flow queued would not be the one `run` looks for and reports on.
RESERVED = {"git_url": "git-url", "commit_hash": "commit", "target_team": "target-team"}
MIB = 1024 * 1024
# The largest values that mean something: a job runs for days at most (a self-hosted
# runner's limit is 5), and no job leaves a terabyte; beyond them a number overflows.
MAX_TIMEOUT_MINUTES = 10_080.0  # 7 days
MAX_ARTIFACT_MB = 1_048_576.0  # 1 TiB
_TOKEN_CHARACTERS = re.compile(r"[!-~]+")  # visible ASCII, as a header carries it


@dataclass(frozen=True)
class InputSpec:
    name: str
    default: str
    help: str
    metavar: str = "VALUE"


# Every input of action.yml, with the contract's defaults.
INPUTS: tuple[InputSpec, ...] = (
    InputSpec("token", "", "the team's API token (prefer ECTF_TOKEN: a flag shows in ps)", "TOKEN"),
    InputSpec("api-url", "", "testing server (default: https://api.ectf.mitre.org)", "URL"),
    InputSpec("flow", "test", "clone, test, submit or remote (default: test)", "FLOW"),
    InputSpec("git-url", "", "ssh:// URL of the repo the server clones", "URL"),
    InputSpec("commit", "", "commit to test (default: the PR head or GITHUB_SHA)", "SHA"),
    InputSpec("target-team", "", "the team to attack (flow remote)", "TEAM"),
    InputSpec("params", "", "YAML or JSON mapping merged into the queue body", "MAPPING"),
    InputSpec("timeout-minutes", "90", "the whole wait, queueing included (default: 90)", "MIN"),
    InputSpec("poll-interval", "auto", "seconds between polls, or auto (default)", "SECONDS"),
    InputSpec(
        "on-conflict", "wait", "wait, cancel or fail when a flow is active (default: wait)", "MODE"
    ),
    InputSpec("on-pending", "exit", "exit, wait or fail on an unanswered pending job", "MODE"),
    InputSpec("pending-inputs", "", "YAML or JSON mapping: job name -> input mapping", "MAPPING"),
    InputSpec("artifacts-path", "ectf-artifacts", "where job outputs are extracted", "DIR"),
    InputSpec("download-artifacts", "all", "all, failed or none (default: all)", "WHICH"),
    InputSpec("max-artifact-mb", "512", "cap on bytes extracted per job (default: 512)", "MB"),
    InputSpec("junit-path", "ectf-junit.xml", "JUnit report path; empty disables", "FILE"),
    InputSpec("job-summary", "true", "write the markdown job summary (default: true)", "BOOL"),
    InputSpec(
        "fail-on",
        "failed,canceled,timed-out",
        "results that fail the step (default: failed,canceled,timed-out)",
        "LIST",
    ),
    InputSpec("skip-without-token", "true", "an empty token skips instead of failing", "BOOL"),
    InputSpec("wait", "true", "false: queue the flow, report it queued and exit 0", "BOOL"),
    InputSpec("flow-id", "", "follow this flow (a UUID) instead of queueing one", "UUID"),
    InputSpec(
        "source-annotations",
        "true",
        "annotate the workspace's files with the diagnostics in job logs (default: true)",
        "BOOL",
    ),
)
INPUT_NAMES: tuple[str, ...] = tuple(spec.name for spec in INPUTS)
_DEFAULTS = {spec.name: spec.default for spec in INPUTS}


@dataclass(frozen=True)
class Settings:
    """Everything `run` needs, checked. Paths are absolute; the token is never shown."""

    flow: str
    api_url: str
    token: str = field(repr=False)
    git_url: str | None
    commit: str | None
    target_team: str | None
    params: Mapping[str, Any]
    timeout_seconds: float
    poll_schedule: PollSchedule
    on_conflict: ConflictPolicy
    on_pending: PendingPolicy
    pending_inputs: Mapping[str, Mapping[str, Any]]
    artifacts_path: Path
    download_artifacts: ArtifactsMode
    max_artifact_bytes: int
    junit_path: Path | None
    job_summary: bool
    fail_on: frozenset[RunStatus]
    skip_without_token: bool
    workspace: Path
    temp_root: Path | None = None
    in_actions: bool = False
    ca_bundle: Path | None = None  # trusted CAs for HTTPS (a self-hosted runner's proxy)
    wait: bool = True  # false: acquire the flow, report it queued, leave it running
    flow_id: str | None = None  # follow this flow instead of finding or queueing one
    source_annotations: bool = True  # diagnostics in job logs annotate the workspace's files
    server_url: str = ""  # GITHUB_SERVER_URL and GITHUB_REPOSITORY: links to the tested files
    repository: str = ""

    def queue_body(self) -> dict[str, Any]:
        """The POST body of this run's flow."""
        return queue_body(
            self.flow,
            git_url=self.git_url,
            commit=self.commit,
            target_team=self.target_team,
            params=self.params,
        )

    def relative(self, path: Path) -> str:
        """*path* as a later workflow step finds it: relative to the workspace, posix.

        Outputs are not translated back to host paths, so only a workspace-relative path
        means the same thing in the container and on the host.
        """
        try:
            return path.relative_to(self.workspace).as_posix()
        except ValueError:
            return path.as_posix()


def _value(inputs: Inputs, name: str) -> str:
    """The input's value, or its default when not given (an empty value is not given)."""
    return inputs.raw(name) or _DEFAULTS[name]


def load_settings(
    flags: Mapping[str, str | None],
    env: Mapping[str, str],
    *,
    cwd: Path,
    home: Path | None = None,
) -> Settings:
    """Read and check every input; raise InvalidInput for the first bad one.

    *flags* maps input names (`api-url`) to flag values, None for flags not given;
    *env* is the process environment (an `Environment`, or a mapping made into one).
    """
    from .config import resolve_config
    from .follow import PollSchedule

    environment = Environment.of(env)
    inputs = Inputs(flags, environment)
    actions = environment.in_actions

    flow = parse_flow_name(_value(inputs, "flow"), name="flow")
    flow_id = _flow_id(inputs.raw("flow-id"))
    config = resolve_config(inputs, home)
    target_team = inputs.raw("target-team") or None
    if target_team is not None and not target_team.isprintable():
        raise InvalidInput("target-team", "must be a team name on one line")
    if flow == "remote" and target_team is None and flow_id is None:
        raise InvalidInput(
            "target-team", "is required for flow: remote (the name of the team to attack)"
        )
    if flow_id is None:
        git_url = _git_url(
            config.git_url, config.sources.get("git_url", "git-url"), environment, flow
        )
        commit = _commit(inputs.raw("commit"), environment, flow)
    else:  # the flow exists: what it tests is the server's to say
        git_url = parse_git_url(config.git_url, name="git-url") if config.git_url else None
        given = inputs.raw("commit")
        commit = parse_commit(given, name="commit") if given else None
    params = parse_mapping(_value(inputs, "params"), name="params")
    check_params(params, name="params", use={k: f"the {v} input" for k, v in RESERVED.items()})
    timeout_minutes = parse_positive_number(
        _value(inputs, "timeout-minutes"), name="timeout-minutes", maximum=MAX_TIMEOUT_MINUTES
    )
    schedule = PollSchedule.parse(_value(inputs, "poll-interval"), name="poll-interval")
    on_conflict = parse_choice(
        _value(inputs, "on-conflict"), name="on-conflict", choices=CONFLICT_POLICIES
    )
    on_pending = parse_choice(
        _value(inputs, "on-pending"), name="on-pending", choices=PENDING_POLICIES
    )
    pending_inputs = _pending_inputs(_value(inputs, "pending-inputs"))
    workspace = _workspace(environment, cwd)
    artifacts_path = _path_in_workspace(
        _value(inputs, "artifacts-path"), "artifacts-path", workspace, confine=actions
    )
    download = parse_choice(
        _value(inputs, "download-artifacts"), name="download-artifacts", choices=ARTIFACT_MODES
    )
    max_mb = parse_positive_number(
        _value(inputs, "max-artifact-mb"), name="max-artifact-mb", maximum=MAX_ARTIFACT_MB
    )
    junit_raw = inputs.raw("junit-path")
    junit_text = _DEFAULTS["junit-path"] if junit_raw is None else junit_raw
    junit_path = (
        _path_in_workspace(junit_text, "junit-path", workspace, confine=actions)
        if junit_text
        else None
    )
    if junit_path is not None and junit_path.is_dir():
        raise InvalidInput(
            "junit-path", f"{junit_text!r} is a folder; name a file, e.g. ectf-junit.xml"
        )
    job_summary = parse_bool(_value(inputs, "job-summary"), name="job-summary")
    fail_on = parse_fail_on(_value(inputs, "fail-on"))
    skip = parse_bool(_value(inputs, "skip-without-token"), name="skip-without-token")
    wait = parse_bool(_value(inputs, "wait"), name="wait")
    if not wait and flow_id is not None:
        raise InvalidInput(
            "wait",
            "false leaves the flow at once, and flow-id is for following a flow queued before "
            "to its end: drop one of them",
        )

    if not config.token and not actions:
        # The skip is for forks' pull requests; at a shell a missing token is a mistake.
        raise InvalidInput(
            "token",
            "is not set: pass --token, set ECTF_TOKEN, or run `ectf config` (~/.ectf-config)",
        )
    if not config.token and not skip:
        raise InvalidInput(
            "token",
            "is empty. Add the team's token as a repository secret (Settings > Secrets and "
            "variables > Actions, e.g. ECTF_TOKEN) and pass `token: ${{ secrets.ECTF_TOKEN }}`",
        )
    check_token(config.token, name=config.sources.get("token", "token"))

    return Settings(
        flow=flow,
        api_url=config.api_url,
        token=config.token,
        git_url=git_url,
        commit=commit,
        target_team=target_team if flow == "remote" else None,
        params=params,
        timeout_seconds=timeout_minutes * 60.0,
        poll_schedule=schedule,
        on_conflict=cast(ConflictPolicy, on_conflict),
        on_pending=cast(PendingPolicy, on_pending),
        pending_inputs=pending_inputs,
        artifacts_path=artifacts_path,
        download_artifacts=cast(ArtifactsMode, download),
        max_artifact_bytes=artifact_cap_bytes(max_mb),
        junit_path=junit_path,
        job_summary=job_summary,
        fail_on=fail_on,
        skip_without_token=skip,
        workspace=workspace,
        temp_root=_temp_root(environment, artifacts_path),
        ca_bundle=ca_bundle(environment),
        in_actions=actions,
        wait=wait,
        flow_id=flow_id,
        source_annotations=parse_bool(
            _value(inputs, "source-annotations"), name="source-annotations"
        ),
        server_url=environment.value("GITHUB_SERVER_URL"),
        repository=environment.value("GITHUB_REPOSITORY"),
    )


def artifact_cap_bytes(max_mb: float) -> int:
    """max-artifact-mb in bytes (at least one): the cap `run` and `flows download` share."""
    return max(1, int(max_mb * MIB))


def check_token(token: str, *, name: str = "token") -> None:
    """A token travels in an HTTP header: refuse one that cannot (a space, a line break,
    a character outside ASCII: a copy-and-paste accident), without ever quoting it."""
    if token and not _TOKEN_CHARACTERS.fullmatch(token):
        raise InvalidInput(
            name,
            "holds a space, a line break or a character outside ASCII, which no API token "
            "has; copy the team's token again (the token input, ECTF_TOKEN or ~/.ectf-config)",
        )


def token_candidates(flags: Mapping[str, str | None], env: Mapping[str, str]) -> list[str]:
    """Every value that may turn out to be the token, to mask before anything is printed.

    Cheap and never failing, unlike `load_settings`, which may report an error (and so
    print) before it has read the token.
    """
    environment = Environment.of(env)
    values = [flags.get("token") or "", *environment.raw_inputs("token")]
    values.append(environment.get("ECTF_TOKEN", ""))
    found: list[str] = []
    for value in values:
        for candidate in (value, value.strip()):
            if candidate.strip() and candidate not in found:
                found.append(candidate)
    return found


def queue_body(
    flow: str,
    *,
    git_url: str | None,
    commit: str | None,
    target_team: str | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The POST body that queues *flow*: what identifies it, plus the extra params
    (checked by `check_params` not to set what identifies it)."""
    body: dict[str, Any] = dict(params)
    if flow == "remote":
        body["target_team"] = target_team
    else:
        body["git_url"] = git_url
        body["commit_hash"] = commit
    return body


def check_params(params: Mapping[str, Any], *, name: str, use: Mapping[str, str]) -> None:
    """Refuse params that set a field with an input (or flag) of its own; *use* names
    that input for each field, for the message."""
    for key, instead in use.items():
        if key in params:
            raise InvalidInput(name, f"must not set {key!r}: use {instead} for it")


def parse_fail_on(text: str) -> frozenset[RunStatus]:
    allowed = ", ".join(status.value for status in RunStatus)
    entries = [part.strip() for part in text.split(",")]
    result: set[RunStatus] = set()
    for entry in entries:
        if not entry:
            continue
        try:
            result.add(RunStatus(entry))
        except ValueError:
            raise InvalidInput(
                "fail-on", f"{entry!r} is not a result; use a comma-separated list of {allowed}"
            ) from None
    if not result:
        raise InvalidInput("fail-on", f"lists no result; use a comma-separated list of {allowed}")
    return frozenset(result)


def _pending_inputs(text: str) -> dict[str, dict[str, Any]]:
    mapping = parse_mapping(text, name="pending-inputs")
    answers: dict[str, dict[str, Any]] = {}
    for job_name, data in mapping.items():
        if not isinstance(data, Mapping):
            raise InvalidInput(
                "pending-inputs",
                f"the value for job {job_name!r} must be a mapping, e.g. "
                f"{{{job_name}: {{approve: true}}}}; got a {type(data).__name__}",
            )
        answers[job_name] = {str(k): v for k, v in data.items()}
    return answers


def _flow_id(given: str | None) -> str | None:
    """The flow-id input as the server's canonical UUID; None when not given."""
    if not given:
        return None
    return str(uuid.UUID(parse_uuid(given, name="flow-id")))


def _git_url(configured: str | None, source: str, env: Environment, flow: str) -> str | None:
    if configured:
        return parse_git_url(configured, name=source)
    if flow == "remote":
        return None
    server = env.value("GITHUB_SERVER_URL")
    repository = env.value("GITHUB_REPOSITORY")
    host = urlsplit(server).hostname if server else None
    if host and repository:
        return parse_git_url(f"ssh://git@{host}/{repository}.git", name="git-url")
    raise InvalidInput(
        "git-url",
        "is not given and GITHUB_SERVER_URL/GITHUB_REPOSITORY are not set; pass "
        "ssh://git@<host>/<owner>/<repo>.git (--git-url, ECTF_GIT_URL or ~/.ectf-config)",
    )


def _commit(given: str | None, env: Environment, flow: str) -> str | None:
    if given:
        return parse_commit(given, name="commit")
    event = env.value("GITHUB_EVENT_NAME")
    if event in PULL_REQUEST_EVENTS:
        return parse_commit(_pull_request_head(env, event), name="commit")
    sha = env.value("GITHUB_SHA")
    if sha:
        return parse_commit(sha, name="GITHUB_SHA")
    if flow == "remote":
        return None
    raise InvalidInput(
        "commit", "is not given and GITHUB_SHA is not set; pass the commit hash to test"
    )


def _pull_request_head(env: Environment, event: str) -> str:
    """The PR's head SHA: a PR's GITHUB_SHA is a merge commit the server cannot fetch."""
    problem = (
        f"on a {event} event it is read from the event payload (pull_request.head.sha), "
        "which {}; set the commit input"
    )
    path = env.value("GITHUB_EVENT_PATH")
    if not path:
        raise InvalidInput("commit", problem.format("is missing: GITHUB_EVENT_PATH is not set"))
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("commit", problem.format(f"could not be read from {path}")) from None
    head: Any = payload
    for key in ("pull_request", "head", "sha"):
        head = head.get(key) if isinstance(head, Mapping) else None
    if not isinstance(head, str) or not head.strip():
        raise InvalidInput("commit", problem.format("does not hold it"))
    return head


def _workspace(env: Environment, cwd: Path) -> Path:
    workspace = env.value("GITHUB_WORKSPACE") if env.in_actions else ""
    return Path(workspace).resolve() if workspace else cwd.resolve()


def _path_in_workspace(text: str, name: str, workspace: Path, *, confine: bool) -> Path:
    """Resolve against the workspace; inside Actions a path must stay in it, since a
    later step only finds it by a workspace-relative path."""
    if not text.isprintable():
        raise InvalidInput(name, "must be a path on one line")
    path = Path(text)
    resolved = (path if path.is_absolute() else workspace / path).resolve()
    if confine and not resolved.is_relative_to(workspace):
        raise InvalidInput(
            name,
            f"{text!r} is outside the workspace; use a path relative to it (e.g. "
            f"{_DEFAULTS[name]}): later steps find outputs only there",
        )
    if resolved == workspace or resolved in workspace.parents:
        raise InvalidInput(name, f"{text!r} is the workspace itself; name a path inside it")
    return resolved


CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def ca_bundle(env: Environment) -> Path | None:
    """The CA bundle to trust for HTTPS instead of the built-in one, from
    REQUESTS_CA_BUNDLE or SSL_CERT_FILE (behind a proxy that signs with a private CA);
    a path that is not a readable file is an input error."""
    for name in CA_BUNDLE_VARIABLES:
        text = env.value(name)
        if not text:
            continue
        path = Path(text)
        if not path.is_file():
            raise InvalidInput(
                name,
                f"{text!r} is not a file; point it at a PEM bundle of the CAs to trust (inside "
                "the action's container, a path under the workspace or /github/home)",
            )
        return path
    return None


def _temp_root(env: Environment, artifacts_path: Path) -> Path | None:
    """RUNNER_TEMP when usable (the runner cleans it), never inside the artifacts folder."""
    text = env.value("RUNNER_TEMP")
    if not text:
        return None
    path = Path(text).resolve()
    if not path.is_dir() or path.is_relative_to(artifacts_path):
        return None
    return path
