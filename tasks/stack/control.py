"""status, stop, restart and logs of what the last start started, at a `Site`: this machine
or a host over SSH, the same Compose and docker CLI commands through ``site.sh``.

Each ``*_at`` is the work at one site; each ``*_step`` runs it over the task's targets
(`stack.targets`: this host, or the selected inventory hosts), so a task is one code path for
both. Logs is the exception (see `logs_step`).
"""

from __future__ import annotations

import sys
from typing import Any

from ..engine.errors import ConfigError, DockerError
from ..engine.run import Run
from .common import compose_at, expected_services, lazy_masker, load_stack_cached, stream_progress
from .facts import engine_unreachable, log_tail, project_services
from .outcomes import not_ready
from .site import Site
from .start import failing_rows, up_failed
from .state import StartRecord, require_record
from .targets import Here


def recorded(run: Run, site: Site, stack: Any = None) -> tuple[Any, StartRecord, Any]:
    """(stack, the site's start record, a Compose runner for exactly that file set)."""
    record = require_record(site)
    stack = stack if stack is not None else load_stack_cached(run)
    runner = site.compose_runner(compose_at(run, site, record), record, timeout=None if not site.remote else 300)
    return stack, record, runner


def compose_ps(site: Site, runner: Any) -> list[dict[str, Any]]:
    """Compose's ``ps``; an engine that does not answer is said so, with the fix."""
    try:
        return runner.ps()
    except DockerError as exc:
        if "Cannot connect to the Docker daemon" in exc.message or "docker daemon" in exc.message.lower():
            raise engine_unreachable(site, exc.message) from None
        raise


def say_started_set(rep: Any, record: StartRecord) -> None:
    """What the site's last start started: the line under a control step's heading (which
    names only the step, as the one heading over every host must)."""
    rep.info(f"environment {record.env} (project {record.project}, {' '.join(record.compose_args())})")


# ----------------------------------------------------------------------------------------------
# status
# ----------------------------------------------------------------------------------------------

def status_at(run: Run, site: Site, rep: Any, *, stack: Any = None, mask: Any = None) -> dict[str, Any]:
    """One row per service (state, health, URL; a failing one with its masked log tail);
    returns the ``{environment, project, services}`` document."""
    from .status import build_rows, schemes, table

    stack, record, runner = recorded(run, site, stack)
    mask = mask or lazy_masker(run, stack)
    rows = build_rows(compose_ps(site, runner), expected_services(stack, record),
                      schemes(stack.resolved_services(record.env)))
    for row in rows:
        if row.failed and row.container:
            row.log_tail = log_tail(site, row.container, mask)
    if not run.json:
        say_started_set(rep, record)
        for line in table(rows).splitlines():
            rep.info(line)
    for row in rows:
        if row.failed:
            rep.failed(row.service, row.summary, data={"log_tail": row.log_tail} if row.log_tail else None)
            if not run.json:
                for line in row.log_tail:
                    rep.info(f"    {row.service} | {line}")
        else:
            rep.ok(row.service, row.summary + (f" {row.url}" if row.url else ""))
    return {"environment": record.env, "project": record.project, "services": [r.to_dict() for r in rows]}


def status_step(run: Run, targets: Any = None) -> dict[str, dict[str, Any]]:
    """`status_at` at every target; returns each site's document by site name.

    The outputs: here the document's own keys (``environment``, ``project``, ``services``),
    on hosts one document per host under ``status``, beside the ``hosts`` recap."""
    targets = targets or Here(run)
    stack = load_stack_cached(run)
    mask = lazy_masker(run, stack)
    found: dict[str, dict[str, Any]] = {}

    def look(site: Site, rep: Any) -> None:
        found[site.name] = status_at(run, site, rep, stack=stack, mask=mask)

    targets.each(look, title="status", lock=False)
    if targets.local:
        for doc in found.values():
            for key in ("environment", "project", "services"):
                run.add_output(key, doc[key])
    else:
        targets.output("status", found)
    targets.finish()
    return found


# ----------------------------------------------------------------------------------------------
# stop, restart
# ----------------------------------------------------------------------------------------------

def stop_outcomes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]] | None
                  ) -> list[tuple[str, str, str]]:
    """Pure: ``(service, status, message)`` for a stop; ``after`` None: what a stop would do."""
    out = []
    for svc, c in sorted(before.items()):
        was = str(c.get("State", ""))
        if after is None:
            out.append((svc, "changed", "would be stopped") if was == "running" else (svc, "ok", was))
            continue
        now = str(after.get(svc, {}).get("State", "removed"))
        if was == "running" and now != "running":
            out.append((svc, "changed", "stopped"))
        elif now == "running":
            out.append((svc, "failed", "still running after `docker compose stop`"))
        else:
            out.append((svc, "ok", f"already {now}"))
    return out


def _report(rep: Any, status: str, item: str, message: str, **kw: Any) -> None:
    getattr(rep, status)(item, message, **kw)


def stop_at(run: Run, site: Site, rep: Any) -> None:
    stack, record, runner = recorded(run, site)
    say_started_set(rep, record)
    before = project_services(site, record.project)
    if run.check:
        for svc, status, message in stop_outcomes(before, None):
            _report(rep, status, svc, message)
        return
    runner.run("stop", stream=stream_progress() and not run.json and not site.remote)
    for svc, status, message in stop_outcomes(before, project_services(site, record.project)):
        _report(rep, status, svc, message)
    if not before:
        rep.ok(record.project, "no containers")


def stop_step(run: Run, targets: Any = None) -> None:
    """`stop_at` at every target (on a host under its lock; here the task holds this stack's)."""
    targets = targets or Here(run)
    targets.each(lambda site, rep: stop_at(run, site, rep), title="stop", lock=True)
    targets.finish()


