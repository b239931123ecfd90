"""What a deploy learns from a host before it writes anything, through ONE channel that then
carries the rest of the host's file work and holds its lock.

    with host_facts(conn, host, lock=not check, lock_timeout=10) as found:
        found.gpu            # GpuFacts (one batched nvidia-smi command)
        found.root           # the stack directory, absolute ("~/x" resolved against HOME)
        sync_files(found.shell, files, ...)   # checksums, mkdir, mv: the same shell

In order, in the host's `hostshell.HostShell`: the stack lock (``flock`` on
``<stack_dir>/.mmstack/lock``; not in check mode, which changes nothing, as locally), then
``$HOME`` when the stack directory starts with ``~/`` and every GPU question, both sent at once
(one round trip), then whatever the caller runs. The GPU plan needs the facts, the files need
the plan, so the file checksums are asked once the files are rendered, in the same channel. The
lock is released when the block ends (the shell's stdin closes) or the connection drops.

Per host that is one channel where there were four (the GPU facts, the lock, the checksums,
``printf $HOME``) and, on a first run, two more (``mkdir``, ``mv``); SFTP is opened only for
content that changed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..engine.errors import RemoteError
from .hostshell import HostShell
from .sync import check_path

HOME_COMMAND = 'printf %s "$HOME"'


@dataclass
class HostFacts:
    shell: HostShell      # the host's shell (under its lock unless check mode)
    root: str             # the stack directory there, absolute
    gpu: Any              # gpu.facts.GpuFacts
    locked: bool


def absolute_stack_dir(stack_dir: str, home: str | None) -> str:
    """Pure: ``stack_dir`` with a leading ``~/`` resolved against ``home`` (what the host's
    shell printed for ``$HOME``); no trailing slash."""
    check_path(stack_dir)
    if stack_dir.startswith("~/"):
        home = (home or "").strip()
        if not home.startswith("/") or "\n" in home:
            raise RemoteError(f"the login's HOME on the host is not an absolute path ({home!r}), "
                              "so a stack_dir under ~/ cannot be placed", file=stack_dir,
                              fix="give stack_dir as an absolute path in the inventory")
        stack_dir = posixpath.join(home, stack_dir[2:])
    return stack_dir.rstrip("/") or "/"


@contextmanager
def host_facts(conn: Any, host: Any, *, lock: bool, lock_timeout: float = 10.0) -> Iterator[HostFacts]:
    """The host's facts, and its shell for the block (see the module docstring)."""
    from ..gpu.smibatch import CMD_SMI_BATCH, facts_from_batch

    check_path(host.stack_dir)
    with HostShell.open(conn, lock_dir=host.stack_dir if lock else None, lock_timeout=lock_timeout) as shell:
        home = shell.send(HOME_COMMAND) if host.stack_dir.startswith("~/") else None
        smi = shell.send(CMD_SMI_BATCH)
        root = absolute_stack_dir(host.stack_dir, shell.result(home).stdout if home is not None else None)
        gpu = facts_from_batch(shell.result(smi, warn=True))
        gpu.host = host.name
        yield HostFacts(shell, root, gpu, lock)
