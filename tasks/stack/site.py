"""Where a stack lives: a context to run commands in, and the stack directory there.

A `Site` is this machine (an Invoke `Context`) or a remote host (a Fabric `Connection`, which
*is* a Context). The lifecycle steps are written once against it: every engine and Compose call
is a shell command through ``c.run`` (the docker CLI and Compose v2, which also handle TLS,
``ssh://`` and Docker contexts themselves), every file is converged through `Site.put`. Only
`put` knows the difference: here the atomic local writes of `engine.files`, on a host the SFTP
sync of `remote.sync`.

Secrets never reach a command line: data for a command goes on its standard input.
"""

from __future__ import annotations

import io
import posixpath
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..engine.layout import STATE_DIR, hand_edit_backup_dir

# Compose reads these from the environment and would then disagree with the recorded set.
COMPOSE_SCRUB = ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_PATH_SEPARATOR")
_ENV_PREFIX = ("env " + " ".join(f"-u {k}" for k in COMPOSE_SCRUB)
               + " DOCKER_CLI_HINTS=false COMPOSE_MENU=false")
LOCAL = "localhost"


def join(argv: Sequence[str]) -> str:
    """An argv as one shell command line, every word quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def quote_path(path: str) -> str:
    """A path for a shell command line; a leading ``~/`` still means the login's home."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


@dataclass
class Site:
    c: Any                    # invoke.Context (this machine) or fabric.Connection (a host)
    root: str                 # the stack directory there, absolute
    name: str = LOCAL         # "localhost", or the inventory host's name
    remote: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # per-site data a step hands on (plan...)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def here(cls, c: Any, stack: Path) -> "Site":
        return cls(c, str(Path(stack).resolve()))

    @classmethod
    def on(cls, conn: Any, host: Any) -> "Site":
        """``host``'s stack directory (``~/x`` resolved against the login's HOME)."""
        path = host.stack_dir
        if path.startswith("~/"):
            home = conn.run('printf %s "$HOME"', hide=True, in_stream=False).stdout.strip()
            path = posixpath.join(home, path[2:])
        return cls(conn, path.rstrip("/") or "/", host.name, True)

    # -- paths ------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @property
    def state_dir(self) -> str:
        return self.path(STATE_DIR)

    # -- commands ---------------------------------------------------------------------------
    def sh(self, command: str, *, stdin: str | bytes | None = None, timeout: float | None = None,
           stream: bool = False, out: Any = None, err: Any = None, pty: bool = False) -> Any:
        """Run ``command`` there (``warn``: the caller reads ``.exited``). Output is captured
        unless ``stream`` (then it goes to the terminal; ``pty``: through a pseudo-terminal, so
        Compose draws its live progress) or writers ``out``/``err`` are given (each chunk is
        written to them as it comes)."""
        kw: dict[str, Any] = {}
        if out is not None or err is not None:
            kw = {"out_stream": out, "err_stream": err}
        else:
            kw = {"hide": not stream, "pty": bool(pty and stream)}
        if stdin is None:
            kw["in_stream"] = False
        else:
            kw["in_stream"] = io.StringIO(stdin) if isinstance(stdin, str) else io.BytesIO(stdin)
        return self.c.run(command, warn=True, timeout=timeout, **kw)

    def docker(self, *argv: str, stdin: str | bytes | None = None, timeout: float | None = None) -> Any:
        return self.sh("docker " + join(argv), stdin=stdin, timeout=timeout)

    def read(self, path: str) -> str | None:
        """A text file's contents there; None when it does not exist."""
        if not self.remote:
            try:
                return Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        result = self.sh(f"cat -- {quote_path(path)}")
        return result.stdout if result.exited == 0 else None

    def compose_runner(self, compose: tuple[str, ...], record: Any, timeout: float | None = None) -> Any:
        from .compose import ComposeRunner

        return ComposeRunner(compose, PurePosixPath(self.root), record,  # type: ignore[arg-type]
                             execute=SiteExecutor(self, timeout))

    # -- files ------------------------------------------------------------------------------
    def put(self, desired: Sequence[Any], reporter: Any, *, check: bool, diff: bool = False) -> int:
        """Converge ``desired`` (`DesiredFile`s) there, one result per file on ``reporter``;
        a hand-edited file is kept in the site's backups first. Returns how many changed."""
        from ..engine.report import Status

        backups = hand_edit_backup_dir(self.root)

        if not self.remote:
            from ..engine.files import converge_files

            return converge_files(desired, reporter, check=check, backup_dir=Path(backups))
        from ..remote.sync import sync_files

        changed = 0
        for result in sync_files(self.c, desired, check=check, diff=diff, host=self.name,
                                 backup_dir=backups):
            reporter.add(result)
            changed += result.status is Status.CHANGED
        return changed

    def where(self) -> str:
        return "this host" if not self.remote else self.name


@dataclass
class SiteExecutor:
    """A `ComposeRunner` executor: the argv runs at the site, in its stack directory, with
    Compose's ``COMPOSE_*`` variables removed (``env -u``) so the recorded file set is the one
    used. Nothing is sent in the environment."""

    site: Site
    timeout: float | None = None  # for calls that give none (``up --wait``)

    def command(self, argv: Sequence[str]) -> str:
        return f"cd -- {quote_path(self.site.root)} && {_ENV_PREFIX} {join(argv)}"

    def __call__(self, argv: Sequence[str], *, stream: bool = False,
                 timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        from invoke.exceptions import CommandTimedOut

        limit = timeout or self.timeout
        try:
            # On a terminal Compose gets one, as it would when run by hand: live progress.
            result = self.site.sh(self.command(argv), stream=stream, timeout=limit,
                                  pty=stream and not self.site.remote)
        except CommandTimedOut:
            raise subprocess.TimeoutExpired(list(argv), limit or 0) from None
        if result.exited == 127 and "not found" in (result.stderr or ""):
            raise FileNotFoundError(argv[0])
        stdout, stderr = ("", "") if stream else (result.stdout, result.stderr)
        return subprocess.CompletedProcess(list(argv), result.exited, stdout, stderr)

