"""Run Compose v2 against one recorded file set.

Every call passes ``--project-directory <stack>``, ``-p <project>``, the files and the profiles,
so Compose never guesses from the current directory or ``$COMPOSE_*``. No secret is ever put on
a command line: the services read them from their env files. Progress is streamed when stdout is
a terminal; otherwise Compose's output is captured and shown only when it fails.

Where Compose runs is the ``execute`` (an `Executor`): `stack.site.SiteExecutor` runs the argv
at a site, through its Context (here, or on a host over SSH); `Site.compose_runner` builds the
runner. Everything else (argv building, `parse_ps`, error handling) is the same wherever it runs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..engine.errors import DockerError
from .events import Progress, parse_progress, supports_json_progress
from .state import StartRecord


class Executor(Protocol):
    """Runs one Compose argv and returns its exit status and output.

    Must raise `subprocess.TimeoutExpired` when ``timeout`` passes, and `FileNotFoundError`
    when the command itself does not exist.
    """

    def __call__(self, argv: Sequence[str], *, stream: bool = False,
                 timeout: float | None = None) -> subprocess.CompletedProcess[str]: ...


@dataclass
class ComposeRunner:
    compose: tuple[str, ...]
    stack: Path
    record: StartRecord
    execute: Executor  # where the argv runs (`stack.site.SiteExecutor`)

    def argv(self, *args: str, pre: tuple[str, ...] = ()) -> list[str]:
        return [*self.compose, *pre, "--project-directory", str(self.stack), "-p", self.record.project,
                *self.record.compose_args(), *args]

    def run_global(self, pre: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        """Run with global options (``--dry-run``) before the rest; output captured."""
        return self.run(*args, check=False, pre=tuple(pre))

    def version(self) -> str | None:
        """``version --short`` of this Compose (None when it does not answer)."""
        argv = [*self.compose, "version", "--short"]
        try:
            proc = self.execute(argv, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    def dry_run_up(self) -> tuple[subprocess.CompletedProcess[str], Progress]:
        """What `up -d --remove-orphans` would do: Compose's own dry run, its events parsed
        (JSON progress where this Compose has it, its text otherwise)."""
        pre = ["--dry-run"]
        if supports_json_progress(self.version()):
            pre = ["--progress", "json", *pre]
        proc = self.run_global(pre, "up", "-d", "--remove-orphans")
        return proc, parse_progress(f"{proc.stderr or ''}\n{proc.stdout or ''}")

    def run(self, *args: str, stream: bool = False, check: bool = True,
            timeout: float | None = None, pre: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run compose; with ``stream`` its output goes straight to the terminal."""
        argv = self.argv(*args, pre=pre)
        try:
            proc = self.execute(argv, stream=stream, timeout=timeout)
        except FileNotFoundError:
            raise DockerError(f"the Compose command {self.compose[0]!r} disappeared",
                              fix="reinstall Compose v2, or set mmstack.compose_command") from None
        except subprocess.TimeoutExpired:
            raise DockerError(f"`docker compose {args[0]}` did not finish in {timeout:g}s") from None
        if check and proc.returncode != 0:
            raise DockerError(f"`docker compose {' '.join(args)}` failed (exit {proc.returncode})"
                              + _tail(proc.stderr or proc.stdout))
        return proc

    # -- operations -----------------------------------------------------------------------------
    def up(self, wait: bool, timeout: int, stream: bool) -> subprocess.CompletedProcess[str]:
        args = ["up", "-d", "--remove-orphans"]
        if wait:
            args += ["--wait", "--wait-timeout", str(int(timeout))]
        return self.run(*args, stream=stream, check=False)

    def ps(self) -> list[dict[str, Any]]:
        proc = self.run("ps", "--all", "--format", "json")
        return parse_ps(proc.stdout)

    def config_hashes(self) -> dict[str, str]:
        """Service -> the config hash Compose would label a container created now with."""
        proc = self.run("config", "--hash", "*")
        out: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
        return out

    def services(self) -> list[str]:
        return self.run("config", "--services").stdout.split()


def parse_ps(text: str) -> list[dict[str, Any]]:
    """`compose ps --format json`: a JSON array (older v2) or one object per line (newer)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _tail(text: str | None, lines: int = 6) -> str:
    rows = [r for r in (text or "").strip().splitlines() if r.strip()][-lines:]
    return ("\n  " + "\n  ".join(rows)) if rows else ""
