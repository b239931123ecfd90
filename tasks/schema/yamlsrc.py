"""YAML loading that remembers where every key came from.

PyYAML forgets line numbers once it builds Python objects, and silently keeps the last of two
duplicate keys. Both matter to someone fixing a schema, so this loader walks the node tree once,
recording the line of every key path and refusing duplicate keys.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..engine.errors import MmstackError, SchemaError

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


def read_text(path: Path, name: str) -> str:
    """The file as text: UTF-8 with or without a BOM; anything else is a `SchemaError` with the
    line of the first byte that is not UTF-8 (a byte offset means nothing to someone in an editor).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SchemaError("file not found", file=name,
                          fix="run from the stack directory, or create the file") from None
    except IsADirectoryError:
        raise SchemaError("a directory stands where this file belongs", file=name,
                          fix="move the directory away and put the file there") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SchemaError("the file is a symbolic link loop", file=name,
                              fix="point the link at a real file (ls -l shows where it leads)") from None
        raise SchemaError(f"cannot read file: {exc.strerror or exc}", file=name,
                          fix="check the file's permissions and that it is a regular file") from None
    return decode_text(data, name)


def decode_text(data: bytes, name: str, error: type[MmstackError] = SchemaError) -> str:
    """UTF-8 (a leading BOM is dropped); otherwise ``error`` naming the line of the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = 3 if data.startswith(codecs.BOM_UTF8) else 0
        offset = exc.start + start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        encoding = "UTF-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "not UTF-8"
        raise error(f"the file is {encoding}: byte 0x{data[offset]:02x} in column {column} is not UTF-8",
                    file=name, line=line,
                    key_path=path_at_line(data.decode("utf-8", "replace"), line) if name.endswith((".yaml", ".yml")) else None,
                    fix="save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8), or remove that character") from None


# Past this many nodes, with aliases expanded, a document is an alias bomb ("billion laughs"):
# the shipped schema has about 3,000.
MAX_EXPANDED_NODES = 200_000


def display_name(path: Path, root: Path) -> str:
    """How errors name ``path``: relative to the stack ``root`` when inside it, else as given."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except (ValueError, RuntimeError, OSError):  # RuntimeError: a symlink loop (Python 3.11)
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        return str(path) if rel.startswith("..") else rel


def load_yaml(path: Path, display: str | None = None, text: str | None = None) -> YamlSource:
    """Parse ``path``; a syntax error or a duplicate key is a `SchemaError` with the line."""
    name = display or str(path)
    if text is None:
        text = read_text(path, name)
    elif text.startswith("\ufeff"):
        text = text[1:]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlSource(name, None, {(): 1})
        lines: dict[KeyPath, int] = {}
        _check_aliases(node, text, name)
        _walk(loader, node, (), lines, name, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise syntax_error(exc, name, text) from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"invalid YAML: {exc}", file=name,
                          fix="check indentation, quoting and colons") from None
    except RecursionError:
        raise SchemaError("the document is nested too deeply to read", file=name, line=1,
                          fix="flatten the nesting; no mmstack file needs more than a few levels") from None
    finally:
        loader.dispose()
    return YamlSource(name, data, lines)


_KEY_LINE = re.compile(r"""^(\s*)(?:-\s+)?("[^"]*"|'[^']*'|[^\s#'"{\[\]},&*!|>%@`-][^:#]*?|[A-Za-z0-9_][^:#]*?)\s*:(?:\s|$)""")


def path_at_line(text: str, line: int | None) -> str | None:
    """The block-style key path that ``line`` sits under, read from the text alone.

    For errors found before there is a node tree (a syntax error, an undecodable byte, a
    recursive alias): a reader still wants to know which entry to look at.
    """
    if not line:
        return None
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[:line]:
        raw = raw.expandtabs(4)  # a tab where spaces belong: read as the indent it looks like
        match = _KEY_LINE.match(raw)
        if not match or raw.lstrip().startswith("#"):
            continue
        indent = len(match.group(1)) + (raw[len(match.group(1)):].startswith("-") and 2 or 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2).strip("'\"")))
    return ".".join(key for _, key in stack) or None


