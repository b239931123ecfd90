"""Keep a running PostgreSQL in step with a rotated password.

`rekeying()` gives rotate-secrets (which passes it to `secrets.rotation.rotate_secrets_step`):

* a hook for ``postgres_password``: when the project's postgres container is running (and was
  started for the environment being rotated), ``ALTER ROLE <user> PASSWORD '<new>'`` is run in it
  with ``docker exec``; the SQL goes to psql on **stdin**, so the password is in neither the argv
  nor the environment of the exec (nor on this host's command line). psql connects over the
  container's Unix socket, which the postgres images trust for local connections.
* a running probe: which services of the project are running, so rotate-secrets names only the
  consumers that actually need a restart (`inv restart` or the next `inv start-*` recreates them,
  Compose seeing their env files changed).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ..engine.errors import DockerError
from ..engine.masking import mask_values
from .engine import PROJECT_LABEL, SERVICE_LABEL, EngineAPI

if TYPE_CHECKING:
    from ..secrets.rotation import Rekeying

POSTGRES_SERVICE = "postgres"
POSTGRES_VOLUME = "postgres-data"  # the schema's volume name (label org.mmstack.volume)


def rekeying() -> "Rekeying":
    """What rotate-secrets gets from the lifecycle: the PostgreSQL hook and the running probe."""
    from ..secrets.rotation import Rekeying

    return Rekeying(hooks={"postgres_password": postgres_password_hook}, running=running_services)


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
        # A stopped database keeps its old password in its data volume, and the postgres image
        # applies POSTGRES_PASSWORD only when it creates a new cluster: storing a new value now
        # would lock every service out at the next start. Refuse; nothing is changed.
        data = api.volumes({PROJECT_LABEL: stack.project, "org.mmstack.volume": POSTGRES_VOLUME})
        if data:
            raise DockerError(
                f"the PostgreSQL data volume {data[0]['Name']!r} exists but postgres is not running, "
                "so its password cannot be changed in step with the store",
                fix=f"start the stack (`inv start --env {req.env}`) and rotate again, "
                    "or `inv wipe` first if the data is not needed")
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
        text = mask_values(output.decode("utf-8", "replace"), (req.new, req.old))
        raise DockerError(f"psql in the postgres container exited {code}: {text.strip()[-300:]}",
                          fix="check that postgres is healthy (`inv status`)")
    req.run.reporter.changed(f"{POSTGRES_SERVICE} ({req.env})", "password changed in the running database")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def exec_with_stdin(container: str, cmd: list[str], data: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """`docker exec -i` through the SDK's API: ``data`` goes to the process's stdin."""
    from docker.utils.socket import frames_iter

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
        # The SDK's own demultiplexer (8-byte frame headers: stream, 0, 0, 0, size).
        output = b"".join(data for _stream, data in frames_iter(raw, tty=False))
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if code is not None else -1), output
