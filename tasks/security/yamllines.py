"""YAML that remembers the file and line of every key and list item, and Compose-style merging.

The schema's own loader (`schema.yamlsrc`) refuses duplicate keys and unknown tags, which is
right for a file mmstack owns but wrong for a scanner: it must read any YAML it is pointed at,
including Compose's ``!override``/``!reset`` tags. So this loader builds plain dicts and lists
from PyYAML's node tree, keeping each entry's location and the node's tag alongside.
"""

from __future__ import annotations

from typing import Any

import yaml

try:  # libyaml's composer is several times faster; the node tree is the same
    _Composer: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Composer = yaml.SafeLoader

_CONSTRUCT = yaml.SafeLoader("")  # only its scalar constructors are used
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str, int]  # (display file, 1-based line)


class YMap(dict):
    """A mapping plus where each key was written (``locs``) and the node's tag."""

    def __init__(self, file: str, line: int, tag: str | None = None) -> None:
        super().__init__()
        self.file, self.line, self.tag = file, line, tag
        self.locs: dict[Any, Loc] = {}

    def loc(self, key: Any) -> Loc:
        return self.locs.get(key, (self.file, self.line))


class YSeq(list):
    """A sequence plus where each item was written and the node's tag."""

    def __init__(self, file: str, line: int, tag: str | None = None) -> None:
        super().__init__()
        self.file, self.line, self.tag = file, line, tag
        self.locs: list[Loc] = []

    def loc(self, index: int) -> Loc:
        return self.locs[index] if index < len(self.locs) else (self.file, self.line)


class TaggedStr(str):
    """A scalar with a non-standard tag (``!reset``, ``!override``): its text, plus the tag."""

    tag: str | None = None


def _custom_tag(tag: str) -> str | None:
    return None if tag.startswith("tag:yaml.org,2002:") else tag


def _scalar(node: yaml.ScalarNode) -> Any:
    ctor = yaml.SafeLoader.yaml_constructors.get(node.tag)
    if ctor is not None:
        try:
            return ctor(_CONSTRUCT, node)
        except (yaml.YAMLError, ValueError, TypeError):
            return node.value
    out = TaggedStr(node.value)  # an unknown tag (!reset null, !override "x"): the text
    out.tag = node.tag
    return out


def _convert(node: yaml.Node, file: str, seen: dict[int, Any]) -> Any:
    # Aliases give the same node twice; converting it once also stops a self-referencing anchor.
    if id(node) in seen:
        return seen[id(node)]
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        seq = YSeq(file, line, _custom_tag(node.tag))
        seen[id(node)] = seq
        for item in node.value:
            seq.append(_convert(item, file, seen))
            seq.locs.append((file, item.start_mark.line + 1))
        return seq
    out = YMap(file, line, _custom_tag(node.tag))
    seen[id(node)] = out
    merged: list[YMap] = []
    for key_node, value_node in node.value:
        value = _convert(value_node, file, seen)
        if key_node.tag == _MERGE_TAG:
            merged.extend(v for v in (value if isinstance(value, list) else [value])
                          if isinstance(v, YMap))
            continue
        key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
        if isinstance(key, (list, dict)):
            key = str(key)
        out[key] = value
        out.locs[key] = (file, key_node.start_mark.line + 1)
    for src in merged:  # `<<: *anchor`: keys written here win over merged ones
        for key, value in src.items():
            if key not in out:
                out[key] = value
                out.locs[key] = src.loc(key)
    return out


def load_documents(text: str, file: str) -> list[Any]:
    """Every document in ``text``; raises yaml.YAMLError (with ``problem_mark``) on bad syntax."""
    return [_convert(node, file, {}) for node in yaml.compose_all(text, Loader=_Composer)
            if node is not None]


def error_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


# ----------------------------------------------------------------------------------------------
# Compose merging: `docker compose -f a.yml -f b.yml` semantics, close enough for the rules
# ----------------------------------------------------------------------------------------------

def is_reset(value: Any) -> bool:
    return getattr(value, "tag", None) == "!reset"


def merge(base: Any, over: Any) -> Any:
    """Merge an overlay into a base like Compose: mappings key by key, sequences appended,
    ``!override`` replaces, ``!reset`` removes (the caller drops a key whose value is reset)."""
    if getattr(over, "tag", None) == "!override" or base is None:
        return over
    if isinstance(base, YMap) and isinstance(over, YMap):
        out = YMap(base.file, base.line, base.tag)
        for key, value in base.items():
            out[key] = value
            out.locs[key] = base.loc(key)
        for key, value in over.items():
            if is_reset(value):
                out.pop(key, None)
                out.locs.pop(key, None)
                continue
            if key in out:
                merged = merge(out[key], value)
                # A merged mapping stays where it was first written; a replaced value moved.
                if not (isinstance(out[key], YMap) and isinstance(value, YMap)
                        and getattr(value, "tag", None) != "!override"):
                    out.locs[key] = over.loc(key)
                out[key] = merged
            else:
                out[key] = value
                out.locs[key] = over.loc(key)
        return out
    if isinstance(base, YSeq) and isinstance(over, YSeq):
        out_seq = YSeq(base.file, base.line, base.tag)
        for i, item in enumerate(base):
            out_seq.append(item)
            out_seq.locs.append(base.loc(i))
        for i, item in enumerate(over):
            if item not in out_seq:  # Compose de-duplicates identical entries
                out_seq.append(item)
                out_seq.locs.append(over.loc(i))
        return out_seq
    return over
