"""status, stop, restart and logs of what the last start started."""

from __future__ import annotations

import sys
from typing import Any

from ..engine.errors import ConfigError
from ..engine.run import Run
from .compose import ComposeRunner
from .engine import EngineAPI
from .outcomes import not_ready
from .state import StartRecord, require_record
from .common import (LOG_TAIL, by_service, compose_argv, expected_services, load_stack_cached,
                     secret_masker, stream_progress)
from .start import _failing, up_failed


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
    runner.run("stop", stream=stream_progress() and not run.json)
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
    stream = stream_progress() and not run.json
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
