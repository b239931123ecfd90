"""Run the planned checks against a target, time each, and report it.

Each check is one result: ``ok`` with what it saw, ``failed`` with what was expected, what came
back and the fix, or ``skipped`` with the reason; the time it took is in the message and in
the JSON data (``seconds``). A check that raises anything else is a failed check (the error
named), never a traceback: one broken check never stops the others.
"""

from __future__ import annotations

import time
from typing import Any

from ..engine.errors import MmstackError
from .probe import Probe
from .registry import CheckFailed, CheckSkipped, Planned, all_checks, plan
from .target import Target


def planned_checks(target: Target) -> list[Planned]:
    return plan(all_checks(), target.env, target.expected, target.running,
                lambda c: c.instances(target) if c.instances else [])


def run_checks(target: Target, probe: Probe, rep: Any) -> list[Planned]:
    """Report one result per planned check through ``rep`` (a Reporter or a HostReporter)."""
    todo = planned_checks(target)
    for p in todo:
        if p.skip:
            rep.skipped(p.item, f"{p.check.title}: {p.skip}", data={"seconds": 0.0})
            continue
        t0 = time.perf_counter()
        try:
            if p.missing:
                states = ", ".join(f"{s} {target.containers.get(s, ('', 'not created'))[1]}" for s in p.missing)
                raise CheckFailed(f"{', '.join(p.missing)} not running", expected="running", got=states,
                                  fix=f"see `inv status` and `inv logs --service {p.missing[0]}`; "
                                      f"start it again with `inv start --env {target.env}`")
            seen = p.check.func(target, probe, p.instance) if p.check.instances else p.check.func(target, probe)
        except CheckSkipped as exc:
            rep.skipped(p.item, f"{p.check.title}: {exc}", data={"seconds": _since(t0)})
        except CheckFailed as exc:
            seconds = _since(t0)
            rep.failed(p.item, f"{p.check.title}: {exc.message} ({seconds:.2f}s)"
                       f"\n    expected: {exc.expected}\n    got: {exc.got}\n    fix: {exc.fix}",
                       data={"seconds": seconds, "expected": exc.expected, "got": exc.got, "fix": exc.fix})
        except MmstackError as exc:
            seconds = _since(t0)
            rep.failed(p.item, f"{p.check.title}: {exc} ({seconds:.2f}s)",
                       data={"seconds": seconds, "fix": getattr(exc, "fix", None)})
        except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
            seconds = _since(t0)
            rep.failed(p.item, f"{p.check.title}: internal error in the check: {type(exc).__name__}: {exc}",
                       data={"seconds": seconds})
        else:
            seconds = _since(t0)
            rep.ok(p.item, f"{p.check.title}: {seen} ({seconds:.2f}s)", data={"seconds": seconds})
    return todo


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
