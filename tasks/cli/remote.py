"""Remote hosts, over Fabric: detect GPUs, deploy and start, status, wipe, and any task.

    inv remote-detect-gpu --hosts gpu_servers --json
    inv deploy --hosts gpu_servers [--env production] [--limit gpu1] [--check] [--diff]
               [--no-start] [--timeout 300] [--json]
    inv remote-status --hosts gpu_servers [--json]
    inv remote-wipe --hosts gpu_servers [--yes] [--check|--dry-run] [--all] [--json]   (= inv wipe --hosts)
    inv remote-run --hosts gpu_servers --task "status --json" [--json]

Hosts come from the inventory (`inventory/*.yml`, or ``--inventory FILE``); every host is worked
on in parallel, ``--forks`` at a time, and the run ends with a per-host recap. One host failing
or unreachable never stops the others; the exit code is 2 when any did.

`deploy` detects each host's GPUs with nvidia-smi (no Python needed there), plans them with the
local planner, uploads the compose and env files where their checksum differs (secrets as 0600
files over SFTP only), records the start in ``<stack_dir>/.mmstack/last-start.json`` and brings
the environment up with Compose v2 on the host (``docker compose``, else ``docker-compose``;
``mmstack.remote.compose_command`` overrides), waiting for health. A service is ``changed`` only
when its container was created, recreated or started, so a second deploy reports changed=0.
``--check`` changes nothing and asks Compose's dry run what ``up`` would do; ``--no-start`` stops
after the files. `remote-status` is `inv status --hosts` (the local `status` rows per host),
`remote-wipe` is `inv wipe --hosts` (the project's containers, networks and volumes by Compose
label only, one confirmation for all hosts; ``--all`` also the uploaded files and secrets),
and `remote-run` runs the host's own ``mmstack`` command (``pip install mmstack`` there) in its
stack directory, arguments shell-quoted, nothing secret on its command line or in its
environment. Fabric and paramiko are imported inside task bodies only.
"""

from __future__ import annotations

import threading
from typing import Any

from invoke import Collection, Context, task

from ..engine.run import Run, boundary, config_value, resolve
from ..engine.settings import defaults_for
from ..remote.selection import (check_environments, fork_count, gather_gpu, gpu_plan, gpu_summary,
                                select_hosts)
from ..stack.common import load_stack_cached

_HELP = {
    "hosts": "a group, host names (a,b), a glob (gpu*) or 'all' (default: all)",
    "limit": "narrow the selection further (Ansible-style pattern, e.g. gpu1 or '!gpu2')",
    "inventory": "an inventory file or folder (default: inventory/*.yml)",
    "forks": "how many hosts at once (default: the inventory's forks, else 5)",
    "json": "print the per-host recap and results as one JSON document",
}


@task(help=_HELP)
@boundary
def remote_detect_gpu(c: Context, hosts: str | None = None, limit: str | None = None,
                      inventory: str | None = None, forks: int | None = None, json: bool = False) -> None:
    """Detect each host's GPUs over SSH with nvidia-smi (no Python needed on the host)."""
    from ..remote.parallel import run_connected

    run = Run.start(c, json=json)
    inv, selected = select_hosts(run, hosts, limit, inventory)
    found: dict[str, Any] = {}

    def job(conn: Any, host: Any, hr: Any) -> None:
        facts = gather_gpu(conn, host)
        found[host.name] = facts.to_dict()
        hr.ok("gpu", gpu_summary(facts))

    run.reporter.task("remote-detect-gpu")
    outcome = run_connected(selected, job, config=c.config, forks=fork_count(run, forks, inv),
                            reporter=run.reporter)
    outcome.print_recap(run.reporter)
    run.add_output("gpu", found)
    run.add_output("hosts", outcome.to_dict())
    run.finish()


