"""`ectf-action flows ...`: list, show, queue, cancel, watch and download flows."""

from __future__ import annotations

import argparse
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_FLOW_FAILED, EXIT_OK, InvalidInput
from ..text import PROG, answer_hint, cancel_hint
from .context import (
    FLOW_CHOICES,
    Context,
    add_command,
    add_flow_argument,
    add_group,
    examples,
    flow_name,
    path_segment,
    poll_schedule,
    render_json,
    timeout_minutes,
    uuid_argument,
)

if TYPE_CHECKING:
    from pathlib import Path

    from ..client import EctfClient
    from ..config import Config
    from ..follow import JobChange, PollSchedule
    from ..models import Flow, Job
    from ..settings import ArtifactsMode
    from .job_folders import JobFolders, SavedJob

EXAMPLE_FLOW_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
DEFAULT_ARTIFACTS_DIR = "ectf-artifacts"  # the action's artifacts-path default
NO_GIT_URL = (
    "no git URL: pass --git-url, set ECTF_GIT_URL, or add git_url to ~/.ectf-config "
    "(e.g. ssh://git@github.com/team/design.git)"
)
# The queue-body fields with flags of their own: --params and --param may not set them.
_FLAG_FOR_FIELD = {
    "git_url": "--git-url",
    "commit_hash": "--commit",
    "target_team": "--target-team",
}


def flows_list(ctx: Context) -> int:
    from ..models import FLOW_NAMES
    from ..tables import flow_json, flows_table, newest_first

    names = [flow_name(ctx.args.flow)] if ctx.args.flow else list(FLOW_NAMES)
    num = ctx.args.num
    if num < 0:
        raise InvalidInput("--num", f"{num} must be 0 (all) or more")
    client = ctx.client()
    flows = newest_first(flow for name in names for flow in client.list_flows(name, num))
    if ctx.json:
        ctx.out(render_json([flow_json(flow) for flow in flows]))
    elif not flows:
        ctx.out(f"No {names[0] + ' ' if len(names) == 1 else ''}flows.\n")
    else:
        ctx.out(flows_table(flows))
    return EXIT_OK


def flows_show(ctx: Context) -> int:
    from ..tables import flow_details, flow_json

    name = flow_name(ctx.args.flow)
    flow_id = uuid_argument(ctx.args.flow_id, "FLOW_ID")
    flow = ctx.client().get_flow(name, flow_id)
    ctx.emit(flow_json(flow), flow_details(flow))
    return EXIT_OK


def queue_body(ctx: Context, name: str, config: Config) -> dict[str, Any]:
    """The queue request's body: the flow's fields from their flags, and --params/--param
    merged in (which may not set those fields, as in the action)."""
    from ..settings import check_params, queue_body
    from ..validation import parse_commit, parse_git_url, parse_mapping

    args = ctx.args
    params = parse_mapping(args.params or "", name="--params")
    check_params(params, name="--params", use=_FLAG_FOR_FIELD)
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput("--param", f"{item!r} is not KEY=VALUE")
        check_params({key.strip(): value}, name="--param", use=_FLAG_FOR_FIELD)
        params[key.strip()] = value
    if name == "remote":
        for option, given in (("--commit", args.commit), ("--git-url", args.git_url)):
            if given:
                raise InvalidInput(option, "the remote flow takes --target-team, not a commit")
        if not (args.target_team or "").strip():
            raise InvalidInput("--target-team", "the remote flow needs the team to attack")
        target = path_segment(args.target_team, "--target-team")
        return queue_body(name, git_url=None, commit=None, target_team=target, params=params)
    if args.target_team:
        raise InvalidInput("--target-team", "only the remote flow attacks a team")
    if not args.commit:
        raise InvalidInput(
            "--commit", "which commit should the server test? (e.g. --commit $(git rev-parse HEAD))"
        )
    if not config.git_url:
        raise InvalidInput("--git-url", NO_GIT_URL)
    return queue_body(
        name,
        git_url=parse_git_url(config.git_url, name="--git-url"),
        commit=parse_commit(args.commit, name="--commit"),
        target_team=None,
        params={k: v for k, v in params.items() if v is not None},
    )


def flows_queue(ctx: Context) -> int:
    name = flow_name(ctx.args.flow)
    config = ctx.config()
    body = queue_body(ctx, name, config)
    schedule = poll_schedule(ctx.args.poll_interval)
    deadline_minutes = timeout_minutes(ctx.args.timeout_minutes)
    client = ctx.client(config)
    flow_id = client.queue_flow(name, body)
    if not ctx.args.watch:
        ctx.emit({"flow": name, "id": flow_id}, f"{flow_id}\n")
        return EXIT_OK
    ctx.note(f"Queued {name} flow {flow_id}\n")
    return watch(ctx, client, name, flow_id, schedule, deadline_minutes)


