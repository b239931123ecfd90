"""Deep merge with explicit list and mapping operators.

A mapping merges key by key. Anything else in an override replaces what it overrides, except
a list over a list: that is ambiguous (append? replace?) and is refused unless the override
says which, with one of the operators below. This is what stops an environment override from
silently dropping a port or a network.

    {$append: [..]}   add items (skipping ones already there)
    {$prepend: [..]}  add items in front
    {$remove: [..]}   remove items equal to these
    {$replace: X}     take X as it is, list or mapping
    {$delete: true}   drop the key altogether
"""

from __future__ import annotations

import copy
from typing import Any

KeyPath = tuple[Any, ...]
OPERATORS = ("$append", "$prepend", "$remove", "$replace", "$delete")
VALUE_OPERATORS = ("$append", "$prepend", "$remove", "$replace")  # those that carry a list
ADDING_OPERATORS = ("$append", "$prepend", "$replace")  # their items end up in the result
_DELETE = object()


class MergeError(Exception):
    def __init__(self, path: KeyPath, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.fix = fix


def operator_of(value: Any) -> str | None:
    """The operator a mapping stands for, or None for a plain mapping."""
    if not isinstance(value, dict):
        return None
    ops = [k for k in value if isinstance(k, str) and k.startswith("$")]
    if not ops:
        return None
    if len(value) != 1 or ops[0] not in OPERATORS:
        return "?"
    return ops[0]


def merge(base: Any, override: Any, path: KeyPath = (), strict_lists: bool = True) -> Any:
    """Return ``base`` with ``override`` merged in; neither argument is modified."""
    result = _merge(base, override, path, strict_lists)
    return None if result is _DELETE else result


def _merge(base: Any, override: Any, path: KeyPath, strict: bool) -> Any:
    op = operator_of(override)
    if op == "?":
        raise MergeError(path, f"unknown or mixed merge operator in {sorted(override)}",
                         fix=f"use exactly one of {', '.join(OPERATORS)} on its own")
    if op is not None:
        return _apply_operator(op, base, override[op], path)
    if isinstance(override, dict):
        if base is None:
            base = {}
        if not isinstance(base, dict):
            raise MergeError(path, f"cannot merge a mapping into a {type(base).__name__}",
                             fix="use {$replace: {...}} to replace the value with a mapping")
        out = dict(base)
        for key, value in override.items():
            merged = _merge(base.get(key), value, path + (key,), strict)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
        return out
    if isinstance(override, list) and isinstance(base, list) and strict:
        raise MergeError(
            path,
            "a list here would silently replace the list it overrides",
            fix="write {$append: [...]} to add, {$remove: [...]} to drop, or {$replace: [...]} to replace",
        )
    return resolve_operators(copy.deepcopy(override), path)


def _apply_operator(op: str, base: Any, arg: Any, path: KeyPath) -> Any:
    if op == "$delete":
        if arg is not True:
            raise MergeError(path, "$delete takes the value true")
        return _DELETE
    if op == "$replace":
        return resolve_operators(copy.deepcopy(arg), path)
    if not isinstance(arg, list):
        raise MergeError(path, f"{op} takes a list, got {type(arg).__name__}")
    if base is None:
        base = []
    if not isinstance(base, list):
        raise MergeError(path, f"{op} applies to a list, but the value here is a {type(base).__name__}")
    if op == "$remove":
        return [item for item in base if item not in arg]
    new = [copy.deepcopy(item) for item in arg if item not in base]
    return base + new if op == "$append" else new + base


def resolve_operators(value: Any, path: KeyPath = ()) -> Any:
    """Apply operators that have nothing beneath them (``{$append: [x]}`` alone is ``[x]``)."""
    op = operator_of(value)
    if op is not None:
        result = _merge(None, value, path, strict=True)
        return None if result is _DELETE else result
    if isinstance(value, dict):
        return {k: resolve_operators(v, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_operators(v, path + (i,)) for i, v in enumerate(value)]
    return value
