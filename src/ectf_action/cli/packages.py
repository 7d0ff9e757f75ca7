"""`ectf-action packages ...`: the attack packages (attack phase)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_OK
from .context import (
    Context,
    add_command,
    add_group,
    examples,
    output_path,
    path_segment,
    render_json,
)
from .jobs import interruptible_download


def packages_list(ctx: Context) -> int:
    from ..tables import packages_table

    names = sorted(ctx.client().list_packages())
    if ctx.json:
        ctx.out(render_json(names))
    else:
        ctx.out(packages_table(names) if names else "No attack packages.\n")
    return EXIT_OK


def packages_get(ctx: Context) -> int:
    name = path_segment(ctx.args.name, "NAME")
    dest = output_path(ctx.args.output, f"{name}.zip", force=ctx.args.force)
    client = ctx.client()
    return interruptible_download(
        ctx, lambda cancel: client.download_package(name, dest, cancel=cancel)
    )


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    packages = add_group(
        commands,
        "packages",
        "attack packages (attack phase)",
        examples("packages list", "packages get mitre"),
    )
    add_command(
        packages,
        "list",
        packages_list,
        "List the teams that have attack packages.",
        examples("packages list", "packages list --json"),
        [api],
    )
    p = add_command(
        packages,
        "get",
        packages_get,
        "Download a team's encrypted attack package.",
        examples("packages get mitre", "packages get mitre -o packages/ --force"),
        [api],
    )
    p.add_argument("name", metavar="NAME", help="the team (see `packages list`)")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="file or directory to save to (default: ./NAME.zip)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
