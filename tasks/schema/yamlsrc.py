"""YAML loading that remembers where every key came from.

PyYAML forgets line numbers once it builds Python objects, and silently keeps the last of two
duplicate keys. Both matter to someone fixing a schema, so this loader walks the node tree once,
recording the line of every key path and refusing duplicate keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import SchemaError

try:  # the C parser is several times faster; fall back where libyaml is absent
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

KeyPath = tuple[Any, ...]


def format_path(path: KeyPath) -> str:
    """``("services", "vllm", "ports", 0)`` -> ``services.vllm.ports[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class YamlSource:
    """A parsed YAML document plus the line of each key path in it."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor PyYAML could place."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: KeyPath, message: str, fix: str | None = None) -> SchemaError:
        return SchemaError(message, file=self.file, line=self.line_of(path),
                           key_path=format_path(path) or None, fix=fix)


def load_yaml(path: Path, display: str | None = None, text: str | None = None) -> YamlSource:
    """Parse ``path``; a syntax error or a duplicate key is a `SchemaError` with the line."""
    name = display or str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchemaError("file not found", file=name,
                              fix="run from the stack directory, or create the file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SchemaError(f"cannot read file: {exc}", file=name) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlSource(name, None, {(): 1})
        lines: dict[KeyPath, int] = {}
        _walk(loader, node, (), lines, name)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise SchemaError(f"invalid YAML: {problem}", file=name, line=line,
                          fix="check indentation, quoting and colons on that line") from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"invalid YAML: {exc}", file=name) from None
    finally:
        loader.dispose()
    return YamlSource(name, data, lines)


def _walk(loader: Any, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], name: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (list, dict)):
                raise SchemaError("a mapping key must be a plain value", file=name, line=line,
                                  key_path=format_path(path) or None)
            if key in seen:
                raise SchemaError(
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                    file=name, line=line, key_path=format_path(path + (key,)),
                    fix="remove one of the two entries; YAML would silently keep only the last",
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(loader, value_node, path + (key,), lines, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk(loader, item, path + (index,), lines, name)


def cerberus_error_paths(tree: Any, path: KeyPath = ()) -> list[tuple[KeyPath, str]]:
    """Cerberus's nested ``errors`` as ``(key path, message)`` pairs, in document order."""
    found: list[tuple[KeyPath, str]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += cerberus_error_paths(value, path + (key,))
    elif isinstance(tree, list):
        for item in tree:
            found += [(path, item)] if isinstance(item, str) else cerberus_error_paths(item, path)
    return found
