"""The lifecycle steps behind `inv start-*`, status, stop, logs, restart, wipe, backup, restore, reset.

Each step gathers facts (engine, Compose, files), plans with the pure helpers in this package,
applies, and reports one result per service or resource. The CLI module only parses arguments.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError, DockerError
from ..engine.console import is_terminal
from ..engine.report import Result
from ..engine.run import Run, config_value
from .compose import ComposeRunner
from .events import Progress, parse_progress, problem_lines, service_of
from .engine import PROJECT_LABEL, SERVICE_LABEL, EngineAPI
from .outcomes import check_outcomes, not_ready, up_outcomes
from .state import StartRecord, load_record, record_path, require_record, save_record

LOG_TAIL = 20


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------

def compose_argv(run: Run, record: StartRecord | None = None) -> tuple[str, ...]:
    """The Compose command: the one recorded by the last start when it still exists (no probe),
    else `find_compose_command` (which runs `version` on each candidate)."""
    preferred = config_value(run.c, "compose_command")
    if record and record.compose and not preferred:
        exe = record.compose[0]
        if os.path.isabs(exe) and os.access(exe, os.X_OK):
            return record.compose
    from .composecmd import find_compose_command

    return find_compose_command(preferred)


def load_stack_cached(run: Run) -> Any:
    """The validated stack; a schema that already passed with this code is not re-validated."""
    from ..schema.model import load_stack, validation_cache

    cache = validation_cache(run.state_dir, writable=not run.check)
    stack = load_stack(run.stack, cache=cache)
    run.keep(cache)
    return stack


def expected_services(stack: Any, record: StartRecord) -> list[str]:
    """Services the recorded file set runs: the environment's, plus those of extra profiles."""
    names = list(stack.environment(record.env).services)
    for profile in record.profiles:
        if profile == record.env:
            continue
        extra: list[str] = []
        if profile in stack.stack_names:
            extra = stack.dependency_closure(list(stack.data["stacks"][profile]["services"]))
        elif profile in stack.environment_names:
            extra = stack.environment(profile).services
        names += [s for s in extra if s not in names]
    order = stack.service_names
    return sorted(names, key=order.index)


