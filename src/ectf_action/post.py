"""The post step, `ectf-action-post`: runs when the workflow run was cancelled
(`post-if: cancelled()`) and cancels the remote flow the main step saved, so the
team's one slot per flow type is freed. A flow the main step left running on purpose
(queued with `wait: false`, or stopped at a pending job for a person to answer) is left
alone: GitHub judges `cancelled()` at the end of the job, so a cancel of any later step
would otherwise cancel it.

It never fails the job: the run is already cancelled, and a flow that already ended is
the good case. Kept light at import time, like the main entry.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .edges import ClientFactory, Environment, Inputs, impatient_client
from .errors import EXIT_OK, BadRequest, EctfError, InvalidInput, unexpected_problem
from .settings import ca_bundle, check_token, load_settings, token_candidates
from .text import cancel_hint, clean

if TYPE_CHECKING:
    from .client import EctfClient
    from .models import Flow, Job
    from .settings import Settings
    from .workflow import WorkflowCommands

NOTHING_QUEUED = "The main step queued no eCTF flow; nothing to cancel."
# The state the main step saves, the moment it decides to leave the flow running; its
# value is the run's status then (`queued` or `pending`).
LEFT_RUNNING_STATE = "left_running"
_LEFT_BECAUSE = {
    "queued": "queued with wait: false",
    "pending": "stopped at a pending job, for a person to answer",
}


def left_on_purpose(env: Environment) -> str | None:
    """Why the main step left its flow running on purpose; None when it owned the flow
    to the end, or was interrupted while it did (then the flow is cancelled)."""
    value = env.value(f"STATE_{LEFT_RUNNING_STATE}")
    if not value:
        return None
    return _LEFT_BECAUSE.get(value, clean(value, 40))


def post_main() -> int:
    return post_command(dict(os.environ), sys.stdout)


def post_command(
    env: Mapping[str, str], stdout: TextIO, *, client_factory: ClientFactory | None = None
) -> int:
    """Cancel the flow the main step saved, if it is still active. Whatever happens, it
    ends with exit 0 and no traceback: a problem is a warning."""
    from .workflow import WorkflowCommands

    try:
        return _post(env, stdout, client_factory)
    except Exception as exc:  # the last resort
        commands = WorkflowCommands(stdout, output_file=None, state_file=None, summary_file=None)
        for candidate in token_candidates({}, env):
            commands.add_mask(candidate)
        commands.warning(unexpected_problem(exc), title="eCTF post step")
        return EXIT_OK


def _post(env: Mapping[str, str], stdout: TextIO, client_factory: ClientFactory | None) -> int:
    from .config import resolve_config
    from .models import is_uuid
    from .validation import parse_flow_name
    from .workflow import WorkflowCommands

    environment = Environment.of(env)
    factory = client_factory or impatient_client
    commands = WorkflowCommands(stdout, output_file=None, state_file=None, summary_file=None)
    for candidate in token_candidates({}, environment):
        commands.add_mask(candidate)
    flow_id = environment.value("STATE_flow_id")
    left = left_on_purpose(environment)
    if left is not None:
        flow = clean(environment.value("STATE_flow") or "test", 20)
        commands.info(
            f"The main step left the {flow} flow {clean(flow_id, 40) or '(no id)'} running on "
            f"purpose ({left}); the post step leaves it alone."
        )
        return EXIT_OK
    if not flow_id:
        return _cancel_unsaved_flow(commands, environment, factory)
    try:
        flow = parse_flow_name(environment.value("STATE_flow") or "test", name="STATE_flow")
        if not is_uuid(flow_id):
            raise InvalidInput("STATE_flow_id", f"{flow_id!r} is not a flow id")
        config = resolve_config(Inputs({}, environment))
        factory = _trusting(factory, ca_bundle(environment))
        check_token(config.token, name=config.sources.get("token", "token"))
    except InvalidInput as exc:
        commands.warning(f"The eCTF flow was not cancelled: {exc}.", title="eCTF post step")
        return EXIT_OK
    commands.add_mask(config.token)
    if not config.token:
        commands.info(f"No token to cancel the {flow} flow {flow_id} with; nothing done.")
        return EXIT_OK
    return _cancel_flow(commands, factory, config.api_url, config.token, flow, flow_id)


def _cancel_unsaved_flow(
    commands: WorkflowCommands, env: Environment, factory: ClientFactory
) -> int:
    """No flow id was saved, yet the main step may have been killed while its queue request
    was on its way (the runner kills a step 10 s after asking it to stop). A flow of this
    commit that is active now is that one, or one the main step would have followed:
    cancel it, so the team's slot is not held by a run that no longer exists."""
    try:
        settings = load_settings({}, env, cwd=Path.cwd())
    except InvalidInput:
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    if not settings.token:
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    if settings.flow_id is not None:
        commands.info(
            f"The main step saved no flow id, so it never followed the {settings.flow} flow "
            f"{settings.flow_id} of the flow-id input: it is left alone."
        )
        return EXIT_OK
    if not settings.wait:
        commands.info(
            f"The main step saved no flow id, and it ran with wait: false: a {settings.flow} "
            "flow it queued is meant to keep running, so the post step leaves it alone."
        )
        return EXIT_OK
    from .acquire import same_active_flow

    factory = _trusting(factory, settings.ca_bundle)
    remote = settings.flow == "remote"
    try:
        client = factory(settings.api_url, settings.token)
        try:
            active = same_active_flow(client, settings)
        finally:
            client.close()
    except EctfError as exc:
        commands.warning(
            f"Could not look for a {settings.flow} flow the main step may have queued: {exc}",
            title="eCTF post step",
        )
        return EXIT_OK
    if active is None:
        commands.info(NOTHING_QUEUED)
        return EXIT_OK
    waiting = _waiting_for_a_person(settings, active)
    if waiting is not None:
        commands.info(
            f"The main step saved no flow id; the {settings.flow} flow {active.id} of this "
            f"{'target' if remote else 'commit'} waits at the pending job "
            f"{clean(waiting.name, 80)} for a person to answer, where the main step leaves a "
            "flow running: the post step leaves it alone."
        )
        return EXIT_OK
    commands.info(
        f"The main step saved no flow id, but the {settings.flow} flow {active.id} of this "
        f"{'target' if remote else 'commit'} is active: it was queued as the step stopped."
    )
    return _cancel_flow(
        commands, factory, settings.api_url, settings.token, settings.flow, active.id
    )


