"""Wiping the project on a remote host, over one Fabric connection.

Wipe lists the project's containers, networks and volumes with the docker CLI's own label
filter (``com.docker.compose.project=<project>``), never by name and never a prune; the
listing and the per-resource outcomes are parsed by pure functions. (Starting, status, stop,
restart and logs on hosts are the local steps of `stack.start` and `stack.control` run over a
`stack.site.Site`; `remote-run` is `remote.taskrun`.)
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import RemoteError
from ..engine.layout import STATE_DIR
from ..stack.engine import PROJECT_LABEL, SERVICE_LABEL
from ..stack.state import RECORD_FILE
from ..stack.wipe import Outcome, Resource, WipePlan, report_outcome
from .sync import shell_path


def _tail(text: str | None, lines: int = 6) -> str:
    rows = [r for r in (text or "").strip().splitlines() if r.strip()][-lines:]
    return ("; " + " / ".join(r.strip() for r in rows)) if rows else ""


# ----------------------------------------------------------------------------------------------
# wipe
# ----------------------------------------------------------------------------------------------

WIPE_SEPARATOR = "@@mmstack-wipe@@"
_LBL = '{{.Label "%s"}}'


def wipe_list_command(project: str) -> str:
    """One command listing the project's containers, networks and volumes by label only."""
    flt = shlex.quote(f"label={PROJECT_LABEL}={project}")
    proj, svc = _LBL % PROJECT_LABEL, _LBL % SERVICE_LABEL
    ps_fmt = shlex.quote("\t".join(["{{.ID}}", "{{.Names}}", "{{.State}}", proj, svc]))
    net_fmt = shlex.quote("\t".join(["{{.ID}}", "{{.Name}}", proj]))
    vol_fmt = shlex.quote("\t".join(["{{.Name}}", proj]))
    sep = f"echo {WIPE_SEPARATOR}"
    return (f"docker ps -a --no-trunc --filter {flt} --format {ps_fmt} && {sep} && "
            f"docker network ls --no-trunc --filter {flt} --format {net_fmt} && {sep} && "
            f"docker volume ls --filter {flt} --format {vol_fmt}")


def parse_wipe_listing(project: str, stdout: str) -> WipePlan:
    """Pure: the output of `wipe_list_command` as a `WipePlan`.

    The engine filtered by label already; each line's label is checked again here, so a line
    whose project label is not exactly ``project`` is never planned for removal.
    """
    parts = stdout.split(WIPE_SEPARATOR)
    if len(parts) != 3:
        raise RemoteError("unexpected output while listing the project's resources",
                          fix="check that the docker CLI works for the SSH user on the host")
    plan = WipePlan(project)
    for line in parts[0].splitlines():
        f = line.split("\t")
        if len(f) >= 4 and f[3] == project and f[0].strip():
            service = f[4] if len(f) > 4 and f[4] else "?"
            plan.containers.append(Resource("container", f[1], f[0], f"service {service}, {f[2]}"))
    for line in parts[1].splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[2] == project and f[0].strip():
            plan.networks.append(Resource("network", f[1], f[0]))
    for line in parts[2].splitlines():
        f = line.split("\t")
        if len(f) >= 2 and f[1] == project and f[0].strip():
            plan.volumes.append(Resource("volume", f[0], f[0]))
    for items in (plan.containers, plan.networks, plan.volumes):
        items.sort(key=lambda r: r.name)
    return plan


_REMOVE = {"container": "docker rm -f -- ", "network": "docker network rm -- ", "volume": "docker volume rm -- "}


def wipe_remove_command(plan: WipePlan, stop_timeout: int = 2) -> str:
    """Stop the containers (gently, all at once), then remove each resource on its own line of
    output: ``removed<TAB>kind<TAB>id`` or ``failed<TAB>kind<TAB>id<TAB>error``."""
    steps: list[str] = []
    if plan.containers:
        ids = " ".join(shlex.quote(r.id) for r in plan.containers)
        steps.append(f"docker stop -t {int(stop_timeout)} -- {ids} >/dev/null 2>&1")
    for r in plan.containers + plan.networks + plan.volumes:
        rid, kind = shlex.quote(r.id), shlex.quote(r.kind)
        steps.append(f"if out=$({_REMOVE[r.kind]}{rid} 2>&1); then printf 'removed\\t%s\\t%s\\n' {kind} {rid}; "
                     f"else printf 'failed\\t%s\\t%s\\t%s\\n' {kind} {rid} \"$(printf %s \"$out\" | tr '\\t\\n' '  ')\"; fi")
    return "; ".join(steps) + "; exit 0"


