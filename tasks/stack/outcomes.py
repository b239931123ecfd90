"""What `compose up` did (or would do) to each service: the rule local starts and remote
deploys share.

A service is ``changed`` only when its container was created, recreated (another container ID
after ``up``) or started; otherwise ``ok``. Pure functions over `compose ps` / engine container
entries keyed by service (either spelling of the ID key, ``ID`` or ``Id``, is accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.report import Status
from .status import completed


def container_id(entry: dict[str, Any] | None) -> str:
    return str((entry or {}).get("ID") or (entry or {}).get("Id") or "")


def up_outcomes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
                services: Sequence[str], failing: dict[str, Any] | None = None
                ) -> list[tuple[str, Status, str]]:
    """Pure: one ``(service, status, message)`` per service after ``up``.

    ``changed`` only for a container that was created, recreated (a new ID) or started;
    ``failed`` for one that is failing (``failing``: service -> status row) or absent.
    """
    failing = failing or {}
    out: list[tuple[str, Status, str]] = []
    for svc in services:
        old, new = before.get(svc), after.get(svc)
        if svc in failing:
            out.append((svc, Status.FAILED, failing[svc].summary))
        elif new is None:
            out.append((svc, Status.FAILED, "no container after `up`"))
        elif old is None:
            out.append((svc, Status.CHANGED, "created"))
        elif container_id(old) != container_id(new):
            out.append((svc, Status.CHANGED, "recreated (configuration changed)"))
        elif str(old.get("State")) != "running" and str(new.get("State")) == "running":
            out.append((svc, Status.CHANGED, "started"))
        elif completed(new):
            out.append((svc, Status.OK, "ran to completion (exit code 0), up to date"))
        else:
            state = str(new.get("State", ""))
            out.append((svc, Status.OK, "running, up to date" if state == "running" else state))
    for svc in sorted(set(before) - set(after)):
        out.append((svc, Status.CHANGED, "removed (orphan of the project)"))
    return out


def check_outcomes(actions: dict[str, set[str]], before: dict[str, dict[str, Any]],
                   services: Sequence[str]) -> list[tuple[str, Status, str]]:
    """Pure: what Compose's dry run says ``up`` would do (``actions``: service -> verbs)."""
    out: list[tuple[str, Status, str]] = []
    for svc in services:
        act = actions.get(svc, set())
        c = before.get(svc)
        if c is None:
            out.append((svc, Status.CHANGED, "would be created"))
        elif act & {"Recreate", "Recreated"}:
            out.append((svc, Status.CHANGED, "would be recreated (configuration changed)"))
        elif act & {"Starting", "Start", "Started"} and completed(c):
            # A one-shot runs at every start; running it again with the same configuration is
            # what converges it, not a change.
            out.append((svc, Status.OK, "would run again to completion (one-shot), up to date"))
        elif act & {"Starting", "Start", "Started"}:
            out.append((svc, Status.CHANGED, f"would be started (now {c.get('State')})"))
        else:
            out.append((svc, Status.OK, "running, up to date"))
    for svc in sorted(set(before) - set(services)):
        if actions.get(svc, set()) & {"Removing", "Remove", "Removed"}:
            out.append((svc, Status.CHANGED, "would be removed (orphan of the project)"))
        else:
            out.append((svc, Status.OK, "left alone (not part of this environment)"))
    return out


def not_ready(entries: dict[str, dict[str, Any]], services: Sequence[str]) -> list[str]:
    """Pure: the services that are not running, or whose healthcheck has not passed.

    Takes engine container entries (``State`` plus a ``Status`` like ``Up 5s (health: starting)``)
    or `compose ps` entries (``State`` plus ``Health``). Needed because some Compose builds print
    "application not healthy after Ns" yet exit 0 from ``up --wait``: the exit code alone would
    call a stuck start a success.
    """
    out = []
    for svc in services:
        entry = entries.get(svc)
        if entry is not None and completed(entry):
            continue
        if entry is None or str(entry.get("State", "")).lower() != "running":
            out.append(svc)
            continue
        health = str(entry.get("Health") or "").lower()
        status = str(entry.get("Status") or "").lower()
        if health in ("starting", "unhealthy") or "(health: starting)" in status or "(unhealthy)" in status:
            out.append(svc)
    return out
