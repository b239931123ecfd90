"""One Fabric `Connection` per host, with host keys verified against known_hosts.

An unknown host key is refused (paramiko's `RejectPolicy`) and reported with the exact command
that accepts it; only ``trust_host_key: true`` in the inventory accepts it instead (in memory,
never written to known_hosts), with a warning. A key that *differs* from the known one is always
refused.

Failures are classified the way Ansible does: a host that cannot be connected to or logged in
to (refused, timeout, DNS, authentication, host key) is ``unreachable``; a command that fails
once connected is ``failed``.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config as FabricConfig
from fabric import Connection
from fabric.runners import Remote
from invoke.exceptions import UnexpectedExit

from ..engine.errors import MmstackError, RemoteError
from ..engine.report import Status
from .inventory import Host

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

# Paramiko logs a failed handshake (a port that does not speak SSH, a banner timeout) with a full
# traceback from its transport thread, through logging's last-resort handler to stderr. The
# failure reaches the caller as an exception too, and is reported there in one line per host.
_PARAMIKO_LOG = logging.getLogger("paramiko")
if not os.environ.get("MMSTACK_DEBUG"):
    _PARAMIKO_LOG.addHandler(logging.NullHandler())
    _PARAMIKO_LOG.propagate = False


class UnreachableError(RemoteError):
    """The host could not be connected to or logged in to."""


class UnknownHostKey(paramiko.SSHException):
    """Raised by `VerifyingPolicy` when the server's key is not in known_hosts."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"host key for {hostname} is not in known_hosts")
        self.hostname = hostname
        self.key = key


class VerifyingPolicy(paramiko.RejectPolicy):
    """`RejectPolicy` that raises a typed exception carrying the offending key."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(hostname, key)


class TrustingPolicy(paramiko.MissingHostKeyPolicy):
    """Accept an unknown key for this connection only, and say so."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.warn(f"{hostname}: trusting unknown host key {key.get_name()} "
                  f"SHA256:{fingerprint(key)} because the inventory sets trust_host_key: true")


class PromptRemote(Remote):
    """Fabric's runner for remote commands, woken by paramiko's exit-status event.

    Invoke's runner polls for the end of a command every ``input_sleep`` (10 ms), which adds
    about that much to every remote command; a deploy runs several per host in sequence.
    """

    def wait(self) -> None:
        event = self.channel.status_event
        while not (self.process_is_finished or self.has_dead_threads):
            event.wait(0.1)  # woken at once on exit; the timeout re-checks for a dead IO thread


def fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_path(host: Host) -> Path:
    return Path(os.path.expanduser(host.known_hosts_file or DEFAULT_KNOWN_HOSTS))


def keyscan_command(host: Host) -> str:
    """The command that accepts ``host``'s key (run it only after checking the fingerprint)."""
    return (f"ssh-keyscan -p {int(host.port)} {shlex.quote(host.address)} >> "
            f"{shlex.quote(str(known_hosts_path(host)))}")


def connection_for(host: Host, config: Any = None, *, warn: Callable[[str], None] | None = None) -> Connection:
    """A not-yet-opened Fabric connection with host key verification set up.

    ``config`` is usually ``c.config`` of the calling task, so Invoke/Fabric settings (run
    echo, timeouts, connect_kwargs) carry over to every host.
    """
    connect_kwargs: dict[str, Any] = {}
    if host.key_file:
        connect_kwargs.update(key_filename=[os.path.expanduser(host.key_file)],
                              look_for_keys=False, allow_agent=False)
    connect_kwargs.update(banner_timeout=host.connect_timeout, auth_timeout=host.connect_timeout)
    # Each host gets its own copy of the settings; remote commands run from worker threads
    # must never read this process's stdin.
    settings = config.clone(into=FabricConfig) if config is not None else FabricConfig()
    settings.run.in_stream = False
    if settings.runners.remote is Remote:  # a caller's own runner class stays
        settings.runners.remote = PromptRemote
    conn = Connection(
        host.address,
        user=host.user,
        port=int(host.port),
        connect_kwargs=connect_kwargs,
        connect_timeout=max(1, int(round(host.connect_timeout))),
        config=settings,
    )
    client = conn.client
    path = known_hosts_path(host)
    if path.exists():
        try:
            # "system" keys are checked but never written back.
            keys = known_host_keys(path)
        except (OSError, paramiko.SSHException) as exc:
            raise RemoteError(f"cannot read known_hosts: {exc}", file=str(path),
                              fix="fix or remove the malformed line") from None
        if isinstance(getattr(client, "_system_host_keys", None), paramiko.HostKeys):
            client._system_host_keys = keys  # read only there: one parse serves every host
        else:
            client.load_system_host_keys(str(path))
    if host.trust_host_key:
        client.set_missing_host_key_policy(TrustingPolicy(warn or _stderr_warn))
    else:
        client.set_missing_host_key_policy(VerifyingPolicy())
    return conn


_KNOWN_HOSTS: dict[tuple[str, int, int], paramiko.HostKeys] = {}
_KNOWN_HOSTS_LOCK = threading.Lock()


