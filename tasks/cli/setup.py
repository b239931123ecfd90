"""`inv setup` (the chain in tasks/chains.py, one recap) and `inv init`."""

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
    from ..chains import setup_chain
    from ..schema.steps import validate_schema_step

    run = Run.start(c, check=check, diff=diff, json=json)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    with run.locked():
        setup_chain(run, env, stack)
    run.finish()


STACK_GITIGNORE = """# mmstack: run state, secrets, rendered env files and backups never go into git
.mmstack/
/env/
/backups/
/inventory/*.yml
!/inventory/sample.yml
mmstack.local.yaml
"""


@task(help={
    "force": "replace files that differ from the shipped ones (your copies are kept in .mmstack/backups/)",
    "check": "change nothing; report what would be created",
    "diff": "show a unified diff of every file that changes",
    "json": "print the results as JSON",
})
@boundary
def init(c: Context, force: bool = False, check: bool = False, diff: bool = False,
         json: bool = False) -> None:
    """Make this directory a stack: the shipped schema, env templates, sample inventory, .gitignore."""
    from ..defaults import shipped_files
    from ..engine.files import DesiredFile, NoOp, apply_change, plan_file, read_fact, unified_diff

    run = Run.start(c, check=check, diff=diff, json=json)
    run.reporter.task("init")
    wanted = [DesiredFile(run.stack / "schemas" / name, data, 0o644, label=f"schemas/{name}")
              for name, data in shipped_files("schemas").items()]
    wanted += [DesiredFile(run.stack / "env-templates" / name, data, 0o644, label=f"env-templates/{name}")
               for name, data in shipped_files("env_templates").items() if name.endswith(".j2")]
    sample = shipped_files("inventory").get("sample.yml")
    if sample is not None:
        wanted.append(DesiredFile(run.stack / "inventory" / "sample.yml", sample, 0o644,
                                  label="inventory/sample.yml"))
    if not (run.stack / ".gitignore").exists():
        wanted.append(DesiredFile(run.stack / ".gitignore", STACK_GITIGNORE.encode(), 0o644, label=".gitignore"))
    with run.locked():
        for want in wanted:
            plan = plan_file(read_fact(want.path), want)
            if isinstance(plan, NoOp):
                run.reporter.ok(want.name)
            elif plan.old.exists and not force:
                # A file that differs is the user's own version: kept, never overwritten silently.
                run.reporter.ok(want.name, "kept: differs from the shipped version (--force replaces it)")
            else:
                if not run.check:
                    apply_change(plan, run.hand_edit_backups)
                run.reporter.changed(want.name, ", ".join(plan.reasons),
                                     diff=unified_diff(plan) if run.diff else None)
    run.finish()


ns = Collection("setup")
ns.add_task(setup, "setup", default=False)
ns.add_task(init, "init")
