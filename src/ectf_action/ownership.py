"""Files the step makes in the workspace are handed to the workspace's owner.

The runner runs a container action as root, so what the step creates in the mounted
workspace (the artifacts, the JUnit report, the folders made for them) would be
root's, and on a self-hosted runner the next job's checkout, running as the runner's
user, could not clean them. When we run as root and the workspace belongs to someone
else, every path we made there is given to the workspace's owner and group. Links are
never followed, and nothing that is not ours is touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

MAX_PROBLEMS = 5


def give_to_workspace_owner(
    settings: Settings, *, euid: Callable[[], int] = os.geteuid
) -> list[str]:
    """Hand the step's files in the workspace to its owner; the problems met, each a
    sentence (at most a few)."""
    try:
        owner = os.stat(settings.workspace)
    except OSError:
        return []
    me = euid()
    if me != 0 or owner.st_uid == me:
        return []
    roots = [settings.artifacts_path]
    if settings.junit_path is not None:
        roots.append(settings.junit_path)
    problems: list[str] = []
    for path in _paths_made(settings.workspace, roots):
        try:
            info = os.lstat(path)
            if info.st_uid == me:
                os.lchown(path, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if len(problems) < MAX_PROBLEMS:
                problems.append(
                    f"{path.relative_to(settings.workspace)} could not be given to the "
                    f"workspace's owner (uid {owner.st_uid}): {exc.strerror or exc}"
                )
    return problems


def _paths_made(workspace: Path, roots: list[Path]) -> Iterator[Path]:
    """The folders between the workspace and each root, and everything under a root.
    A root outside the workspace (a path given outside Actions) is not the workspace's
    owner's to have, and is left as it is."""
    seen: set[Path] = set()
    for root in roots:
        if not root.is_relative_to(workspace):
            continue
        for parent in reversed(root.relative_to(workspace).parents[:-1]):
            folder = workspace / parent
            if folder not in seen:
                seen.add(folder)
                yield folder
        if root in seen:
            continue
        seen.add(root)
        yield root
        if root.is_dir() and not root.is_symlink():
            for top, dirs, files in os.walk(root, followlinks=False):
                for name in (*dirs, *files):
                    yield Path(top, name)
