"""Shared helpers for the secrets tests: a stack copy, a Run that captures its output."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from invoke import Config, Context

from tasks.engine.report import Reporter
from tasks.engine.run import Run
from tasks.schema.load import load_stack
from tasks.schema.model import Stack
from tests.support.capture import Captured

REPO = Path(__file__).resolve().parents[2]


def copy_stack(dest: Path) -> Path:
    """A stack directory with the repository's schema and env templates (no task code)."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in ("schemas", "env-templates"):
        shutil.copytree(REPO / part, dest / part)
    return dest


def make_run(stack_dir: Path, *, check: bool = False, diff: bool = False, json: bool = False,
             key_env: str = "MMSTACK_TEST_SECRETS_KEY", key_file: str | None = None) -> Captured:
    """A Run on ``stack_dir`` whose reporter writes into buffers (verbose, diffs shown)."""
    config = Config(overrides={"mmstack": {"stack_dir": str(stack_dir), "verbose": True,
                                           "secrets": {"key_env": key_env, "key_file": key_file}}})
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(out=out, err=err, json_mode=json, show_diff=diff, check=check, verbose=True)
    run = Run.start(Context(config=config), check=check, diff=diff, json=json, reporter=reporter)
    return Captured(run, out, err)


def stack_of(stack_dir: Path) -> Stack:
    return load_stack(stack_dir)


def tree_bytes(root: Path) -> bytes:
    """Every file under ``root`` (names and contents), for "is this value anywhere" checks."""
    chunks = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            chunks.append(str(path).encode())
            chunks.append(path.read_bytes())
    return b"\n".join(chunks)
