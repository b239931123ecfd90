"""wipe, backup and restore: the steps that remove or copy the project's resources.

Each step is written once against a `Site` and runs wherever its targets say (`stack.targets`):
this host, or every selected inventory host. A step that asks first gathers at every site, asks
once for all of them, then changes.
"""

from __future__ import annotations

import posixpath
import time
from typing import Any

from ..engine.errors import DockerError
from ..engine.run import Run, config_value
from .common import compose_argv, confirm, load_stack_cached
from .targets import Here


def backups_root(run: Run, site: Any) -> str:
    """``mmstack.stack.backup_dir`` at the site (relative: to its stack directory)."""
    return site.path(str(config_value(run.c, "stack.backup_dir") or "backups"))


def _compose_of(run: Run, site: Any):  # type: ignore[no-untyped-def]
    """The Compose command for a site's start record: here found as `inv start-*` finds it, on a
    host the one deploy recorded there."""
    def pick(record: Any) -> tuple[str, ...] | None:
        if site.remote:
            return tuple(record.compose) or None
        return compose_argv(run, record)
    return pick


def _stop(run: Run, site: Any, rep: Any, project: str) -> list[Any]:
    from .backup import running_containers, stop_containers

    running = running_containers(site, project)
    stop_containers(site, running, int(config_value(run.c, "stack.stop_timeout")))
    for c in running:
        rep.changed(c.name, "stopped for a consistent copy")
    return running


def _backup_at(run: Run, site: Any, rep: Any, project: str, volumes: list[Any], progress: bool) -> str | None:
    from .backup import backup_volumes

    if not volumes:
        rep.ok("backup", "the project has no volumes")
        return None
    path = backup_volumes(site, project, backups_root(run, site), volumes,
                          config_value(run.c, "stack.backup_image"), rep, show_progress=progress)
    rep.info(f"backup saved to {path}")
    return path


# -- wipe --------------------------------------------------------------------------------------

def wipe_step(run: Run, yes: bool, all_files: bool, backup: bool, confirmed: bool = False,
              targets: Any = None) -> bool:
    """Returns False when the wipe failed for some resource at some site."""
    from .wipe import apply, gather

    targets = targets or Here(run)
    stack = load_stack_cached(run)
    project = stack.project
    gathered: dict[str, Any] = {}

    def look(site: Any, rep: Any) -> None:
        found = gather(site, stack, all_files)
        gathered[site.name] = found
        if not run.json:
            for line in found.describe(site.root).splitlines():
                rep.info(line)
        if found.empty:
            rep.ok(project, "nothing to wipe: no container, network or volume has the project label")
        elif run.check:
            for r in found.plan.resources:
                rep.changed(r.label, "would be removed" + (" (after a backup)" if backup and r.kind == "volume" else ""))
            for p in found.files:
                rep.changed(posixpath.relpath(p, site.root), "would be deleted")

    targets.each(look, title=f"wipe {project}", lock=False)
    todo = [name for name, found in gathered.items() if not found.empty]
    not_removed: dict[str, list[str]] = {}
    backups: dict[str, str] = {}
    if todo and not run.check:
        if not confirmed:
            confirm(f"This deletes everything listed above on {targets.describe(todo)}"
                    f"{' (volumes are backed up first)' if backup else ''}.", yes, "wipe")
        stop_timeout = int(config_value(run.c, "stack.wipe_stop_timeout"))

        def remove(site: Any, rep: Any) -> None:
            found = gathered[site.name]
            if backup and found.plan.volumes:
                from .resources import volumes as list_volumes

                _stop(run, site, rep, project)
                path = _backup_at(run, site, rep, project, list_volumes(site, project), targets.progress)
                if path:
                    backups[site.name] = path
            started = time.monotonic()
            failed = apply(site, rep, found, stop_timeout)
            if failed:
                not_removed[site.name] = failed
                rep.info("could not remove: " + ", ".join(failed))
            rep.info(f"wiped in {time.monotonic() - started:.1f}s")

        targets.each(remove, title=f"wipe {project}", lock=True, only=todo)
        targets.output("not_removed", not_removed)
        if backups:
            targets.output("backup", backups)
    run.add_output("project", project)
    targets.finish()
    return not not_removed


# -- backup ------------------------------------------------------------------------------------

def backup_step(run: Run, targets: Any = None) -> None:
    from .backup import start_again
    from .resources import volumes as list_volumes

    targets = targets or Here(run)
    stack = load_stack_cached(run)
    project = stack.project
    saved: dict[str, str] = {}

    def job(site: Any, rep: Any) -> None:
        vols = list_volumes(site, project)
        if run.check or not vols:
            for v in vols:
                rep.changed(f"backup {v.name}", "would be archived")
            if not vols:
                rep.ok("backup", "the project has no volumes")
            return
        stopped = _stop(run, site, rep, project)
        try:
            path = _backup_at(run, site, rep, project, vols, targets.progress)
            if path:
                saved[site.name] = path
        finally:
            if stopped:
                start_again(site, project, stopped, _compose_of(run, site))
                for c in stopped:
                    rep.changed(c.name, "started again")

    targets.each(job, title=f"backup {project}", lock=True)
    if saved:
        targets.output("backup", saved)
    targets.finish()


# -- restore -----------------------------------------------------------------------------------

def _refuse_running(site: Any, project: str) -> None:
    from .backup import running_containers

    running = running_containers(site, project)
    if running:
        names = ", ".join(c.name for c in running)
        raise DockerError(f"refusing to restore over a running stack on {site.where()} ({names})",
                          fix="stop it first: `inv stop` (or `inv wipe`)")


def restore_step(run: Run, archive: str, yes: bool, targets: Any = None) -> None:
    from .backup import find_backup, restore_volumes, verify_backup, volume_name

    targets = targets or Here(run)
    stack = load_stack_cached(run)
    project = stack.project
    found: dict[str, Any] = {}

    def look(site: Any, rep: Any) -> None:
        backup = find_backup(site, project, backups_root(run, site), archive)
        _refuse_running(site, project)
        verify_backup(site, backup)
        found[site.name] = backup
        manifest = backup.manifest
        if run.check:
            for v in manifest["volumes"]:
                rep.changed(f"volume {volume_name(project, v)}", f"would be restored from {v['archive']}")
            return
        rep.info(f"restoring {len(manifest['volumes'])} volume(s) of {manifest.get('project')} "
                 f"from {backup.directory} (taken {manifest.get('created')})")

    targets.each(look, title=f"restore {project}", lock=False)
    if found and not run.check:
        confirm(f"The volumes above are replaced by the backup's contents on {targets.describe(found)}.",
                yes, "restore")

        def put_back(site: Any, rep: Any) -> None:
            _refuse_running(site, project)   # nothing may have started since the listing
            restore_volumes(site, project, found[site.name], config_value(run.c, "stack.backup_image"),
                            rep, show_progress=targets.progress)

        targets.each(put_back, title=f"restore {project}", lock=True, only=list(found))
    targets.finish()