def flows_cancel(ctx: Context) -> int:
    name = flow_name(ctx.args.flow)
    flow_id = uuid_argument(ctx.args.flow_id, "FLOW_ID")
    ctx.client().cancel_flow(name, flow_id)
    ctx.emit(
        {"canceled": True, "flow": name, "id": flow_id},
        f"Canceled {name} flow {flow_id}.\n",
    )
    return EXIT_OK


def flows_watch(ctx: Context) -> int:
    from pathlib import Path

    from .job_folders import check_destination

    name = flow_name(ctx.args.flow)
    flow_id = uuid_argument(ctx.args.flow_id, "FLOW_ID")
    schedule = poll_schedule(ctx.args.poll_interval)
    deadline_minutes = timeout_minutes(ctx.args.timeout_minutes)
    download = ctx.args.download
    dest = (
        check_destination(Path(download), force=ctx.args.force, option="--download")
        if download
        else None
    )
    max_mb = _max_mb(ctx)
    client = ctx.client()
    return watch(
        ctx, client, name, flow_id, schedule, deadline_minutes, download=dest, max_mb=max_mb
    )


def flows_download(ctx: Context) -> int:
    from pathlib import Path

    from ..downloads import wants_artifacts
    from ..text import plural
    from .job_folders import check_destination, exit_code_of

    name = flow_name(ctx.args.flow)
    flow_id = uuid_argument(ctx.args.flow_id, "FLOW_ID")
    dest = check_destination(Path(ctx.args.output), force=ctx.args.force, option="--output")
    mode: ArtifactsMode = "failed" if ctx.args.failed else "all"
    max_mb = _max_mb(ctx)
    client = ctx.client()
    flow = client.get_flow(name, flow_id)
    left_out = [job for job in flow.jobs if not wants_artifacts(job, mode)]
    if left_out:
        ctx.note(_left_out_line(left_out, failed_only=ctx.args.failed))
    with (
        ctx.interrupts.installed() as cancel,
        _job_folders(ctx, client, name, dest, cancel, max_mb) as folders,
    ):
        folders.start_finished(flow.jobs, mode)
        folders.wait()
        saved = folders.saved()
    if cancel.is_set():
        _say_interrupted(ctx, saved, dest)
    if ctx.json:
        ctx.out(render_json(_saved_json(name, flow_id, dest, saved, interrupted=cancel.is_set())))
    if cancel.is_set():
        return ctx.interrupts.exit_code
    written = sum(1 for job in saved if job.folder is not None)
    what = "failed job" if ctx.args.failed else "job"
    if not saved:
        ctx.note(f"No finished {what} of this flow has artifacts: nothing was downloaded.\n")
    else:
        ctx.note(f"Saved the artifacts of {written} of {plural(len(saved), what)} in {dest}.\n")
    return exit_code_of(saved)


def _max_mb(ctx: Context) -> float | None:
    """--max-artifact-mb, checked before any request; None for the action's default."""
    text = ctx.args.max_artifact_mb
    if text is None:
        return None
    from ..validation import parse_positive_number

    return parse_positive_number(text, name="--max-artifact-mb")


def _job_folders(
    ctx: Context,
    client: EctfClient,
    flow: str,
    dest: Path,
    cancel: threading.Event,
    max_mb: float | None,
) -> JobFolders:
    from ..clock import SystemClock
    from .job_folders import JobFolders

    clock = ctx.clock or SystemClock()
    return JobFolders(client, flow, dest, cancel=cancel, clock=clock, note=ctx.note, max_mb=max_mb)


def _left_out_line(jobs: list[Job], *, failed_only: bool) -> str:
    """The jobs whose artifacts are not downloaded, and why (the --failed ones unsaid)."""
    from ..models import JobStatus
    from ..text import clean

    reasons = []
    for job in jobs:
        if failed_only and job.status is not JobStatus.FAILED:
            continue
        if job.private:
            why = "private"
        elif job.status.finished and job.has_artifacts is False:
            why = "no artifacts"
        else:
            why = clean(job.status_text, 20)  # not finished yet
        reasons.append(f"{clean(job.name, 40)} ({why})")
    return f"Not downloaded: {', '.join(reasons)}\n" if reasons else ""


def _say_interrupted(ctx: Context, saved: list[SavedJob], dest: Path) -> None:
    whole = sum(1 for job in saved if job.folder is not None)
    ctx.stderr.write(
        f"Interrupted: the artifacts of {whole} of {len(saved)} jobs are whole in {dest}; "
        "the others were not downloaded.\n"
    )


