"""Running the stack: `start-*`, `status`, `stop`, `logs`, `restart`, `wipe`, `backup`,
`restore`, `reset`.

Thin tasks over the steps in `stack.start`, `stack.control` and `stack.maintenance`. Every
lifecycle task but `reset` also works on inventory hosts (``--hosts PATTERN``): the task hands
its step the targets (`remote.hosttargets.targets_for`: this host, or the selected hosts), and the
same step runs there over SSH, with the host's lock where it changes anything, and a per-host
recap. Nothing heavy is imported at load time, so `inv --list` stays fast.
"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Context, Exit, task

from ..engine.run import Run, boundary, resolve
from ..engine.settings import defaults_for
from ..remote.selection import HOST_HELP, wants_hosts

START_HELP = {
    "profile": "also start this stack or environment profile (repeatable)",
    "no_wait": "do not wait for the services to become healthy",
    "timeout": "seconds to wait for health (default mmstack.stack.wait_timeout)",
    "check": "change nothing; list what would be created or recreated",
    "json": "print the results as JSON",
    "no_verify": "do not run `inv verify` once the stack is up (default mmstack.verify.after_start)",
    **{k: v + ("; the same as `inv deploy --env` of this environment to those hosts" if k == "hosts" else "")
       for k, v in HOST_HELP.items()},
}


def _start(c: Context, env: str, profile: list[str] | None, no_wait: bool, timeout: int | None,
           check: bool, json: bool, no_verify: bool = False, hosts: str | None = None,
           limit: str | None = None, inventory: str | None = None, forks: int | None = None) -> None:
    from ..stack.common import load_stack_cached
    from ..stack.start import start_step

    if wants_hosts(hosts, limit, inventory):
        # On hosts a start is a deploy of this environment: the files go first (the hosts'
        # own GPU plans), then the same start step, then verify; one code path.
        from .remote import deploy

        if profile or no_wait:
            raise Exit("error: --profile and --no-wait work on this host only; with --hosts the "
                       "environment is deployed as `inv deploy --env` does (drop them)", code=1)
        deploy(c, hosts=hosts, env=env, limit=limit, inventory=inventory, forks=forks, check=check,
               timeout=timeout, json=json, no_verify=no_verify)
        return
    run = Run.start(c, check=check, json=json)
    wait_timeout = int(resolve(timeout, c, "stack.wait_timeout"))
    verify_after = not no_verify and bool(resolve(None, c, "verify.after_start"))
    load_stack_cached(run)  # bad input is refused before the lock exists (a hit for start_step)
    with run.locked():
        start_step(run, env, tuple(profile or ()), wait=not no_wait, timeout=wait_timeout)
    # A stack that did not come up healthy has nothing to verify yet; check mode started nothing.
    if verify_after and not check and not no_wait and not run.reporter.failed_any:
        from ..verify.steps import verify_step

        verify_step(run, env)
    run.finish()


@task(iterable=["profile"], help={"env": "environment to start (default mmstack.environment)", **START_HELP})
@boundary
def start(c: Context, env: str | None = None, profile: list[str] | None = None, no_wait: bool = False,
          timeout: int | None = None, check: bool = False, json: bool = False,
          no_verify: bool = False, hosts: str | None = None, limit: str | None = None,
          inventory: str | None = None, forks: int | None = None) -> None:
    """Start an environment with Compose v2, wait until every service is healthy, then verify it
    (with --hosts: deploy it to those hosts)."""
    env = resolve(env, c, "environment")
    if not env:
        raise Exit("error: say which environment: --env NAME (or use start-dev, start-prod, ...)", code=1)
    _start(c, env, profile, no_wait, timeout, check, json, no_verify, hosts, limit, inventory, forks)


def _env_task(env: str, doc: str):  # type: ignore[no-untyped-def]
    def start_env(c: Context, profile: list[str] | None = None, no_wait: bool = False,
                  timeout: int | None = None, check: bool = False, json: bool = False,
                  no_verify: bool = False, hosts: str | None = None, limit: str | None = None,
                  inventory: str | None = None, forks: int | None = None) -> None:
        _start(c, env, profile, no_wait, timeout, check, json, no_verify, hosts, limit, inventory, forks)

    start_env.__doc__ = doc
    return task(iterable=["profile"], help=START_HELP)(boundary(start_env))


start_dev = _env_task("development", "Start the development environment (15 services, no GPU).")
start_staging = _env_task("staging", "Start the staging environment.")
start_prod = _env_task("production", "Start the production environment.")
start_gpu = _env_task("gpu", "Start the GPU environment (inference tuned by `inv configure-gpu`).")
start_monitoring = _env_task("elk", "Start the monitoring stack (metrics and ELK) on its own.")


def _on_targets(c: Context, check: bool, json: bool, hosts: str | None, limit: str | None,
                inventory: str | None, forks: int | None, step: Any, *, writes: bool = True) -> None:
    """Run ``step(run, targets)`` here or on the selected hosts, then finish the run. A step
    that ``writes`` runs here under this stack's lock (on hosts it takes each host's own)."""
    from contextlib import nullcontext

    from ..remote.hosttargets import targets_for

    run = Run.start(c, check=check, json=json)
    targets = targets_for(run, hosts, limit, inventory, forks)
    with run.locked() if writes and targets.local else nullcontext():
        step(run, targets)
    run.finish()


@task(help={"json": "print the services as JSON (with --hosts: per host, as remote-status)", **HOST_HELP})
@boundary
def status(c: Context, json: bool = False, hosts: str | None = None, limit: str | None = None,
           inventory: str | None = None, forks: int | None = None) -> None:
    """Service, state, health and URL of what the last start started; non-zero if any is unhealthy."""
    from ..stack.control import status_step

    _on_targets(c, False, json, hosts, limit, inventory, forks, status_step, writes=False)


@task(help={"check": "change nothing; list what would be stopped", "json": "print the results as JSON",
            **HOST_HELP})
@boundary
def stop(c: Context, check: bool = False, json: bool = False, hosts: str | None = None,
         limit: str | None = None, inventory: str | None = None, forks: int | None = None) -> None:
    """Stop the services of the last start (containers and data are kept)."""
    from ..stack.control import stop_step

    _on_targets(c, check, json, hosts, limit, inventory, forks, stop_step)


@task(iterable=["service"], help={
    "service": "only this service (repeatable)",
    "tail": "lines of history to show per service (default 100)",
    "follow": "keep following new lines (with --hosts: every host at once)",
    **HOST_HELP,
})
@boundary
def logs(c: Context, service: list[str] | None = None, tail: int = 100, follow: bool = False,
         hosts: str | None = None, limit: str | None = None, inventory: str | None = None,
         forks: int | None = None) -> None:
    """Logs of the started services (stored secret values are masked; with --hosts each line
    starts with its host)."""
    from ..remote.hosttargets import targets_for
    from ..stack.control import logs_step

    run = Run.start(c)
    targets = targets_for(run, hosts, limit, inventory, forks)
    code = logs_step(run, targets, list(service or []), tail, follow)
    if not targets.local:
        run.finish()
    elif code:
        raise Exit(code=code)   # here: Compose's own exit status, and no recap after the lines


@task(iterable=["service"], help={
    "service": "only this service (repeatable; default: all started services)",
    "timeout": "seconds to wait for health (default mmstack.stack.wait_timeout)",
    "check": "change nothing; list what would be restarted",
    "json": "print the results as JSON",
    **HOST_HELP,
})
@boundary
def restart(c: Context, service: list[str] | None = None, timeout: int | None = None,
            check: bool = False, json: bool = False, hosts: str | None = None, limit: str | None = None,
            inventory: str | None = None, forks: int | None = None) -> None:
    """Restart services (recreating those whose configuration or env files changed)."""
    from ..stack.control import restart_step

    wait_timeout = int(resolve(timeout, c, "stack.wait_timeout"))
    _on_targets(c, check, json, hosts, limit, inventory, forks,
                lambda run, targets: restart_step(run, targets, list(service or []), wait_timeout))


WIPE_HELP = {
    "yes": "do not ask (for scripts); without a terminal, wipe refuses unless given",
    "check": "only list what would be deleted",
    "dry_run": "same as --check",
    "all": "also delete the generated compose files, env files, secrets and the start record "
           "(on a host: what deploy uploaded)",
    "backup": "back up every volume first (see `inv backup`)",
    "json": "print the results as JSON",
    **HOST_HELP,
}


def wipe_task(c: Context, yes: bool, check: bool, dry_run: bool, all: bool, backup: bool, json: bool,
              hosts: str | None, limit: str | None, inventory: str | None, forks: int | None) -> None:
    from ..stack.maintenance import wipe_step

    _on_targets(c, check or dry_run, json, hosts, limit, inventory, forks,
                lambda run, targets: wipe_step(run, yes=yes, all_files=all, backup=backup, targets=targets))


@task(help=WIPE_HELP)
@boundary
def wipe(c: Context, yes: bool = False, check: bool = False, dry_run: bool = False, all: bool = False,
         backup: bool = False, json: bool = False, hosts: str | None = None, limit: str | None = None,
         inventory: str | None = None, forks: int | None = None) -> None:
    """Delete the project's containers, volumes and networks (by Compose project label only), here or on --hosts."""
    wipe_task(c, yes, check, dry_run, all, backup, json, hosts, limit, inventory, forks)


