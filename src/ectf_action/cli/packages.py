"""`ectf-action packages ...`: the attack packages (attack phase): list, get, decrypt, and
sync a folder with the server."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_FLOW_FAILED, EXIT_OK, InvalidInput
from ..text import clean, format_size
from .context import (
    Context,
    add_command,
    add_group,
    examples,
    output_path,
    path_segment,
    render_json,
)
from .jobs import download_unless_interrupted, interruptible_download

if TYPE_CHECKING:
    from pathlib import Path

    from ..packages import PackageResult, SyncReport

DECRYPT_COMMAND = "openssl enc -d -aes-256-cbc -pbkdf2 -salt -k KEY -in TEAM.enc -out TEAM.zip"


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
    if ctx.args.key is not None:
        return _get_and_decrypt(ctx, name, ctx.args.key)
    dest = output_path(ctx.args.output, f"{name}.zip", force=ctx.args.force)
    client = ctx.client()
    return interruptible_download(
        ctx, lambda cancel: client.download_package(name, dest, cancel=cancel)
    )


def _get_and_decrypt(ctx: Context, name: str, key: str) -> int:
    """`get --key`: the package as served to NAME.enc, decrypted beside it to NAME.zip."""
    from ..crypto import check_available, decrypt_file

    check_available()
    _check_key(key)
    zip_dest = output_path(ctx.args.output, f"{name}.zip", force=ctx.args.force)
    enc_dest = output_path(str(_encrypted_beside(zip_dest)), "", force=ctx.args.force)
    client = ctx.client()
    got = download_unless_interrupted(
        ctx, lambda cancel: client.download_package(name, enc_dest, cancel=cancel)
    )
    if got is None:
        return ctx.interrupts.exit_code
    ctx.note(f"Saved {got.path} ({got.size:,} bytes).\n")
    done = decrypt_file(enc_dest, zip_dest, key)
    data = {
        "path": str(got.path),
        "size": got.size,
        "content_type": got.content_type,
        "decrypted": {"path": str(done.path), "size": done.size},
    }
    ctx.emit(data, f"Decrypted to {done.path} ({done.size:,} bytes).\n")
    return EXIT_OK


def packages_decrypt(ctx: Context) -> int:
    from pathlib import Path

    from ..crypto import check_available, decrypt_file

    check_available()
    _check_key(ctx.args.key)
    source = Path(ctx.args.file)
    if not source.is_file():
        raise InvalidInput("FILE", f"{str(source)!r} is not a file")
    default = source.with_suffix(".zip") if source.suffix == ".enc" else Path(f"{source}.zip")
    dest = output_path(ctx.args.output or str(default), default.name, force=ctx.args.force)
    if dest.resolve() == source.resolve():
        raise InvalidInput("--output", "must not be the encrypted file itself")
    done = decrypt_file(source, dest, ctx.args.key)
    data = {"source": str(source), "path": str(done.path), "size": done.size}
    ctx.emit(data, f"Decrypted {source} to {done.path} ({done.size:,} bytes).\n")
    return EXIT_OK


def packages_sync(ctx: Context) -> int:
    from pathlib import Path

    from ..packages import load_keys, sync_packages

    keys = load_keys(_read_text(ctx.args.keys, "--keys")) if ctx.args.keys else {}
    directory = Path(ctx.args.dir)
    client = ctx.client()
    with ctx.interrupts.installed() as cancel:
        report = sync_packages(
            client,
            directory,
            keys=keys,
            refresh=ctx.args.refresh,
            cancel=cancel,
            on_result=lambda result: ctx.note(sync_line(result) + "\n"),
        )
    for note in report.notes:
        ctx.stderr.write(f"note: {clean(note, limit=500)}\n")
    ctx.emit(report.to_json(), summary_line(report) + "\n")
    if report.interrupted:
        return ctx.interrupts.exit_code
    return EXIT_FLOW_FAILED if report.failed else EXIT_OK


def sync_line(result: PackageResult) -> str:
    """`new        mitre: mitre.enc (32.0 KiB), decrypted to mitre.zip`: the status first,
    in a column, since names come in every length."""
    name = clean(result.name, limit=64)
    if result.status == "failed":
        return f"{'failed':<9}  {name}: {clean(result.error, limit=500)}"
    saved = f"{result.file} ({format_size(result.size or 0)})"
    if result.decrypted and result.status == "unchanged":
        return f"{'decrypted':<9}  {name}: {saved} to {result.decrypted}"
    line = f"{result.status:<9}  {name}: {saved}"
    if result.decrypted:
        line += f", decrypted to {result.decrypted}"
    if result.error:
        line += f"; {clean(result.error, limit=500)}"
    return line


def summary_line(report: SyncReport) -> str:
    from ..text import plural

    counts = report.counts()
    parts = ", ".join(f"{counts[word]} {word}" for word in counts)
    where = clean(str(report.directory))
    if report.interrupted:
        return f"Interrupted: {plural(len(report.results), 'package')} in {where}: {parts}."
    return f"{plural(len(report.results), 'package')} in {where}: {parts}."


def _check_key(key: str) -> None:
    if not key:
        raise InvalidInput("--key", "must not be empty")


def _encrypted_beside(zip_dest: Path) -> Path:
    stem = zip_dest.name[: -len(".zip")] if zip_dest.name.endswith(".zip") else zip_dest.name
    return zip_dest.with_name(f"{stem}.enc")


def _read_text(path: str, name: str) -> str:
    from pathlib import Path

    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(name, f"cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(name, f"{path!r} is not UTF-8 text") from None


def register(commands: Any, api: argparse.ArgumentParser) -> None:
    packages = add_group(
        commands,
        "packages",
        "attack packages (attack phase): list, get, decrypt, sync a folder",
        examples(
            "packages list",
            "packages get mitre",
            "packages sync packages/",
            "packages decrypt packages/mitre.enc --key KEY",
        ),
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
        "Download a team's encrypted attack package; with --key, decrypt it too.",
        examples(
            "packages get mitre",
            "packages get mitre -o packages/ --force",
            "packages get mitre --key KEY        saves mitre.enc and mitre.zip",
        ),
        [api],
    )
    p.add_argument("name", metavar="NAME", help="the team (see `packages list`)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file or directory to save to (default: ./NAME.zip, the package as served; "
        "with --key, the decrypted zip, and NAME.enc beside it)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument(
        "--key", metavar="KEY", help="the key the organizers posted for this team's package"
    )

    p = add_command(
        packages,
        "decrypt",
        packages_decrypt,
        "Decrypt an attack package, as the organizers' openssl command does.",
        examples(
            "packages decrypt mitre.enc --key KEY              writes mitre.zip",
            "packages decrypt mitre.enc --key KEY -o out/ --force",
        )
        + f"\nthe same as:\n  {DECRYPT_COMMAND}\n"
        + "\na wrong key is an error (exit 2) and leaves no file behind.\n",
        brief="Decrypt an attack package (openssl enc -d -aes-256-cbc -pbkdf2 -salt -k KEY).",
    )
    p.add_argument("file", metavar="FILE", help="the encrypted package (TEAM.enc)")
    p.add_argument("--key", metavar="KEY", required=True, help="the key posted for this team")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="file or directory (default: FILE with .zip)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add_command(
        packages,
        "sync",
        packages_sync,
        "Download every attack package that is new or changed into a folder.",
        examples(
            "packages sync packages/",
            "packages sync packages/ --keys keys.yaml     decrypt those with a key",
            "packages sync packages/ --refresh            ask the server about each again",
        )
        + """
Each package is saved as DIR/TEAM.enc, as served; with --keys (a YAML or JSON mapping
team -> key) it is also decrypted to DIR/TEAM.zip. DIR/.ectf-packages.json records what
was downloaded: a package already there (at the size recorded) is not asked for again,
so a run with nothing new sends one request, the list. --refresh checks each package
again (a conditional request when the server sent an ETag or Last-Modified, else a
download compared by SHA-256: an unchanged package keeps its file).

One line per package (new, changed, unchanged, decrypted, failed), then a summary.
exit status: 0 every package is in DIR; 1 some package failed (its line says why);
2 invalid input; 3 the list request failed; 130/143 interrupted.
""",
        [api],
    )
    p.add_argument("dir", metavar="DIR", help="the folder to keep the packages in")
    p.add_argument(
        "--keys", metavar="FILE", help="YAML or JSON mapping team -> key, to decrypt with"
    )
    p.add_argument(
        "--refresh", action="store_true", help="check every package with the server again"
    )
