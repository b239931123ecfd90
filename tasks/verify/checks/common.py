"""Helpers the check modules share: fail with expected / got / fix, and restart hints."""

from __future__ import annotations

from typing import Any, NoReturn

from ..registry import CheckFailed


def fail(message: str, *, expected: str, got: str, fix: str) -> NoReturn:
    raise CheckFailed(message, expected=expected, got=got, fix=fix)


def restart_fix(t: Any, service: str, why: str = "") -> str:
    return (f"{why + ': ' if why else ''}`inv setup --env {t.env}` renders its files from the secrets "
            f"store and the schema, then `inv restart --service {service}` applies them")


def unreachable_fix(t: Any, service: str) -> str:
    return (f"is {service} up and published? `inv status`, `inv logs --service {service}`; "
            f"start it with `inv start --env {t.env}`")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
