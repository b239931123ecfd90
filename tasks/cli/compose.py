"""Schema, compose generation and env rendering: `validate-schema`, `generate-compose`,
`render-env`, `validate-compose`."""

from __future__ import annotations

import subprocess

from invoke import Collection, Context, task

from ..engine.run import Run, boundary, config_value
from ..engine.settings import defaults_for


@task(help={
    "json": "print the result (or every error) as JSON",
})
@boundary
def validate_schema(c: Context, json: bool = False) -> None:
    """Validate schemas/compose-schema.yaml (and mmstack.yaml): shape, references, ports."""
    from ..engine.errors import MmstackError, MultiError
    from ..schema.steps import validate_schema_step

    run = Run.start(c, json=json)
    try:
        validate_schema_step(run, use_cache=False)
    except MmstackError as exc:
        if not json:
            raise
        errors = exc.errors if isinstance(exc, MultiError) else [exc]
        run.add_output("errors", [
            {"file": e.file, "line": e.line, "key_path": e.key_path, "message": e.message, "fix": e.fix}
            for e in errors
        ])
        run.reporter.failed(errors[0].file or "schema", f"{len(errors)} error(s)")
    run.finish()


@task(help={
    "check": "change nothing; report what would change",
    "diff": "show a unified diff of every file that changes",
    "json": "print the results as JSON",
})
@boundary
def generate_compose(c: Context, check: bool = False, diff: bool = False, json: bool = False) -> None:
    """Write compose.yml and compose.<environment>.yml from the schema."""
    from ..schema.steps import generate_compose_step, validate_schema_step

    run = Run.start(c, check=check, diff=diff, json=json)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    with run.locked():
        generate_compose_step(run, stack)
    run.finish()


@task(help={
    "env": "render only this environment (default: all)",
    "check": "change nothing; report what would change",
    "diff": "show a unified diff (secret values masked)",
    "json": "print the results as JSON",
})
@boundary
def render_env(c: Context, env: str | None = None, check: bool = False, diff: bool = False,
               json: bool = False) -> None:
    """Render env-templates/*.env.j2 into env/<environment>/*.env (0600, secrets included)."""
    from ..schema.steps import render_env_step, validate_schema_step

    run = Run.start(c, check=check, diff=diff, json=json)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    with run.locked():
        render_env_step(run, stack, env)
    run.finish()


@task(help={
    "env": "validate only this environment's file set (default: all)",
    "json": "print the results as JSON",
})
@boundary
def validate_compose(c: Context, env: str | None = None, json: bool = False) -> None:
    """Check every file set (base + environment + profiles) with the real `docker compose config`."""
    from ..schema.load import load_stack
    from ..schema.steps import environments_selected
    from ..schema.filesets import file_sets
    from ..stack.composecmd import find_compose_command

    run = Run.start(c, json=json)
    run.reporter.task("validate-compose")
    stack = load_stack(run.stack)
    compose = find_compose_command(config_value(c, "compose_command"))
    for fs in file_sets(stack, environments_selected(stack, env)):
        # Full `config` (not just --quiet) also resolves env_file references; its output holds
        # secret values from the env files, so it is discarded unread.
        argv = [*compose, "--project-directory", str(run.stack), *fs.args(), "config"]
        proc = subprocess.run(argv, cwd=run.stack, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        # Some Compose builds print "env file ... not found" yet exit 0: anything on stderr fails.
        problem = proc.stderr.strip()
        if proc.returncode == 0 and not problem:
            run.reporter.ok(fs.label)
        else:
            run.reporter.failed(fs.label, problem.splitlines()[-1] if problem else f"exit {proc.returncode}")
    run.finish()


ns = Collection("compose")
ns.add_task(validate_schema, "validate-schema")
ns.add_task(generate_compose, "generate-compose")
ns.add_task(render_env, "render-env")
ns.add_task(validate_compose, "validate-compose")
ns.configure(defaults_for("compose_command", "lock_timeout", "verbose", "stack_dir"))