def by_service(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in containers:
        out.setdefault(c.get("Labels", {}).get(SERVICE_LABEL, ""), c)
    return out


def secret_masker(run: Run, stack: Any) -> Any:
    """A function hiding every stored secret value in a text (identity when none can be read)."""
    from ..engine.masking import masker

    try:
        from ..secrets.api import all_secret_values

        values = list(all_secret_values(run, stack))
    except Exception:  # noqa: BLE001 - masking must never break status
        values = []
    return masker(values)


def confirm(question: str, yes: bool, what: str) -> None:
    """Ask the user to type ``yes``; refuse without a terminal unless ``--yes`` was given."""
    if yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfigError(f"refusing to {what} without confirmation: no terminal to ask on",
                          fix="pass --yes to confirm from a script, or --check to only list")
    sys.stderr.write(f"{question}\nType yes to continue: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != "yes":
        raise ConfigError(f"cancelled: nothing was done ({what} needs the answer 'yes')", exit_code=1)


def _stream() -> bool:
    """Compose's own progress (pulls, ``--wait``) goes straight to a terminal."""
    return is_terminal(sys.stdout)


# ----------------------------------------------------------------------------------------------
# Preflight
# ----------------------------------------------------------------------------------------------

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
        raise _Stop()
    rep.ok("preflight", "; ".join(f"{f.item}: {f.message}" for f in findings if f.item not in ("compose",)))
    project_containers = [c for c in running if c.get("Labels", {}).get("com.docker.compose.project") == stack.project]
    return facts.compose, project_containers


class _Stop(Exception):
    """A step reported its failures; finish the run now."""


# ----------------------------------------------------------------------------------------------
# start
# ----------------------------------------------------------------------------------------------

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
    except _Stop:
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
    stream = _stream() and not run.json
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


# ----------------------------------------------------------------------------------------------
# status / stop / restart / logs
# ----------------------------------------------------------------------------------------------

def _recorded(run: Run) -> tuple[Any, StartRecord, ComposeRunner]:

    record = require_record(run.state_dir)
    stack = load_stack_cached(run)
    return stack, record, ComposeRunner(compose_argv(run, record), run.stack, record)


def status_step(run: Run) -> list[Any]:
    from .status import build_rows, schemes, table

    rep = run.reporter
    stack, record, runner = _recorded(run)
    api = EngineAPI()
    api.version()
    rows = build_rows(runner.ps(), expected_services(stack, record), schemes(stack.resolved_services(record.env)))
    mask = None
    for row in rows:
        if row.failed and row.container:
            mask = mask or secret_masker(run, stack)
            row.log_tail = mask(api.logs(row.container, LOG_TAIL)).rstrip("\n").splitlines()
    if not run.json:
        rep.info(f"environment {record.env} (project {record.project}, "
                 f"{' '.join(record.compose_args())})")
        rep.info(table(rows))
    for row in rows:
        if row.failed:
            rep.failed(row.service, row.summary, data={"log_tail": row.log_tail} if row.log_tail else None)
            if not run.json:
                for line in row.log_tail:
                    rep.info(f"    {row.service} | {line}")
        else:
            rep.ok(row.service, row.summary + (f" {row.url}" if row.url else ""))
    run.add_output("environment", record.env)
    run.add_output("project", record.project)
    run.add_output("services", [r.to_dict() for r in rows])
    return rows


def stop_step(run: Run) -> None:
    rep = run.reporter
    stack, record, runner = _recorded(run)
    rep.task(f"stop {record.env}")
    api = EngineAPI()
    before = by_service(api.project_containers(record.project))
    if run.check:
        for svc, c in sorted(before.items()):
            (rep.changed if c.get("State") == "running" else rep.ok)(
                svc, "would be stopped" if c.get("State") == "running" else c.get("State", ""))
        return
    runner.run("stop", stream=_stream() and not run.json)
    after = by_service(api.project_containers(record.project))
    for svc, c in sorted(before.items()):
        now = after.get(svc, {}).get("State", "removed")
        if c.get("State") == "running" and now != "running":
            rep.changed(svc, "stopped")
        elif now == "running":
            rep.failed(svc, "still running after `docker compose stop`")
        else:
            rep.ok(svc, f"already {now}")
    if not before:
        rep.ok(record.project, "no containers")


def restart_step(run: Run, services: list[str], timeout: int) -> None:
    """Recreate what changed (new env files after a rotation), restart the rest, wait healthy."""
    rep = run.reporter
    stack, record, runner = _recorded(run)
    known = expected_services(stack, record)
    unknown = [s for s in services if s not in known]
    if unknown:
        raise ConfigError(f"not part of the started set ({record.env}): {', '.join(unknown)}",
                          fix=f"use one of: {', '.join(known)}")
    targets = services or known
    rep.task(f"restart {record.env}")
    api = EngineAPI()
    before = by_service(api.project_containers(record.project))
    if run.check:
        for svc in targets:
            rep.changed(svc, "would be restarted")
        return
    stream = _stream() and not run.json
    proc = runner.run("up", "-d", "--no-deps", "--wait", "--wait-timeout", str(timeout), *targets,
                      stream=stream, check=False)
    mid = by_service(api.project_containers(record.project))
    plain = [s for s in targets if s in before and s in mid and before[s]["Id"] == mid[s]["Id"]]
    if plain and proc.returncode == 0:
        runner.run("restart", *plain, stream=stream)
        proc = runner.run("up", "-d", "--no-deps", "--wait", "--wait-timeout", str(timeout), *plain,
                          stream=stream, check=False)
    after = by_service(api.project_containers(record.project))
    stuck = up_failed(proc, ready=not not_ready(after, targets)) or not_ready(after, targets)
    failing = _failing(run, stack, runner, api, targets) if stuck else {}
    for svc in targets:
        if svc in failing:
            rep.failed(svc, failing[svc].summary, data={"log_tail": failing[svc].log_tail})
            for line in failing[svc].log_tail:
                rep.info(f"    {svc} | {line}")
        elif svc in plain:
            rep.changed(svc, "restarted")
        else:
            rep.changed(svc, "recreated (configuration changed)" if svc in before else "created")


def logs_step(run: Run, services: list[str], tail: int, follow: bool) -> int:
    import subprocess

    stack, record, runner = _recorded(run)
    mask = secret_masker(run, stack)
    args = ["logs", "--no-color", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    proc = subprocess.Popen(runner.argv(*args, *services), cwd=run.stack, env=runner._env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(mask(line))
            sys.stdout.flush()
    except KeyboardInterrupt:
        proc.terminate()
    return proc.wait()


# ----------------------------------------------------------------------------------------------
# wipe / backup / restore / reset
# ----------------------------------------------------------------------------------------------

def generated_paths(run: Run, stack: Any) -> list[Path]:
    """What `--all` deletes besides the engine's resources: generated files, secrets, record."""
    from ..schema.generate import BASE_FILE, ENV_DIR, env_file_name
    from ..secrets.store import SECRETS_DIR

    paths = [run.stack / BASE_FILE] + [run.stack / env_file_name(e) for e in stack.environment_names]
    paths += [run.stack / ENV_DIR, run.state_dir / SECRETS_DIR, record_path(run.state_dir)]
    return [p for p in paths if p.exists()]


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def stop_containers(client: Any, project: str, timeout: int) -> list[Any]:
    """Stop the project's running containers (in parallel); returns those that were running."""
    from concurrent.futures import ThreadPoolExecutor

    from .wipe import project_filter

    running = [c for c in client.containers.list(filters=project_filter(project))]
    if running:
        with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
            list(pool.map(lambda c: c.stop(timeout=timeout), running))
    return running


def backup_root(run: Run) -> Path:
    configured = config_value(run.c, "stack.backup_dir")
    path = Path(configured) if configured else run.stack / "backups"
    return path if path.is_absolute() else run.stack / path


def _backup(run: Run, client: Any, project: str) -> Path | None:
    from .backup import backup_volumes

    rep = run.reporter
    path = backup_volumes(client, project, backup_root(run), config_value(run.c, "stack.backup_image"),
                          report=lambda b: rep.changed(f"backup {b.volume}",
                                                       f"{b.archive} ({b.size} bytes)"))
    if path is None:
        rep.ok("backup", "the project has no volumes")
    else:
        rep.info(f"backup saved to {path}")
        run.add_output("backup", str(path))
    return path


def wipe_step(run: Run, yes: bool, all_files: bool, backup: bool, confirmed: bool = False) -> bool:
    """Returns False when the wipe failed for some resource."""
    from .engine import sdk_client
    from .wipe import apply_wipe, plan_wipe, report_outcome

    rep = run.reporter
    stack = load_stack_cached(run)
    project = stack.project
    client = sdk_client()
    plan = plan_wipe(client, project)
    files = generated_paths(run, stack) if all_files else []
    rep.task(f"wipe {project}")
    description = plan.describe()
    if files:
        description += "\n  files (--all):\n" + "\n".join(f"    - {p}" for p in files)
    if not run.json:
        rep.info(description)
    if run.check:
        for r in plan.resources:
            rep.changed(r.label, "would be removed" + (" (after a backup)" if backup and r.kind == "volume" else ""))
        for p in files:
            rep.changed(str(p.relative_to(run.stack)), "would be deleted")
        if plan.empty and not files:
            rep.ok(project, "nothing to wipe")
        return True
    if plan.empty and not files:
        rep.ok(project, "nothing to wipe: no container, network or volume has the project label")
        return True
    if not confirmed:
        confirm(f"This deletes everything listed above{' (volumes are backed up first)' if backup else ''}.",
                yes, "wipe")
    if backup and plan.volumes:
        stop_containers(client, project, int(config_value(run.c, "stack.stop_timeout")))
        _backup(run, client, project)

    started = time.monotonic()
    outcomes = apply_wipe(client, plan, int(config_value(run.c, "stack.wipe_stop_timeout")),
                          lambda o: report_outcome(rep, o))
    for p in files:
        try:
            _remove_path(p)
            rep.changed(str(p.relative_to(run.stack)), "deleted")
        except FileNotFoundError:
            rep.ok(str(p.relative_to(run.stack)), "already gone")
        except OSError as exc:
            rep.failed(str(p.relative_to(run.stack)), exc.strerror or str(exc))
    failed = [o.resource.label for o in outcomes if o.status == "failed"]
    if failed:
        rep.info("could not remove: " + ", ".join(failed))
    rep.info(f"wiped in {time.monotonic() - started:.1f}s")
    return not failed


def backup_step(run: Run) -> Path | None:
    from .engine import sdk_client
    from .backup import project_volumes

    rep = run.reporter
    stack = load_stack_cached(run)
    client = sdk_client()
    rep.task(f"backup {stack.project}")
    if run.check:
        for v in project_volumes(client, stack.project):
            rep.changed(f"backup {v.name}", "would be archived")
        return None
    stopped = stop_containers(client, stack.project, int(config_value(run.c, "stack.stop_timeout")))
    for c in stopped:
        rep.changed(c.name, "stopped for a consistent copy")
    try:
        return _backup(run, client, stack.project)
    finally:
        if stopped:
            record = load_record(run.state_dir)
            if record is not None and record.project == stack.project:
                runner = ComposeRunner(compose_argv(run, record), run.stack, record)
                runner.run("start", stream=_stream() and not run.json)
            else:
                for c in stopped:
                    c.start()
            for c in stopped:
                rep.changed(c.name, "started again")


def restore_step(run: Run, archive: str, yes: bool) -> None:
    from .backup import load_manifest, restore_volumes
    from .engine import sdk_client
    from .wipe import project_filter

    rep = run.reporter
    stack = load_stack_cached(run)
    path = Path(archive)
    if not path.is_absolute() and not path.exists():
        path = backup_root(run) / archive
    directory, manifest = load_manifest(path)
    client = sdk_client()
    rep.task(f"restore {stack.project}")
    running = client.containers.list(filters=project_filter(stack.project))
    if running:
        names = ", ".join(sorted(c.name for c in running))
        raise DockerError(f"refusing to restore over a running stack ({names})",
                          fix="stop it first: `inv stop` (or `inv wipe`)")
    if run.check:
        for v in manifest["volumes"]:
            rep.changed(f"volume {stack.project}_{v['compose_name']}", f"would be restored from {v['archive']}")
        return
    rep.info(f"restoring {len(manifest['volumes'])} volume(s) of {manifest.get('project')} "
             f"from {directory} (taken {manifest.get('created')})")
    confirm("The volumes above are replaced by the backup's contents.", yes, "restore")
    restore_volumes(client, stack.project, directory, manifest, config_value(run.c, "stack.backup_image"),
                    report=lambda name, what: rep.changed(f"volume {name}", what))
