"""Wipe a Compose project at a site: its containers, networks and volumes, found by label only.

Resources are selected with the engine's label filter ``com.docker.compose.project=<project>``
and nothing else (`stack.resources`): never by name pattern, never a host-wide prune. Orphans
(containers of services no longer in the files) carry the label too, so they are included.

Two commands per site, each with a pure parser: the listing (`resources.listing_command`) and
the removal (`remove_command`), which answers one line per resource, so the outcome of each is
known whether it runs here or on a host over SSH.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.layout import SECRETS_DIR, START_RECORD_FILE, STATE_DIR
from .engine import PROJECT_LABEL
from .resources import Listing


@dataclass(frozen=True)
class Resource:
    kind: str   # container | network | volume
    name: str
    id: str
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class WipePlan:
    project: str
    containers: list[Resource] = field(default_factory=list)
    networks: list[Resource] = field(default_factory=list)
    volumes: list[Resource] = field(default_factory=list)

    @classmethod
    def from_listing(cls, project: str, found: Listing) -> "WipePlan":
        return cls(project,
                   [Resource("container", c.name, c.id, f"service {c.service or '?'}, {c.state}")
                    for c in found.containers],
                   [Resource("network", n.name, n.id) for n in found.networks],
                   [Resource("volume", v.name, v.name) for v in found.volumes])

    @property
    def resources(self) -> list[Resource]:
        return self.containers + self.networks + self.volumes

    @property
    def empty(self) -> bool:
        return not self.resources

    def describe(self) -> str:
        lines = [f"Compose project {self.project!r} (label {PROJECT_LABEL}={self.project}):"]
        for title, items in (("containers", self.containers), ("networks", self.networks),
                             ("volumes (their data is deleted)", self.volumes)):
            lines.append(f"  {title}: {len(items)}")
            lines += [f"    - {r.name}{f'  ({r.detail})' if r.detail else ''}" for r in items]
        return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    resource: Resource
    status: str   # removed | gone | failed
    message: str = ""


def report_outcome(reporter: Any, o: Outcome) -> None:
    """One result per resource: removed is a change, already gone is fine, anything else failed."""
    if o.status == "removed":
        reporter.changed(o.resource.label, "removed")
    elif o.status == "gone":
        reporter.ok(o.resource.label, o.message)
    else:
        reporter.failed(o.resource.label, o.message)


# -- removal: one command, one line per resource --------------------------------------------

_REMOVE = {"container": "docker rm -f --", "network": "docker network rm --", "volume": "docker volume rm --"}


def _remove_one(r: Resource) -> str:
    rid, kind = shlex.quote(r.id), shlex.quote(r.kind)
    return (f"if out=$({_REMOVE[r.kind]} {rid} 2>&1); then printf 'removed\\t%s\\t%s\\n' {kind} {rid}; "
            f"else printf 'failed\\t%s\\t%s\\t%s\\n' {kind} {rid} \"$(printf %s \"$out\" | tr '\\t\\n' '  ')\"; fi")


def remove_command(plan: WipePlan, stop_timeout: int = 2) -> str:
    """Stop the containers gently (all at once), remove them in parallel, then the networks,
    then the volumes (in parallel), each answering ``removed<TAB>kind<TAB>id`` or
    ``failed<TAB>kind<TAB>id<TAB>error`` on a line of its own (a short line is written whole)."""
    steps: list[str] = []
    if plan.containers:
        ids = " ".join(shlex.quote(r.id) for r in plan.containers)
        steps.append(f"docker stop -t {int(stop_timeout)} -- {ids} >/dev/null 2>&1")
        steps.append(" ".join(f"{{ {_remove_one(r)}; }} &" for r in plan.containers) + " wait")
    steps += [_remove_one(r) for r in plan.networks]
    if plan.volumes:
        steps.append(" ".join(f"{{ {_remove_one(r)}; }} &" for r in plan.volumes) + " wait")
    return "; ".join(steps) + "; exit 0"


_GONE = re.compile(r"no such (container|network|volume)|not found", re.IGNORECASE)


def parse_outcomes(plan: WipePlan, stdout: str) -> list[Outcome]:
    """Pure: one `Outcome` per planned resource, in plan order; an error saying it does not
    exist is ``gone``, and a resource with no line at all is ``failed``."""
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
    return [seen.get((r.kind, r.id), Outcome(r, "failed", "no answer from the engine"))
            for r in plan.resources]


# -- files: what --all deletes ---------------------------------------------------------------

def generated_names(stack: Any, *, local: bool) -> list[str]:
    """What `--all` deletes in the stack directory, relative to it: the compose files, the env
    files and the start record; here also the secret store (a host gets its secrets only as
    the env files deploy uploaded)."""
    from ..schema.generate import BASE_FILE, ENV_DIR, env_file_name

    names = [BASE_FILE, *(env_file_name(e) for e in stack.environment_names), ENV_DIR]
    if local:
        names.append(posixpath.join(STATE_DIR, SECRETS_DIR))
    return names + [posixpath.join(STATE_DIR, START_RECORD_FILE)]


def existing_paths_command(paths: Sequence[str]) -> str:
    from .site import quote_path

    return ("for p in " + " ".join(quote_path(p) for p in paths)
            + '; do [ -e "$p" ] || [ -L "$p" ] && printf "%s\\n" "$p"; done; exit 0')


def parse_existing(paths: Sequence[str], stdout: str) -> list[str]:
    present = set(stdout.splitlines())
    return [p for p in paths if p in present]


# -- at a site -------------------------------------------------------------------------------

@dataclass
class SiteWipe:
    """What one site holds of the project, gathered before the (single) confirmation."""

    plan: WipePlan
    files: list[str] = field(default_factory=list)   # absolute paths there

    @property
    def empty(self) -> bool:
        return self.plan.empty and not self.files

    def describe(self, root: str) -> str:
        text = self.plan.describe()
        if self.files:
            text += "\n  files (--all):\n" + "\n".join(f"    - {posixpath.relpath(p, root)}" for p in self.files)
        return text


def gather(site: Any, stack: Any, all_files: bool) -> SiteWipe:
    from .resources import listing

    plan = WipePlan.from_listing(stack.project, listing(site, stack.project))
    files: list[str] = []
    if all_files:
        paths = [site.path(n) for n in generated_names(stack, local=not site.remote)]
        files = parse_existing(paths, site.sh(existing_paths_command(paths)).stdout)
    return SiteWipe(plan, files)


def apply(site: Any, reporter: Any, gathered: SiteWipe, stop_timeout: int) -> list[str]:
    """Remove what was gathered, one result per resource and file; returns what could not be
    removed. The state directory stays: it holds the lock this wipe runs under."""
    from .site import quote_path

    failed: list[str] = []
    if not gathered.plan.empty:
        result = site.sh(remove_command(gathered.plan, stop_timeout))
        for o in parse_outcomes(gathered.plan, result.stdout):
            report_outcome(reporter, o)
            if o.status == "failed":
                failed.append(o.resource.label)
    for path in gathered.files:
        label = posixpath.relpath(path, site.root)
        result = site.sh(f"rm -rf -- {quote_path(path)}")
        if result.exited == 0:
            reporter.changed(label, "deleted")
        else:
            reporter.failed(label, (result.stderr or "").strip()[:200] or f"rm exited {result.exited}")
            failed.append(label)
    return failed
