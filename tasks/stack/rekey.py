"""Keep every running PostgreSQL in step with a rotated password: this host and the hosts.

`rekeying(places)` gives rotate-secrets (which passes it to `secrets.rotation.rotate_secrets_step`):

* a hook for ``postgres_password``, run before the new value is stored. The stored secrets of an
  environment are shared by every site that runs it (this host, and each inventory host `inv
  deploy` gave that environment), so the password changes at all of them, in two phases:

  1. **check** every site (``places``: `stack.targets.Here`, and `remote.hosttargets.Hosts` for the
     hosts): its start record says which environment runs there; one running the rotated one
     needs ``ALTER ROLE``; one whose PostgreSQL is stopped while its data volume exists is refused
     (the image applies ``POSTGRES_PASSWORD`` only to a new cluster, so storing the value would
     lock its services out); a host that cannot be reached, or whose engine does not answer, is
     refused too. One refusal anywhere stops the rotation before any database changes.
  2. **change** the password at every site that needs it, this host first, each host under its
     stack lock. If one fails, the sites already changed are changed back, and nothing is stored.

  ``ALTER ROLE`` runs in the container with ``docker exec -i`` through the site's `Site`; the
  SQL goes to psql on **stdin**, so the password is in neither the argv nor the environment of
  the exec, nor on any command line. psql connects over the container's Unix socket, which the
  postgres images trust for local connections.
* a running probe: which services of the project run here, so rotate-secrets names only the
  consumers that actually need a restart (`inv restart` or the next `inv start-*` recreates them,
  Compose seeing their env files changed). Hosts get theirs with the next `inv deploy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..engine.errors import DockerError
from ..engine.masking import mask_values
from .site import Site

if TYPE_CHECKING:
    from ..secrets.rotation import Rekeying, RekeyRequest

POSTGRES_SERVICE = "postgres"
POSTGRES_VOLUME = "postgres-data"  # the schema's volume name (label com.docker.compose.volume)


def rekeying(places: Sequence[Any] | None = None) -> "Rekeying":
    """What rotate-secrets gets from the lifecycle: the PostgreSQL hook over ``places`` (default:
    this host only), the running probe, and, with hosts among the places, which of them run an
    environment (the inventory says so, or the hook found its start record there)."""
    from ..secrets.rotation import Rekeying

    places = list(places or ())
    hook = PostgresPassword(places)
    hosts = [h for place in places if not place.local for h in place.selected]

    def hosts_of(env: str) -> list[str]:
        found = set(hook.deployed.get(env, ()))
        return [h.name for h in hosts if h.environment == env or h.name in found]

    return Rekeying(hooks={"postgres_password": hook}, running=running_services,
                    hosts=hosts_of if hosts else None)


# ----------------------------------------------------------------------------------------------

def running_services(run: Any, stack: Any, env: str) -> set[str] | None:
    """Services of the project running here for ``env``; None when that cannot be known."""
    from ..engine.errors import ConfigError
    from .resources import containers
    from .state import read_record

    site = Site.here(run.c, run.stack)
    try:
        record = read_record(site)
    except ConfigError:   # an unreadable record: which environment runs is not known
        record = None
    try:
        found = containers(site, stack.project)
    except DockerError:
        return None
    if record is not None and record.env != env:
        return set()
    return {c.service for c in found if c.state == "running"}


def item(env: str) -> str:
    return f"{POSTGRES_SERVICE} ({env})"


def database_at(site: Site, project: str, env: str) -> tuple[str | None, str, bool]:
    """(the id of the running postgres container to re-key at ``site``, or None with why there is
    nothing to do, and whether ``env`` runs there); raises `DockerError` where the password
    cannot be changed in step."""
    from .resources import containers, volumes
    from .state import read_record

    record = read_record(site)
    if record is None:
        return None, "nothing was started here" if not site.remote else "nothing deployed on this host", False
    if record.env != env:
        return None, f"runs environment {record.env}, whose secrets are its own", False
    try:
        running = [c for c in containers(site, project, POSTGRES_SERVICE) if c.state == "running"]
        data = [] if running else volumes(site, project, POSTGRES_VOLUME)
    except DockerError as exc:
        raise DockerError(f"cannot tell whether PostgreSQL runs on {site.where()}: {exc.message}",
                          fix=_fix(site, env, stopped=False)) from None
    if running:
        return running[0].id, "", True
    if data:
        raise DockerError(
            f"the PostgreSQL data volume {data[0].name!r} on {site.where()} exists but postgres is "
            "not running, so its password cannot be changed in step with the store",
            fix=_fix(site, env, stopped=True))
    return None, "postgres is not running and has no data volume", True


def _fix(site: Site, env: str, *, stopped: bool) -> str:
    if not site.remote:
        if stopped:
            return (f"start the stack (`inv start --env {env}`) and rotate again, "
                    "or `inv wipe` first if the data is not needed")
        return "start the Docker engine and rotate again"
    first = "start the stack there (`inv deploy --hosts {0}`)" if stopped else "start the Docker engine on {0}"
    return (first.format(site.name) + f" and rotate again, or leave it out with --limit '!{site.name}' "
            "(its database then keeps the old password: wipe it there, or change it by hand)")


def alter_password(site: Site, container: str, user: str, new: str, old: str) -> None:
    """``ALTER ROLE`` in the running database; the SQL on psql's stdin, never on a command line."""
    sql = f"ALTER ROLE {quote_ident(user)} PASSWORD {quote_literal(new)};\n"
    result = site.docker("exec", "-i", container,
                         "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres",
                         stdin=sql, timeout=60)
    if result.exited != 0:
        # psql may echo the statement (``LINE 1: ALTER ROLE ...``): the quoted forms are masked too.
        values = (new, old, new.replace("'", "''"), old.replace("'", "''"))
        text = mask_values((result.stdout or "") + (result.stderr or ""), values)
        raise DockerError(f"psql in the postgres container on {site.where()} exited {result.exited}: "
                          f"{text.strip()[-300:]}",
                          fix="check that postgres is healthy (`inv status"
                              + (f" --hosts {site.name}`)" if site.remote else "`)"))