def _saved_json(
    flow: str, flow_id: str, dest: Path, saved: list[SavedJob], *, interrupted: bool
) -> dict[str, Any]:
    return {
        "flow": flow,
        "id": flow_id,
        "directory": str(dest),
        "interrupted": interrupted,
        "jobs": [job.to_json() for job in saved],
    }


def _pending_line(flow: str, change: JobChange) -> str:
    job = change.job
    if job.private:
        return f"           {job.name} waits for the organizers\n"
    return f"           answer it: {answer_hint(flow, job)}\n"


def watch(
    ctx: Context,
    client: EctfClient,
    name: str,
    flow_id: str,
    schedule: PollSchedule,
    deadline_minutes: float | None,
    *,
    download: Path | None = None,
    max_mb: float | None = None,
) -> int:
    """Follow a flow, one line per job status change; the exit status tells how it ended.
    With *download*, each job's artifacts are saved there as the job ends."""
    from ..clock import SystemClock
    from ..follow import follow_flow
    from ..models import JobStatus
    from ..tables import flow_json, job_change_line
    from ..text import clean, format_elapsed
    from .job_folders import exit_code_of

    clock = ctx.clock or SystemClock()
    started = clock.now()
    deadline = started + deadline_minutes * 60 if deadline_minutes is not None else None
    poll = "auto" if schedule.is_auto else f"every {schedule}s"
    ctx.note(
        f"Watching {name} flow {flow_id} (poll: {poll}; Ctrl-C stops watching, "
        "the flow keeps running)\n"
    )

    folders: JobFolders | None = None

    def on_update(flow: Flow, changes: list[JobChange]) -> None:
        for change in changes:
            line = job_change_line(change.elapsed, change.job, change.previous)
            ctx.note(line + "\n")
            if change.job.status is JobStatus.PENDING:
                ctx.note(clean(_pending_line(name, change).rstrip("\n")) + "\n")
        if folders is not None:
            folders.start_finished(flow.jobs, "all")
            folders.report()

    saved: list[SavedJob] | None = None
    with contextlib.ExitStack() as stack:
        cancel = stack.enter_context(ctx.interrupts.installed())
        if download is not None:
            folders = stack.enter_context(_job_folders(ctx, client, name, download, cancel, max_mb))
        client.bind(cancel=cancel)  # Ctrl-C ends a status request on its way
        result = follow_flow(
            client,
            name,
            flow_id,
            clock=clock,
            schedule=schedule,
            cancel=cancel,
            deadline=deadline,
            on_update=on_update,
            started=started,
        )
        if folders is not None:
            folders.wait()
            saved = folders.saved()
    if saved is not None and cancel.is_set() and download is not None:
        _say_interrupted(ctx, saved, download)
    flow = result.flow
    elapsed = format_elapsed(clock.now() - started)
    if result.reason == "canceled":
        ctx.stderr.write(
            f"Stopped watching after {elapsed}; the flow keeps running. Cancel it "
            f"with: {cancel_hint(name, flow_id)}\n"
        )
        return ctx.interrupts.exit_code
    if ctx.json:
        document: dict[str, Any] = {
            "flow": name,
            "id": flow_id,
            "reason": result.reason,
            "status": flow.status.value if flow else None,
            "details": flow_json(flow) if flow else None,
        }
        if saved is not None and download is not None:
            document["artifacts"] = _saved_json(name, flow_id, download, saved, interrupted=False)
        ctx.out(render_json(document))
    if result.reason == "timed-out" or flow is None:
        ctx.stderr.write(
            f"error: {name} flow {flow_id} did not finish within {elapsed}; it keeps running\n"
        )
        return EXIT_FLOW_FAILED
    status = flow.status
    failed = [clean(job.name) for job in flow.jobs if job.status is JobStatus.FAILED]
    detail = f" (failed: {', '.join(failed)})" if failed else ""
    ctx.note(f"Flow {flow_id} {status.value}{detail} after {elapsed}.\n")
    if status is not JobStatus.SUCCEEDED:
        return EXIT_FLOW_FAILED
    return EXIT_OK if saved is None else exit_code_of(saved)


def _add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll-interval",
        default="auto",
        metavar="auto|SECONDS",
        help="seconds between status requests, or auto: often at first, "
        "then every 10 s (default: auto)",
    )
    parser.add_argument(
        "--timeout-minutes",
        metavar="MINUTES",
        help="stop watching after this long, exit 1 (default: no limit)",
    )


