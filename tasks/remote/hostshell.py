"""One SSH channel, one POSIX shell on the host, many commands: what a deploy asks a host,
asked without a channel per command.

    with HostShell.open(conn, lock_dir="/srv/stack", lock_timeout=10) as shell:   # lock held
        home = shell.run('printf %s "$HOME"').stdout
        facts = shell.run("stat ...", warn=True)

Every ``c.run`` opens an SSH channel, and on the host that is a session process and a login
shell for each command. Here the channel runs one ``sh -s`` (under ``flock`` on the host's
``.mmstack/lock`` when ``lock_dir`` is given: the same lock as `lock.host_lock` and as local
runs on the host), and each command is written to its standard input as one request:

    (eval 'COMMAND') </dev/null; printf '\\n%s %s\\n' MARK "$?"; printf '\\n%s\\n' MARK >&2

run in a subshell (its ``exit``, ``cd`` or a syntax error stay inside it) with stdin from
/dev/null (it never reads the next requests), then a marker with a per-session random nonce and
the exit status on stdout, and one on stderr, so the client knows where each reply ends
(`split_replies`, pure). Requests can be sent ahead (`send`) and their replies collected in
order (`result`): a host answers several questions in one round trip.

The shell lives exactly as long as the channel: closing its stdin (the end of the block) ends
``sh``, and with it ``flock``; a dropped connection closes the channel on the host, which ends
them too. So the lock is released however the client goes away.

Only command text travels this way, exactly what ``c.run`` would have put on a command line
(no file content, no secret: files go over SFTP, `sftp` and `get` hand that on to the
connection). `run` answers like ``c.run``: an invoke `Result`, `UnexpectedExit` unless ``warn``.
"""

from __future__ import annotations

import posixpath
import re
import secrets as _random
import select
import shlex
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..engine.errors import LockError, RemoteError
from ..engine.layout import LOCK_FILE, STATE_DIR

MARK_PREFIX = "@@mmstack-sh-"
_CHUNK = 65536


@dataclass(frozen=True)
class Reply:
    """One command's answer, split from the shell's streams."""

    exited: int
    stdout: str
    stderr: str


def marker(nonce: str) -> str:
    return f"{MARK_PREFIX}{nonce}@@"


def request(command: str, nonce: str) -> str:
    """The line sent to the shell for ``command`` (see the module docstring)."""
    mark = marker(nonce)
    return (f"(eval {shlex.quote(command)}) </dev/null; "
            f"printf '\\n%s %s\\n' {mark} \"$?\"; printf '\\n%s\\n' {mark} >&2\n")


def split_replies(stdout: bytes, stderr: bytes, nonce: str) -> tuple[list[Reply], bytes, bytes]:
    """Pure: the complete replies at the start of the two streams, in order, and what is left
    of each (a reply still arriving). A reply is complete once both of its markers are in."""
    mark = marker(nonce).encode()
    out_end = re.compile(b"\n" + re.escape(mark) + b" (\\d+)\n")
    err_end = b"\n" + mark + b"\n"
    replies: list[Reply] = []
    while True:
        m = out_end.search(stdout)
        e = stderr.find(err_end)
        if m is None or e < 0:
            return replies, stdout, stderr
        replies.append(Reply(int(m.group(1)), stdout[:m.start()].decode("utf-8", "replace"),
                             stderr[:e].decode("utf-8", "replace")))
        stdout, stderr = stdout[m.end():], stderr[e + len(err_end):]


def shell_command(lock_dir: str | None, lock_timeout: float) -> str:
    """What the channel execs: the lock (when ``lock_dir``), then the shell reading stdin."""
    if lock_dir is None:
        return "exec sh -s"
    from .lock import locked_command

    return locked_command(lock_dir, lock_timeout, "sh -s")


class ShellEnded(RemoteError):
    """The host's shell ended before answering (the lock was busy, the connection dropped)."""


