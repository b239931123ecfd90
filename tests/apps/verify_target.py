"""Run one of `inv verify`'s checks, as the runner runs it, against a stack copy's n8n.

The target is what verify builds from local facts, with the facts a process-run n8n can give:
the schema and mmstack.yaml of the stack copy (so ``t.url`` computes the published address), the
PostgreSQL container that runs, and the secret the check needs (from the generated env file,
which holds the store's value).
"""

from __future__ import annotations

from pathlib import Path

from invoke import Context

from tasks.schema.load import load_stack
from tasks.verify.probe import Probe
from tasks.verify.registry import CheckFailed, all_checks
from tasks.verify.target import Target


def run_check(root: Path, env: str, service: str, name: str, postgres: str,
              n8n_env: dict[str, str]) -> tuple[str, str]:
    """``("ok", what it saw)`` or ``("failed", message, expected, got, fix)`` joined."""
    stack = load_stack(root)
    (check,) = [c for c in all_checks() if c.service == service and c.name == name]
    target = Target(env=env, stack=stack, expected=list(stack.environment(env).services),
                    secrets={"n8n_db_password": n8n_env["DB_POSTGRESDB_PASSWORD"]},
                    containers={"postgres": (postgres, "running"), "n8n": ("n8n-process", "running")})
    try:
        return "ok", check.func(target, Probe(Context()))
    except CheckFailed as exc:
        return "failed", f"{exc.message} | expected {exc.expected} | got {exc.got} | fix {exc.fix}"
