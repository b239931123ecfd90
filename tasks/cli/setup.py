"""`inv setup`: the whole chain, one recap.

validate-schema -> validate-security -> generate-compose -> setup-secrets -> render-env
(-> validate-security again, over what was just written, when anything changed)

A failed step stops the chain (like a failed task stops an Ansible host): nothing after it
runs, and the recap says so.
"""

from __future__ import annotations

from invoke import Collection, Context, task

from ..engine.run import Run, boundary


@task(help={
    "env": "secrets and env files for this environment only (default: all)",
    "check": "change nothing; report what would change",
    "diff": "show a unified diff of every file that changes (secret values masked)",
    "json": "print the results as JSON",
})
@boundary
def setup(c: Context, env: str | None = None, check: bool = False, diff: bool = False,
          json: bool = False) -> None:
    """Validate, generate compose files, create secrets, render env files."""
    from ..cli.security import run_security_step
    from ..schema.steps import environments_selected, generate_compose_step, render_env_step, validate_schema_step
    from ..secrets.api import setup_secrets_step

    run = Run.start(c, check=check, diff=diff, json=json)
    with run.locked():
        stack = validate_schema_step(run)
        envs = environments_selected(stack, env)
        run_security_step(run)
        if not run.reporter.failed_any:
            changed_before = run.reporter.counts()["changed"]
            generate_compose_step(run, stack)
            setup_secrets_step(run, stack, envs)
            render_env_step(run, stack, env)
            if not run.check and run.reporter.counts()["changed"] > changed_before:
                # What was just written is scanned too, so a problem in generated output is
                # caught now rather than on the next run (which then has nothing new to scan).
                run_security_step(run)
        else:
            run.reporter.info("setup stopped: fix the findings above, or see `inv validate-security`")
    run.finish()


ns = Collection("setup")
ns.add_task(setup, "setup", default=False)
