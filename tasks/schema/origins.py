"""Where a value of a resolved service was written: the file, line and key path of the layer
(environment overrides, mmstack.yaml, the service, the defaults) it came from, so an error names
the line to fix rather than the merged result."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .merge import ADDING_OPERATORS
from .yamlsrc import KeyPath, YamlSource

if TYPE_CHECKING:
    from .model import Stack


def value_at(data: Any, path: KeyPath) -> tuple[bool, Any]:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False, None
    return True, node


class Origins:
    """Finds the file, line and key path where a value of a resolved service was written.

    Layers in precedence order: the environment's overrides, mmstack.yaml's overrides, the
    service itself, the defaults. The first layer that holds the same value at the same path
    wrote it; a list written through an operator ({$append: [...]}) is searched by value.
    """

    def __init__(self, stack: "Stack") -> None:
        self.stack = stack
        self.src = stack.source
        self.local: YamlSource | None = getattr(stack, "settings_source", None)

    def layers(self, env: str | None, svc: str) -> list[tuple[YamlSource, KeyPath]]:
        out: list[tuple[YamlSource, KeyPath]] = []
        if env:
            out += [(self.src, ("environments", env, "overrides", "services", svc)),
                    (self.src, ("environments", env, "overrides", "defaults"))]
        if self.local is not None:
            out += [(self.local, ("overrides", "services", svc)), (self.local, ("overrides", "defaults"))]
        out += [(self.src, ("services", svc)), (self.src, ("defaults",))]
        return out

    def healthcheck_layers(self, env: str | None, svc: str) -> list[tuple[YamlSource, KeyPath]]:
        raw = (self.stack.data["services"].get(svc) or {}).get("healthcheck") or {}
        template = raw.get("template") if isinstance(raw, dict) else None
        out = [(src, prefix + ("healthcheck",)) for src, prefix in self.layers(env, svc)[:-1]]
        if template:
            if env:
                out.append((self.src, ("environments", env, "overrides", "healthchecks", template)))
            if self.local is not None:
                out.append((self.local, ("overrides", "healthchecks", template)))
            out.append((self.src, ("healthchecks", template)))
        return out

    def find(self, env: str | None, svc: str, sub: KeyPath, resolved: Any) -> tuple[YamlSource, KeyPath]:
        if sub and sub[0] == "healthcheck":
            layers, sub = self.healthcheck_layers(env, svc), sub[1:]
        else:
            layers = self.layers(env, svc)
        found, value = value_at(resolved, sub)
        if found:
            for source, prefix in layers:
                for path in self._candidates(source, prefix, sub, value):
                    return source, path
        for n in range(len(sub), 0, -1):  # else the most specific place that mentions it
            for source, prefix in layers:
                if prefix + sub[:n] in source.lines:
                    return source, prefix + sub[:n]
        for source, prefix in layers:
            if prefix in source.lines:
                return source, prefix
        return self.src, ("services", svc)

    @staticmethod
    def _candidates(source: YamlSource, prefix: KeyPath, sub: KeyPath, value: Any) -> Iterable[KeyPath]:
        path = prefix + sub
        found, there = value_at(source.data, path)
        if found and there == value and path in source.lines:
            yield path
        if len(sub) >= 2 and isinstance(sub[1], int):
            # ports: {$append: [...]}: the element sits in the operator's list at another index.
            for op in ADDING_OPERATORS:
                ok, items = value_at(source.data, prefix + (sub[0], op))
                if not (ok and isinstance(items, list)):
                    continue
                for i, item in enumerate(items):
                    candidate = prefix + (sub[0], op, i) + sub[2:]
                    ok2, there2 = value_at(source.data, candidate)
                    if ok2 and there2 == value and candidate in source.lines:
                        yield candidate
