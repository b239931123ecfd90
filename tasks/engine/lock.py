"""A per-stack lock so two runs never write the same files at once."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockError
from .layout import LOCK_FILE


@contextmanager
def stack_lock(state_dir: Path, timeout: float = 10.0, poll: float = 0.1) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``state_dir/lock`` for the duration of the block.

    The lock dies with the process (flock semantics), so a crashed run never leaves a stale
    lock behind. The file's content is never written: a run that changes nothing must leave
    every mtime alone, the lock file's included.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another mmstack run has held the lock for {timeout:g}s",
                        file=str(path),
                        fix="wait for it to finish, or stop it; the lock is released when that process exits",
                    ) from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
