"""Which hosts a run works on, and what it learns from each first: the inventory selection
(validated before any connection), the fork count, the environments' existence, and each
host's GPU facts and plan. Every task that takes ``--hosts`` goes through here."""

from __future__ import annotations

from typing import Any

from ..engine.run import Run, resolve

HOST_HELP = {
    "hosts": "work on these inventory hosts over SSH: a group, host names (a,b), a glob (gpu*) or 'all'",
    "limit": "narrow the selection further (Ansible-style pattern, e.g. gpu1 or '!gpu2')",
    "inventory": "an inventory file or folder (default: inventory/*.yml)",
    "forks": "how many hosts at once (default: the inventory's forks, else 5)",
}


def wants_hosts(hosts: str | None, limit: str | None, inventory: str | None) -> bool:
    """Whether the user asked for remote hosts (any of the selection options given)."""
    return hosts is not None or limit is not None or inventory is not None


def select_hosts(run: Run, hosts: str | None, limit: str | None, inventory: str | None) -> tuple[Any, list[Any]]:
    """(inventory, selected hosts); every selected host is checked before the first connection."""
    from ..engine.errors import MultiError
    from .inventory import load_inventory, validation_cache
    from .inventorycheck import host_errors

    # An inventory file that passed validation unchanged is not validated again.
    cache = validation_cache(run.state_dir, writable=not run.check)
    inv = load_inventory(run.stack, resolve(inventory, run.c, "remote.inventory"), cache)
    run.keep(cache)
    selected = inv.select(hosts or "all", limit)
    errors = host_errors(selected, run.stack)
    if errors:
        raise errors[0] if len(errors) == 1 else MultiError(errors)
    return inv, selected


def fork_count(run: Run, forks: int | None, inv: Any) -> int:
    return int(forks or run.c.config.get("mmstack", {}).get("remote", {}).get("forks") or inv.forks)


def check_environments(stack: Any, selected: list[Any], env: str | None) -> None:
    """Every host's environment exists, before the first connection; blamed on the line that
    names it (the inventory's, or --env)."""
    from ..engine.errors import MultiError
    from .inventorycheck import environment_error

    known = stack.environment_names
    if env is not None:
        if env not in known:
            raise environment_error(None, env, known, from_option=True)
        return
    errors, seen = [], set()
    for host in selected:
        if host.environment not in known:
            error = environment_error(host, host.environment, known, from_option=False)
            if (error.file, error.line) not in seen:
                seen.add((error.file, error.line))
                errors.append(error)
    if errors:
        raise errors[0] if len(errors) == 1 else MultiError(errors)


def gather_gpu(conn: Any, host: Any) -> Any:
    """The host's GPU facts, in one remote command for every nvidia-smi query."""
    from ..gpu.smibatch import gather_via_smi_batch

    facts = gather_via_smi_batch(conn)
    facts.host = host.name
    return facts


def gpu_plan(stack: Any, environment: str, facts: Any, host: Any) -> dict[str, Any]:
    """The same pure planner as local runs (`gpu.plan.plan_gpus`), fed the served model's needs
    and the host's own overrides."""
    from ..gpu.plan import plan_gpus
    from ..schema.inference import planner_inputs

    served = stack.served_model(environment)
    return plan_gpus(facts, {**(planner_inputs(served) if served else {}), **host.gpu}).to_dict()


def gpu_summary(facts: Any) -> str:
    if facts.cpu_only:
        return f"CPU only: {facts.reason}"
    names = sorted({g.name for g in facts.gpus})
    nvlink = ", NVLink" if facts.nvlink_pairs() else ""
    return f"{len(facts.gpus)} GPU(s): {', '.join(names)}{nvlink}"
