"""`ectf-action jobs ...`: download a job's output, answer a pending job."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_OK, InvalidInput
from .context import (
    Context,
    add_command,
    add_flow_argument,
    add_group,
    examples,
    flow_name,
    output_path,
    uuid_argument,
)
from .flows import EXAMPLE_FLOW_ID

if TYPE_CHECKING:
    from ..client import Download, EctfClient

EXAMPLE_JOB_ID = "981b2de7-f03f-4780-9cd1-1b6a893a0221"


def download_unless_interrupted(
    ctx: Context, download: Callable[[threading.Event], Download]
) -> Download | None:
    """Run a download that a signal may cancel: what it saved, or None (said on stderr)
    when a signal stopped it and nothing was saved."""
    from ..errors import Cancelled

    with ctx.interrupts.installed() as cancel:
        try:
            return download(cancel)
        except Cancelled:
            ctx.stderr.write("error: download interrupted; nothing was saved\n")
            return None


def interruptible_download(ctx: Context, download: Callable[[threading.Event], Download]) -> int:
    """Run a download that a signal may cancel; report the saved file."""
    result = download_unless_interrupted(ctx, download)
    if result is None:
        return ctx.interrupts.exit_code
    data = {"path": str(result.path), "size": result.size, "content_type": result.content_type}
    ctx.emit(data, f"Saved {result.path} ({result.size:,} bytes).\n")
    return EXIT_OK


def jobs_download(ctx: Context) -> int:
    name = flow_name(ctx.args.flow)
    job_id = uuid_argument(ctx.args.job_id, "JOB_ID")
    dest = output_path(ctx.args.output, f"{job_id}.zip", force=ctx.args.force)
    client = ctx.client()
    return interruptible_download(
        ctx, lambda cancel: client.download_job_output(name, job_id, dest, cancel=cancel)
    )


def jobs_input(ctx: Context) -> int:
    from ..tables import mapping_line
    from ..validation import parse_mapping

    name = flow_name(ctx.args.flow)
    by_name = _job_by_name(ctx)
    if ctx.args.approve or ctx.args.reject:
        data: dict[str, Any] = {"approve": bool(ctx.args.approve)}
    else:
        data = parse_mapping(ctx.args.data, name="--data")
        if not data:
            raise InvalidInput("--data", "is empty; give a mapping such as '{\"approve\": true}'")
    client = ctx.client()
    if by_name is None:
        job_id = uuid_argument(ctx.args.job_id, "JOB_ID")
    else:
        job_id = find_job_id(client, name, *by_name)
    client.send_job_input(name, job_id, data)
    ctx.emit(
        {"flow": name, "job_id": job_id, "sent": data},
        f"Sent {mapping_line(data)} to job {job_id}.\n",
    )
    return EXIT_OK


def _job_by_name(ctx: Context) -> tuple[str, str] | None:
    """(flow id, job name) when the job is given by name, else None (then JOB_ID is
    checked); checked before any request."""
    job_name, flow_id, job_id = ctx.args.job, ctx.args.flow_id, ctx.args.job_id
    if job_name is None and flow_id is None:
        if job_id is None:
            raise InvalidInput("JOB_ID", "give the pending job's id, or --job NAME --flow-id ID")
        uuid_argument(job_id, "JOB_ID")
        return None
    if job_id is not None:
        raise InvalidInput("JOB_ID", "give the job's id, or --job with --flow-id, not both")
    if job_name is None or not job_name.strip():
        raise InvalidInput("--job", "name the job (e.g. --job team_approval) with --flow-id")
    if flow_id is None:
        raise InvalidInput("--flow-id", "--job needs the id of the flow the job is in")
    return uuid_argument(flow_id, "--flow-id"), job_name.strip()


def find_job_id(client: EctfClient, flow: str, flow_id: str, job_name: str) -> str:
    """The id of the one job of the flow named *job_name* (one flow GET); a name that
    matches no job, or several, is refused with the flow's jobs listed."""
    from ..text import clean

    jobs = client.get_flow(flow, flow_id).jobs
    matches = [job for job in jobs if job.name == job_name]
    if len(matches) == 1:
        return matches[0].id
    where = f"the {flow} flow {flow_id}"
    if not matches:
        listed = ", ".join(f"{clean(j.name, 40)} ({clean(j.status_text, 20)})" for j in jobs)
        raise InvalidInput(
            "--job",
            f"no job named {clean(job_name, 80)!r} in {where}; its jobs: {listed or 'none'}",
        )
    ids = ", ".join(f"{job.id} ({clean(job.status_text, 20)})" for job in matches)
    raise InvalidInput(
        "--job",
        f"{len(matches)} jobs are named {clean(job_name, 80)!r} in {where}; give the job's id "
        f"instead: {ids}",
    )


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    jobs = add_group(
        commands,
        "jobs",
        "download a job's output, answer a pending job",
        examples(
            f"jobs download test {EXAMPLE_JOB_ID}", f"jobs input submit {EXAMPLE_JOB_ID} --approve"
        ),
    )
    p = add_command(
        jobs,
        "download",
        jobs_download,
        "Download a job's output zip.",
        examples(
            f"jobs download test {EXAMPLE_JOB_ID}",
            f"jobs download test {EXAMPLE_JOB_ID} -o out/ --force",
        ),
        [api],
    )
    add_flow_argument(p)
    p.add_argument("job_id", metavar="JOB_ID", help="the job's UUID (see `flows show`)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file or directory to save to (default: ./JOB_ID.zip)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = add_command(
        jobs,
        "input",
        jobs_input,
        "Give input to a pending job.",
        examples(
            f"jobs input submit {EXAMPLE_JOB_ID} --approve",
            f"jobs input submit --job team_approval --flow-id {EXAMPLE_FLOW_ID} --reject",
            f'jobs input remote {EXAMPLE_JOB_ID} --data \'{{"key": "value"}}\'',
        ),
        [api],
    )
    add_flow_argument(p)
    p.add_argument(
        "job_id", nargs="?", metavar="JOB_ID", help="the pending job's UUID (or --job NAME)"
    )
    p.add_argument(
        "--job", metavar="NAME", help="the pending job's name instead of its id (with --flow-id)"
    )
    p.add_argument("--flow-id", metavar="FLOW_ID", help="the flow of the job named by --job")
    answer = p.add_mutually_exclusive_group(required=True)
    answer.add_argument("--data", metavar="YAML|JSON", help="the mapping to send")
    answer.add_argument(
        "--approve", action="store_true", help='send {"approve": true} (team_approval)'
    )
    answer.add_argument(
        "--reject", action="store_true", help='send {"approve": false} (team_approval)'
    )
