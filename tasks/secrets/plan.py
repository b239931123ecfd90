"""Pure planning: which secrets to generate, keep or replace, per environment.

    absent                          -> SecretChange(reason="absent")       reported "generated"
    present and meets its rule      -> SecretNoOp("kept")
    present but breaks its rule     -> SecretChange(reason="does not meet rule: ...")
    rotation requested              -> SecretChange(reason="rotation requested")

Values never appear in a `repr` (so not in a pytest assertion message or a debug log either).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .generate import generate_secret, is_external, validate_secret_value

ABSENT = "absent"
ROTATE = "rotation requested"
INVALID = "does not meet rule"


@dataclass(frozen=True)
class SecretChange:
    env: str
    name: str
    value: str = field(repr=False)
    reason: str
    replaces: bool = False  # a value existed (services using it must be restarted)

    @property
    def item(self) -> str:
        return f"secrets/{self.env}/{self.name}"


@dataclass(frozen=True)
class SecretNoOp:
    env: str
    name: str
    reason: str = "kept"

    @property
    def item(self) -> str:
        return f"secrets/{self.env}/{self.name}"


Plan = list[SecretChange | SecretNoOp]


def plan_secrets(
    declarations: dict[str, dict[str, Any]],
    existing: dict[str, dict[str, str]],
    environments: Iterable[str],
    rotate: set[str] | None = None,
    generator: Callable[[dict[str, Any]], str] = generate_secret,
) -> Plan:
    """One entry per (environment, declared secret), in declaration order.

    ``existing`` maps environment -> stored values; ``rotate`` names secrets to replace even
    though they are valid (None or empty: replace nothing that is valid).
    """
    rotate = rotate or set()
    out: Plan = []
    for env in environments:
        stored = existing.get(env) or {}
        for name, rule in declarations.items():
            rule = rule or {}
            if is_external(rule):
                # Only the user has this value: never generated, rotated or replaced here.
                out.append(SecretNoOp(env, name, "set" if name in stored else
                                      "not set (external: `inv set-secret` stores it)"))
                continue
            if name not in stored:
                out.append(SecretChange(env, name, generator(rule), ABSENT))
                continue
            if name in rotate:
                out.append(SecretChange(env, name, _fresh(generator, rule, stored[name]), ROTATE, True))
                continue
            problems = validate_secret_value(name, rule, stored[name])
            if problems:
                why = "; ".join(p.split(": ", 1)[-1] for p in problems)
                out.append(SecretChange(env, name, generator(rule), f"{INVALID}: {why}", True))
            else:
                out.append(SecretNoOp(env, name))
    return out


def _fresh(generator: Callable[[dict[str, Any]], str], rule: dict[str, Any], old: str) -> str:
    """A new value that differs from ``old`` (a repeat is astronomically unlikely, but a rotation
    that changes nothing would be a silent lie)."""
    for _ in range(8):
        value = generator(rule)
        if value != old:
            return value
    raise RuntimeError("the secret generator keeps returning the same value")


def changes(plan: Plan) -> list[SecretChange]:
    return [p for p in plan if isinstance(p, SecretChange)]


def apply_to(existing: dict[str, str], plan: Plan, env: str) -> dict[str, str]:
    """``existing`` with ``env``'s changes applied; secrets no longer declared are kept, since
    dropping a value can never be undone."""
    out = dict(existing)
    for p in plan:
        if isinstance(p, SecretChange) and p.env == env:
            out[p.name] = p.value
    return out