class HostShell:
    """A shell on the host behind one open SSH channel; use `HostShell.open`."""

    def __init__(self, conn: Any, channel: Any, nonce: str, *, lock_dir: str | None = None,
                 lock_timeout: float = 10.0) -> None:
        self.conn = conn
        self.channel = channel
        self.nonce = nonce
        self.lock_dir = lock_dir
        self.lock_timeout = lock_timeout
        self._out = b""
        self._err = b""
        self._pending: deque[tuple[int, str]] = deque()   # (ticket, command) sent, not answered
        self._done: dict[int, tuple[str, Reply]] = {}
        self._next = 0
        self._answered = 0  # replies read so far: the first one means the lock is held

    # -- lifetime ---------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def open(cls, conn: Any, *, lock_dir: str | None = None, lock_timeout: float = 10.0) -> Iterator["HostShell"]:
        """The shell for the block (``conn``: an open Fabric connection). With ``lock_dir``
        (a stack directory), it runs under that stack's lock, taken within ``lock_timeout``
        seconds (`LockError` otherwise) once the first reply is read."""
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError("the connection is not open", fix="connect first")
        channel = transport.open_session()
        shell = cls(conn, channel, _random.token_hex(8), lock_dir=lock_dir, lock_timeout=lock_timeout)
        try:
            channel.exec_command(shell_command(lock_dir, lock_timeout))
            yield shell
        finally:
            shell.close()

    def close(self) -> None:
        """End the shell (EOF on its stdin) and wait a moment for it, so the lock is free when
        this returns; the channel is closed in any case."""
        channel = self.channel
        try:
            if not channel.closed:
                channel.shutdown_write()
                channel.status_event.wait(5)
        except Exception:  # noqa: BLE001 - the connection may be gone already; nothing to release
            pass
        finally:
            channel.close()

    # -- commands ---------------------------------------------------------------------------
    def send(self, command: str) -> int:
        """Send ``command`` now, answer later (`result`); returns its ticket."""
        ticket = self._next
        self._next += 1
        self.channel.sendall(request(command, self.nonce).encode())
        self._pending.append((ticket, command))
        return ticket

    def result(self, ticket: int, *, warn: bool = False, timeout: float | None = None) -> Any:
        """The answer to ``ticket`` as an invoke `Result` (`UnexpectedExit` unless ``warn``)."""
        from invoke.exceptions import UnexpectedExit
        from invoke.runners import Result

        while ticket not in self._done:
            self._read_reply(timeout)
        command, reply = self._done.pop(ticket)
        result = Result(stdout=reply.stdout, stderr=reply.stderr, command=command, exited=reply.exited,
                        hide=("stdout", "stderr"))
        if reply.exited != 0 and not warn:
            raise UnexpectedExit(result)
        return result

    def run(self, command: str, *, warn: bool = False, timeout: float | None = None, **_: Any) -> Any:
        """Like ``c.run(command, hide=True, in_stream=False)`` (those options are implied)."""
        return self.result(self.send(command), warn=warn, timeout=timeout)

    def sftp(self) -> Any:
        return self.conn.sftp()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.conn.get(*args, **kwargs)

    # -- reading ----------------------------------------------------------------------------
    def _read_reply(self, timeout: float | None) -> None:
        if not self._pending:
            raise RemoteError("no command is waiting for an answer")
        if self._answered == 0 and self.lock_dir is not None:
            # The first reply comes only once flock has the lock: wait as long as it may.
            timeout = self.lock_timeout + 30 if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            replies, self._out, self._err = split_replies(self._out, self._err, self.nonce)
            for reply in replies:
                ticket, command = self._pending.popleft()
                self._done[ticket] = (command, reply)
                self._answered += 1
            if replies:
                return
            if not self._receive(deadline):
                self._ended()

    def _receive(self, deadline: float | None) -> bool:
        """Read what has arrived on either stream, waiting for some; False once both ended."""
        channel = self.channel
        while True:
            got = False
            if channel.recv_ready():
                self._out += channel.recv(_CHUNK)
                got = True
            if channel.recv_stderr_ready():
                self._err += channel.recv_stderr(_CHUNK)
                got = True
            if got:
                return True
            if channel.eof_received or channel.closed:
                return False
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                raise RemoteError("no answer from the host's shell in time",
                                  fix="check the host's load and the connection")
            select.select([channel], [], [], min(wait, 1.0))

    def _ended(self) -> None:
        channel = self.channel
        code = channel.recv_exit_status() if channel.status_event.wait(5) else -1
        detail = self._err.decode("utf-8", "replace").strip()[-300:]
        if self.lock_dir is not None and self._answered == 0:
            where = posixpath.join(self.lock_dir, STATE_DIR, LOCK_FILE)
            from .lock import BUSY

            if code == BUSY:
                raise LockError(f"another mmstack run on this host has held its lock for {self.lock_timeout:g}s",
                                file=where, fix="wait for it to finish (a deploy, or mmstack on the host)")
            raise ShellEnded(f"cannot take the host's stack lock (exit {code}){': ' + detail if detail else ''}",
                             file=where, fix="the host needs flock (util-linux) and a writable stack directory")
        raise ShellEnded(f"the host's shell ended before answering (exit {code})"
                         f"{': ' + detail if detail else ''}",
                         fix="check the connection and that the host has a POSIX sh")
