"""Production exposure rules: datastore ports published beyond loopback, services without a
healthcheck (MMS304, MMS305).

Two views, two merge semantics, each the one its consumer applies:

* the schema's ``production`` environment, judged on the model mmstack generates from: the
  environment's services (dependencies included) resolved by the schema's own merge code
  (`Stack.resolved_services`, list operators and all), so the scan sees exactly what the
  compose files will hold, before they are written;
* compose files, judged as ``docker compose -f base -f overlay`` merges them (yamllines.merge).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from . import patterns as P
from ..engine.errors import MmstackError
from ..schema.generate import ONE_SHOT_LABEL
from ..schema.merge import OPERATORS
from .rules import PLAIN, Finding, FindingSink
from .yamllines import YMap, YSeq, load_documents, merge

PRODUCTION_NAMES = frozenset({"production", "prod"})


def is_production(environment: str | None) -> bool:
    return (environment or "").lower() in PRODUCTION_NAMES


def parse_short_port(spec: str) -> tuple[str | None, str | None, list[int]]:
    """``[host_ip:][published:]target[/proto]`` -> (host_ip, published, targets)."""
    spec = spec.split("/", 1)[0].strip()
    ip: str | None = None
    m = re.match(r"^\[([^\]]*)\]:(.*)$", spec)
    if m:
        ip, spec = m.group(1), m.group(2)
    parts = spec.rsplit(":", 2) if ip is None else spec.split(":", 1)
    if ip is None and len(parts) == 3:
        ip, published, target = parts
    elif len(parts) == 2:
        published, target = parts
    else:
        published, target = None, parts[-1]
    return ip, published, _port_range(target)


def _port_range(text: Any) -> list[int]:
    text = str(text).strip()
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            return list(range(lo, min(hi, lo + 1000) + 1))
        return [int(text)]
    except ValueError:
        return []


def _datastore(targets: list[int], published: Any) -> tuple[int, str] | None:
    for port in targets + _port_range(published if published is not None else ""):
        if port in P.DATASTORE_PORTS:
            return port, P.DATASTORE_PORTS[port]
    return None


def _public(ip: Any) -> bool | None:
    """True when bound on all interfaces, None when it depends on a variable."""
    if ip is None:
        return True
    resolved = P.resolve_default(str(ip))
    if resolved is None:
        return None
    return resolved.strip() in P.PUBLIC_ADDRESSES


def compose_production(out: FindingSink, services: YMap, *, only_defined: bool) -> None:
    for name, spec in services.items():
        if not isinstance(spec, YMap):
            continue
        svc_file, svc_line = services.loc(name)
        ports = spec.get("ports")
        if isinstance(ports, YSeq):
            for i, item in enumerate(ports):
                if isinstance(item, YMap):
                    ip, published = item.get("host_ip"), item.get("published")
                    targets = _port_range(item.get("target", ""))
                else:
                    ip, published, targets = parse_short_port(str(item))
                store = _datastore(targets, published)
                if store and _public(ip):
                    port_file, port_line = ports.loc(i)
                    where = "all interfaces" if ip in (None, "") else str(ip)
                    out.add("MMS304", port_line, f"services.{name}.ports[{i}]: {store[1]} "
                                                 f"({store[0]}) published on {where} in production",
                            file=port_file)
        if only_defined and "image" not in spec and "build" not in spec:
            continue  # an overlay that only adjusts a service defined elsewhere
        hc = spec.get("healthcheck")
        disabled = isinstance(hc, YMap) and (hc.get("disable") is True or hc.get("test") in
                                             (["NONE"], "NONE"))
        labels = spec.get("labels")
        one_shot = isinstance(labels, YMap) and labels.get(ONE_SHOT_LABEL) == "true"
        if (hc is None or disabled) and not one_shot:
            why = "disabled" if disabled else "none"
            line_file, line = (spec.loc("healthcheck") if disabled else (svc_file, svc_line))
            out.add("MMS305", line, f"services.{name}: no healthcheck in production ({why})",
                    file=line_file)


def scan_compose_merged(parts: list[tuple[str, str]], environment: str = "production") -> list[Finding]:
    """The production rules on ``docker compose -f base -f overlay ...`` merged; each finding
    points at the file and line that put the setting there. Parse errors are left to the
    per-file scan."""
    services: Any = None
    for file, text in parts:
        try:
            docs = load_documents(text, file)
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, YMap) and isinstance(doc.get("services"), YMap):
                services = merge(services, doc["services"])
    out = FindingSink(parts[0][0] if parts else "", PLAIN)
    if isinstance(services, YMap) and is_production(environment):
        compose_production(out, services, only_defined=False)
    return out.findings


def schema_production(out: FindingSink, text: str) -> None:
    """The schema's production environment, as the generator will resolve it."""
    from ..schema.model import Stack
    from ..schema.yamlsrc import load_yaml

    try:
        source = load_yaml(Path(out.file), out.file, text=text)
    except MmstackError:
        return  # not parseable: the per-file scan reports it (MMS001)
    data = source.data
    envs = data.get("environments") if isinstance(data, dict) else None
    env_name = next((k for k in envs if is_production(str(k))), None) if isinstance(envs, dict) else None
    if env_name is None:
        return
    stack = Stack(root=Path("."), source=source, data=data)
    try:
        env = stack.environment(env_name)
        specs = stack.resolved_services(env_name)
    except (MmstackError, KeyError, TypeError, AttributeError, ValueError):
        return  # an invalid schema: schema validation reports it, with its line
    bind_path = ("environments", env_name, "settings", "bind_address")
    for name in env.services:
        spec = specs.get(name) or {}
        for item in spec.get("ports") or []:
            if not isinstance(item, dict) or item.get("host") is None or item.get("container") is None:
                continue
            store = _datastore(_port_range(item["container"]), None)
            ip = item.get("host_ip", env.bind_address)
            if store is None or not _public(ip):
                continue
            origin = _port_origin(data, env_name, name, item)
            at = origin if "host_ip" in item or "bind_address" not in env.settings else bind_path
            out.add("MMS304", source.line_of(at), f"environments.{env_name}: {store[1]} ({store[0]}) of "
                                                  f"{name} published on {ip or 'all interfaces'} in production")
        if spec.get("healthcheck") is None and name not in stack.one_shot_services:
            out.add("MMS305", source.line_of(("services", name)),
                    f"services.{name}: no healthcheck, and it runs in {env_name}")


def _port_origin(data: dict[str, Any], env_name: str, name: str, item: dict[str, Any]) -> tuple[Any, ...]:
    """The key path that put ``item`` into the resolved ports: the override's entry, whatever
    its operator, else the service's own."""
    over_path = ("environments", env_name, "overrides", "services", name, "ports")
    over = _dig(data, over_path)
    if isinstance(over, dict):
        for op in OPERATORS:
            if isinstance(over.get(op), list) and item in over[op]:
                return over_path + (op, over[op].index(item))
    elif isinstance(over, list) and item in over:
        return over_path + (over.index(item),)
    own = _dig(data, ("services", name, "ports"))
    if isinstance(own, list) and item in own:
        return ("services", name, "ports", own.index(item))
    return ("services", name)


def _dig(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


__all__ = ["compose_production", "scan_compose_merged", "schema_production", "parse_short_port",
           "is_production", "PRODUCTION_NAMES"]
