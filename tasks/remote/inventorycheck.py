"""What the inventory's values must be before mmstack connects anywhere.

Cerberus (inventory.py) checks the shape; this checks the values against what their consumers
accept: an address that SSH can dial (a port glued on belongs in ``port:``), GPU overrides the
planner takes (numbers, the P2P modes), key files that exist, and environments the stack has.
Every problem names the inventory file, the line and the key path where the value was written.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError, MmstackError
from ..schema.yamlsrc import KeyPath, YamlSource, format_path

_DNS = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_HOST_PORT = re.compile(r"^(\[[^\]]+\]|[^:\[\]]+):(\d+)$")



def _err(src: YamlSource, path: KeyPath, message: str, fix: str) -> ConfigError:
    return ConfigError(message, file=src.file, line=src.line_of(path), key_path=format_path(path), fix=fix)


def var_levels(data: dict[str, Any]) -> Iterable[tuple[KeyPath, dict[str, Any]]]:
    """Every mapping of variables in one inventory document, with its key path."""
    if isinstance(data.get("vars"), dict):
        yield ("vars",), data["vars"]
    for name, hvars in (data.get("hosts") or {}).items():
        if isinstance(hvars, dict):
            yield ("hosts", name), hvars
    for gname, gdef in (data.get("groups") or {}).items():
        if not isinstance(gdef, dict):
            continue
        if isinstance(gdef.get("vars"), dict):
            yield ("groups", gname, "vars"), gdef["vars"]
        for name, hvars in (gdef.get("hosts") or {}).items():
            if isinstance(hvars, dict):
                yield ("groups", gname, "hosts", name), hvars


def lookup(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def address_problem(address: str) -> tuple[str, str] | None:
    glued = _HOST_PORT.match(address)
    if glued and not _looks_ipv6(address):
        host, port = glued.group(1).strip("[]"), glued.group(2)
        return (f"address {address!r} has a port glued on",
                f"write address: {host} and port: {port} (the port has a key of its own)")
    if "://" in address or "@" in address or "/" in address:
        return (f"address {address!r} is not a host name or IP address",
                "write only the host (user and port have keys of their own: user:, port:)")
    if _looks_ipv6(address) or re.fullmatch(r"[0-9.]+", address):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return f"address {address!r} is not a valid IP address", "write a valid IPv4 or IPv6 address, or a host name"
        return None
    if not _DNS.match(address):
        return f"address {address!r} is not a valid host name", "use letters, digits, dots and hyphens, e.g. gpu1.example.com"
    return None


def _looks_ipv6(address: str) -> bool:
    return address.count(":") >= 2 and bool(re.fullmatch(r"[0-9A-Fa-f:.%a-zA-Z0-9]+", address))


def value_errors(src: YamlSource, root: Path) -> list[MmstackError]:
    """Problems in the values of one (shape-valid) inventory document."""
    from ..gpu.overrides import P2P_MODES

    data = src.data if isinstance(src.data, dict) else {}
    out: list[MmstackError] = []
    for path, hvars in var_levels(data):
        if isinstance(hvars.get("address"), str) and (problem := address_problem(hvars["address"])):
            out.append(_err(src, path + ("address",), *problem))
        gpu = hvars.get("gpu")
        if isinstance(gpu, dict):
            for key, value in gpu.items():
                problem = gpu_problem(key, value, P2P_MODES)
                if problem:
                    out.append(_err(src, path + ("gpu", key), *problem))
    return out


def gpu_problem(key: str, value: Any, p2p_modes: dict[str, str]) -> tuple[str, str] | None:
    """What is wrong with one planner override in an inventory (the planner says what each takes)."""
    from ..gpu.overrides import FRACTION_SETTINGS, WHOLE_NUMBER_SETTINGS

    if value is None:
        return None
    if key in WHOLE_NUMBER_SETTINGS:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key} must be a whole number, not {value!r}", f"write a number, e.g. {key}: 2"
        if value < 1:
            return f"{key} must be at least 1, not {value}", f"write a number of at least 1, e.g. {key}: 2"
    elif key in FRACTION_SETTINGS:
        low, high = FRACTION_SETTINGS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key} must be a number, not {value!r}", f"write a fraction, e.g. {key}: 0.85"
        if not low <= float(value) <= high:
            return f"{key} must be between {low} and {high}, not {value}", f"write a fraction, e.g. {key}: 0.85"
    elif key == "p2p":
        if str(value).strip().lower() not in p2p_modes:
            return f"p2p must be auto, on or off, not {value!r}", "write p2p: auto (NVLink where the topology allows), on or off"
    elif key == "gpus":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(g, (int, str)) and not isinstance(g, bool) for g in items):
            return f"gpus must be a list of GPU indices or UUIDs, not {value!r}", "write gpus: [0, 1] or gpus: [GPU-uuid, ...]"
    elif key == "model":
        if not isinstance(value, str):
            return f"model must be a model name, not {value!r}", "write the key of an entry under the schema's models:"
    return None


def host_errors(hosts: Iterable[Any], root: Path) -> list[MmstackError]:
    """What must hold on this machine for the selected hosts: their key files exist and can be
    read. (A key file is checked only for a host about to be connected to: the sample inventory
    names ~/.ssh/id_ed25519, which need not exist where it is merely read.)"""
    out: list[MmstackError] = []
    seen: set[tuple[Any, ...]] = set()
    for host in hosts:
        if not host.key_file:
            continue
        resolved = resolve_key_file(host.key_file, root)
        problem = None
        if not resolved.is_file():
            problem = (f"key file {host.key_file!r} of host {host.name!r} does not exist"
                       + (f" (looked for {resolved})" if str(resolved) != host.key_file else ""),
                       f"point key_file at an existing private key (ssh-keygen -t ed25519 -f {host.key_file} "
                       "makes one), or remove it to use the SSH agent")
        elif not os.access(resolved, os.R_OK):
            problem = (f"key file {host.key_file!r} of host {host.name!r} cannot be read",
                       "run as the user that owns the key, or fix its permissions (chmod 600)")
        if problem is None:
            continue
        file, line, key_path = (host.origins or {}).get("key_file") or (host.source, None, "key_file")
        if (file, line) in seen:
            continue
        seen.add((file, line))
        out.append(ConfigError(problem[0], file=file, line=line, key_path=key_path, fix=problem[1]))
    return out


def resolve_key_file(key_file: str, root: Path) -> Path:
    path = Path(os.path.expanduser(key_file))
    return path if path.is_absolute() else root / path


def environment_error(host: Any, environment: str, known: list[str], from_option: bool) -> ConfigError:
    """An environment the stack does not have, blamed on where it was written."""
    from ..schema.composevalues import suggest

    hint = suggest(environment, known)
    if from_option:
        return ConfigError(f"unknown environment {environment!r}{hint}", key_path="--env",
                           fix=f"use one of: {', '.join(known)}")
    origin = (getattr(host, "origins", None) or {}).get("environment")
    file, line, key_path = origin if origin else (host.source, None, None)
    return ConfigError(f"host {host.name!r} runs unknown environment {environment!r}{hint}",
                       file=file, line=line, key_path=key_path,
                       fix=f"use one of the schema's environments: {', '.join(known)}")
