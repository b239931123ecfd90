"""A throwaway copy of this repository's stack, and a way to run `inv` against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK_PARTS = ("tasks.py", "tasks", "schemas", "env-templates")


def make_stack_copy(dest: Path, source: Path = REPO) -> Path:
    """Copy what a stack needs (task code, schema, templates) into ``dest``, from this checkout
    or another one (``source``: the benchmarks' ``--baseline`` tree)."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in STACK_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def run_inv(stack: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `inv ARGS` for the stack at ``stack`` (its own tasks.py), capturing output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("INVOKE_RUNTIME_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(stack), *args],
        cwd=stack, capture_output=True, text=True, env=full_env, input=input, timeout=timeout,
    )


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """mtime_ns, mode and content of every file under ``root`` (for "nothing was touched")."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_mode, path.read_bytes())
    return out


def set_up_copy(dest: Path) -> Path:
    """A stack copy at ``dest`` on which `inv setup` has run (compose files, secrets, env files)."""
    root = make_stack_copy(dest)
    proc = run_inv(root, "setup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root
