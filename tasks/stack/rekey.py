"""Keep a running PostgreSQL in step with a rotated password.

`rekeying()` gives rotate-secrets (which passes it to `secrets.rotation.rotate_secrets_step`):

* a hook for ``postgres_password``: when the project's postgres container is running (and was
  started for the environment being rotated), ``ALTER ROLE <user> PASSWORD '<new>'`` is run in it
  with ``docker exec -i`` through the stack's `Site`; the SQL goes to psql on **stdin**, so the password
  is in neither the argv nor the environment of the exec (nor on this host's command line). psql connects over the
  container's Unix socket, which the postgres images trust for local connections.
* a running probe: which services of the project are running, so rotate-secrets names only the
  consumers that actually need a restart (`inv restart` or the next `inv start-*` recreates them,
  Compose seeing their env files changed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.errors import DockerError
from ..engine.masking import mask_values
from .site import Site

if TYPE_CHECKING:
    from ..secrets.rotation import Rekeying

POSTGRES_SERVICE = "postgres"
POSTGRES_VOLUME = "postgres-data"  # the schema's volume name (label com.docker.compose.volume)


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
    from .resources import containers

    started = _started_env(run)
    try:
        found = containers(Site.here(run.c, run.stack), stack.project)
    except DockerError:
        return None
    if started is not None and started != env:
        return set()
    return {c.service for c in found if c.state == "running"}


def postgres_password_hook(req: Any) -> None:
    """ALTER ROLE in the running database; nothing to do when postgres is not running."""
    from .resources import containers, volumes

    stack = req.stack
    started = _started_env(req.run)
    if started is not None and started != req.env:
        return  # the running database belongs to another environment's secrets
    site = Site.here(req.run.c, req.run.stack)
    try:
        running = [c for c in containers(site, stack.project, POSTGRES_SERVICE) if c.state == "running"]
    except DockerError:
        return  # no engine: nothing can be running
    if not running:
        # A stopped database keeps its old password in its data volume, and the postgres image
        # applies POSTGRES_PASSWORD only when it creates a new cluster: storing a new value now
        # would lock every service out at the next start. Refuse; nothing is changed.
        data = volumes(site, stack.project, POSTGRES_VOLUME)
        if data:
            raise DockerError(
                f"the PostgreSQL data volume {data[0].name!r} exists but postgres is not running, "
                "so its password cannot be changed in step with the store",
                fix=f"start the stack (`inv start --env {req.env}`) and rotate again, "
                    "or `inv wipe` first if the data is not needed")
        return
    from ..secrets.api import load_environment_secrets

    secrets = load_environment_secrets(req.run, stack, req.env)
    user = secrets.get("postgres_user") or "postgres"
    sql = f"ALTER ROLE {quote_ident(user)} PASSWORD {quote_literal(req.new)};\n"
    # The SQL (and with it the password) goes on psql's standard input, never on a command line.
    result = site.docker("exec", "-i", running[0].id,
                         "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres",
                         stdin=sql, timeout=60)
    if result.exited != 0:
        text = mask_values((result.stdout or "") + (result.stderr or ""), (req.new, req.old))
        raise DockerError(f"psql in the postgres container exited {result.exited}: {text.strip()[-300:]}",
                          fix="check that postgres is healthy (`inv status`)")
    req.run.reporter.changed(f"{POSTGRES_SERVICE} ({req.env})", "password changed in the running database")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
