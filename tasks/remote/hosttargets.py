"""The selected inventory hosts as the place a data step runs (the counterpart of
`stack.targets.Here`): each pass goes through `fanout.on_hosts`; the passes of one step (a
wipe's listing and its removal) end in one recap per host."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..engine.report import Status
from ..engine.run import Run
from ..stack.targets import Here, Job
from .parallel import HostOutcome, ParallelOutcome


class Hosts:
    local = False

    def __init__(self, run: Run, selected: list[Any], forks: int) -> None:
        self.run, self.selected, self.forks = run, selected, forks
        self.progress = len(selected) == 1 and not run.json   # spinners never interleave
        self.passes: list[ParallelOutcome] = []

    def each(self, job: Job, *, title: str, lock: bool, only: Iterable[str] | None = None) -> list[str]:
        from .fanout import on_hosts

        names = None if only is None else set(only)
        hosts = [h for h in self.selected if names is None or h.name in names]
        if not hosts:
            return []
        outcome = on_hosts(self.run, hosts, lambda site, host, hr: job(site, hr),
                           forks=self.forks, title=title, lock=lock, recap=False)
        self.passes.append(outcome)
        return [h.host for h in outcome.hosts if h.status in (Status.FAILED, Status.UNREACHABLE)]

    def describe(self, names: Iterable[str]) -> str:
        names = list(names)
        return f"{len(names)} host(s): {', '.join(names)}"

    def output(self, key: str, per_site: dict[str, Any]) -> None:
        self.run.add_output(key, {name: per_site[name] for name in sorted(per_site)})

    def finish(self) -> None:
        """One recap line per host over every pass."""
        merged: dict[str, HostOutcome] = {}
        for outcome in self.passes:
            for h in outcome.hosts:
                seen = merged.get(h.host)
                merged[h.host] = h if seen is None else HostOutcome(
                    h.host, seen.results + h.results, seen.seconds + h.seconds, seen.started)
        order = [h.name for h in self.selected if h.name in merged]
        outcome = ParallelOutcome([merged[n] for n in order], sum(p.seconds for p in self.passes), self.forks)
        outcome.print_recap(self.run.reporter)
        self.run.add_output("hosts", outcome.to_dict())


def targets_for(run: Run, hosts: str | None, limit: str | None, inventory: str | None,
                forks: int | None) -> Here | Hosts:
    """This host, unless a host selection was given (``--hosts/--limit/--inventory``)."""
    from .selection import fork_count, select_hosts, wants_hosts

    if not wants_hosts(hosts, limit, inventory):
        return Here(run)
    inv, selected = select_hosts(run, hosts, limit, inventory)
    return Hosts(run, selected, fork_count(run, forks, inv))


def rotation_hosts(run: Run, hosts: str | None, limit: str | None, inventory: str | None,
                   forks: int | None) -> Hosts | None:
    """The hosts a secret rotation reaches: the selection given, else every inventory host (the
    stored secrets are shared by each host running an environment); None without an inventory."""
    from .inventory import has_inventory
    from .selection import fork_count, select_hosts, wants_hosts

    if not wants_hosts(hosts, limit, inventory) and not has_inventory(run.stack):
        return None
    inv, selected = select_hosts(run, hosts, limit, inventory)
    return Hosts(run, selected, fork_count(run, forks, inv)) if selected else None