def _add_folder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-artifact-mb",
        metavar="MB",
        help="cap on the bytes extracted from one job's zip (default: 512, as the action)",
    )
    parser.add_argument(
        "--force", action="store_true", help="extract into a folder that is not empty"
    )


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    flows = add_group(
        commands,
        "flows",
        "list, queue, show, watch, cancel and download flows",
        examples(
            "flows list test",
            "flows queue test --commit 1a2b3c4d --watch",
            f"flows watch test {EXAMPLE_FLOW_ID}",
            f"flows download test {EXAMPLE_FLOW_ID} -o ectf-artifacts",
        ),
    )
    p = add_command(
        flows,
        "list",
        flows_list,
        "List your team's flows, newest first.",
        examples("flows list", "flows list test --num 0", "flows list submit --json"),
        [api],
    )
    p.add_argument(
        "flow", nargs="?", metavar="FLOW", help=f"flow type: {FLOW_CHOICES} (default: all four)"
    )
    p.add_argument(
        "-n",
        "--num",
        type=int,
        default=10,
        metavar="N",
        help="at most N flows of each type; 0 for all (default: 10)",
    )

    p = add_command(
        flows,
        "show",
        flows_show,
        "Show a flow: its status and its jobs.",
        examples(f"flows show test {EXAMPLE_FLOW_ID}", f"flows show test {EXAMPLE_FLOW_ID} --json"),
        [api],
    )
    add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")

    p = add_command(
        flows,
        "queue",
        flows_queue,
        "Queue a flow and print its id (or follow it with --watch).",
        examples(
            "flows queue test --commit $(git rev-parse HEAD)",
            "flows queue test --commit 1a2b3c4d --git-url "
            "ssh://git@github.com/team/design.git --watch",
            "flows queue remote --target-team mitre",
            "flows queue test --commit 1a2b3c4d --param key=value",
        )
        + "\n--params and --param are merged into the body "
        '({"git_url": ..., "commit_hash": ...};\nfor remote {"target_team": ...}); those '
        "fields come from their own flags.\n",
        [api],
    )
    add_flow_argument(p)
    p.add_argument("--commit", metavar="SHA", help="commit to test (clone, test, submit)")
    p.add_argument(
        "--git-url",
        metavar="URL",
        help="ssh:// URL the server clones (default: $ECTF_GIT_URL, then ~/.ectf-config)",
    )
    p.add_argument("--target-team", metavar="TEAM", help="team to attack (remote)")
    p.add_argument("--params", metavar="YAML|JSON", help="mapping merged into the body")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="one body field; repeatable; applied after --params",
    )
    p.add_argument("--watch", action="store_true", help="follow the flow until it ends")
    _add_watch_options(p)

    p = add_command(
        flows,
        "cancel",
        flows_cancel,
        "Cancel a queued or running flow.",
        examples(f"flows cancel test {EXAMPLE_FLOW_ID}"),
        [api],
    )
    add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")

    p = add_command(
        flows,
        "watch",
        flows_watch,
        "Follow a flow: one line per job status change.\n"
        "Exit 0 if it succeeds, 1 if it fails, is canceled or times out.",
        examples(
            f"flows watch test {EXAMPLE_FLOW_ID}",
            f"flows watch submit {EXAMPLE_FLOW_ID} --poll-interval 30 --timeout-minutes 90",
            f"flows watch test {EXAMPLE_FLOW_ID} --download ectf-artifacts",
        ),
        [api],
    )
    add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")
    _add_watch_options(p)
    p.add_argument(
        "--download",
        metavar="DIR",
        help="save each job's artifacts in DIR/<job name>/ as the job ends, as the action does",
    )
    _add_folder_options(p)

    p = add_command(
        flows,
        "download",
        flows_download,
        "Download and extract every job's artifacts of a flow, as the action does:\n"
        "one folder per job (DIR/<job name>/), several jobs at a time, hostile zip\n"
        "entries refused and the bytes written capped. A job's folder appears in DIR\n"
        "only once it is whole. Exit 3 when a job's artifacts could not be saved.",
        examples(
            f"flows download test {EXAMPLE_FLOW_ID}",
            f"flows download test {EXAMPLE_FLOW_ID} -o out --failed",
            f"flows download submit {EXAMPLE_FLOW_ID} --json",
        ),
        [api],
    )
    add_flow_argument(p)
    p.add_argument("flow_id", metavar="FLOW_ID", help="the flow's UUID")
    p.add_argument(
        "-o",
        "--output",
        default=DEFAULT_ARTIFACTS_DIR,
        metavar="DIR",
        help=f"folder to extract into (default: {DEFAULT_ARTIFACTS_DIR})",
    )
    p.add_argument("--failed", action="store_true", help="only the failed jobs' artifacts")
    _add_folder_options(p)


__all__ = ["EXAMPLE_FLOW_ID", "PROG", "register"]