@task(help={"check": "only list the volumes", "json": "print the results as JSON", **HOST_HELP})
@boundary
def backup(c: Context, check: bool = False, json: bool = False, hosts: str | None = None,
           limit: str | None = None, inventory: str | None = None, forks: int | None = None) -> None:
    """Save each named volume of the project to backups/<project>-<UTC time>/ (stops, then restarts), here or on --hosts."""
    from ..stack.maintenance import backup_step

    _on_targets(c, check, json, hosts, limit, inventory, forks, backup_step)


@task(help={
    "archive": "the backup directory (backups/<project>-<time>), its manifest.json, or 'latest'",
    "yes": "do not ask (for scripts)",
    "check": "only list what would be restored",
    "json": "print the results as JSON",
    **HOST_HELP,
})
@boundary
def restore(c: Context, archive: str, yes: bool = False, check: bool = False, json: bool = False,
            hosts: str | None = None, limit: str | None = None, inventory: str | None = None,
            forks: int | None = None) -> None:
    """Put a backup's volumes back (the stack must not be running), here or on --hosts."""
    from ..stack.maintenance import restore_step

    _on_targets(c, check, json, hosts, limit, inventory, forks,
                lambda run, targets: restore_step(run, archive, yes, targets=targets))


RESET_LOCAL = ("reset works on this host only: it regenerates this host's secrets; on hosts, "
               "`inv wipe --hosts H --all`, then `inv setup` and `inv deploy --hosts H`")


