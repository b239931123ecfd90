"""wipe, backup and restore: the steps that remove or copy the project's resources."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ..engine.errors import DockerError
from ..engine.run import Run, config_value
from .compose import ComposeRunner
from .state import load_record, record_path
from .common import compose_argv, confirm, load_stack_cached, stream_progress


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
                runner.run("start", stream=stream_progress() and not run.json)
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
