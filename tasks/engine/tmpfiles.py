"""Temp files a killed run left behind, removed by the next run that holds the lock.

`files.atomic_write` writes ``.NAME.XXXXXXXX.tmp`` beside its target and renames it over the
target; a SIGKILL between the two leaves the temp file. Nothing ever reads one, so the next run
that holds the stack lock deletes those in the directories mmstack writes. A temp file younger
than `MIN_AGE_S` may belong to a read-only task finishing a cache write outside the lock, so it
is left for a later run.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")
MIN_AGE_S = 10.0
# Where atomic_write puts files: the stack directory itself (compose files) and these trees.
WRITTEN_TREES = ("env", "config", ".mmstack")


def stale_temp_files(stack: Path, now: float | None = None) -> list[Path]:
    now = time.time() if now is None else now
    candidates: list[Path] = []
    folders = [stack]
    for tree in WRITTEN_TREES:
        root = stack / tree
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, _ in os.walk(root, followlinks=False):
                folders.append(Path(dirpath))
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not TEMP_NAME.match(entry.name):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime >= MIN_AGE_S:
                    candidates.append(Path(entry.path))
            except OSError:
                continue
    return sorted(candidates)


def remove_stale_temp_files(stack: Path) -> list[Path]:
    removed = []
    for path in stale_temp_files(stack):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed
