"""The stack lock on a remote host: the same ``.mmstack/lock`` that local runs take there.

While a deploy works on a host it holds an exclusive ``flock`` on the host's own lock file,
through one SSH channel whose remote process (``flock ... cat``) lives exactly as long as the
channel: closing it, or losing the connection, releases the lock. So two deploys to one host,
or a deploy and an `mmstack` run on the host itself, never write its stack at the same time.
A deploy takes the same lock in the channel of its `hostshell.HostShell`, which then also
carries the deploy's commands (`hostfacts`).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..engine.errors import LockError, RemoteError
from ..engine.layout import LOCK_FILE, STATE_DIR
from .sync import shell_path

LOCKED = "mmstack-locked"
BUSY = 75  # flock -E: the lock stayed busy for the whole wait
_BUSY = BUSY


def locked_command(stack_dir: str, timeout: float, command: str) -> str:
    """``command`` (a constant shell word list) run under the stack's lock on the host, taken
    within ``timeout`` seconds (exit `BUSY` otherwise); the lock lives as long as ``command``."""
    state = posixpath.join(stack_dir, STATE_DIR)
    path = posixpath.join(state, LOCK_FILE)
    return (f"mkdir -p -m 700 -- {shell_path(state)} && "
            f"exec flock -x -E {BUSY} -w {max(0.0, float(timeout)):g} {shell_path(path)} {command}")


def lock_command(stack_dir: str, timeout: float) -> str:
    return locked_command(stack_dir, timeout, f"sh -c 'echo {LOCKED}; exec cat >/dev/null'")


@contextmanager
def host_lock(conn: Any, stack_dir: str, timeout: float = 10.0) -> Iterator[None]:
    """Hold the host's stack lock for the block (``conn``: an open Fabric connection)."""
    transport = conn.client.get_transport()
    if transport is None or not transport.is_active():
        raise RemoteError("the connection is not open", fix="connect first")
    channel = transport.open_session()
    try:
        channel.exec_command(lock_command(stack_dir, timeout))
        deadline = time.monotonic() + timeout + 30
        out = b""
        while LOCKED.encode() not in out:
            if channel.exit_status_ready() and not channel.recv_ready():
                code = channel.recv_exit_status()
                where = posixpath.join(stack_dir, STATE_DIR, LOCK_FILE)
                if code == _BUSY:
                    raise LockError(f"another mmstack run on this host has held its lock for {timeout:g}s",
                                    file=where, fix="wait for it to finish (a deploy, or mmstack on the host)")
                raise RemoteError(f"cannot take the host's stack lock (exit {code})", file=where,
                                  fix="the host needs flock (util-linux) and a writable stack directory")
            if time.monotonic() > deadline:
                raise RemoteError("no answer while taking the host's stack lock")
            if channel.recv_ready():
                out += channel.recv(256)
            else:
                time.sleep(0.01)
        yield
    finally:
        try:
            channel.shutdown_write()  # EOF to `cat`: flock exits and releases the lock
        finally:
            channel.close()
