"""Prepare a release of the action: check the tag, pin the image, extract the notes.

The release workflow (.github/workflows/release.yml) runs this with the runner's own
Python, before and after it pushes the image, so it needs nothing beyond the standard
library:

    python3 scripts/release_action.py check-tag v1.2.3
    python3 scripts/release_action.py pin-image --owner Team --digest sha256:<64 hex>
    python3 scripts/release_action.py notes 1.2.3 > notes.md

`pin-image` rewrites only the `image:` line under `runs:` in action.yml, byte for byte
everything else (comments, quoting, line endings), so that the released tags run the
prebuilt image by digest while `main` keeps building from the Dockerfile.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_NAME = "ectf-action"
REGISTRY = "ghcr.io"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# GitHub owner names: letters, digits and single hyphens, not at either end, up to 39.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_TOP_LEVEL_KEY = re.compile(r"(?P<key>[A-Za-z_][\w-]*)\s*:")
_IMAGE_LINE = re.compile(
    r"(?P<indent>[ ]+)image:(?P<gap>[ \t]*)(?P<value>[^#\r\n]*?)(?P<tail>[ \t]+#[^\r\n]*)?"
    r"(?P<eol>\r?\n?)"
)
_DOCKER_USING = re.compile(r"[ ]+using:[ \t]*(['\"]?)docker\1[ \t]*(#[^\r\n]*)?\r?\n?")
_LINES = re.compile(r"[^\n]*\n|[^\n]+\Z")
_CHANGELOG_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?P<rest>.*)$", re.MULTILINE)
_VERSION_LABEL = re.compile(r'org\.opencontainers\.image\.version="(?P<version>[^"]*)"')


class ReleaseError(Exception):
    """Something about the release's inputs or the repository's files is not as it must be."""


def image_reference(owner: str, digest: str) -> str:
    """The `runs.image` value of a release: GHCR wants the owner lower-cased."""
    if not _OWNER.fullmatch(owner):
        raise ReleaseError(f"not a GitHub owner name: {owner!r}")
    if not _DIGEST.fullmatch(digest):
        raise ReleaseError(
            f"not an image digest: {digest!r} (expected sha256: and 64 lowercase hex digits)"
        )
    return f"docker://{REGISTRY}/{owner.lower()}/{IMAGE_NAME}@{digest}"


def pin_image(action_text: str, image: str) -> str:
    """action.yml with the `image:` of its top-level `runs:` set to *image*, nothing else.

    Works on the text, not on parsed YAML, so that comments and formatting survive; it
    refuses any file whose `runs:` block does not hold exactly one plain `image:` line.
    """
    if not image.startswith("docker://") or any(c in image for c in " \t\r\n#'\""):
        raise ReleaseError(f"not a docker:// image reference: {image!r}")
    lines = _LINES.findall(action_text)  # only "\n" ends a line, as in YAML 1.2
    runs = [index for index, line in enumerate(lines) if _top_level_key(line) == "runs"]
    if len(runs) != 1:
        raise ReleaseError(f"action.yml must have one top-level `runs:` key, found {len(runs)}")
    start = runs[0] + 1
    end = next(
        (index for index in range(start, len(lines)) if _top_level_key(lines[index])),
        len(lines),
    )
    if not any(_DOCKER_USING.fullmatch(line) for line in lines[start:end]):
        raise ReleaseError("`runs.using` must be docker for an image to be pinned")
    block = [(index, _IMAGE_LINE.fullmatch(lines[index])) for index in range(start, end)]
    found = [(index, match) for index, match in block if match]
    indent = _block_indent(lines[start:end])
    found = [(index, match) for index, match in found if match.group("indent") == indent]
    if len(found) != 1:
        raise ReleaseError(f"`runs:` must hold one `image:` line, found {len(found)}")
    index, match = found[0]
    value = match.group("value")
    if not value or value[0] in "'\"|>&*!{[":
        raise ReleaseError(f"`runs.image` must be a plain scalar to be rewritten, not {value!r}")
    lines[index] = (
        f"{match.group('indent')}image:{match.group('gap') or ' '}{image}"
        f"{match.group('tail') or ''}{match.group('eol')}"
    )
    return "".join(lines)


def _top_level_key(line: str) -> str | None:
    match = _TOP_LEVEL_KEY.match(line)
    return match.group("key") if match else None


def _block_indent(block: Sequence[str]) -> str:
    """The indentation of a block's keys: that of its first line holding something."""
    for line in block:
        stripped = line.lstrip(" ")
        if stripped.strip() and not stripped.startswith("#"):
            return line[: len(line) - len(stripped)]
    raise ReleaseError("`runs:` is empty")


