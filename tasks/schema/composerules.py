"""What Compose (and the Docker engine behind it) accepts, checked on every value mmstack writes.

Cerberus checks the schema's shape as written; this module checks the *resolved* values, in the
base file and in every environment, against the rules of the consumers: the Compose
specification's types, IP addresses, published ports after ``host_port_offset``, image
references in Docker's reference grammar (distribution/reference), and Compose's variable
interpolation. A problem is reported where the value was written (the schema, or
``mmstack.yaml``), with the key path as written there, never as an error from
``docker compose`` later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..engine.errors import MmstackError
from . import rules
from .composevalues import image_problem, ip_problem, suggest, type_fix
from .merge import VALUE_OPERATORS
from .origins import Origins, value_at
from .yamlsrc import KeyPath, YamlSource, cerberus_error_paths

if TYPE_CHECKING:
    from .model import Stack

# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------

HEALTHCHECK_RESOLVED = {
    "type": "dict",
    "schema": {
        "test": {"type": "list", "schema": {"type": "string"}, "minlength": 1, "required": True},
        "interval": rules.DURATION, "timeout": rules.DURATION, "start_period": rules.DURATION,
        "retries": {"type": "integer", "min": 1},
    },
}
_SERVICE_CHECK = {**rules.RESOLVED_SERVICE, "healthcheck": {**HEALTHCHECK_RESOLVED, "nullable": True}}
_VALIDATORS: dict[str, Any] = {}


def _validator() -> Any:
    from cerberus import Validator

    if "service" not in _VALIDATORS:
        _VALIDATORS["service"] = Validator(_SERVICE_CHECK, allow_unknown=False)
    return _VALIDATORS["service"]


class Collector:
    """Errors, each reported once however many services or environments share its origin."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, int | None, str], tuple[YamlSource, KeyPath, str, list[tuple[str, str | None]]]] = {}
        self._extra: list[MmstackError] = []

    def add(self, source: YamlSource, path: KeyPath, message: str, fix: str,
            context: tuple[str, str | None] | None = None) -> None:
        key = (source.file, source.line_of(path), message)
        entry = self._found.setdefault(key, (source, path, fix, []))
        if context is not None and context not in entry[3]:
            entry[3].append(context)

    def extend(self, errors: list[MmstackError]) -> None:
        self._extra += errors

    @property
    def errors(self) -> list[MmstackError]:
        out = list(self._extra)
        for (_file, _line, message), (source, path, fix, contexts) in self._found.items():
            out.append(source.error(path, message + _contexts(contexts), fix))
        return out


def _contexts(contexts: list[tuple[str, str | None]]) -> str:
    if not contexts:
        return ""
    services = list(dict.fromkeys(svc for svc, _ in contexts))
    envs = list(dict.fromkeys(env for _, env in contexts if env))
    who = f"service {services[0]!r}" if len(services) == 1 else f"{len(services)} services"
    where = "" if not envs else (f" in environment {envs[0]!r}" if len(envs) == 1 else
                                 f" in environments {', '.join(repr(e) for e in envs)}")
    return f" (for {who}{where})"


def resolved_value_errors(stack: "Stack", envs: list[str | None]) -> list[MmstackError]:
    """Every resolved service of the base file (``None``) and of each environment in ``envs``."""
    out = Collector()
    origins = Origins(stack)
    for env in envs:
        try:
            specs = stack.resolved_services(env)
            names = stack.environment(env).services if env else list(specs)
            base = stack.resolved_services() if env else None
        except MmstackError as exc:
            out.extend([exc])
            continue
        for svc in names:
            # The base file's services are checked in full; an environment's only where it
            # changes them (Cerberus is the slow part, and most services are unchanged).
            changed = None if base is None else {k for k, v in specs[svc].items() if base[svc].get(k) != v}
            if changed is not None and not changed:
                continue
            _service_errors(stack, origins, env, svc, specs[svc], out, changed)
        if env:
            _settings_errors(stack, env, out)
    return out.errors


