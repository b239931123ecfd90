"""Chains of steps that cross concerns: every path that writes compose or env files.

Each concern (schema, security, secrets, gpu, stack) keeps its own steps; only this module
strings them together, so no concern imports another's steps and the paths cannot drift apart.
Every chain that writes generated files runs after `validate_schema_step` (the schema, every
template and the real Compose's verdict on the output, all in memory), with the inputs it is
about to write.

    setup:          validate-schema -> validate-security -> generate-compose -> setup-secrets ->
                    render-env (-> validate-security again over what was just written)
    reset:          wipe --all -> setup
    configure-gpu:  plan -> validate-schema with that plan -> save plan -> generate-compose ->
                    render-env
    set-secret, rotate-secrets: validate-schema -> store -> render-env (diff hidden)

A failed step stops the chain (like a failed task stops an Ansible host): nothing after it
runs, and the recap says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .engine.run import Run

if TYPE_CHECKING:
    from .gpu.facts import GpuFacts
    from .gpu.planfile import GpuPlan


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


def configure_gpu_chain(run: Run, facts: "GpuFacts", overrides: dict[str, Any],
                        generate: bool = True) -> "GpuPlan":
    """Plan from ``facts``; validate the output that plan makes; then, under the lock, save the
    plan and regenerate the compose overlays and env files it feeds.

    The validation reads only and runs before the lock, so a plan Compose (or a template) would
    refuse stops the run before the plan file or anything else is written.
    """
    from .gpu.steps import plan_step, save_plan_step
    from .schema.steps import generate_compose_step, render_env_step, validate_schema_step

    plan = plan_step(run, facts, overrides)
    # Passed explicitly: in check mode the new plan is not saved, yet the diff must show it.
    planned = plan.to_dict()
    stack = validate_schema_step(run, gpu_plan=planned)
    with run.locked():
        save_plan_step(run, plan)
        if generate:
            generate_compose_step(run, stack, planned)
            render_env_step(run, stack, None, planned)
    return plan


def set_secret_chain(run: Run, stack: Any, name: str, value: str, env: str | None,
                     render: bool = True) -> None:
    """Store an external secret, then re-render the env files of the environments it changed."""
    from .secrets.external import set_secret_step

    with run.locked():
        envs = set_secret_step(run, stack, name, value, env)
        if render:
            rerender_env_step(run, stack, envs)


def rotate_secrets_chain(run: Run, stack: Any, *, service: str | None, env: str | None,
                         names: list[str] | None, include_users: bool, render: bool = True,
                         hosts: Any = None) -> None:
    """Rotate the chosen secrets (re-keying every running PostgreSQL of the environment: here
    and on ``hosts``, a `remote.hosttargets.Hosts`), then re-render the affected env files so
    the restart the report asks for picks up the new values."""
    from .secrets.rotation import rotate_secrets_step
    from .stack.rekey import rekeying
    from .stack.targets import Here

    rekey = rekeying([Here(run)] + ([hosts] if hosts is not None else []))
    with run.locked():
        try:
            # The lifecycle re-keys a running PostgreSQL and knows which services are running.
            result = rotate_secrets_step(run, stack, service=service, env=env, names=names,
                                         include_users=include_users, rekeying=rekey)
        finally:
            if hosts is not None and hosts.passes:
                hosts.finish()   # one recap line per host that was reached
        envs = [e for e, rotated in result.rotated.items() if rotated]
        if render:
            rerender_env_step(run, stack, envs)
        elif envs and not run.check:
            run.reporter.info("run `inv render-env` before restarting those services")


def rerender_env_step(run: Run, stack: Any, envs: Iterable[str]) -> None:
    """Render the env files of ``envs`` after their secrets changed, without their diff.

    The diff's "on disk" side holds the values just replaced, which nothing masks any more.
    In check mode nothing was stored, so there is nothing to re-render.
    """
    from .schema.steps import render_env_step

    envs = list(envs)
    if run.check or not envs:
        return
    show_diff, run.reporter.show_diff = run.reporter.show_diff, False
    try:
        for e in envs:
            render_env_step(run, stack, e)
    finally:
        run.reporter.show_diff = show_diff