_GONE = re.compile(r"no such (container|network|volume)|not found", re.IGNORECASE)


def parse_wipe_outcomes(plan: WipePlan, stdout: str) -> list[Outcome]:
    """Pure: one `Outcome` per planned resource; an error saying it does not exist is ``gone``,
    and a resource with no line at all is ``failed``."""
    seen: dict[tuple[str, str], Outcome] = {}
    index = {(r.kind, r.id): r for r in plan.resources}
    for line in stdout.splitlines():
        f = line.split("\t")
        if len(f) < 3 or (f[1], f[2]) not in index:
            continue
        r = index[(f[1], f[2])]
        if f[0] == "removed":
            seen[(r.kind, r.id)] = Outcome(r, "removed")
        else:
            error = (f[3] if len(f) > 3 else "").strip()
            seen[(r.kind, r.id)] = Outcome(r, "gone", "already removed") if _GONE.search(error) \
                else Outcome(r, "failed", error[:300] or "unknown error")
    return [seen.get((r.kind, r.id), Outcome(r, "failed", "no answer from the host"))
            for r in plan.resources]


def deployed_paths(stack: Any, stack_dir: str) -> list[str]:
    """What `deploy` put in ``stack_dir`` (what ``remote-wipe --all`` deletes): the compose
    files, the env files (the host's secrets) and the start record."""
    from ..schema.generate import BASE_FILE, ENV_DIR, env_file_name

    names = [BASE_FILE, *(env_file_name(e) for e in stack.environment_names), ENV_DIR,
             f"{STATE_DIR}/{RECORD_FILE}"]
    return [posixpath.join(stack_dir, n) for n in names]


def existing_paths(c: Any, paths: Sequence[str]) -> list[str]:
    if not paths:
        return []
    listing = c.run("for p in " + " ".join(shell_path(p) for p in paths)
                    + '; do [ -e "$p" ] && printf "%s\\n" "$p"; done; exit 0',
                    hide=True, in_stream=False).stdout.splitlines()
    present = set(listing)
    return [p for p in paths if p in present]


@dataclass
class HostWipe:
    """What one host holds of the project, gathered before the (single) confirmation."""

    plan: WipePlan
    files: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.plan.empty and not self.files

    def describe(self) -> str:
        text = self.plan.describe()
        if self.files:
            text += "\n  files (--all):\n" + "\n".join(f"    - {p}" for p in self.files)
        return text


def wipe_gather(c: Any, host: Any, project: str, stack: Any, all_files: bool) -> HostWipe:
    result = c.run(wipe_list_command(project), hide=True, warn=True, in_stream=False)
    if result.exited != 0:
        raise RemoteError(f"{host.name}: listing the project's resources failed (exit {result.exited})"
                          + _tail(result.stderr or result.stdout),
                          fix="check that the docker CLI is installed on the host and that the SSH "
                              "user may use the engine (group docker)")
    files: list[str] = []
    if all_files:
        from ..stack.site import Site

        root = Site.on(c, host).root
        files = existing_paths(c, deployed_paths(stack, root))
    return HostWipe(parse_wipe_listing(project, result.stdout), files)


def wipe_apply(c: Any, hr: Any, gathered: HostWipe, stop_timeout: int = 2) -> list[str]:
    """Remove what was gathered; report each resource. Returns what could not be removed."""
    failed: list[str] = []
    if not gathered.plan.empty:
        result = c.run(wipe_remove_command(gathered.plan, stop_timeout), hide=True, warn=True,
                       in_stream=False)
        for o in parse_wipe_outcomes(gathered.plan, result.stdout):
            report_outcome(hr, o)
            if o.status not in ("removed", "gone"):
                failed.append(o.resource.label)
    for path in gathered.files:
        result = c.run(f"rm -rf -- {shell_path(path)}", hide=True, warn=True, in_stream=False)
        if result.exited == 0:
            hr.changed(path, "deleted")
        else:
            hr.failed(path, (result.stderr or "").strip()[:200] or f"rm exited {result.exited}")
            failed.append(path)
    for path in gathered.files:  # the state directory goes only when nothing else is in it
        if path.endswith(f"/{STATE_DIR}/{RECORD_FILE}"):
            c.run(f"rmdir -- {shell_path(posixpath.dirname(path))} 2>/dev/null; exit 0", hide=True,
                  warn=True, in_stream=False)
    return failed
