"""A lifecycle step on every selected host: connect (the one host-key policy), take the host's
stack lock when the step changes anything, hand the step a `Site`, and end with the per-host
recap. One host failing or unreachable never stops the others; the exit code is 2 when any did.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from ..engine.run import Run, config_value
from ..stack.site import Site

SiteJob = Callable[[Site, Any, Any], None]   # (site, inventory host, host reporter)


def on_hosts(run: Run, selected: list[Any], job: SiteJob, *, forks: int, title: str,
             lock: bool, recap: bool = True) -> Any:
    """Run ``job`` on each host, ``forks`` at a time; returns the `ParallelOutcome`.

    ``lock``: hold the host's own ``.mmstack/lock`` around the job (check mode never locks, as
    locally). The recap and the ``hosts`` output are added unless ``recap`` is False (a task
    that runs two passes, such as a wipe's listing and its removal, adds them itself).
    """
    from .lock import host_lock
    from .parallel import run_connected

    lock_timeout = float(config_value(run.c, "lock_timeout"))

    def one(conn: Any, host: Any, hr: Any) -> None:
        site = Site.on(conn, host)
        with host_lock(conn, site.root, timeout=lock_timeout) if lock and not run.check else nullcontext():
            job(site, host, hr)

    run.reporter.task(title)
    outcome = run_connected(selected, one, config=run.c.config, forks=forks, reporter=run.reporter)
    if recap:
        outcome.print_recap(run.reporter)
        run.add_output("hosts", outcome.to_dict())
    return outcome