@task(help={
    **_HELP,
    "env": "the environment to deploy (default: each host's `environment`)",
    "check": "change nothing on any host; report what would change (Compose's dry run for the stack)",
    "diff": "show a unified diff of every file that changes (secret values masked)",
    "no_start": "upload the files only; do not bring the stack up",
    "timeout": "seconds to wait for health on each host (default mmstack.stack.wait_timeout)",
    "no_verify": "do not run `inv verify`'s checks on each host once its stack is up",
})
@boundary
def deploy(c: Context, hosts: str | None = None, env: str | None = None, limit: str | None = None,
           inventory: str | None = None, forks: int | None = None, check: bool = False,
           diff: bool = False, no_start: bool = False, timeout: int | None = None,
           json: bool = False, no_verify: bool = False) -> None:
    """Detect GPUs, upload each host's compose and env files where they differ, start, verify."""
    from ..engine.report import Status
    from ..remote.parallel import run_connected
    from ..remote.renders import reroot, stack_renders
    from ..engine.masking import masker
    from ..remote.hostfacts import host_facts
    from ..engine.layout import hand_edit_backup_dir
    from ..remote.sync import sync_files
    from ..schema.steps import template_cache_dir
    from ..secrets.api import load_environment_secrets

    run = Run.start(c, check=check, diff=diff, json=json)
    inv, selected = select_hosts(run, hosts, limit, inventory)
    stack = load_stack_cached(run)
    check_environments(stack, selected, env)
    environments = sorted({env or h.environment for h in selected})
    secrets = {e: load_environment_secrets(run, stack, e) for e in environments}
    wait_timeout = int(resolve(timeout, c, "stack.wait_timeout"))
    # Each distinct (environment, GPU plan) is rendered once and shared by the hosts needing it.
    renders = stack_renders(stack, secrets, template_cache_dir(run))  # compiled as `inv setup` keeps them
    start_at = None
    if not no_start:
        from ..stack.start import start_at  # Compose over SSH: only when starting

    lock_timeout = float(config_value(c, "lock_timeout"))
    from ..verify.steps import options as verify_options

    verify_opts = verify_options(c)
    verify_after = not no_verify and not check and bool(verify_opts["after_start"])

    def job(conn: Any, host: Any, hr: Any) -> None:
        environment = env or host.environment
        # One channel: the lock (check mode reads only, so, as locally, it takes none), the GPU
        # facts, then every file command; held until the block ends.
        with host_facts(conn, host, lock=not check, lock_timeout=lock_timeout) as found:
            hr.ok("gpu", gpu_summary(found.gpu))
            plan = gpu_plan(stack, environment, found.gpu, host)
            files = renders.files_for(host.name, environment, plan)
            changed = False
            for result in sync_files(found.shell, reroot(files, run.stack, found.root), check=check,
                                     diff=diff, host=host.name, backup_dir=hand_edit_backup_dir(found.root)):
                hr.add(result)
                changed = changed or result.status is Status.CHANGED
            if start_at is None:
                hr.skipped("stack up", "--no-start")
                return
            # The one start step (`inv start-*` here), on the host; its lock is held already.
            from ..stack.site import Site

            site = Site(conn, found.root, host.name, remote=True)  # root resolved in the one channel
            site.extra["plan"] = plan
            start_at(run, site, hr, environment, wait=True, timeout=wait_timeout, stack=stack,
                     mask=masker(secrets[environment].values()), files_pending=changed)
        # A host whose stack did not come up healthy has nothing to verify yet.
        if verify_after and not any(r.status is Status.FAILED for r in hr.results):
            from ..verify.steps import remote_verify

            remote_verify(conn, host, hr, stack=stack, environment=environment,
                          secrets=secrets[environment], plan=plan, opts=verify_opts)

    run.reporter.task("deploy")
    outcome = run_connected(selected, job, config=c.config, forks=fork_count(run, forks, inv),
                            reporter=run.reporter)
    outcome.print_recap(run.reporter)
    file_sets = renders.to_list([h.name for h in selected])
    if len(selected) > 1:
        run.reporter.info(f"rendered {len(file_sets)} distinct file set(s) for {len(selected)} hosts")
    run.add_output("file_sets", file_sets)
    run.add_output("hosts", outcome.to_dict())
    run.finish()


