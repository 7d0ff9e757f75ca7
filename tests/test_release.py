"""Releases: one version everywhere, and the release script's rewrite of action.yml.

A release moves the tags users pin (`vX.Y.Z`, `vX`) to a commit whose action.yml runs
the prebuilt image by digest. Whatever else that file says must survive byte for byte,
and a digest that is not one must stop the release before anything is committed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import ectf_action
from test_action_metadata import check_jsonschema

ROOT = Path(__file__).resolve().parents[1]
ACTION_YML = ROOT / "action.yml"
CHANGELOG = ROOT / "CHANGELOG.md"
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"docker://ghcr.io/ectf-action/ectf-action@{DIGEST}"


def load_script(name: str) -> ModuleType:
    """A script of scripts/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


release = load_script("release_action")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.split("\n"), after.split("\n")
    assert len(old) == len(new), "the rewrite added or removed lines"
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


# --- one version -------------------------------------------------------------------------


def test_one_version_everywhere() -> None:
    version = ectf_action.__version__
    cli = subprocess.run(
        [sys.executable, "-m", "ectf_action", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert cli.stdout == f"ectf-action {version}\n"
    assert importlib.metadata.version("ectf-action") == version, (
        "the installed metadata is stale: reinstall with pip install -e '.[dev]'"
    )
    assert release.image_label_version() == version
    changelog = CHANGELOG.read_text(encoding="utf-8")
    assert release.released_versions(changelog)[0] == version
    assert release.check_tag(f"v{version}") == version


def test_the_version_is_set_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert not re.search(r"^version\s*=", pyproject, re.MULTILINE)
    assert release.package_version() == ectf_action.__version__


def test_the_readme_pins_the_major_tag_a_release_moves() -> None:
    """`uses: ectf-action/ectf-action@vN` in the README and the examples is the moving
    major tag the release workflow sets for this version."""
    major = "v" + ectf_action.__version__.split(".")[0]
    texts = [ROOT / "README.md", *sorted((ROOT / "examples" / "workflows").glob("*.yml"))]
    pins = {
        (path.name, ref)
        for path in texts
        for ref in re.findall(r"uses: ectf-action/ectf-action@(\S+)", path.read_text("utf-8"))
    }
    assert pins, "nothing uses the published action"
    assert {ref for _, ref in pins} == {major}, sorted(pins)


def test_changelog_keeps_a_changelog() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    released = headings[1:]
    assert [version for version, _ in released][-2:] == ["1.0.0", "0.1.0"]
    dates = []
    for version, rest in released:
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"{version}: {rest!r}"
        dates.append(rest[3:])
        assert re.search(rf"^\[{re.escape(version)}\]: https://\S+$", text, re.MULTILINE)
    assert dates == sorted(dates, reverse=True)
    assert re.search(r"^\[Unreleased\]: https://\S+$", text, re.MULTILINE)


# --- the release notes ---------------------------------------------------------------------


def test_release_notes_are_the_versions_section() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    notes = release.release_notes(text, "1.0.0")
    assert notes.startswith("### Added\n")
    assert "## [" not in notes and "## [0.1.0]" not in notes
    last = release.release_notes(text, "0.1.0")
    assert "ectf-action simulate" in last
    assert "]: https://" not in last, "the link definitions are not part of the section"


def test_release_notes_refuse_a_missing_or_empty_section() -> None:
    text = (
        "# Changelog\n\n## [Unreleased]\n\n"
        "## [2.0.0] - 2027-01-01\n\n"
        "## [1.0.0] - 2026-12-01\n- x\n"
    )
    with pytest.raises(release.ReleaseError, match=r"no section for 3\.0\.0"):
        release.release_notes(text, "3.0.0")
    with pytest.raises(release.ReleaseError, match=r"2\.0\.0 is empty"):
        release.release_notes(text, "2.0.0")
    assert release.release_notes(text, "1.0.0") == "- x\n"


# --- the tag -------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["1.0.0", "v1.0", "v1.0.0-rc1", "v01.0.0", "vX.Y.Z", ""])
def test_check_tag_refuses_what_is_not_vXYZ(tag: str) -> None:
    with pytest.raises(release.ReleaseError, match=r"a release tag is vX\.Y\.Z"):
        release.check_tag(tag)


def test_check_tag_names_every_place_that_disagrees(tmp_path: Path) -> None:
    (tmp_path / "src" / "ectf_action").mkdir(parents=True)
    (tmp_path / "src" / "ectf_action" / "__init__.py").write_text('__version__ = "2.0.0"\n')
    (tmp_path / "Dockerfile").write_text('LABEL org.opencontainers.image.version="1.9.0"\n')
    (tmp_path / "CHANGELOG.md").write_text("## [Unreleased]\n\n## [1.9.0] - 2027-01-01\n- x\n")
    with pytest.raises(release.ReleaseError) as raised:
        release.check_tag("v2.0.0", tmp_path)
    message = str(raised.value)
    assert "image.version label says 1.9.0" in message
    assert "newest release says 1.9.0" in message
    assert "__version__" not in message


# --- pinning the image -----------------------------------------------------------------------


def test_image_reference_lower_cases_the_owner() -> None:
    assert release.image_reference("Ectf-Action", DIGEST) == IMAGE


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
        "a" * 64,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 64 + "\n",
        "sha256:" + "a" * 64 + " # moved",
        "",
    ],
)
def test_a_malformed_digest_is_refused(digest: str) -> None:
    with pytest.raises(release.ReleaseError, match="not an image digest"):
        release.image_reference("ectf-action", digest)


