"""Where mmstack keeps its state inside a stack directory (the same on every host).

    <stack>/.mmstack/              0700, git-ignored
        secrets/<env>.yaml         the secrets store (secrets/store.py)
        backups/                   files replaced after a hand edit, kept for the user
        cache/                     memos keyed by content and code (engine/cache.py)
        lock                       held while a run may write (engine/lock.py)
        last-start.json            what `inv start-*` brought up (stack/state.py)
        gpu-plan.json              what `inv configure-gpu` planned (gpu/planfile.py)
"""

from __future__ import annotations

import posixpath
from pathlib import PurePath

STATE_DIR = ".mmstack"
SECRETS_DIR = "secrets"
BACKUPS_DIR = "backups"
CACHE_DIR = "cache"
LOCK_FILE = "lock"
START_RECORD_FILE = "last-start.json"
GPU_PLAN_FILE = "gpu-plan.json"


def state_path(*parts: str) -> str:
    """A path under the state directory, relative to the stack (``.mmstack/gpu-plan.json``)."""
    return str(PurePath(STATE_DIR, *parts))


def hand_edit_backup_dir(stack_dir: str) -> str:
    """Where a stack directory keeps the files it replaced after a hand edit
    (``<stack>/.mmstack/backups``), spelt the same here and on a host (POSIX paths; a host's
    ``~/...`` stays for the shell to expand). Not the volume backups (``mmstack.stack.backup_dir``)."""
    return posixpath.join(stack_dir, STATE_DIR, BACKUPS_DIR)
