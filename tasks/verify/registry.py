"""Checks, declared beside the services they test, and the pure plan of which ones run.

    @check("litellm", "models", "LiteLLM lists the served model")
    def litellm_models(t: Target, p: Probe) -> str: ...          # returns what it saw

A check needs every service it names (``needs``, its own service first); it is skipped when one
of them does not run in the environment. ``instances`` expands one declaration into one check
per consumer, bucket, ... (``t`` -> names), so a failure names exactly which one. A check
raises `CheckFailed` (what was expected, what came back, the fix) or `CheckSkipped`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class CheckFailed(Exception):
    def __init__(self, message: str, *, expected: str, got: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.expected, self.got, self.fix = message, expected, got, fix


class CheckSkipped(Exception):
    """The check does not apply here (the reason says why)."""


@dataclass(frozen=True)
class Check:
    service: str
    name: str
    title: str
    func: Callable[..., str]
    needs: tuple[str, ...]
    instances: Callable[[Any], list[str]] | None = None

    @property
    def label(self) -> str:
        return f"{self.service}/{self.name}"


REGISTRY: dict[str, list[Check]] = {}


def check(service: str, name: str, title: str, *, needs: tuple[str, ...] = (),
          instances: Callable[[Any], list[str]] | None = None) -> Callable[[Callable[..., str]], Callable[..., str]]:
    def register(func: Callable[..., str]) -> Callable[..., str]:
        REGISTRY.setdefault(service, []).append(
            Check(service, name, title, func, (service, *[n for n in needs if n != service]), instances))
        return func
    return register


@dataclass(frozen=True)
class Planned:
    check: Check
    instance: str | None = None
    skip: str | None = None       # why it is skipped (None: it runs)
    missing: tuple[str, ...] = field(default=())  # services it needs that should run but do not

    @property
    def item(self) -> str:
        return self.check.label + (f" {self.instance}" if self.instance else "")


def all_checks() -> list[Check]:
    import importlib

    importlib.import_module(f"{__package__}.checks")  # importing them registers every check

    return [c for svc in REGISTRY for c in REGISTRY[svc]]


def plan(checks: list[Check], env: str, expected: list[str], running: set[str],
         instances_of: Callable[[Check], list[str]]) -> list[Planned]:
    """Pure: each check once per instance, skipped where a service it needs is not part of the
    environment; ``missing`` lists those that are part of it but not running."""
    order = {s: i for i, s in enumerate(expected)}
    out: list[Planned] = []
    for c in sorted(checks, key=lambda c: order.get(c.service, len(order))):
        absent = [s for s in c.needs if s not in expected]
        if absent:
            out.append(Planned(c, skip=f"{', '.join(absent)} {'does' if len(absent) == 1 else 'do'} "
                                       f"not run in {env}"))
            continue
        missing = tuple(s for s in c.needs if s not in running)
        names = instances_of(c) if c.instances else [None]
        if not names:
            out.append(Planned(c, skip=f"nothing to check in {env}"))
        out += [Planned(c, n, missing=missing) for n in names]
    return out