def known_host_keys(path: Path) -> paramiko.HostKeys:
    """``path`` parsed, once per run for all hosts (again only when the file changed).

    paramiko parses known_hosts for each client; with many hosts, or a long known_hosts (every
    line a key object), that was per-host work for the same answer. The parsed keys are only
    looked up (`connection_for` hands them to paramiko as its "system" keys, which it never
    writes), so one copy is shared.
    """
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _KNOWN_HOSTS_LOCK:
        keys = _KNOWN_HOSTS.get(key)
        if keys is None:
            keys = paramiko.HostKeys(str(path))
            for stale in [k for k in _KNOWN_HOSTS if k[0] == key[0]]:
                del _KNOWN_HOSTS[stale]
            _KNOWN_HOSTS[key] = keys
        return keys


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class PromptAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (``TCP_QUICKACK`` after each
    read, where the system has it).

    Right after authentication OpenSSH's sshd sends small unsolicited messages (the
    ``hostkeys-00@openssh.com`` request); its answer to our first channel open then waits,
    by Nagle's algorithm on the server, for our ACK of those, which a delayed ACK holds back
    about 40 ms. Acknowledging at once removes that stall from the first command of every
    connection; the server's settings are not ours to change.
    """

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if _QUICKACK is not None and data:
            try:
                self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # Linux resets it: set each time
            except OSError:
                pass
        return data


def tcp_socket(address: str, port: int, timeout: float | None) -> socket.socket:
    """A connected TCP socket with Nagle's algorithm off (``TCP_NODELAY``) that ACKs promptly.

    SSH sends many small packets and waits for the answer (channel open, exec request, SFTP
    requests). With Nagle on, a small packet sent while an earlier one is unacknowledged waits
    for the peer's delayed ACK, about 40 ms on Linux, on nearly every remote command; OpenSSH's
    own client sets ``TCP_NODELAY`` on interactive sessions for the same reason.
    """
    error: OSError | None = None
    for family, kind, proto, _, addr in socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM):
        sock = PromptAckSocket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error or OSError(f"no address found for {address}")


def open_connection(host: Host, config: Any = None, *,
                    warn: Callable[[str], None] | None = None) -> Connection:
    """Connect to ``host``; failures become `UnreachableError` with a fix line.

    The TCP socket is made here (with ``TCP_NODELAY``, see `tcp_socket`) and handed to
    paramiko, so the key exchange and authentication already run without Nagle stalls. A
    gateway (ProxyJump/ProxyCommand from the SSH config) brings its own channel instead.
    """
    conn = connection_for(host, config, warn=warn)
    sock: socket.socket | None = None
    try:
        if not conn.gateway and "sock" not in conn.connect_kwargs:
            sock = tcp_socket(conn.host, int(conn.port), conn.connect_timeout)
            conn.connect_kwargs["sock"] = sock
        conn.open()
    except Exception as exc:  # noqa: BLE001 - classified below
        conn.close()
        if sock is not None:
            sock.close()
        raise unreachable_error(host, exc) from None
    return conn


@contextmanager
def connected(host: Host, config: Any = None, *,
              warn: Callable[[str], None] | None = None) -> Iterator[Connection]:
    conn = open_connection(host, config, warn=warn)
    try:
        yield conn
    finally:
        conn.close()


def unreachable_error(host: Host, exc: BaseException) -> RemoteError:
    """Turn a connect-time exception into a typed error saying what to do."""
    where = f"{host.name} ({host.target})"
    if isinstance(exc, UnknownHostKey):
        return UnreachableError(
            f"{where}: host key {exc.key.get_name()} SHA256:{fingerprint(exc.key)} is unknown; "
            f"refusing to connect", file=str(known_hosts_path(host)),
            fix=f"{keyscan_command(host)}  (after checking the fingerprint)",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return UnreachableError(
            f"{where}: host key CHANGED (got SHA256:{fingerprint(exc.key)}); possible "
            "man-in-the-middle, refusing to connect", file=str(known_hosts_path(host)),
            fix=f"if the host was reinstalled: ssh-keygen -R {shlex.quote(_known_name(host))} "
                f"-f {shlex.quote(str(known_hosts_path(host)))}, then {keyscan_command(host)}",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return UnreachableError(f"{where}: authentication failed: {exc}",
                                fix="check user and key_file in the inventory, and the host's authorized_keys")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return UnreachableError(f"{where}: timed out connecting",
                                fix="check the address and port, and that sshd runs there")
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionError, socket.gaierror, OSError)):
        return UnreachableError(f"{where}: cannot connect: {_reason(exc)}",
                                fix="check the address and port, and that sshd runs there")
    if isinstance(exc, (paramiko.SSHException, EOFError)):
        return UnreachableError(f"{where}: SSH error: {exc}",
                                fix="check that the port speaks SSH and that sshd accepts this client")
    return UnreachableError(f"{where}: {type(exc).__name__}: {exc}")


def classify(exc: BaseException) -> Status:
    """``unreachable`` for connection-level failures, ``failed`` for everything else."""
    if isinstance(exc, UnreachableError):
        return Status.UNREACHABLE
    if isinstance(exc, (UnexpectedExit, MmstackError)):
        return Status.FAILED
    if isinstance(exc, (paramiko.SSHException, EOFError, ConnectionError, socket.timeout, TimeoutError)):
        # The connection dropped mid-way (the host went away): unreachable, as in Ansible.
        return Status.UNREACHABLE
    return Status.FAILED


def describe_failure(exc: BaseException) -> str:
    """One-line (plus fix) message for a per-host failure; never echoes file contents."""
    if isinstance(exc, UnexpectedExit):
        result = exc.result
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        detail = ("; " + " / ".join(tail)) if tail else ""
        return f"command failed (exit {result.exited}): {_short(result.command)}{detail}"
    if isinstance(exc, MmstackError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _short(command: str, limit: int = 160) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _known_name(host: Host) -> str:
    return host.address if int(host.port) == 22 else f"[{host.address}]:{int(host.port)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        if errors:
            return getattr(errors[0], "strerror", None) or str(errors[0])
    return getattr(exc, "strerror", None) or str(exc)


def _stderr_warn(text: str) -> None:
    import sys

    sys.stderr.write(f"warning: {text}\n")