@pytest.mark.parametrize("owner", ["", "-team", "team-", "a/b", "team name", "x" * 40, "a--b"])
def test_a_malformed_owner_is_refused(owner: str) -> None:
    with pytest.raises(release.ReleaseError, match="not a GitHub owner name"):
        release.image_reference(owner, DIGEST)


def test_pinning_changes_only_the_image_line_of_action_yml(tmp_path: Path) -> None:
    before = ACTION_YML.read_text(encoding="utf-8")
    after = release.pin_image(before, IMAGE)

    assert changed_lines(before, after) == [("  image: Dockerfile", f"  image: {IMAGE}")]
    pinned = tmp_path / "action.yml"
    pinned.write_text(after, encoding="utf-8")
    result = check_jsonschema("vendor.github-actions", pinned)
    assert result.returncode == 0, result.stdout + result.stderr
    original, rewritten = yaml.safe_load(before), yaml.safe_load(after)
    assert rewritten["runs"].pop("image") == IMAGE
    original["runs"].pop("image")
    assert rewritten == original


def test_pinning_keeps_comments_quoting_and_line_endings() -> None:
    text = (
        "# the action\r\n"
        "name: x\r\n"
        "runs:\r\n"
        "  # how it runs\r\n"
        "  using: 'docker'\r\n"
        "  image: Dockerfile   # built by the runner on main\r\n"
        "  post-if: cancelled()\r\n"
        "outputs: {}\r\n"
        "image: not-this-one\r\n"
    )
    after = release.pin_image(text, IMAGE)
    assert after == text.replace("  image: Dockerfile   #", f"  image: {IMAGE}   #"), after


def test_pinning_again_replaces_the_previous_pin() -> None:
    once = release.pin_image(ACTION_YML.read_text(encoding="utf-8"), IMAGE)
    other = IMAGE.replace("0123", "4567")
    twice = release.pin_image(once, other)
    assert changed_lines(once, twice) == [(f"  image: {IMAGE}", f"  image: {other}")]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name: x\n", "one top-level `runs:` key, found 0"),
        ("runs:\n  using: composite\n  steps: []\n", "must be docker"),
        ("runs:\n  using: docker\n  entrypoint: x\n", "one `image:` line, found 0"),
        ("runs:\n  using: docker\n  image: a\n  image: b\n", "one `image:` line, found 2"),
        ("runs:\n  using: docker\n  image: 'Dockerfile'\n", "plain scalar"),
        ("runs:\n  using: docker\n  x:\n    image: Dockerfile\n", "found 0"),
        ("runs:\n  using: docker\n  image: a\nruns:\n  image: b\n", "found 2"),
    ],
)
def test_pinning_refuses_a_file_it_cannot_rewrite_safely(text: str, error: str) -> None:
    with pytest.raises(release.ReleaseError, match=re.escape(error)):
        release.pin_image(text, IMAGE)


@pytest.fixture
def action_copy(tmp_path: Path) -> Path:
    action = tmp_path / "action.yml"
    action.write_bytes(ACTION_YML.read_bytes())
    return action


def pin_command(action: Path, owner: str, digest: str) -> int:
    return release.main(["pin-image", "--owner", owner, "--digest", digest, "--file", str(action)])


def test_pin_image_command_rewrites_the_file(
    action_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pin_command(action_copy, "Ectf-Action", DIGEST) == 0
    assert capsys.readouterr().out == IMAGE + "\n"
    assert yaml.safe_load(action_copy.read_text(encoding="utf-8"))["runs"]["image"] == IMAGE


def test_pin_image_command_leaves_the_file_alone_for_a_bad_digest(
    action_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pin_command(action_copy, "o", "sha256:beef") == 1
    assert capsys.readouterr().err.startswith("::error::release: not an image digest")
    assert action_copy.read_bytes() == ACTION_YML.read_bytes()


def test_notes_command_prints_the_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert release.main(["notes", ectf_action.__version__]) == 0
    printed = capsys.readouterr().out
    assert printed == release.release_notes(CHANGELOG.read_text("utf-8"), ectf_action.__version__)
