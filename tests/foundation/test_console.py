"""One colour policy for every output (engine/console.py): colour on a terminal only, never with
NO_COLOR or TERM=dumb, forced by FORCE_COLOR; the real command is run on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stackcopy import make_stack_copy

ESC = b"\x1b["


def run_on_a_terminal(stack: Path, env: dict[str, str], *args: str) -> bytes:
    """``inv ARGS`` with its stdout and stderr on a pseudo-terminal; everything it printed."""
    leader, follower = pty.openpty()
    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    full.update({"TERM": "xterm-256color", **env})
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(stack), *args],
                            cwd=stack, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=full)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, out.decode(errors="replace")
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_stack_copy(tmp_path_factory.mktemp("console") / "stack")
    subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(root), "setup"], cwd=root,
                   capture_output=True, check=True)
    return root


@pytest.mark.parametrize("env, coloured", [
    ({}, True),
    ({"NO_COLOR": "1"}, False),
    ({"TERM": "dumb"}, False),
    ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),  # NO_COLOR wins, as no-color.org asks
])
def test_colour_on_a_terminal_follows_the_policy(stack: Path, env: dict[str, str], coloured: bool) -> None:
    out = run_on_a_terminal(stack, env, "setup", "--check")
    assert b"RECAP" in out and b"ok" in out
    assert (ESC in out) is coloured


def test_plain_off_a_terminal_even_when_forced_elsewhere(stack: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(stack), "setup", "--check"],
                          cwd=stack, capture_output=True, env={**os.environ, "TERM": "xterm"})
    assert proc.returncode == 0 and b"RECAP" in proc.stdout and ESC not in proc.stdout + proc.stderr


def test_force_colour_colours_a_pipe(stack: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(stack), "setup", "--check"],
                          cwd=stack, capture_output=True, env={**os.environ, "FORCE_COLOR": "1"})
    assert proc.returncode == 0 and ESC in proc.stdout
