"""Keep a running PostgreSQL in step with a rotated password.

`install()` registers, in `tasks.secrets.api`:

* ``REKEY_HOOKS["postgres_password"]``: when the project's postgres container is running (and was
  started for the environment being rotated), ``ALTER ROLE <user> PASSWORD '<new>'`` is run in it
  with ``docker exec``; the SQL goes to psql on **stdin**, so the password is in neither the argv
  nor the environment of the exec (nor on this host's command line). psql connects over the
  container's Unix socket, which the postgres images trust for local connections.
* ``RUNNING_PROBE``: which services of the project are running, so rotate-secrets names only the
  consumers that actually need a restart (`inv restart` or the next `inv start-*` recreates them,
  Compose seeing their env files changed).

Registration is lazy: `install_when_imported()` (called by the stack collection at load time)
costs nothing until `tasks.secrets.api` is imported by a task.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import socket
import struct
import sys
from typing import Any

from ..engine.errors import DockerError
from .engine import PROJECT_LABEL, SERVICE_LABEL, EngineAPI

POSTGRES_SERVICE = "postgres"


def _api_module_name() -> str:
    return __name__.rsplit(".", 2)[0] + ".secrets.api"


def install(api: Any | None = None) -> None:
    if api is None:
        api = importlib.import_module(_api_module_name())
    api.REKEY_HOOKS.setdefault("postgres_password", postgres_password_hook)
    if getattr(api, "RUNNING_PROBE", None) is None:
        api.RUNNING_PROBE = running_services


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `install` right after ``tasks.secrets.api`` has been executed."""

    def __init__(self, target: str) -> None:
        self.target = target

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.target:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        original = loader.exec_module  # type: ignore[union-attr]

        def exec_module(module: Any) -> None:
            original(module)
            install(module)

        loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
        return spec


def install_when_imported() -> None:
    target = _api_module_name()
    if target in sys.modules:
        install(sys.modules[target])
        return
    if not any(isinstance(f, _AfterImport) and f.target == target for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(target))


# ----------------------------------------------------------------------------------------------

def _started_env(run: Any) -> str | None:
    from .state import load_record

    try:
        record = load_record(run.state_dir)
    except Exception:  # noqa: BLE001
        return None
    return record.env if record else None


def running_services(run: Any, stack: Any, env: str) -> set[str] | None:
    """Services of the project running for ``env``; None when that cannot be known."""
    started = _started_env(run)
    try:
        containers = EngineAPI(timeout=10).project_containers(stack.project)
    except DockerError:
        return None
    if started is not None and started != env:
        return set()
    return {c["Labels"].get(SERVICE_LABEL, "") for c in containers if c.get("State") == "running"}


def postgres_password_hook(req: Any) -> None:
    """ALTER ROLE in the running database; nothing to do when postgres is not running."""
    stack = req.stack
    started = _started_env(req.run)
    if started is not None and started != req.env:
        return  # the running database belongs to another environment's secrets
    api = EngineAPI(timeout=30)
    try:
        containers = api.containers({PROJECT_LABEL: stack.project, SERVICE_LABEL: POSTGRES_SERVICE}, all=False)
    except DockerError:
        return  # no engine: nothing can be running
    if not containers:
        return
    from ..secrets.api import load_environment_secrets

    secrets = load_environment_secrets(req.run, stack, req.env)
    user = secrets.get("postgres_user") or "postgres"
    sql = f"ALTER ROLE {quote_ident(user)} PASSWORD {quote_literal(req.new)};\n"
    code, output = exec_with_stdin(
        containers[0]["Id"],
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres"],
        sql.encode(),
    )
    if code != 0:
        text = output.decode("utf-8", "replace")
        for secret in (req.new, req.old):
            text = text.replace(secret, "********")
        raise DockerError(f"psql in the postgres container exited {code}: {text.strip()[-300:]}",
                          fix="check that postgres is healthy (`inv status`)")
    req.run.reporter.changed(f"{POSTGRES_SERVICE} ({req.env})", "password changed in the running database")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def exec_with_stdin(container: str, cmd: list[str], data: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """`docker exec -i` through the SDK's API: ``data`` goes to the process's stdin."""
    from .engine import sdk_client

    client = sdk_client()
    api = client.api
    exec_id = api.exec_create(container, cmd, stdin=True, stdout=True, stderr=True, tty=False)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(timeout)
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
        output = _read_frames(raw)
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if code is not None else -1), output


def _read_frames(raw: Any) -> bytes:
    """Demultiplex the exec stream (8-byte headers: stream, 0, 0, 0, size)."""
    buf = b""
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        buf += chunk
    out = b""
    while len(buf) >= 8:
        size = struct.unpack(">I", buf[4:8])[0]
        out += buf[8:8 + size]
        buf = buf[8 + size:]
    return out
