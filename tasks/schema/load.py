"""Load and validate a stack directory: `load_stack(stack_dir)` is the single entry point.

It reads the schema and the optional `mmstack.yaml` settings, checks the shape of both with
Cerberus (each error turned into file, line, key path and a fix), applies the settings'
overrides, runs the cross-reference checks of `semantics`, and returns a `model.Stack`. All
problems found are reported together. `validation_cache` remembers the schemas that passed, so
a run with the same files and the same validator code skips validating them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.cache import ContentCache, code_fingerprint, fingerprint
from ..engine.errors import MmstackError, MultiError
from . import composerules, composevalues, rules, semantics
from .merge import MergeError, merge
from .model import SCHEMA_PATH, SETTINGS_PATH, TEMPLATES_DIR, Stack
from .origins import value_at
from .yamlsrc import KeyPath, YamlSource, cerberus_error_paths, display_name, load_yaml


def load_stack(root: Path, schema_path: Path | None = None, settings_path: Path | None = None,
               cache: "ContentCache | None" = None) -> Stack:
    """Read and validate the schema (and `mmstack.yaml`, when present) under ``root``.

    With ``cache`` (see engine.cache), a schema, settings file and template set that already
    passed validation with this very code are not validated again.
    """
    root = Path(root)
    schema_file = schema_path or root / SCHEMA_PATH
    source = load_yaml(schema_file, display_name(schema_file, root))
    settings_source = None
    settings_file = settings_path or root / SETTINGS_PATH
    if settings_file.exists():
        settings_source = load_yaml(settings_file, display_name(settings_file, root))

    cache_key = None
    if cache is not None:
        templates = sorted(p.name for p in (root / TEMPLATES_DIR).glob("*.env.j2"))
        cache_key = fingerprint(schema_file.read_bytes(),
                                settings_file.read_bytes() if settings_source is not None else b"",
                                "\n".join(templates))
    known_valid = bool(cache is not None and cache.get(cache_key))
    errors: list[MmstackError] = []
    if not isinstance(source.data, dict):
        raise source.error((), "the schema must be a YAML mapping at the top level",
                           fix="start from the shipped schemas/compose-schema.yaml")
    settings: dict[str, Any] = {}
    if settings_source is not None:
        if settings_source.data is None:
            settings_source.data = {}
        if not isinstance(settings_source.data, dict):
            raise settings_source.error((), "mmstack.yaml must be a mapping",
                                        fix="write key: value lines (project, images, host_port_offset, overrides, secrets)")
        if not known_valid:
            errors += cerberus_errors(settings_source, rules.SETTINGS)
            if not errors:
                errors += composerules.override_shape_errors(
                    settings_source, ("overrides",), settings_source.data.get("overrides"))
        settings = settings_source.data

    if not known_valid:
        errors += cerberus_errors(source, rules.SCHEMA)
    if errors:
        raise MultiError(errors)

    data = source.data
    local = (settings.get("overrides") or {}) if settings else {}
    if local:
        # mmstack.yaml overrides are applied as if they were written in the schema.
        try:
            data = dict(data)
            data["defaults"] = merge(data.get("defaults") or {}, local.get("defaults") or {}, ("overrides", "defaults"))
            data["healthchecks"] = merge(data.get("healthchecks") or {}, local.get("healthchecks") or {}, ("overrides", "healthchecks"))
            services = dict(data["services"])
            for name, over in (local.get("services") or {}).items():
                if name not in services:
                    assert settings_source is not None
                    raise MultiError([settings_source.error(("overrides", "services", name),
                                      f"unknown service {name!r}{composerules.suggest(name, services)}",
                                      fix=f"use one of: {', '.join(services)}")])
                services[name] = merge(services[name], over, ("overrides", "services", name))
            data["services"] = services
        except MergeError as exc:
            assert settings_source is not None
            raise MultiError([settings_source.error(exc.path, exc.message, exc.fix)]) from None

    stack = Stack(root=root, source=source, data=data, settings=settings, settings_source=settings_source)
    if known_valid:
        return stack
    errors += semantics.semantic_errors(stack, settings_source)
    if errors:
        raise MultiError(errors)
    if cache is not None and cache_key is not None:
        cache.put(cache_key, True)
    return stack


def validation_cache(state_dir: Path | None, *, writable: bool) -> "ContentCache":
    """The memo of schemas that passed validation (keyed by content and validator code)."""
    import sys

    from . import merge as merge_module
    from . import model, origins, yamlsrc

    # Everything a validation runs: a change to any of it makes every remembered result stale.
    code = code_fingerprint([rules, merge_module, yamlsrc, composerules, composevalues, origins,
                             model, semantics, sys.modules[__name__]])
    return ContentCache(state_dir, "schema-valid", code, writable=writable)


_VALIDATORS: dict[int, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """One Validator per rule set: building one re-checks the rules, which is the slow part."""
    from cerberus import Validator  # imported on first use: a cached validation needs none

    key = id(schema)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = Validator(schema, allow_unknown=False)
    return _VALIDATORS[key]


def cerberus_errors(source: YamlSource, schema: dict[str, Any]) -> list[MmstackError]:
    validator = _validator(schema)
    # normalize=False: the document is validated as written, never rewritten with defaults.
    if validator.validate(source.data, normalize=False):
        return []
    out: list[MmstackError] = []
    for path, message in cerberus_error_paths(validator.errors):
        explained = _explain(message)
        if message == "unknown field":
            explained += composerules.suggest(path[-1], _allowed_keys(schema, path))
        fix = _fix_for(message, path)
        if message.startswith("must be of"):
            found, value = value_at(source.data, path)
            fix = composerules.type_fix(value, message.removeprefix("must be of ").removesuffix(" type"))
        out.append(source.error(path, explained, fix=fix))
    return out


def _allowed_keys(schema: dict[str, Any], path: KeyPath) -> list[str]:
    """The keys Cerberus would have accepted where ``path`` ends (for a did-you-mean)."""
    node: Any = schema
    for part in path[:-1]:
        if not isinstance(node, dict):
            return []
        rule = node.get(part) if part in node else None
        if rule is None:
            # A mapping of names (services, environments...): its values share one rule.
            return []
        inner = rule.get("schema") or (rule.get("valuesrules") or {}).get("schema")
        node = inner
        if isinstance(node, dict) and "schema" in node and node.get("type") == "dict":
            node = node["schema"]
    return [k for k in node if isinstance(k, str)] if isinstance(node, dict) else []


def _explain(message: str) -> str:
    if message == "unknown field":
        return "unknown key"
    return message


def _fix_for(message: str, path: KeyPath) -> str | None:
    if message == "unknown field":
        return "remove it or check its spelling (see the comments at the top of the schema)"
    if message == "required field":
        return f"add {path[-1]!r} here"
    if message.startswith("must be of"):
        return "change the value to the expected type"
    if message.startswith("value does not match regex"):
        return "see the allowed format in the schema's comments"
    if message.startswith("unallowed value"):
        return f"use one of the values allowed for {path[-1]!r} (see the schema's comments)"
    if message.startswith(("min value", "max value", "min length", "max length")):
        return f"bring the value into range ({message})"
    if message.startswith("null value not allowed") or message.startswith("empty values not allowed"):
        return "give it a value, or remove the key"
    return "correct the value (see the comments at the top of the schema)"