@task(help={
    "yes": "do not ask (for scripts)",
    "check": "only list what would be deleted",
    "json": "print the results as JSON",
    "hosts": "not supported: " + RESET_LOCAL,
    "limit": "not supported (see --hosts)",
    "inventory": "not supported (see --hosts)",
})
@boundary
def reset(c: Context, yes: bool = False, check: bool = False, json: bool = False, hosts: str | None = None,
          limit: str | None = None, inventory: str | None = None) -> None:
    """From scratch: wipe --all (secrets included), then `inv setup` with new secrets (this host only). One confirmation."""
    from ..chains import reset_chain
    from ..remote.selection import wants_hosts

    if wants_hosts(hosts, limit, inventory):
        raise Exit(f"error: {RESET_LOCAL}", code=1)
    run = Run.start(c, check=check, json=json)
    with run.locked():
        reset_chain(run, yes)
    run.finish()


ns = Collection("stack")
for _name, _task in (
    ("start", start), ("start-dev", start_dev), ("start-staging", start_staging),
    ("start-prod", start_prod), ("start-gpu", start_gpu), ("start-monitoring", start_monitoring),
    ("status", status), ("stop", stop), ("logs", logs), ("restart", restart), ("wipe", wipe),
    ("backup", backup), ("restore", restore), ("reset", reset),
):
    ns.add_task(_task, _name)
ns.configure(defaults_for("stack", "environment"))
