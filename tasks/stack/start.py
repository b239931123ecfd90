"""`inv start-*`: preflight, then `compose up` (or its dry run), one result per service."""

from __future__ import annotations

import re
from typing import Any

from ..engine.errors import ConfigError, DockerError
from ..engine.report import Result
from ..engine.run import Run
from .compose import ComposeRunner
from .events import Progress, parse_progress, problem_lines, service_of
from .engine import PROJECT_LABEL, EngineAPI
from .outcomes import check_outcomes, not_ready, up_outcomes
from .state import StartRecord, load_record, save_record
from .common import (LOG_TAIL, Stop, by_service, compose_argv, expected_services, load_stack_cached,
                     secret_masker, stream_progress)


def preflight_step(run: Run, stack: Any, env: str, record: StartRecord, api: EngineAPI,
                   previous: StartRecord | None) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Run every check; report failures one by one (or a single ok). Returns (compose argv,
    the project's containers) or raises when a check failed."""
    from ..schema.generate import env_file_refs, gpu_device
    from ..schema.steps import load_gpu_plan
    from ..secrets.store import SecretStore
    from .preflight import Facts, evaluate, gather_ports, port_needs

    rep = run.reporter
    rep.task("preflight")
    model = stack.environment(env)
    specs = stack.resolved_services(env)
    facts = Facts(env=env)
    running: list[dict[str, Any]] = []
    try:
        info = api.info()
        facts.runtimes = set((info.get("Runtimes") or {}).keys())
        running = api.containers(all=False)
    except DockerError as exc:
        facts.engine_error = exc.message
    try:
        facts.compose = compose_argv(run, previous)
    except DockerError as exc:
        facts.compose_error = exc.message
    # Exactly the services the generated overlay reserves a GPU for (a CPU-only plan: none).
    plan = load_gpu_plan(run.state_dir)
    facts.gpu_services = [s for s in model.services if gpu_device(model, s, specs[s], plan) is not None]
    facts.gpu_starved = [s for s in model.services if model.gpu and specs[s].get("gpu_only")
                         and model.vllm_device != "cpu" and s not in facts.gpu_services]
    wanted = list(record.files)
    for svc in model.services:
        wanted += env_file_refs(stack, env, svc, specs[svc])
    facts.missing_files = [f for f in dict.fromkeys(wanted) if not (run.stack / f).is_file()]
    facts.secrets_present = SecretStore.open(run.state_dir).exists(env)
    if not facts.engine_error and previous is not None and previous.env != env:
        facts.previous_env = previous.env
        wanted_volumes = {m["source"] for svc in model.services for m in specs[svc].get("volumes") or []}
        existing = api.volumes({PROJECT_LABEL: stack.project})
        facts.reused_volumes = sorted(v["Name"] for v in existing
                                      if (v.get("Labels") or {}).get("org.mmstack.volume") in wanted_volumes)
    if not facts.engine_error:
        facts.ports = port_needs(stack, env)
        facts.port_holders = gather_ports(facts.ports, running, stack.project)
    findings = evaluate(facts)
    bad = [f for f in findings if not f.ok]
    if bad:
        for f in bad:
            rep.failed(f"preflight: {f.item}", f.message + (f" (fix: {f.fix})" if f.fix else ""))
        raise Stop()
    rep.ok("preflight", "; ".join(f"{f.item}: {f.message}" for f in findings if f.item not in ("compose",)))
    project_containers = [c for c in running if c.get("Labels", {}).get("com.docker.compose.project") == stack.project]
    return facts.compose, project_containers


def start_step(run: Run, env: str, profiles: tuple[str, ...] = (), wait: bool = True,
               timeout: int = 300) -> None:
    from ..schema.filesets import environment_file_set
    rep = run.reporter
    stack = load_stack_cached(run)
    stack.environment(env)  # clear error for an unknown name
    for p in profiles:
        if p not in stack.stack_names and p not in stack.environment_names:
            raise ConfigError(f"unknown profile {p!r}",
                              fix=f"use a stack or environment name: {', '.join(stack.stack_names + stack.environment_names)}")
    fs = environment_file_set(env, tuple(p for p in profiles if p != env))
    previous = load_record(run.state_dir)
    record = StartRecord(env=env, files=fs.files, profiles=fs.profiles, project=stack.project)
    api = EngineAPI()
    try:
        compose, _ = preflight_step(run, stack, env, record, api, previous)
    except Stop:
        return
    record = StartRecord(env=env, files=fs.files, profiles=fs.profiles, project=stack.project,
                         compose=compose)
    runner = ComposeRunner(compose, run.stack, record)
    services = expected_services(stack, record)
    before = by_service(api.project_containers(stack.project))
    rep.task(f"start {env}")

    if run.check:
        # Compose's own dry run says what `up` would do (its `config --hash` does not always
        # match the label it puts on containers, so hashes are not compared here).
        proc, progress = runner.dry_run_up()
        failure = dry_run_failure(proc, progress, secret_masker(run, stack), service_images(stack, env))
        if failure:
            rep.failed(f"start {env}", failure)
            return
        actions = dry_run_actions(proc.stdout + proc.stderr, stack.project, before)
        for svc, status, message in check_outcomes(actions, before, services):
            rep.add(Result(svc, status, message))
        return

    if previous != record:
        save_record(run.state_dir, record)
    stream = stream_progress() and not run.json
    proc = runner.up(wait=wait, timeout=timeout, stream=stream)
    after = by_service(api.project_containers(stack.project))
    failed_rows: dict[str, Any] = {}
    up_bad = up_failed(proc, ready=not (wait and not_ready(after, services)))
    if up_bad or (wait and not_ready(after, services)):
        failed_rows = _failing(run, stack, runner, api, services)
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
        rep.failed(f"start {env}", compose_failure("`docker compose up`", proc, secret_masker(run, stack),
                                                   service_images(stack, env)))


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


def _failing(run: Run, stack: Any, runner: ComposeRunner, api: EngineAPI, services: list[str]) -> dict[str, Any]:
    from .status import build_rows, schemes

    rows = build_rows(runner.ps(), services, schemes(stack.resolved_services(runner.record.env)))
    mask = None
    out = {}
    for row in rows:
        if row.failed or row.health == "starting":
            if row.container:
                mask = mask or secret_masker(run, stack)
                row.log_tail = mask(api.logs(row.container, LOG_TAIL)).rstrip("\n").splitlines()
            out[row.service] = row
    return out
