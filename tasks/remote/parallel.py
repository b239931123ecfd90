"""Run one function per host, ``forks`` hosts at a time, and recap per host like Ansible.

    outcome = run_on_hosts(hosts, deploy_one, forks=8, reporter=run.reporter)
    outcome.print_recap(run.reporter)
    raise SystemExit(outcome.exit_code)

Each host gets a `HostReporter` whose results carry ``host=``; the shared `Reporter` prints them
as they come (under a lock, so lines never interleave). An exception on one host becomes a
``failed`` or ``unreachable`` result for that host only; the other hosts carry on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..engine.report import count_statuses, Reporter, Result, Status
from .hosts import classify, connected, describe_failure
from .inventory import Host

EXIT_FAILED = 2


@dataclass
class HostReporter:
    """Per-host facade over the shared `Reporter`: sets ``host=`` and keeps this host's results."""

    host: Host
    reporter: Reporter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> Result:
        result.host = self.host.name
        self.results.append(result)
        if self.reporter is not None:
            with self.lock:
                self.reporter.add(result)
        return result

    def _new(self, status: Status, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, status, message, **kw))

    def ok(self, item: str, message: str = "", **kw: Any) -> Result:
        return self._new(Status.OK, item, message, **kw)

    def changed(self, item: str, message: str = "", **kw: Any) -> Result:
        return self._new(Status.CHANGED, item, message, **kw)

    def failed(self, item: str, message: str = "", **kw: Any) -> Result:
        return self._new(Status.FAILED, item, message, **kw)

    def skipped(self, item: str, message: str = "", **kw: Any) -> Result:
        return self._new(Status.SKIPPED, item, message, **kw)

    def unreachable(self, item: str, message: str = "", **kw: Any) -> Result:
        return self._new(Status.UNREACHABLE, item, message, **kw)

    def task(self, name: str) -> None:
        """A step's heading: on hosts, the run's own heading (printed once) stands for every
        host's, so the steps shared with local runs may call it freely."""

    def warn(self, text: str) -> None:
        if self.reporter is not None:
            with self.lock:
                self.reporter.warn(f"{self.host.name}: {text}")

    def info(self, text: str) -> None:
        if self.reporter is not None:
            with self.lock:
                self.reporter.info(f"{self.host.name}: {text}")


@dataclass
class HostOutcome:
    """Everything that happened on one host, and how long it took."""

    host: str
    results: list[Result]
    seconds: float
    started: float = 0.0

    def counts(self) -> dict[str, int]:
        return count_statuses(self.results)

    @property
    def status(self) -> Status:
        """The host's overall state: unreachable > failed > changed > ok."""
        states = {r.status for r in self.results}
        for s in (Status.UNREACHABLE, Status.FAILED, Status.CHANGED):
            if s in states:
                return s
        return Status.OK

    def recap_line(self, width: int = 0) -> str:
        c = self.counts()
        return (f"{self.host.ljust(width)} : ok={c['ok']} changed={c['changed']} "
                f"unreachable={c['unreachable']} failed={c['failed']} skipped={c['skipped']}"
                f"  ({self.seconds:.2f}s)")

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status.value, "seconds": round(self.seconds, 3),
                "recap": self.counts(), "results": [r.to_dict() for r in self.results]}


@dataclass
class ParallelOutcome:
    """All hosts' outcomes, in inventory order."""

    hosts: list[HostOutcome]
    seconds: float
    forks: int

    @property
    def failed_any(self) -> bool:
        return any(h.status in (Status.FAILED, Status.UNREACHABLE) for h in self.hosts)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed_any else 0

    def by_host(self) -> dict[str, HostOutcome]:
        return {h.host: h for h in self.hosts}

    def results(self) -> list[Result]:
        return [r for h in self.hosts for r in h.results]

    def recap_lines(self) -> list[str]:
        width = max((len(h.host) for h in self.hosts), default=0)
        return [h.recap_line(width) for h in self.hosts]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: per-host recap, results and timings."""
        return {
            "forks": self.forks,
            "seconds": round(self.seconds, 3),
            "failed": self.failed_any,
            "hosts": {h.host: h.to_dict() for h in self.hosts},
            "recap": {h.host: {**h.counts(), "seconds": round(h.seconds, 3)} for h in self.hosts},
        }

    def print_recap(self, reporter: Reporter) -> None:
        """Ansible's ``PLAY RECAP`` (to stderr in JSON mode; the JSON is the caller's `finish`)."""
        title = "PLAY RECAP (check mode, nothing changed)" if reporter.check else "PLAY RECAP"
        reporter.info(title)
        for line in self.recap_lines():
            reporter.info(line)


HostFunc = Callable[[Host, HostReporter], None]


def run_on_hosts(hosts: Sequence[Host], func: HostFunc, *, forks: int = 5,
                 reporter: Reporter | None = None) -> ParallelOutcome:
    """Call ``func(host, host_reporter)`` for every host, at most ``forks`` at a time.

    ``func`` reports through the `HostReporter`; any exception it raises is classified
    (`hosts.classify`) into one ``failed``/``unreachable`` result for that host.
    """
    lock = threading.Lock()
    forks = max(1, min(int(forks), len(hosts) or 1))
    t0 = time.perf_counter()

    def one(host: Host) -> HostOutcome:
        hr = HostReporter(host, reporter, lock)
        start = time.perf_counter()
        try:
            func(host, hr)
        except BaseException as exc:  # noqa: BLE001 - one host never stops the others
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            status = classify(exc)
            item = "connection" if status is Status.UNREACHABLE else "task"
            hr.add(Result(item, status, describe_failure(exc)))
        return HostOutcome(host.name, hr.results, time.perf_counter() - start, start - t0)

    with ThreadPoolExecutor(max_workers=forks, thread_name_prefix="mmstack-host") as pool:
        outcomes = list(pool.map(one, hosts))
    return ParallelOutcome(outcomes, time.perf_counter() - t0, forks)


ConnFunc = Callable[[Any, Host, HostReporter], None]


def run_connected(hosts: Sequence[Host], func: ConnFunc, *, config: Any = None, forks: int = 5,
                  reporter: Reporter | None = None) -> ParallelOutcome:
    """Like `run_on_hosts`, but ``func(conn, host, hr)`` gets an open Fabric connection.

    A host that cannot be reached reports one ``unreachable`` result, with the fix line.
    """

    def with_conn(host: Host, hr: HostReporter) -> None:
        with connected(host, config, warn=hr.warn) as conn:
            func(conn, host, hr)

    return run_on_hosts(hosts, with_conn, forks=forks, reporter=reporter)