class PostgresPassword:
    """The ``postgres_password`` hook over the places an environment may run (see the module).

    ``places``: `Here` and, with hosts, `Hosts`; each offers ``each(job, title=, lock=, only=)``
    returning the names of the sites where the job failed (here a failure raises instead)."""

    def __init__(self, places: list[Any]) -> None:
        self.places = places
        self.deployed: dict[str, list[str]] = {}  # env -> the hosts found running it

    def __call__(self, req: "RekeyRequest") -> None:
        from ..secrets.api import load_environment_secrets

        run, env = req.run, req.env
        places = self.places or [_here(run)]
        todo = [(place, self._check(place, run, req.stack.project, env)) for place in places]
        todo = [(place, names) for place, names in todo if names]
        if run.check or not todo:
            return
        user = load_environment_secrets(run, req.stack, env).get("postgres_user") or "postgres"
        forward = self._change(req.stack.project, env, user, req.new, req.old,
                               "password changed in the running database")
        done: list[tuple[Any, list[str]]] = []
        for place, names in todo:
            try:
                failed = place.each(forward, title=f"re-key {item(env)}", lock=True, only=names)
            except Exception as exc:  # noqa: BLE001 - this host (the first place) failed
                if not done:
                    raise
                failed, error = names, exc
            else:
                error = None
            if [n for n in names if n not in failed]:
                done.append((place, [n for n in names if n not in failed]))
            if not failed:
                continue
            back = self._change(req.stack.project, env, user, req.old, req.new, "password changed back")
            undo_failed = _undo(done, back, env)
            why = f" ({getattr(error, 'message', type(error).__name__)})" if error is not None else " (see above)"
            extra = (f"; changing it back failed on {_sites(undo_failed)}: those databases now take "
                     "the NEW password, which was NOT stored") if undo_failed else ""
            raise DockerError(f"changing the PostgreSQL password failed on {_sites(failed)}{why}; "
                              f"the databases already changed were changed back{extra}",
                              fix="see the failures above, then rotate again")

    def _check(self, place: Any, run: Any, project: str, env: str) -> list[str]:
        """Phase 1 at every site of ``place``: the names that need ALTER ROLE; raises when any
        site refuses (nothing has changed anywhere yet)."""
        needs: list[str] = []

        def look(site: Site, rep: Any) -> None:
            container, why, runs = database_at(site, project, env)
            if runs and site.remote:
                self.deployed.setdefault(env, []).append(site.name)
            if container is None:
                rep.ok(item(env), why)
                return
            needs.append(site.name)
            if run.check:
                rep.changed(item(env), "would change the password in the running database")

        failed = place.each(look, title=f"check {item(env)}", lock=False)
        if failed:
            raise DockerError(f"PostgreSQL could not be checked on {_sites(failed)} (see above); "
                              "no database was changed",
                              fix="bring those hosts back, or leave them out with --limit '!HOST' "
                                  "(their databases then keep the old password)")
        return needs

    @staticmethod
    def _change(project: str, env: str, user: str, new: str, old: str, message: str) -> Any:
        def job(site: Site, rep: Any) -> None:
            container, why, _ = database_at(site, project, env)
            if container is None:
                raise DockerError(f"postgres stopped on {site.where()} while rotating ({why})",
                                  fix="start it and rotate again")
            alter_password(site, container, user, new, old)
            rep.changed(item(env), message)
        return job


def _undo(done: list[tuple[Any, list[str]]], job: Any, env: str) -> list[str]:
    failed: list[str] = []
    for place, names in reversed(done):
        try:
            failed += place.each(job, title=f"undo re-key {item(env)}", lock=True, only=names)
        except Exception:  # noqa: BLE001 - report, keep undoing the rest
            failed += names
    return failed


def _sites(names: list[str]) -> str:
    from .site import LOCAL

    return ", ".join("this host" if n == LOCAL else n for n in names)


def _here(run: Any) -> Any:
    from .targets import Here

    return Here(run)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