@task(help=_HELP)
@boundary
def remote_status(c: Context, hosts: str | None = None, limit: str | None = None,
                  inventory: str | None = None, forks: int | None = None, json: bool = False) -> None:
    """Same as `inv status --hosts` (default: all hosts): service, state, health and URL on each host."""
    from .stack import status

    status(c, json=json, hosts=hosts or "all", limit=limit, inventory=inventory, forks=forks)


@task(help={
    **_HELP,
    "yes": "do not ask (for scripts); without a terminal, remote-wipe refuses unless given",
    "check": "only list what would be deleted on each host",
    "dry_run": "same as --check",
    "all": "also delete what deploy uploaded to stack_dir: compose files, env files (secrets), start record",
    "backup": "back up every volume on each host first (see `inv backup --hosts`)",
})
@boundary
def remote_wipe(c: Context, hosts: str | None = None, limit: str | None = None,
                inventory: str | None = None, forks: int | None = None, yes: bool = False,
                check: bool = False, dry_run: bool = False, all: bool = False, backup: bool = False,
                json: bool = False) -> None:
    """The same as `inv wipe --hosts` (default: all hosts): delete the project's resources on each host by label."""
    from .stack import wipe_task

    wipe_task(c, yes, check, dry_run, all, backup, json, hosts or "all", limit, inventory, forks)


@task(help={
    **_HELP,
    "task": 'the mmstack task and its arguments, as one string, e.g. "status --json"',
    "timeout": "seconds to let the task run on each host (default: no limit)",
    "json": "capture each host's output into one JSON document instead of streaming it",
})
@boundary
def remote_run(c: Context, task: str | None = None, hosts: str | None = None, limit: str | None = None,
               inventory: str | None = None, forks: int | None = None, timeout: float | None = None,
               json: bool = False) -> None:
    """Run any mmstack task on each host (`mmstack TASK ARGS` in its stack_dir; needs mmstack installed there)."""
    import shlex
    import sys

    from ..engine.errors import ConfigError
    from ..remote.parallel import run_connected
    from ..engine.streams import LineWriter
    from ..remote.taskrun import run_task

    try:
        argv = shlex.split(task or "")
    except ValueError as exc:
        raise ConfigError(f"--task cannot be parsed: {exc}", fix="balance the quotes in --task") from None
    if not argv:
        raise ConfigError("--task is empty", fix='say which task to run, e.g. --task "status --json"')
    run = Run.start(c, json=json)
    inv, selected = select_hosts(run, hosts, limit, inventory)
    lock = threading.Lock()
    outputs: dict[str, Any] = {}

    def job(conn: Any, host: Any, hr: Any) -> None:
        out = err = None
        if not json:
            out = LineWriter(sys.stdout, lock, host.name)
            err = LineWriter(sys.stderr, lock, host.name)
        outputs[host.name] = run_task(conn, host, hr, argv, out=out, err=err, timeout=timeout)

    run.reporter.task("remote-run: mmstack " + " ".join(shlex.quote(a) for a in argv))
    outcome = run_connected(selected, job, config=c.config, forks=fork_count(run, forks, inv),
                            reporter=run.reporter)
    outcome.print_recap(run.reporter)
    run.add_output("outputs", {name: outputs[name] for name in sorted(outputs)})
    run.add_output("hosts", outcome.to_dict())
    run.finish()


ns = Collection("remote")
ns.add_task(remote_detect_gpu, "remote-detect-gpu")
ns.add_task(deploy, "deploy")
ns.add_task(remote_status, "remote-status")
ns.add_task(remote_wipe, "remote-wipe")
ns.add_task(remote_run, "remote-run")
ns.configure(defaults_for("remote"))
