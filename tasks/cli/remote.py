"""Remote hosts: `remote-detect-gpu` and `deploy` (files only, for now), over Fabric.

    inv remote-detect-gpu --hosts gpu_servers --json
    inv deploy --hosts gpu_servers [--env production] [--limit gpu1] [--check] [--diff] [--json]

Hosts come from the inventory (`inventory/*.yml`, or ``--inventory FILE``); every host is worked
on in parallel, ``--forks`` at a time, and the run ends with a per-host recap. One host failing
or unreachable never stops the others; the exit code is 2 when any did.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path, PurePosixPath
from typing import Any

from invoke import Collection, Context, task

from ..engine.run import Run, boundary, resolve

_HELP = {
    "hosts": "a group, host names (a,b), a glob (gpu*) or 'all' (default: all)",
    "limit": "narrow the selection further (Ansible-style pattern, e.g. gpu1 or '!gpu2')",
    "inventory": "an inventory file or folder (default: inventory/*.yml)",
    "forks": "how many hosts at once (default: the inventory's forks, else 5)",
    "json": "print the per-host recap and results as one JSON document",
}


def _hosts(run: Run, hosts: str | None, limit: str | None, inventory: str | None):
    from ..remote.inventory import load_inventory

    inv = load_inventory(run.stack, resolve(inventory, run.c, "remote.inventory"))
    return inv, inv.select(hosts or "all", limit)


def _forks(run: Run, forks: int | None, inv: Any) -> int:
    return int(forks or run.c.config.get("mmstack", {}).get("remote", {}).get("forks") or inv.forks)


def _gather_gpu(conn: Any, host: Any) -> Any:
    from ..gpu.smi import gather_via_smi

    facts = gather_via_smi(conn)
    facts.host = host.name
    return facts


def _gpu_summary(facts: Any) -> str:
    if facts.cpu_only:
        return f"CPU only: {facts.reason}"
    names = sorted({g.name for g in facts.gpus})
    nvlink = ", NVLink" if facts.nvlink_pairs() else ""
    return f"{len(facts.gpus)} GPU(s): {', '.join(names)}{nvlink}"


@task(help=_HELP)
@boundary
def remote_detect_gpu(c: Context, hosts: str | None = None, limit: str | None = None,
                      inventory: str | None = None, forks: int | None = None, json: bool = False) -> None:
    """Detect each host's GPUs over SSH with nvidia-smi (no Python needed on the host)."""
    from ..remote.parallel import run_connected

    run = Run.start(c, json=json)
    inv, selected = _hosts(run, hosts, limit, inventory)
    found: dict[str, Any] = {}

    def job(conn: Any, host: Any, hr: Any) -> None:
        facts = _gather_gpu(conn, host)
        found[host.name] = facts.to_dict()
        hr.ok("gpu", _gpu_summary(facts))

    run.reporter.task("remote-detect-gpu")
    outcome = run_connected(selected, job, config=c.config, forks=_forks(run, forks, inv),
                            reporter=run.reporter)
    outcome.print_recap(run.reporter)
    run.add_output("gpu", found)
    run.add_output("hosts", outcome.to_dict())
    run.finish()


def _gpu_plan(facts: Any, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The same pure planner as local runs (`gpu.plan.plan_gpus`), with the host's overrides."""
    try:
        from ..gpu.plan import plan_gpus
    except ImportError:
        return None
    return plan_gpus(facts, overrides).to_dict()


def reroot(files: list[Any], local_root: Path, remote_root: str) -> list[Any]:
    """Move desired files from the local stack directory to the host's ``stack_dir``."""
    out = []
    for f in files:
        path = Path(f.path)
        rel = path.relative_to(local_root) if path.is_absolute() else path
        out.append(dataclasses.replace(f, path=Path(str(PurePosixPath(remote_root) / rel.as_posix()))))
    return out


@task(help={
    **_HELP,
    "env": "the environment to deploy (default: each host's `environment`)",
    "check": "change nothing on any host; report what would change",
    "diff": "show a unified diff of every file that changes (secret values masked)",
})
@boundary
def deploy(c: Context, hosts: str | None = None, env: str | None = None, limit: str | None = None,
           inventory: str | None = None, forks: int | None = None, check: bool = False,
           diff: bool = False, json: bool = False) -> None:
    """Detect GPUs, then upload each host's compose and env files where they differ."""
    from ..remote.parallel import run_connected
    from ..remote.sync import sync_files

    run = Run.start(c, check=check, diff=diff, json=json)
    inv, selected = _hosts(run, hosts, limit, inventory)
    try:
        from ..schema.steps import desired_stack_files
    except ImportError:
        run.reporter.skipped("deploy", "stack file generation (desired_stack_files) is not available yet")
        run.finish()
        return
    from ..schema.model import load_stack
    from ..secrets.api import load_environment_secrets

    stack = load_stack(run.stack)
    environments = sorted({env or h.environment for h in selected})
    secrets = {e: load_environment_secrets(run, stack, e) for e in environments}
    generate = threading.Lock()  # generation is CPU-bound; one host at a time keeps it simple

    def job(conn: Any, host: Any, hr: Any) -> None:
        environment = env or host.environment
        try:
            facts = _gather_gpu(conn, host)
            hr.ok("gpu", _gpu_summary(facts))
            plan = _gpu_plan(facts, host.gpu)
        except ImportError:
            hr.skipped("gpu", "GPU detection over SSH is not available yet")
            plan = None
        with generate:
            files = desired_stack_files(run.stack, environment, plan, secrets[environment], stack)
        for result in sync_files(conn, reroot(files, run.stack, host.stack_dir), check=check,
                                 diff=diff, host=host.name):
            hr.add(result)
        hr.skipped("stack up", "the lifecycle step (compose up, wait for health) comes next")

    run.reporter.task("deploy")
    outcome = run_connected(selected, job, config=c.config, forks=_forks(run, forks, inv),
                            reporter=run.reporter)
    outcome.print_recap(run.reporter)
    run.add_output("hosts", outcome.to_dict())
    run.finish()


ns = Collection("remote")
ns.add_task(remote_detect_gpu, "remote-detect-gpu")
ns.add_task(deploy, "deploy")
ns.configure({"mmstack": {"remote": {"inventory": None, "forks": None}}})
