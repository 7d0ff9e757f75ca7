"""Server paths to workspace files: absolute paths of the server's checkout, paths
relative to make's directory, ties, misses, and hostile paths that must never lead
outside the workspace."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from ectf_action.sourcemap import SourceIndex

TREE = (
    "CMakeLists.txt",
    "firmware/src/uart.c",
    "firmware/src/commands.c",
    "firmware/inc/uart.h",
    "bootloader/src/uart.c",
    "src/main.rs",
    "tools/fuzz/src/main.rs",
    "docs/a/notes.md",
    "docs/b/notes.md",
)


def workspace(tmp_path: Path, files: Sequence[str] = TREE) -> Path:
    root = tmp_path / "ws"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"// {name}\n")
    return root


def no_git(args: Sequence[str], cwd: Path) -> bytes:
    raise AssertionError("git must not run for a folder that is not a checkout")


@pytest.fixture
def index(tmp_path: Path) -> SourceIndex:
    return SourceIndex.build(workspace(tmp_path), git=no_git)


@pytest.mark.parametrize(
    ("path", "directory", "expected"),
    [
        ("/design/firmware/src/uart.c", None, "firmware/src/uart.c"),
        ("/design/bootloader/src/uart.c", None, "bootloader/src/uart.c"),
        ("src/uart.c", "/design/firmware", "firmware/src/uart.c"),
        ("src/uart.c", "/design/bootloader", "bootloader/src/uart.c"),
        ("../inc/uart.h", "/design/firmware/build", "firmware/inc/uart.h"),
        ("./src/../src/commands.c", "/design/firmware", "firmware/src/commands.c"),
        ("commands.c", None, "firmware/src/commands.c"),  # ld's `commands.c:(.text+0x2a)`
        ("src/main.rs", None, "src/main.rs"),  # the top-level one, not tools/fuzz's
        ("/design/CMakeLists.txt", None, "CMakeLists.txt"),
        (r"C:\design\firmware\src\uart.c", None, "firmware/src/uart.c"),
    ],
)
def test_located(index: SourceIndex, path: str, directory: str | None, expected: str) -> None:
    assert index.locate(path, directory) == expected


@pytest.mark.parametrize(
    ("path", "directory"),
    [
        ("src/uart.c", None),  # firmware's or the bootloader's: ambiguous
        ("uart.c", None),
        ("notes.md", None),
        ("/design/docs/c/notes.md", None),  # two equally good matches
        ("/design/firmware/src/flash.c", None),  # no such file
        ("/usr/lib/gcc/arm-none-eabi/12.2.1/include/stdint.h", None),
        ("CMakeFiles/hsm.dir/firmware/src/uart.c.obj", None),
        ("", None),
        ("firmware/src/", None),
    ],
)
def test_not_located(index: SourceIndex, path: str, directory: str | None) -> None:
    assert index.locate(path, directory) is None


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "/design/../../../../etc/shadow",
        "firmware/src/uart.c\0/etc/passwd",
        "/design/" + "a/" * 3000 + "uart.c",
        "~/.ssh/id_rsa",
    ],
)
def test_hostile_paths_find_nothing_outside(index: SourceIndex, path: str) -> None:
    assert index.locate(path, "/design/firmware") is None


def test_a_climbing_path_can_only_name_a_file_inside(tmp_path: Path) -> None:
    index = SourceIndex.build(workspace(tmp_path, ["etc/passwd"]), git=no_git)
    assert index.locate("../../etc/passwd", "/design/firmware") == "etc/passwd"


def test_links_that_leave_the_workspace_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "src").mkdir(parents=True)
    (outside / "secret.c").write_text("secret\n")
    (outside / "src" / "flash.c").write_text("outside\n")
    root = workspace(tmp_path)
    (root / "firmware" / "src" / "evil.c").symlink_to(outside / "secret.c")
    (root / "firmware" / "lib").symlink_to(outside / "src")
    (root / "firmware" / "src" / "alias.c").symlink_to(root / "firmware" / "src" / "uart.c")
    walked = SourceIndex.build(root, git=no_git)
    assert walked.locate("/design/firmware/src/evil.c") is None
    assert walked.locate("/design/firmware/lib/flash.c") is None
    assert walked.locate("/design/firmware/src/alias.c") == "firmware/src/alias.c"  # inside

    def lying_git(args: Sequence[str], cwd: Path) -> bytes:
        return b"firmware/lib/flash.c\0firmware/src/evil.c\0firmware/src/uart.c\0"

    (root / ".git").mkdir()
    listed = SourceIndex.build(root, git=lying_git)
    assert listed.locate("/design/firmware/lib/flash.c") is None
    assert listed.locate("/design/firmware/src/evil.c") is None
    assert listed.locate("/design/firmware/src/uart.c") == "firmware/src/uart.c"


def test_the_walk_skips_git_and_the_artifacts(tmp_path: Path) -> None:
    root = workspace(
        tmp_path, ["firmware/src/uart.c", ".git/src/x.c", "ectf-artifacts/build/src/y.c"]
    )
    index = SourceIndex.build(root, exclude=[root / "ectf-artifacts"], git=None)
    assert index.files == 1
    assert index.locate("/design/src/x.c") is None and index.locate("/design/src/y.c") is None


def test_a_checkout_is_listed_by_git_without_the_artifacts(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["firmware/src/uart.c", "untracked.c"])
    (root / ".git").mkdir()
    calls: list[tuple[list[str], Path]] = []

    def fake_git(args: Sequence[str], cwd: Path) -> bytes:
        calls.append((list(args), cwd))
        return b"firmware/src/uart.c\0ectf-artifacts/build/x.c\0"

    index = SourceIndex.build(root, exclude=[root / "ectf-artifacts"], git=fake_git)
    assert calls == [(["ls-files", "-z", "--recurse-submodules"], root.resolve())]
    assert index.files == 1 and index.locate("/design/firmware/src/uart.c") == "firmware/src/uart.c"
    assert index.locate("untracked.c") is None


def test_git_failing_falls_back_to_the_walk(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["firmware/src/uart.c"])
    (root / ".git").mkdir()

    def broken_git(args: Sequence[str], cwd: Path) -> bytes:
        raise subprocess.TimeoutExpired(["git", *args], 10)

    index = SourceIndex.build(root, git=broken_git)
    assert index.locate("/design/firmware/src/uart.c") == "firmware/src/uart.c"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_real_git_lists_the_tracked_files(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["firmware/src/uart.c", "scratch.c"])
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "firmware"], check=True)
    index = SourceIndex.build(root)
    assert index.files == 1
    assert index.locate("/design/firmware/src/uart.c") == "firmware/src/uart.c"
    assert index.locate("/design/scratch.c") is None


def test_the_index_is_bounded(tmp_path: Path) -> None:
    root = workspace(tmp_path, [f"src/f{i}.c" for i in range(10)])
    index = SourceIndex.build(root, git=None, max_files=4)
    assert (index.files, index.truncated) == (4, True)


def test_without_a_workspace_nothing_is_found(tmp_path: Path) -> None:
    index = SourceIndex.build(tmp_path / "missing", git=no_git)
    assert index.files == 0 and index.locate("/design/firmware/src/uart.c") is None
