"""Chains of steps that cross concerns: `inv setup` and `inv reset`.

Each concern (schema, security, secrets, stack) keeps its own steps; only this module strings
them together, so no concern imports another's steps and setup and reset cannot drift apart.

    setup:  validate-schema -> validate-security -> generate-compose -> setup-secrets ->
            render-env (-> validate-security again over what was just written)
    reset:  wipe --all -> setup

A failed step stops the chain (like a failed task stops an Ansible host): nothing after it
runs, and the recap says so.
"""

from __future__ import annotations

from typing import Any

from .engine.run import Run


def setup_chain(run: Run, env: str | None = None, stack: Any = None) -> None:
    """Validate (unless ``stack`` already is), scan, generate, make secrets, render env files;
    rescan what changed."""
    from .schema.steps import environments_selected, generate_compose_step, render_env_step, validate_schema_step
    from .secrets.api import setup_secrets_step
    from .security.step import run_security_step

    if stack is None:
        stack = validate_schema_step(run)
    envs = environments_selected(stack, env)
    run_security_step(run)
    if run.reporter.failed_any:
        run.reporter.info("setup stopped: fix the findings above, or see `inv validate-security`")
        return
    changed_before = run.reporter.counts()["changed"]
    generate_compose_step(run, stack)
    setup_secrets_step(run, stack, envs)
    render_env_step(run, stack, env)
    if not run.check and run.reporter.counts()["changed"] > changed_before:
        # What was just written is scanned too, so a problem in generated output is caught
        # now rather than on the next run (which then has nothing new to scan).
        run_security_step(run)


def reset_chain(run: Run, yes: bool) -> None:
    """wipe --all, then the setup chain from scratch (new secrets), after one confirmation."""
    from .stack.common import confirm, load_stack_cached
    from .stack.maintenance import wipe_step

    stack = load_stack_cached(run)
    if run.check:
        wipe_step(run, yes=True, all_files=True, backup=False, confirmed=True)
        run.reporter.info("check mode: setup would then regenerate compose files, secrets and env files")
        return
    confirm(f"Reset deletes every container, network and volume of project {stack.project!r}, "
            "the generated files and ALL SECRETS, then sets the stack up again with new ones.",
            yes, "reset")
    if not wipe_step(run, yes=True, all_files=True, backup=False, confirmed=True):
        run.reporter.info("reset stopped: the wipe failed for the resources above")
        return
    setup_chain(run)
