"""`inv verify`: functional checks of the running stack, here or on each host over SSH.

    inv verify [--env ENV] [--json]
    inv verify --hosts gpu_servers [--limit gpu1] [--env production] [--forks N] [--json]

Each check is reported ok / failed (expected, got, fix) / skipped, with its time; exit 2 when
one failed. `inv start-*` and `inv deploy` run the same checks at their end unless told
``--no-verify`` (or ``mmstack.verify.after_start: false``). Nothing heavy is imported at load
time.
"""

from __future__ import annotations

from typing import Any

from invoke import Collection, Context, task

from ..engine.run import Run, boundary
from ..engine.settings import defaults_for


@task(help={
    "env": "the environment to verify (default: what the last start started; on hosts, each host's)",
    "hosts": "run the checks on these inventory hosts over SSH (a group, names, a glob or 'all')",
    "limit": "narrow the hosts further (Ansible-style pattern)",
    "inventory": "an inventory file or folder (default: inventory/*.yml)",
    "forks": "how many hosts at once",
    "json": "print the results as one JSON document",
})
@boundary
def verify(c: Context, env: str | None = None, hosts: str | None = None, limit: str | None = None,
           inventory: str | None = None, forks: int | None = None, json: bool = False) -> None:
    """Check that the running stack does its job (model, UI, data stores, monitoring, GPUs).

    The model answers through LiteLLM, Open WebUI's admin sees it, each consumer reaches its own
    database, the stores take a write, monitoring sees the stack, vLLM runs on the planned GPUs.
    """
    run = Run.start(c, json=json)
    if hosts is None and limit is None and inventory is None:
        from ..verify.steps import verify_step

        verify_step(run, env)
        run.finish()
        return
    remote_verify_hosts(run, env, hosts, limit, inventory, forks)


def remote_verify_hosts(run: Run, env: str | None, hosts: str | None, limit: str | None,
                        inventory: str | None, forks: int | None) -> None:
    from ..remote.parallel import run_connected
    from ..remote.selection import fork_count, gather_gpu, gpu_plan, select_hosts
    from ..stack.common import load_stack_cached
    from ..secrets.api import load_environment_secrets
    from ..verify.steps import options, remote_verify

    inv, selected = select_hosts(run, hosts, limit, inventory)
    stack = load_stack_cached(run)
    secrets = {e: load_environment_secrets(run, stack, e) for e in sorted({env or h.environment for h in selected})}
    opts = options(run.c)

    def job(conn: Any, host: Any, hr: Any) -> None:
        environment = env or host.environment
        plan = None
        if stack.environment(environment).gpu:
            plan = gpu_plan(stack, environment, gather_gpu(conn, host), host)
        remote_verify(conn, host, hr, stack=stack, environment=environment, secrets=secrets[environment],
                      plan=plan, opts=opts)

    run.reporter.task("verify")
    outcome = run_connected(selected, job, config=run.c.config, forks=fork_count(run, forks, inv), reporter=run.reporter)
    outcome.print_recap(run.reporter)
    run.add_output("hosts", outcome.to_dict())
    run.finish()


ns = Collection("verify")
ns.add_task(verify, "verify")
ns.configure(defaults_for("verify"))