def _service_errors(stack: "Stack", origins: Origins, env: str | None, svc: str,
                    spec: dict[str, Any], out: Collector, changed: set[str] | None = None) -> None:
    validator = _validator()
    checked = spec if changed is None else {k: v for k, v in spec.items() if k in changed or k == "image"}
    if not validator.validate(checked, normalize=False):
        for path, message in cerberus_error_paths(validator.errors):
            source, where = origins.find(env, svc, path, spec)
            found, value = value_at(spec, path)
            out.add(source, where, _message(message, path), _fix(message, value, where), (svc, env))
        return  # the checks below assume the types are right
    _reference_errors(stack, origins, env, svc, spec, out)
    for i, port in enumerate(spec.get("ports") or []):
        if "host_ip" in port and (problem := ip_problem(port["host_ip"])):
            source, where = origins.find(env, svc, ("ports", i, "host_ip"), spec)
            out.add(source, where, f"host_ip {problem}", "write an IPv4 or IPv6 address, e.g. 127.0.0.1", (svc, env))
        host = port.get("host")
        offset = stack.host_port_offset
        if host is not None and offset and host + offset > 65535:
            local = origins.local
            source, where = origins.find(env, svc, ("ports", i, "host"), spec)
            at = f"{source.file}:{source.line_of(where)}"
            if local is not None:
                out.add(local, ("host_port_offset",),
                        f"host_port_offset {offset} moves host port {host} of {svc!r} ({at}) to "
                        f"{host + offset}, beyond 65535",
                        f"lower host_port_offset to at most {65535 - host}, or give {svc!r} a lower host port")
    for sub, value in _strings(spec):
        if "$" in value.replace("$$", ""):
            source, where = origins.find(env, svc, sub, spec)
            out.add(source, where,
                    f"{value!r}: Compose replaces $NAME with a variable from the shell that runs it",
                    "write $$ for a literal $ (Compose turns $$ into $)", (svc, env))


def _reference_errors(stack: "Stack", origins: Origins, env: str | None, svc: str,
                      spec: dict[str, Any], out: Collector) -> None:
    """What an override adds must exist too: Compose refuses an undefined service, volume or
    network (the schema's own references are checked by semantics.semantic_errors)."""
    data = stack.data
    services, volumes, networks = data["services"], data.get("volumes") or {}, data.get("networks") or {}
    for dep in spec.get("depends_on") or {}:
        if dep not in services:
            source, where = origins.find(env, svc, ("depends_on", dep), spec)
            out.add(source, where, f"depends on unknown service {dep!r}{suggest(dep, services)}",
                    f"declare {dep!r} under services or remove the dependency", (svc, env))
    for i, mount in enumerate(spec.get("volumes") or []):
        if mount.get("source") not in volumes:
            source, where = origins.find(env, svc, ("volumes", i), spec)
            name = mount.get("source")
            out.add(source, where, f"volume {name!r} is not declared{suggest(name, volumes)}",
                    "add it under volumes:", (svc, env))
    for i, net in enumerate(spec.get("networks") or []):
        if net not in networks and net != "default":
            source, where = origins.find(env, svc, ("networks", i), spec)
            out.add(source, where, f"network {net!r} is not declared{suggest(net, networks)}",
                    f"add it under networks:, or use one of: {', '.join(networks)}", (svc, env))


def _strings(spec: dict[str, Any]) -> Iterable[tuple[KeyPath, str]]:
    """Every string value Compose interpolates (the healthcheck's escaped $$ included)."""
    for key in ("command", "entrypoint"):
        for i, part in enumerate(spec.get(key) or []):
            yield (key, i), part
    for name, value in (spec.get("environment") or {}).items():
        if isinstance(value, str):
            yield ("environment", name), value
    for i, part in enumerate((spec.get("healthcheck") or {}).get("test") or []):
        yield ("healthcheck", "test", i), part
    if isinstance(spec.get("user"), str):
        yield ("user",), spec["user"]
    for name, value in ((spec.get("logging") or {}).get("options") or {}).items():
        if isinstance(value, str):
            yield ("logging", "options", name), value


def _settings_errors(stack: "Stack", env: str, out: Collector) -> None:
    settings = (stack.data["environments"].get(env) or {}).get("settings") or {}
    if "bind_address" in settings and (problem := ip_problem(settings["bind_address"])):
        out.add(stack.source, ("environments", env, "settings", "bind_address"),
                f"bind_address {problem}", "write an IPv4 address, e.g. 127.0.0.1 (or 0.0.0.0 for every interface)")