def release_notes(changelog_text: str, version: str) -> str:
    """The body of *version*'s section in a Keep a Changelog file, without its heading."""
    headings = list(_CHANGELOG_HEADING.finditer(changelog_text))
    for position, heading in enumerate(headings):
        if heading.group("version") == version:
            end = (
                headings[position + 1].start()
                if position + 1 < len(headings)
                else _link_definitions_start(changelog_text, heading.end())
            )
            body = changelog_text[heading.end() : end].strip("\n")
            if not body.strip():
                raise ReleaseError(f"CHANGELOG.md: the section of {version} is empty")
            return body + "\n"
    raise ReleaseError(f"CHANGELOG.md has no section for {version}")


def _link_definitions_start(text: str, after: int) -> int:
    """Where the reference links at the end of a changelog begin (or its end)."""
    match = re.search(r"^\[[^\]]+\]: \S+", text[after:], re.MULTILINE)
    return after + match.start() if match else len(text)


def released_versions(changelog_text: str) -> list[str]:
    """The versions with a section in the changelog, newest first, `Unreleased` left out."""
    return [
        heading.group("version")
        for heading in _CHANGELOG_HEADING.finditer(changelog_text)
        if heading.group("version") != "Unreleased"
    ]


def package_version(root: Path = ROOT) -> str:
    """`__version__` of the package, read without importing it (the one place it is set)."""
    source = (root / "src" / "ectf_action" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ReleaseError("src/ectf_action/__init__.py sets no __version__ string")


def image_label_version(root: Path = ROOT) -> str:
    """The Dockerfile's `org.opencontainers.image.version` label."""
    match = _VERSION_LABEL.search((root / "Dockerfile").read_text(encoding="utf-8"))
    if not match:
        raise ReleaseError("the Dockerfile has no org.opencontainers.image.version label")
    return match.group("version")


def check_tag(tag: str, root: Path = ROOT) -> str:
    """The version a tag `vX.Y.Z` releases, once the repository agrees with it everywhere."""
    if not tag.startswith("v") or not _VERSION.fullmatch(tag[1:]):
        raise ReleaseError(f"a release tag is vX.Y.Z, not {tag!r}")
    version = tag[1:]
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    found = {
        "src/ectf_action/__init__.py (__version__)": package_version(root),
        "the Dockerfile's image.version label": image_label_version(root),
        "CHANGELOG.md's newest release": next(iter(released_versions(changelog)), "none"),
    }
    wrong = [f"{place} says {value}" for place, value in found.items() if value != version]
    if wrong:
        raise ReleaseError(f"tag {tag} does not match the repository: " + "; ".join(wrong))
    release_notes(changelog, version)
    return version


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release_action.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tag = commands.add_parser("check-tag", help="check a vX.Y.Z tag; print its version")
    tag.add_argument("tag")
    pin = commands.add_parser("pin-image", help="point action.yml's runs.image at the image")
    pin.add_argument("--owner", required=True, help="repository owner (lower-cased for GHCR)")
    pin.add_argument("--digest", required=True, help="the pushed image's sha256:... digest")
    pin.add_argument("--file", type=Path, default=ROOT / "action.yml")
    notes = commands.add_parser("notes", help="print a version's CHANGELOG section")
    notes.add_argument("version")
    notes.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-tag":
            print(check_tag(args.tag))
        elif args.command == "pin-image":
            image = image_reference(args.owner, args.digest)
            path: Path = args.file
            text = path.read_bytes().decode("utf-8")
            path.write_bytes(pin_image(text, image).encode("utf-8"))
            print(image)
        else:
            changelog = args.changelog.read_text(encoding="utf-8")
            sys.stdout.write(release_notes(changelog, args.version))
    except (ReleaseError, OSError) as exc:
        print(f"::error::release: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
