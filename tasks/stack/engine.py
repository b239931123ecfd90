"""Talking to the Docker engine.

Two clients, for two kinds of task:

* `EngineAPI`: a few read-only calls (ping, info, list containers by label) over the engine's
  Unix socket (or plain tcp://) with nothing but the standard library. `inv start-*` and
  `inv status` use it: the docker SDK alone takes longer to import than an `up` of an
  already-running stack. Where that cannot reach the engine (a TLS or ssh:// ``DOCKER_HOST``,
  a Docker context other than the default), the same calls go through the docker SDK.
* `sdk_client()`: the docker Python SDK (imported only here, inside the function) for tasks that
  change resources: wipe, backup, restore, re-keying.

Both raise a `DockerError` that says the engine is unreachable and how to fix it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlparse

from ..engine.errors import DockerError

DEFAULT_SOCKET = "/var/run/docker.sock"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
HASH_LABEL = "com.docker.compose.config-hash"
ONEOFF_LABEL = "com.docker.compose.oneoff"
VOLUME_LABEL = "com.docker.compose.volume"
NETWORK_LABEL = "com.docker.compose.network"
UNREACHABLE_FIX = ("start the Docker engine (`sudo systemctl start docker`, or `dockerd &`), "
                   "check $DOCKER_HOST, and make sure your user may use the socket (group docker)")


def unreachable(detail: str) -> DockerError:
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return DockerError(f"the Docker engine is not reachable at {host}: {detail}", fix=UNREACHABLE_FIX)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def current_context() -> str | None:
    """The Docker CLI's current context when it is not the default one (``$DOCKER_CONTEXT``,
    else ``currentContext`` in the CLI's config.json); ``$DOCKER_HOST`` overrides any context."""
    if os.environ.get("DOCKER_HOST"):
        return None
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        config = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"),
                              "config.json")
        try:
            with open(config, encoding="utf-8") as f:
                name = (json.load(f) or {}).get("currentContext")
        except (OSError, ValueError, AttributeError):
            name = None
    return name if name and name != "default" else None


class EngineAPI:
    """Minimal read-only Docker Engine API client: the standard library over a Unix socket or
    plain tcp://, the docker SDK for every other way of reaching an engine."""

    def __init__(self, host: str | None = None, timeout: float = 30.0) -> None:
        context = None if host else current_context()
        host = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        self.host = host
        self.timeout = timeout
        self._sdk: Any = None
        url = urlparse(host)
        if context is not None:
            self.host = _context_endpoint(context)[0]
            self._sdk = sdk_client(int(timeout)).api
        elif url.scheme == "unix":
            self._factory = lambda: _UnixConnection(url.path, timeout)
        elif url.scheme in ("tcp", "http") and not os.environ.get("DOCKER_TLS_VERIFY"):
            self._factory = lambda: http.client.HTTPConnection(url.hostname or "localhost",
                                                               url.port or 2375, timeout=timeout)
        else:
            self._sdk = sdk_client(int(timeout)).api
        self._conn: http.client.HTTPConnection | None = None

    def _request(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` on the kept-alive connection, reconnecting once if the engine closed it."""
        if self._sdk is not None:
            try:
                resp = self._sdk.get(self._sdk.base_url + path, timeout=self.timeout)
            except Exception as exc:  # requests' and paramiko's connection errors
                raise unreachable(_short(exc)) from None
            return resp.status_code, resp.content
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._factory()
            try:
                self._conn.request("GET", path, headers={"Host": "docker"})
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException) as exc:
                self._conn.close()
                self._conn = None
                if attempt == 2 or isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                    raise unreachable(str(exc) or type(exc).__name__) from None
            except OSError as exc:
                self._conn.close()
                self._conn = None
                raise unreachable(exc.strerror or str(exc)) from None
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        status, body = self._request(path)
        if status >= 400:
            try:
                message = json.loads(body).get("message", "")
            except ValueError:
                message = body.decode("utf-8", "replace")[:200]
            raise DockerError(f"Docker engine error {status} on {path.split('?')[0]}: {message}")
        return json.loads(body) if body else None

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- calls ----------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self.get("/version")

    def info(self) -> dict[str, Any]:
        return self.get("/info")

    def containers(self, labels: dict[str, str] | None = None, all: bool = True) -> list[dict[str, Any]]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]}
        query = f"?all={1 if all else 0}&filters={quote(json.dumps(filters))}"
        return self.get(f"/containers/json{query}")

    def volumes(self, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]}
        return (self.get(f"/volumes?filters={quote(json.dumps(filters))}") or {}).get("Volumes") or []

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        """The project's service containers (one-off `run` containers left out)."""
        return [c for c in self.containers({PROJECT_LABEL: project})
                if c.get("Labels", {}).get(ONEOFF_LABEL, "False") != "True"]

    def logs(self, container_id: str, tail: int = 20) -> str:
        """The last ``tail`` lines of a container's stdout and stderr (non-tty containers)."""
        status, body = self._request(f"/containers/{quote(container_id)}/logs?stdout=1&stderr=1&tail={int(tail)}")
        return "" if status >= 400 else demux(body).decode("utf-8", "replace")

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self.get(f"/containers/{quote(container_id)}/json")


def sdk_client(timeout: int = 120) -> Any:
    """A docker SDK client for the engine the Docker CLI would use (``$DOCKER_HOST``, TLS and
    ssh:// included, else the current context), checked with a ping."""
    import docker
    from docker.errors import DockerException

    context = current_context()
    try:
        if context is not None:
            endpoint, tls = _context_endpoint(context)
            client = docker.DockerClient(base_url=endpoint, tls=tls, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise unreachable(_short(exc)) from None
    except Exception as exc:  # requests' connection errors
        raise unreachable(_short(exc)) from None
    return client


def _context_endpoint(name: str) -> tuple[str, Any]:
    """The named Docker context's engine address and TLS settings (the CLI's own store)."""
    from docker.context import ContextAPI
    from docker.errors import DockerException

    try:
        context = ContextAPI.get_context(name)
    except DockerException as exc:
        raise DockerError(f"Docker context {name!r} cannot be read: {_short(exc)}",
                          fix="`docker context ls`; set DOCKER_CONTEXT or DOCKER_HOST") from None
    if context is None:
        raise DockerError(f"Docker context {name!r} does not exist",
                          fix="`docker context ls`; `docker context use default`, or set DOCKER_HOST")
    return context.Host or f"unix://{DEFAULT_SOCKET}", context.TLSConfig


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


def demux(buf: bytes) -> bytes:
    """Docker's multiplexed stream (8-byte frame headers) to plain bytes; tty output as is."""
    if len(buf) < 8 or buf[0] not in (0, 1, 2) or buf[1:4] != b"\0\0\0":
        return buf
    out = bytearray()
    while len(buf) >= 8:
        size = int.from_bytes(buf[4:8], "big")
        out += buf[8:8 + size]
        buf = buf[8 + size:]
    return bytes(out)
