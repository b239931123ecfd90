"""`remote-run`: any mmstack task on each host, through the host's own `mmstack` command, in
its stack directory; arguments shell-quoted, nothing secret on its command line or in its
environment."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from ..engine.errors import RemoteError
from ..engine.streams import LineWriter
from ..stack.site import join
from .sync import shell_path

INSTALL_HINT = ("install it for the SSH user on the host: `pip install mmstack` (or, from a checkout "
                "of this repository, `pip install .`), so that `mmstack` is on that user's PATH")


def _tail(text: str | None, lines: int = 6) -> str:
    rows = [r for r in (text or "").strip().splitlines() if r.strip()][-lines:]
    return ("; " + " / ".join(r.strip() for r in rows)) if rows else ""


MISSING_MARK = "@@mmstack-remote: mmstack not found@@"
NODIR_MARK = "@@mmstack-remote: no stack directory@@"


def remote_run_command(stack_dir: str, argv: Sequence[str]) -> str:
    """``cd <stack_dir> && MMSTACK_DIR=<stack_dir> mmstack ARGV``, every word shell-quoted.

    Only the stack directory travels in the environment; the task's arguments are the user's.
    """
    if not argv:
        raise RemoteError("no task given", fix='say which task to run, e.g. --task "status --json"')
    d = shell_path(stack_dir)
    return (f"command -v mmstack >/dev/null 2>&1 || {{ echo {shlex.quote(MISSING_MARK)} >&2; exit 127; }}; "
            f"cd -- {d} 2>/dev/null || {{ echo {shlex.quote(NODIR_MARK)} >&2; exit 1; }}; "
            f"MMSTACK_DIR={d}; export MMSTACK_DIR; exec mmstack {join(argv)}")


_RECAP_RE = re.compile(r"^RECAP\b.*\bchanged=(\d+)", re.MULTILINE)


def reported_changes(stdout: str) -> int | None:
    """Pure: the ``changed`` count the remote task reported (its recap line or its JSON)."""
    text = stdout.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            return int(doc["recap"]["changed"])
        except (ValueError, KeyError, TypeError):
            return None
    found = _RECAP_RE.findall(stdout)
    return int(found[-1]) if found else None


def run_task(c: Any, host: Any, hr: Any, argv: Sequence[str], *,
             out: LineWriter | None = None, err: LineWriter | None = None,
             timeout: float | None = None) -> dict[str, Any]:
    """Run ``mmstack ARGV`` on the host; one result for the host, output captured (and streamed
    with a host prefix when writers are given)."""
    from invoke.exceptions import CommandTimedOut

    command = remote_run_command(host.stack_dir, argv)
    label = "mmstack " + join(argv)
    kw: dict[str, Any] = {"hide": True} if out is None else {"out_stream": out, "err_stream": err}
    try:
        result = c.run(command, warn=True, in_stream=False, timeout=timeout, **kw)
    except CommandTimedOut:
        raise RemoteError(f"{host.name}: `{label}` did not finish in {timeout:g}s") from None
    finally:
        for w in (out, err):
            if w is not None:
                w.flush()
    stdout, stderr = result.stdout or "", result.stderr or ""
    data = {"exit": result.exited, "stdout": stdout, "stderr": stderr}
    if MISSING_MARK in stderr:
        hr.failed(label, f"`mmstack` is not installed on the host (not on the SSH user's PATH); "
                  f"{INSTALL_HINT}", data=data)
    elif NODIR_MARK in stderr:
        hr.failed(label, f"the stack directory {host.stack_dir} does not exist on the host",
                  data={**data, "fix": f"deploy first: inv deploy --hosts {host.name}"})
    elif result.exited != 0:
        hr.failed(label, f"exit {result.exited}" + _tail(stderr or stdout, 3), data=data)
    else:
        changes = reported_changes(stdout)
        if changes:
            hr.changed(label, f"exit 0, changed={changes}", data=data)
        else:
            hr.ok(label, "exit 0", data=data)
    return data
