"""`inv start-*` (and the stack-up part of `inv deploy`): preflight, then `compose up` (or its
dry run), one result per service. Written once against a `Site`: this machine
(`Site.here`) or a host over SSH (`Site.on`), the same commands through ``site.sh``."""

from __future__ import annotations

import os
import re
import shlex
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from ..engine.console import waiting
from ..engine.errors import ConfigError, DockerError
from ..engine.report import Result
from ..engine.run import Run
from .common import (Stop, expected_services, lazy_masker, load_stack_cached, preferred_compose,
                     stream_progress)
from .events import Progress, parse_progress, problem_lines, service_of
from .facts import by_service, log_tail, project_services, service_containers
from .outcomes import check_outcomes, not_ready, up_outcomes
from .site import Site
from .state import StartRecord, read_record, record_desired

UP = "`docker compose up`"


def reusable_compose(site: Site, record: StartRecord | None) -> tuple[str, ...] | None:
    """The Compose command the last start here found, when it is still there: no probe. On a
    host it is probed again at every start (in the same command as the other facts)."""
    if site.remote or record is None or not record.compose:
        return None
    exe = record.compose[0]
    return record.compose if os.path.isabs(exe) and os.access(exe, os.X_OK) else None


def preflight_step(run: Run, site: Site, rep: Any, stack: Any, env: str, record: StartRecord,
                   previous: StartRecord | None) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Gather every fact at ``site`` in one command, check them (pure `preflight.evaluate`),
    report failures one by one (or a single ok). Returns (the Compose argv, the project's
    containers) or raises `Stop` when a check failed."""
    from ..schema.generate import env_file_refs, gpu_device
    from ..schema.steps import load_gpu_plan
    from ..secrets.store import SecretStore
    from .composecmd import compose_probe, found_compose, probe_extra
    from .facts import parse_preflight, preflight_command
    from .preflight import Facts, evaluate, gather_ports, port_needs

    rep.task("preflight")
    model = stack.environment(env)
    specs = stack.resolved_services(env)
    preferred = preferred_compose(run, site)
    known = None if preferred else reusable_compose(site, previous)
    wanted = list(record.files)
    for svc in model.services:
        wanted += env_file_refs(stack, env, svc, specs[svc])
    other_env = previous is not None and previous.env != env
    probe = None if preferred or known else compose_probe(probe_extra(site))
    # Exactly the services the generated overlay reserves a GPU for (a CPU-only plan: none);
    # a host's plan is the one deploy made from its own GPUs.
    plan = site.extra.get("plan") if site.remote else load_gpu_plan(run.state_dir)
    gpu_services = [s for s in model.services if gpu_device(model, s, specs[s], plan) is not None]
    gathered = parse_preflight(site.sh(preflight_command(site.root, list(dict.fromkeys(wanted)),
                                                         compose_probe=probe,
                                                         volumes_of=stack.project if other_env else None,
                                                         runtimes=bool(gpu_services)),
                                       timeout=120).stdout)
    facts = Facts(env=env, engine_error=gathered.engine_error, runtimes=gathered.runtimes,
                  missing_files=gathered.missing_files, where=site.where(), gpu_services=gpu_services)
    try:
        facts.compose = (tuple(shlex.split(preferred)) if preferred else known
                         or found_compose(site, gathered.compose_probe or ""))
    except DockerError as exc:
        facts.compose_error, facts.compose_fix = exc.message, exc.fix
    facts.gpu_starved = [s for s in model.services if model.gpu and specs[s].get("gpu_only")
                         and model.vllm_device != "cpu" and s not in facts.gpu_services]
    facts.secrets_present = SecretStore.open(run.state_dir).exists(env)  # kept here, sent to hosts
    running = [c for c in gathered.containers if c["State"] == "running"]
    if not facts.engine_error and other_env and previous is not None:
        facts.previous_env = previous.env
        wanted_volumes = {m["source"] for svc in model.services for m in specs[svc].get("volumes") or []}
        facts.reused_volumes = sorted(v["Name"] for v in gathered.volumes or []
                                      if v["Labels"].get("org.mmstack.volume") in wanted_volumes)
    if not facts.engine_error:
        facts.ports = port_needs(stack, env)
        facts.ports_checked = gathered.listeners is not None
        facts.port_holders = gather_ports(facts.ports, running, stack.project, gathered.listeners or [])
    findings = evaluate(facts)
    bad = [f for f in findings if not f.ok]
    if bad:
        for f in bad:
            rep.failed(f"preflight: {f.item}", f.message + (f" (fix: {f.fix})" if f.fix else ""))
        raise Stop()
    rep.ok("preflight", "; ".join(f"{f.item}: {f.message}" for f in findings if f.item not in ("compose",)))
    return facts.compose, service_containers(gathered.containers, stack.project)


def check_profiles(stack: Any, profiles: tuple[str, ...]) -> None:
    for p in profiles:
        if p not in stack.stack_names and p not in stack.environment_names:
            raise ConfigError(f"unknown profile {p!r}",
                              fix=f"use a stack or environment name: {', '.join(stack.stack_names + stack.environment_names)}")


def start_step(run: Run, env: str, profiles: tuple[str, ...] = (), wait: bool = True,
               timeout: int = 300) -> None:
    """Start ``env`` on this machine."""
    start_at(run, Site.here(run.c, run.stack), run.reporter, env, profiles, wait=wait, timeout=timeout)


def start_at(run: Run, site: Site, rep: Any, env: str, profiles: tuple[str, ...] = (), *,
             wait: bool = True, timeout: int = 300, stack: Any = None, mask: Any = None,
             files_pending: bool = False) -> None:
    """Start ``env`` at ``site``, reporting on ``rep`` (the run's reporter, or a host's).

    ``files_pending``: in check mode, the stack's files would change first (a deploy that has
    not uploaded them): Compose's dry run could only read the old ones, so it is not asked.
    """
    from ..schema.filesets import environment_file_set

    stack = stack if stack is not None else load_stack_cached(run)
    stack.environment(env)  # clear error for an unknown name
    check_profiles(stack, profiles)
    masked = mask or lazy_masker(run, stack)
    fs = environment_file_set(env, tuple(p for p in profiles if p != env))
    previous = read_record(site)
    record = StartRecord(env=env, files=fs.files, profiles=fs.profiles, project=stack.project,
                         compose=previous.compose if previous else ())
    if run.check and files_pending:
        site.put([record_desired(site, record)], rep, check=True, diff=run.diff)
        rep.skipped("stack up", "check mode: files would change first, and Compose's dry run can "
                    "only read the files already there")
        return
    try:
        compose, containers = preflight_step(run, site, rep, stack, env, record, previous)
    except Stop:
        return
    record = replace(record, compose=compose)
    site.put([record_desired(site, record)], rep, check=run.check, diff=run.diff)
    runner = site.compose_runner(compose, record, timeout=timeout + 120)
    services = expected_services(stack, record)
    before = by_service(containers)
    rep.task(f"start {env}")

    if run.check:
        # Compose's own dry run says what `up` would do (its `config --hash` does not always
        # match the label it puts on containers, so hashes are not compared here).
        proc, progress = runner.dry_run_up()
        failure = dry_run_failure(proc, progress, masked, service_images(stack, env))
        if failure:
            rep.failed(f"start {env}", failure)
            return
        actions = dry_run_actions(proc.stdout + proc.stderr, stack.project, before)
        for svc, status, message in check_outcomes(actions, before, services):
            rep.add(Result(svc, status, message))
        return

    stream = stream_progress() and not run.json and not site.remote
    # Nothing else shows progress while Compose waits with its output captured.
    spinner = waiting(f"starting {env}" + (" and waiting for health" if wait else "")) \
        if not stream and not site.remote else nullcontext()
    with spinner:
        proc = runner.up(wait=wait, timeout=timeout, stream=stream)
    after = project_services(site, stack.project)
    failed_rows: dict[str, Any] = {}
    up_bad = up_failed(proc, ready=not (wait and not_ready(after, services)))
    if up_bad or (wait and not_ready(after, services)):
        failed_rows = failing_rows(site, stack, runner, services, masked)
    for svc, status, message in up_outcomes(before, after, services, failed_rows):
        row = failed_rows.get(svc)
        if up_bad and row is not None and row.state == "missing":
            message = f"no container: `up` stopped before creating it (why: [start {env}] below)"
        rep.add(Result(svc, status, message, data={"log_tail": row.log_tail} if row else None))
        for line in row.log_tail if row else ():
            rep.info(f"    {svc} | {line}")
    if up_bad:
        # Compose's own words (the pull that failed, and for which image), not only the
        # services it left behind; streamed output already reached the terminal.
        rep.failed(f"start {env}", compose_failure(UP, proc, masked, service_images(stack, env)))


def up_failed(proc: Any, ready: bool) -> bool:
    """Whether `up` failed. Compose's ``--wait`` exits 1 when any container exits, even a job
    that ran to success (``container p-kibana-setup-1 exited (0)``); such an exit is no failure
    when every service is then as it should be (mmstack's own readiness rules judge one-shots).
    With streamed output (nothing captured) the readiness alone decides a non-zero exit."""
    if proc.returncode == 0:
        return False
    text = f"{proc.stderr or ''}\n{proc.stdout or ''}"
    if not text.strip():
        return not ready
    exits = re.findall(r"^\s*container \S+ exited \((\d+)\)\s*$", text, re.M)
    return not (ready and exits and all(code == "0" for code in exits)
                and not parse_progress(text).problems)


def dry_run_actions(text: str, project: str, before: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Service -> the actions `compose --dry-run up` reported for its container (events.py)."""
    names = {n.lstrip("/"): svc for svc, c in before.items() for n in c.get("Names") or []}
    out: dict[str, set[str]] = {}
    for name, statuses in parse_progress(text).actions_by_name().items():
        out.setdefault(service_of(name, project, names), set()).update(statuses)
    return out


def service_images(stack: Any, env: str) -> dict[str, str]:
    """Service -> the image it runs in ``env`` (settings' image overrides applied)."""
    return {name: stack.image_of(name, spec) for name, spec in stack.resolved_services(env).items()}


def dry_run_failure(proc: Any, progress: Progress, mask: Any = None,
                    images: dict[str, str] | None = None) -> str | None:
    """Why Compose's dry run failed, or None when it succeeded."""
    if proc.returncode == 0 and not progress.problems:
        return None
    return compose_failure("Compose's dry run", proc, mask, images)


def compose_failure(what: str, proc: Any, mask: Any = None, images: dict[str, str] | None = None) -> str:
    """``what`` failed, in Compose's own words (its errors, else its last lines), masked."""
    progress = parse_progress(f"{proc.stderr or ''}\n{proc.stdout or ''}")
    lines = problem_lines(progress.problems, images=images) or \
        [r.strip() for r in (proc.stderr or proc.stdout or "").strip().splitlines() if r.strip()][-6:]
    text = "\n  ".join(lines)
    if mask is not None:
        text = mask(text)
    return f"{what} failed (exit {proc.returncode})" + (f":\n  {text}" if text else "; Compose's output is above")


def failing_rows(site: Site, stack: Any, runner: Any, services: list[str], mask: Any) -> dict[str, Any]:
    """Status rows of the services failing (or still starting) after an `up`, with their
    masked log tails: Compose's ``ps`` and the containers' logs, at the site."""
    from .status import build_rows, schemes

    rows = build_rows(runner.ps(), services, schemes(stack.resolved_services(runner.record.env)))
    out = {}
    for row in rows:
        if row.failed or row.health == "starting":
            if row.container:
                row.log_tail = log_tail(site, row.container, mask)
            out[row.service] = row
    return out