def syntax_error(exc: yaml.MarkedYAMLError, name: str, text: str = "") -> SchemaError:
    """The line a person must fix: where an unclosed quote or bracket *opened*, which the parser
    names as its context, rather than where it finally gave up (often many lines later)."""
    context = exc.context or ""
    opened = exc.context_mark is not None and (
        context.startswith("while scanning a quoted scalar") or context.startswith("while parsing a flow"))
    mark = (exc.context_mark if opened else exc.problem_mark) or exc.context_mark
    line = mark.line + 1 if mark else None
    problem = exc.problem or str(exc)
    message = f"invalid YAML: {problem}"
    if context:
        message += f" {context}"
        if opened and exc.problem_mark is not None and exc.problem_mark.line + 1 != line:
            message += f" (started here; the parser gave up on line {exc.problem_mark.line + 1})"
    quote_line = None if opened else _unclosed_quote_line(text, line)
    if quote_line is not None:
        # A quote left open swallows the lines after it up to the next quote character, and the
        # parser fails only there: the line to fix is the one where it opened.
        message = (f"invalid YAML: the quote opened on this line is not closed on it (the parser then "
                   f"failed on line {line}: {problem})")
        line, context = quote_line, "while scanning a quoted scalar"
    if "quoted scalar" in context:
        fix = "close the quote on this line (a quote inside the value is written twice in '...' or as \\\" in \"...\")"
    elif context.startswith("while parsing a flow"):
        fix = "close the bracket or brace opened on this line, and separate items with commas"
    elif line and "\t" in (text.splitlines()[line - 1:line] or [""])[0]:
        fix = "indent with spaces; YAML does not allow tabs"
    else:
        fix = "check indentation, quoting and colons on that line"
    return SchemaError(message, file=name, line=line, key_path=path_at_line(text, line), fix=fix)


_QUOTED_VALUE = re.compile(r"""^\s*(?:-\s+)?(?:[^\s#'"][^:#]*:\s+)?(["'])(.*)$""")


def _unclosed_quote_line(text: str, before: int | None) -> int | None:
    """The last line before ``before`` where a quoted value opens and does not close."""
    if not before or not text:
        return None
    found = None
    for number, raw in enumerate(text.splitlines()[: before - 1], start=1):
        match = _QUOTED_VALUE.match(raw)
        if not match or raw.lstrip().startswith("#"):
            continue
        quote, rest = match.groups()
        rest = rest.replace("\\\\", "").replace('\\"', "") if quote == '"' else rest.replace("''", "")
        if quote not in rest:
            found = number
    return found


def _check_aliases(root: yaml.Node, text: str, name: str) -> None:
    """Refuse an alias that contains itself and an alias bomb before anything walks the tree.

    Nodes reached through aliases are shared, so both checks cost one visit per distinct node.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, state = stack.pop()
        key = id(node)
        if state == 0:
            if key in sizes:
                continue
            if key in active:
                raise _recursive_alias(text, name)
            children = _children(node)
            if not children:
                sizes[key] = 1
                continue
            active.add(key)
            stack.append((node, 1))
            for child in children:
                if id(child) in active:
                    raise _recursive_alias(text, name)
                if id(child) not in sizes:
                    stack.append((child, 0))
        else:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise SchemaError(
                    f"aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb)",
                    file=name, line=node.start_mark.line + 1,
                    key_path=path_at_line(text, node.start_mark.line + 1),
                    fix="write the values out, or alias a mapping once instead of nesting aliases of aliases")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _recursive_alias(text: str, name: str) -> SchemaError:
    """Only the event stream still knows where an alias was written: read it (on this error
    path only) for the first alias used inside its own anchor."""
    line = None
    alias = "?"
    open_anchors: list[str | None] = []
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_anchors.append(event.anchor)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                open_anchors.pop()
            elif isinstance(event, yaml.AliasEvent) and event.anchor in open_anchors:
                line, alias = event.start_mark.line + 1, event.anchor
                break
    except yaml.YAMLError:
        pass
    return SchemaError(f"alias *{alias} is used inside its own anchor &{alias} (a recursive value)",
                       file=name, line=line, key_path=path_at_line(text, line),
                       fix="an alias may only repeat a value defined before it; copy the value instead")


def _walk(loader: Any, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], name: str,
          seen_nodes: set[int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen_nodes:
        # An alias of a node already walked: its keys were recorded under the anchor's path, and
        # what is under the alias is found at the alias's own line (its nearest recorded parent).
        return
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (list, dict)):
                raise SchemaError("a mapping key must be a plain value", file=name, line=line,
                                  key_path=format_path(path) or None,
                                  fix="use a plain word as the key")
            if key in seen:
                raise SchemaError(
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                    file=name, line=line, key_path=format_path(path + (key,)),
                    fix="remove one of the two entries; YAML would silently keep only the last",
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(loader, value_node, path + (key,), lines, name, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk(loader, item, path + (index,), lines, name, seen_nodes)


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
