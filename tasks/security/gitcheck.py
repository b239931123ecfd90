"""Is a file tracked by git? Asked of git itself, so .gitignore rules and sub-repositories
are taken into account exactly as git sees them.

Never fails: a directory outside any repository, or a machine without git, simply has no
tracked files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

_TIMEOUT = 30


def _git() -> str | None:
    return shutil.which("git")


def _env() -> dict[str, str]:
    # A GIT_DIR/GIT_INDEX_FILE inherited from a hook would point git at another repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # a read-only question must not take the index lock
    return env


def is_tracked(path: Path) -> bool:
    """``git ls-files --error-unmatch`` for one path; False outside a repository."""
    git = _git()
    if git is None:
        return False
    path = Path(path).resolve()
    try:
        result = subprocess.run(
            [git, "--literal-pathspecs", "-C", str(path.parent), "ls-files", "--error-unmatch", "--", path.name],
            capture_output=True, text=True, timeout=_TIMEOUT, env=_env(), check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0  # 1: not tracked; 128: not a repository


def tracked_among(paths: list[Path]) -> set[Path]:
    """The subset of ``paths`` git tracks: one `git ls-files` per directory, not per file."""
    git = _git()
    if git is None or not paths:
        return set()
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for p in paths:
        p = Path(p).resolve()
        by_dir[p.parent].append(p)
    tracked: set[Path] = set()
    for directory, files in by_dir.items():
        if not directory.is_dir():
            continue
        try:
            result = subprocess.run(
                [git, "--literal-pathspecs", "-C", str(directory), "ls-files", "-z", "--", *(f.name for f in files)],
                capture_output=True, text=True, timeout=_TIMEOUT, env=_env(), check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if result.returncode != 0:  # not a repository (128) or git refused: nothing tracked
            continue
        listed = {(directory / name).resolve() for name in result.stdout.split("\0") if name}
        tracked.update(f for f in files if f in listed)
    return tracked
