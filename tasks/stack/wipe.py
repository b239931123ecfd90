"""Wipe a Compose project: its containers, networks and volumes, found by label only.

Resources are selected with the engine's label filter ``com.docker.compose.project=<project>``
and nothing else: never by name pattern, never a host-wide prune. Orphans (containers of
services no longer in the files) carry the label too, so they are included.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .engine import PROJECT_LABEL, SERVICE_LABEL


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


def project_filter(project: str) -> dict[str, str]:
    return {"label": f"{PROJECT_LABEL}={project}"}


def plan_wipe(client: Any, project: str) -> WipePlan:
    """Everything labelled with the project; an engine-side filter, double-checked here."""
    flt = project_filter(project)

    def mine(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(PROJECT_LABEL) == project

    plan = WipePlan(project)
    for c in client.containers.list(all=True, filters=flt):
        labels = c.labels
        if mine(labels):
            plan.containers.append(Resource("container", c.name, c.id,
                                            f"service {labels.get(SERVICE_LABEL, '?')}, {c.status}"))
    for n in client.networks.list(filters=flt):
        if mine(n.attrs.get("Labels")):
            plan.networks.append(Resource("network", n.name, n.id))
    for v in client.volumes.list(filters=flt):
        if mine(v.attrs.get("Labels")):
            plan.volumes.append(Resource("volume", v.name, v.name))
    plan.containers.sort(key=lambda r: r.name)
    plan.networks.sort(key=lambda r: r.name)
    plan.volumes.sort(key=lambda r: r.name)
    return plan


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


def apply_wipe(client: Any, plan: WipePlan, stop_timeout: int = 2,
               report: Callable[[Outcome], None] | None = None, workers: int = 8) -> list[Outcome]:
    """Stop and remove containers (in parallel), then networks, then volumes.

    A resource already gone counts as done; any other error is collected, and the rest carry on.
    """
    from docker.errors import APIError, NotFound

    outcomes: list[Outcome] = []

    def emit(o: Outcome) -> None:
        outcomes.append(o)
        if report:
            report(o)

    def remove_container(r: Resource) -> Outcome:
        try:
            c = client.containers.get(r.id)
            if c.status in ("running", "restarting", "paused"):
                try:
                    c.stop(timeout=stop_timeout)
                except NotFound:
                    return Outcome(r, "gone", "already removed")
                except APIError:
                    pass  # remove(force=True) kills it
            c.remove(force=True, v=False)
            return Outcome(r, "removed")
        except NotFound:
            return Outcome(r, "gone", "already removed")
        except APIError as exc:
            return Outcome(r, "failed", _explain(exc))

    if plan.containers:
        with ThreadPoolExecutor(max_workers=min(workers, len(plan.containers))) as pool:
            for o in pool.map(remove_container, plan.containers):
                emit(o)

    def remove(r: Resource, call: Any) -> Outcome:
        try:
            call()
            return Outcome(r, "removed")
        except NotFound:
            return Outcome(r, "gone", "already removed")
        except APIError as exc:
            return Outcome(r, "failed", _explain(exc))

    # Networks before volumes, both after every container that could hold them is gone.
    for r in plan.networks:
        emit(remove(r, lambda r=r: client.api.remove_network(r.id)))
    for r in plan.volumes:
        emit(remove(r, lambda r=r: client.api.remove_volume(r.name)))
    return outcomes


def _explain(exc: Any) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).strip()[:300]
