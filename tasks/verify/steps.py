"""`verify` as a step: on this machine (after `inv start-*`, or alone), or on a host over SSH
(after `inv deploy`, or `inv verify --hosts`). Both build a `Target`, gather the containers
through the same `Probe`, and report through `runner.run_checks`."""

from __future__ import annotations

from typing import Any

from ..engine.errors import ConfigError
from ..engine.report import Status
from ..engine.run import Run, config_value
from ..engine.settings import DEFAULTS
from .probe import Probe
from .runner import run_checks
from .target import Target, gather_containers



def options(c: Any) -> dict[str, Any]:
    return {k: config_value(c, f"verify.{k}") for k in DEFAULTS["verify"]}


def local_target(run: Run, env: str | None) -> Target:
    from ..schema.steps import load_gpu_plan
    from ..secrets.api import load_environment_secrets
    from ..stack.common import expected_services, load_stack_cached
    from ..stack.site import Site
    from ..stack.state import require_record

    stack = load_stack_cached(run)
    record = require_record(Site.here(run.c, run.stack))
    if env and env != record.env:
        raise ConfigError(f"the stack running here is {record.env!r}, not {env!r}",
                          fix=f"verify what runs (`inv verify`), or start {env} first (`inv start --env {env}`)")
    env = record.env
    return Target(env=env, stack=stack, expected=expected_services(stack, record),
                  secrets=load_environment_secrets(run, stack, env),
                  plan=load_gpu_plan(run.state_dir) if stack.environment(env).gpu else None,
                  options=options(run.c))


def verify_step(run: Run, env: str | None = None) -> None:
    target = local_target(run, env)
    run.reporter.task(f"verify {target.env}")
    probe = Probe(run.c, timeout=float(target.options["timeout"]))
    target.containers = gather_containers(probe, target.project)
    run_checks(target, probe, run.reporter)


def remote_verify(conn: Any, host: Any, hr: Any, *, stack: Any, environment: str, secrets: dict[str, str],
                  plan: dict[str, Any] | None, opts: dict[str, Any]) -> None:
    """The same checks on ``host``, against its own stack (run there through ``conn``)."""
    from ..stack.common import expected_services
    from ..stack.site import Site
    from ..stack.state import read_record

    record = read_record(Site.on(conn, host))
    if record is None:
        hr.failed("verify", "the stack was never started on this host", data={"fix": "`inv deploy` first"})
        return
    if record.env != environment:
        hr.failed("verify", f"the host runs {record.env!r}, not {environment!r}",
                  data={"fix": f"deploy {environment} there first, or verify {record.env} (--env {record.env})"})
        return
    target = Target(env=environment, stack=stack, expected=expected_services(stack, record), secrets=secrets,
                    plan=plan if stack.environment(environment).gpu else None, host=host.name, options=opts)
    probe = Probe(conn, timeout=float(opts["timeout"]))
    target.containers = gather_containers(probe, target.project)
    before = len(hr.results)
    run_checks(target, probe, hr)
    counts = {s.value: sum(1 for r in hr.results[before:] if r.status is s) for s in (Status.OK, Status.FAILED, Status.SKIPPED)}
    hr.info("verify: " + " ".join(f"{k}={v}" for k, v in counts.items()))