def _message(message: str, path: KeyPath) -> str:
    if message == "unknown field":
        message = f"unknown key {path[-1]!r}" + suggest(path[-1], _known_keys(path))
    return message


def _known_keys(path: KeyPath) -> list[str]:
    schema: Any = _SERVICE_CHECK
    for part in path[:-1]:
        entry = schema.get(part) if isinstance(schema, dict) else None
        if not isinstance(entry, dict):
            return list(_SERVICE_CHECK)
        inner = entry.get("schema")
        if isinstance(inner, dict) and inner.get("type") == "dict":
            inner = inner.get("schema")
        schema = inner if isinstance(inner, dict) else {}
    return [k for k in schema if isinstance(k, str)] if isinstance(schema, dict) else []


def _fix(message: str, value: Any, where: KeyPath) -> str:
    if message == "unknown field":
        return "remove it or correct its spelling"
    if message.startswith("must be of"):
        return type_fix(value, message.removeprefix("must be of ").removesuffix(" type"))
    if message.startswith("unallowed value"):
        return f"use one of the values the schema's comments list for {where[-1]!r}"
    if message.startswith("value does not match regex"):
        return "see the allowed format in the schema's comments"
    if message.startswith(("min value", "max value")):
        return f"bring the value into range ({message})"
    return "correct the value"


# --------------------------------------------------------------------------------------------
# Images, in the schema and in mmstack.yaml
# --------------------------------------------------------------------------------------------

def image_errors(stack: "Stack") -> list[MmstackError]:
    out = Collector()
    src, data = stack.source, stack.data
    local: YamlSource | None = getattr(stack, "settings_source", None)
    settings = stack.settings or {}
    services: dict[str, Any] = data["services"]
    for svc, raw in services.items():
        image = raw.get("image")
        if isinstance(image, str) and (problem := image_problem(image)):
            out.add(src, ("services", svc, "image"), *problem)
    custom = next((s for s, r in services.items() if isinstance(r.get("image"), dict)
                   and isinstance(r["image"].get("custom"), str)), None)
    if custom is not None:
        example = stack.image_of(custom, {"image": services[custom]["image"]})
        if problem := image_problem(example):
            # mmstack.yaml's custom_images, when it says so, is what composed the reference.
            local_block = settings.get("custom_images") or {}
            about_tag = "tag" in problem[0]
            preferred = ("tag", "registry") if about_tag else ("registry", "tag")
            for source, block, key in ((local, local_block, "custom_images"), (src, data.get("images") or {}, "images")):
                field = next((f for f in preferred if isinstance(block, dict) and f in block), None)
                if source is not None and field is not None:
                    out.add(source, (key, field), f"custom images would be {example!r}: {problem[0]}", problem[1])
                    break
            else:
                out.add(src, ("services", custom, "image"), f"{example!r}: {problem[0]}",
                        "set images: {registry: ..., tag: ...} in the schema")
    if local is not None:
        for svc, image in (settings.get("images") or {}).items():
            if svc not in services:
                out.add(local, ("images", svc), f"unknown service {svc!r}{suggest(svc, services)}",
                        f"use one of: {', '.join(services)}")
            elif problem := image_problem(image):
                out.add(local, ("images", svc), *problem)
    return out.errors


def settings_reference_errors(stack: "Stack") -> list[MmstackError]:
    """mmstack.yaml's references: services (overrides, images) and environment exist."""
    local: YamlSource | None = getattr(stack, "settings_source", None)
    if local is None:
        return []
    out = Collector()
    settings = stack.settings or {}
    envs = list(stack.data["environments"])
    if isinstance(settings.get("environment"), str) and settings["environment"] not in envs:
        name = settings["environment"]
        out.add(local, ("environment",), f"unknown environment {name!r}{suggest(name, envs)}",
                f"use one of: {', '.join(envs)}")
    templates = list((stack.source.data or {}).get("healthchecks") or {})  # the schema's own
    for tpl in ((settings.get("overrides") or {}).get("healthchecks") or {}):
        if tpl not in templates:
            out.add(local, ("overrides", "healthchecks", tpl),
                    f"unknown healthcheck template {tpl!r}{suggest(tpl, templates)}",
                    f"use one of: {', '.join(templates)}")
    return out.errors


