"""Where a data step runs: this host (`Here`), or the selected inventory hosts
(`remote.hosttargets.Hosts`). Both offer the same three things, so a step (wipe, backup,
restore) is written once:

* ``each(job, title=, lock=, only=)``: run ``job(site, reporter)`` at every site (``only``: just
  the sites of those names); here with the run's own reporter, on hosts through the fan-out with
  one reporter per host (and the host's lock when ``lock``). It returns the names of the sites
  where the job failed: on hosts each failure is that host's result and the others carry on;
  here the failure is raised;
* ``output(key, per_site)``: a JSON output whose value is per site;
* ``finish()``: the recap of every pass (hosts) or nothing (here: the run's own recap follows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..engine.run import Run
from .site import Site

Job = Callable[[Site, Any], None]   # (site, reporter)


class Here:
    local = True

    def __init__(self, run: Run) -> None:
        self.run = run
        self.progress = not run.json   # a spinner per long wait, on a terminal only

    def each(self, job: Job, *, title: str, lock: bool, only: Iterable[str] | None = None) -> list[str]:
        # The task holds this stack's lock around the whole step already (run.locked()).
        site = Site.here(self.run.c, self.run.stack)
        if only is not None and site.name not in set(only):
            return []
        self.run.reporter.task(title)
        job(site, self.run.reporter)   # a failure here raises: it stops the step
        return []

    def describe(self, names: Iterable[str]) -> str:
        return "this host"

    def output(self, key: str, per_site: dict[str, Any]) -> None:
        for value in per_site.values():
            self.run.add_output(key, value)

    def finish(self) -> None:
        pass
