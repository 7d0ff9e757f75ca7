"""`ectf-action flags ...`: submit for flags (team photo, design doc, steal)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_OK, InvalidInput
from .context import Context, add_command, add_group, examples, path_segment


def _print_flag(ctx: Context, what: str, flag_hex: str) -> int:
    from ..text import clean

    ctx.emit({"flag_hex": flag_hex}, f"{what} flag: {clean(flag_hex)}\n")
    return EXIT_OK


def flags_photo(ctx: Context) -> int:
    from pathlib import Path

    from ..validation import check_upload

    path = check_upload(Path(ctx.args.file), "png", name="FILE")
    return _print_flag(ctx, "Team photo", ctx.client().submit_team_photo(path))


def flags_design(ctx: Context) -> int:
    from pathlib import Path

    from ..validation import check_upload

    path = check_upload(Path(ctx.args.file), "pdf", name="FILE")
    return _print_flag(ctx, "Design doc", ctx.client().submit_design_doc(path))


def flags_steal(ctx: Context) -> int:
    team = path_segment(ctx.args.team, "TEAM")
    digest = ctx.args.digest.strip()
    if not digest or not digest.isprintable() or len(digest) > 1024:
        raise InvalidInput("DIGEST", "must be the one-line digest the HSM printed")
    return _print_flag(ctx, "Steal design", ctx.client().steal_design(team, digest))


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    flags = add_group(
        commands,
        "flags",
        "submit for flags: team photo, design doc, steal",
        examples(
            "flags photo team.png", "flags design design.pdf", "flags steal mitre 0a1b2c3d..."
        ),
    )
    for name, handler, summary, example in (
        ("photo", flags_photo, "Submit the team photo (a PNG) for its flag.", "team.png"),
        ("design", flags_design, "Submit the design document (a PDF) for its flag.", "design.pdf"),
    ):
        p = add_command(flags, name, handler, summary, examples(f"flags {name} {example}"), [api])
        p.add_argument("file", metavar=f"FILE{example[example.index('.') :]}")
    p = add_command(
        flags,
        "steal",
        flags_steal,
        "Submit a digest for another team's steal-design flag (attack phase).",
        examples("flags steal mitre 0a1b2c3d..."),
        [api],
    )
    p.add_argument("team", metavar="TEAM", help="the team whose design you attacked")
    p.add_argument("digest", metavar="DIGEST", help="the digest the HSM printed")