# --------------------------------------------------------------------------------------------
# Overrides as written (an environment's, mmstack.yaml's), before anything is merged
# --------------------------------------------------------------------------------------------

def _optional(schema: Any) -> Any:
    """``schema`` with every ``required`` dropped: an override names only what it changes."""
    if isinstance(schema, dict):
        return {k: _optional(v) for k, v in schema.items() if k != "required"}
    return schema


_OVERRIDE_SERVICE = _optional(rules.RESOLVED_SERVICE)
_OVERRIDE_SERVICE["healthcheck"] = _optional(rules.HEALTHCHECK_REF)
_OVERRIDE_SERVICE["image"] = {"type": ["string", "dict"], "schema": _OVERRIDE_SERVICE["image"].get("schema")}
_OVERRIDES_CHECK = {
    "defaults": {"type": "dict", "schema": _OVERRIDE_SERVICE},
    "services": {"type": "dict", "valuesrules": {"type": "dict", "schema": _OVERRIDE_SERVICE}},
    "healthchecks": {"type": "dict", "valuesrules": {"type": "dict", "schema": _optional(rules.HEALTHCHECK_FIELDS)}},
}
def _without_operators(value: Any, path: KeyPath, moved: dict[KeyPath, KeyPath]) -> Any:
    """The override with each ``{$op: value}`` replaced by its value (and ``{$delete: true}``
    dropped), so it can be checked like a plain service; ``moved`` maps paths back."""
    if isinstance(value, dict):
        if len(value) == 1:
            (op, inner), = value.items()
            if op == "$delete":
                return _DROP
            if op in VALUE_OPERATORS:
                moved[path] = path + (op,)
                return _without_operators(inner, path + (op,), moved)
        out = {}
        for key, item in value.items():
            cleaned = _without_operators(item, path + (key,), moved)
            if cleaned is not _DROP:
                out[key] = cleaned
        return out
    if isinstance(value, list):
        return [_without_operators(item, path + (i,), moved) for i, item in enumerate(value)]
    return value


_DROP = object()


def _written_path(path: KeyPath, moved: dict[KeyPath, KeyPath]) -> KeyPath:
    for n in range(len(path) - 1, 0, -1):  # inside an operator's value; the key itself stays
        if path[:n] in moved:
            return moved[path[:n]] + path[n:]
    return path


def override_shape_errors(source: YamlSource, prefix: KeyPath, overrides: Any) -> list[MmstackError]:
    """Each value of an overrides block checked where it is written, as Compose will take it."""
    from cerberus import Validator

    if not isinstance(overrides, dict):
        return []
    moved: dict[KeyPath, KeyPath] = {}
    plain = _without_operators(overrides, (), moved)
    if "overrides" not in _VALIDATORS:
        _VALIDATORS["overrides"] = Validator(_OVERRIDES_CHECK, allow_unknown=False)
    validator = _VALIDATORS["overrides"]
    if validator.validate(plain, normalize=False):
        return []
    out = Collector()
    for path, message in cerberus_error_paths(validator.errors):
        written = prefix + _written_path(path, moved)
        _, value = value_at(plain, path)
        text = message
        if message == "unknown field":
            text = f"unknown key {path[-1]!r}" + suggest(path[-1], _override_keys(path))
        out.add(source, written, text, _fix(message, value, written))
    return out.errors


def _override_keys(path: KeyPath) -> list[str]:
    if len(path) >= 2 and path[0] == "healthchecks":
        return list(rules.HEALTHCHECK_FIELDS)
    inner = path[1:-1] if path[0] == "defaults" else path[2:-1]
    schema: Any = _OVERRIDE_SERVICE
    for part in inner:
        entry = schema.get(part) if isinstance(schema, dict) else None
        if not isinstance(entry, dict):
            return list(_OVERRIDE_SERVICE)
        schema = entry.get("schema") or {}
        if isinstance(schema, dict) and schema.get("type") == "dict":
            schema = schema.get("schema") or {}
    return [k for k in schema if isinstance(k, str)] if isinstance(schema, dict) else []