def restart_plan(before: dict[str, dict[str, Any]], mid: dict[str, dict[str, Any]],
                 targets: list[str]) -> list[str]:
    """Pure: the targets the first `up` left in place (the same container): those still need
    a plain restart; the others were recreated or created by it."""
    from .outcomes import container_id

    return [s for s in targets if s in before and s in mid and container_id(before[s]) == container_id(mid[s])]


def restart_outcomes(before: dict[str, dict[str, Any]], plain: list[str], targets: list[str],
                     failing: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Pure: ``(service, status, message)`` per restarted service."""
    out = []
    for svc in targets:
        if svc in failing:
            out.append((svc, "failed", failing[svc].summary))
        elif svc in plain:
            out.append((svc, "changed", "restarted"))
        else:
            out.append((svc, "changed", "recreated (configuration changed)" if svc in before else "created"))
    return out


def restart_at(run: Run, site: Site, rep: Any, services: list[str], timeout: int) -> None:
    """Recreate what changed (new env files after a rotation), restart the rest, wait healthy."""
    stack, record, runner = recorded(run, site)
    known = expected_services(stack, record)
    unknown = [s for s in services if s not in known]
    if unknown:
        raise ConfigError(f"not part of the started set ({record.env}): {', '.join(unknown)}",
                          fix=f"use one of: {', '.join(known)}")
    targets = services or known
    say_started_set(rep, record)
    if run.check:
        for svc in targets:
            rep.changed(svc, "would be restarted")
        return
    before = project_services(site, record.project)
    stream = stream_progress() and not run.json and not site.remote
    wait = ("--wait", "--wait-timeout", str(timeout))
    proc = runner.run("up", "-d", "--no-deps", *wait, *targets, stream=stream, check=False,
                      timeout=timeout + 120)
    plain = restart_plan(before, project_services(site, record.project), targets)
    if plain and proc.returncode == 0:
        runner.run("restart", *plain, stream=stream)
        proc = runner.run("up", "-d", "--no-deps", *wait, *plain, stream=stream, check=False,
                          timeout=timeout + 120)
    after = project_services(site, record.project)
    stuck = up_failed(proc, ready=not not_ready(after, targets)) or not_ready(after, targets)
    failing = failing_rows(site, stack, runner, targets, lazy_masker(run, stack)) if stuck else {}
    for svc, status, message in restart_outcomes(before, plain, targets, failing):
        data = {"log_tail": failing[svc].log_tail} if svc in failing else None
        _report(rep, status, svc, message, **({"data": data} if data else {}))
        for line in failing[svc].log_tail if svc in failing else ():
            rep.info(f"    {svc} | {line}")


def restart_step(run: Run, targets: Any, services: list[str], timeout: int) -> None:
    """`restart_at` at every target (on a host under its lock; here the task holds this stack's)."""
    targets = targets or Here(run)
    targets.each(lambda site, rep: restart_at(run, site, rep, services, timeout), title="restart", lock=True)
    targets.finish()


# ----------------------------------------------------------------------------------------------
# logs
# ----------------------------------------------------------------------------------------------

def logs_at(run: Run, site: Site, services: list[str], tail: int, follow: bool, *,
            prefix: str = "", lock: Any = None) -> int:
    """Compose's logs of the started services, streamed line by line with every stored secret
    masked (and each line prefixed, when several hosts write); returns Compose's exit status."""
    from ..engine.streams import LineWriter

    stack, record, runner = recorded(run, site)
    mask = lazy_masker(run, stack)
    args = ["logs", "--no-color", "--tail", str(int(tail))]
    if follow:
        args.append("--follow")
    out = LineWriter(sys.stdout, lock, prefix, mask)
    err = LineWriter(sys.stderr, out.lock, prefix, mask)
    executor = runner.execute
    try:
        result = site.sh(executor.command(runner.argv(*args, *services)), out=out, err=err)
    finally:
        out.flush()
        err.flush()
    return int(result.exited or 0)


def logs_step(run: Run, targets: Any, services: list[str], tail: int, follow: bool) -> int:
    """`logs_at` at every target; returns the task's exit status.

    The one step that does not run here through ``targets.each``: on this host its output is
    Compose's own stream, with no heading and no recap (so ``inv logs | grep`` reads only log
    lines), and Compose's exit status is the task's. On hosts each line starts with its host,
    each host's outcome is a result in the recap, and ``--follow`` needs every host at once (a
    follow never ends, so a host waiting for a fork would never be read) and a Ctrl-C that ends
    the follows by closing their connections, so the workers return and the recap still prints.
    """
    targets = targets or Here(run)
    if targets.local:
        return logs_at(run, Site.here(run.c, run.stack), services, tail, follow)
    import signal
    import threading

    lock = threading.Lock()   # one line at a time, whichever host wrote it
    open_sites: list[Site] = []
    interrupted = threading.Event()

    def job(site: Site, rep: Any) -> None:
        open_sites.append(site)
        code = logs_at(run, site, services, tail, follow, prefix=site.name, lock=lock)
        if interrupted.is_set():
            rep.ok("logs", "stopped following (interrupted)")
        else:
            (rep.failed if code else rep.ok)("logs", f"`docker compose logs` exited {code}")

    def stop_following(*_: Any) -> None:
        interrupted.set()
        for site in list(open_sites):
            site.c.close()

    if follow:
        targets.forks = max(1, len(targets.selected))
    previous = signal.signal(signal.SIGINT, stop_following) if follow else None
    try:
        targets.each(job, title="logs", lock=False)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    targets.finish()
    return 0