def _waiting_for_a_person(settings: Settings, flow: Flow) -> Job | None:
    """The pending job at which the main step would have left *flow* running on purpose:
    one only the organizers answer, or, with on-pending: exit, one pending-inputs does
    not answer. A post step given no state (nektos/act gives a container action's post
    step none) tells a flow left for a person by this alone."""
    from .models import JobStatus

    if settings.on_pending == "wait":
        return None
    for job in flow.jobs:
        if job.status is not JobStatus.PENDING:
            continue
        if job.private or (
            settings.on_pending == "exit" and job.name not in settings.pending_inputs
        ):
            return job
    return None


def _cancel_flow(
    commands: WorkflowCommands,
    factory: ClientFactory,
    api_url: str,
    token: str,
    flow: str,
    flow_id: str,
) -> int:
    what = f"the {flow} flow {flow_id}"
    try:
        client = factory(api_url, token)
        try:
            current = client.get_flow(flow, flow_id)
            if current.finished:
                commands.info(f"{what.capitalize()} already ended; nothing to cancel.")
                return EXIT_OK
            client.cancel_flow(flow, flow_id)
        finally:
            client.close()
    except BadRequest:
        commands.info(f"{what.capitalize()} already ended; nothing to cancel.")
        return EXIT_OK
    except EctfError as exc:
        commands.warning(
            f"Could not cancel {what}: {exc} Cancel it by hand: {cancel_hint(flow, flow_id)}",
            title="eCTF flow not cancelled",
        )
        return EXIT_OK
    commands.info(f"Cancelled {what}, so the team's slot is free again.")
    return EXIT_OK


def _trusting(factory: ClientFactory, bundle: Path | None) -> ClientFactory:
    """*factory*'s clients, verifying HTTPS against *bundle* when one is configured."""
    if bundle is None:
        return factory

    def make(api_url: str, token: str) -> EctfClient:
        client = factory(api_url, token)
        client.trust(bundle)
        return client

    return make
