"""The inventory: which hosts exist, how to reach them, and what each one runs.

    forks: 8                         # hosts worked on at once (like Ansible's forks)
    known_hosts_file: ~/.ssh/known_hosts
    vars:                            # for every host ("all")
      user: deploy
      stack_dir: /srv/mmstack
    hosts:                           # hosts outside any group (optional)
      lab1: {address: 10.0.0.5}
    groups:
      gpu_servers:
        vars: {environment: production}
        hosts:
          gpu1: {address: gpu1.example.com}
          gpu2: {address: gpu2.example.com, port: 2222}

Variables resolve host > group > all > defaults. A host listed in several groups takes the vars
of every group, later group names (alphabetically) winning, as Ansible does. Files are
validated with Cerberus; every error names the file, line and key path.

By default every ``inventory/*.yml`` file is loaded except ``sample.yml`` (the documented
example, which points at hosts that do not exist); ``--inventory FILE`` loads one file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.cache import fingerprint
from ..engine.errors import ConfigError, MmstackError, MultiError
from ..schema.yamlsrc import KeyPath, YamlSource, cerberus_error_paths, display_name, format_path, load_yaml

SAMPLE_NAME = "sample.yml"
DEFAULT_FORKS = 5

HOST_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
GROUP_NAME_RE = r"^[A-Za-z][A-Za-z0-9_-]*$"
# A DNS name, an IPv4 address or an IPv6 address (no brackets).
ADDRESS_RE = r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$|^[0-9A-Fa-f:.]+$"



def _gpu_keys() -> list[str]:
    """The GPU planner's override names (the inventory's ``gpu`` keys are exactly these)."""
    from dataclasses import fields

    from ..gpu.overrides import PlanOverrides

    return [f.name for f in fields(PlanOverrides)]


GPU_KEYS = _gpu_keys()

VAR_RULES: dict[str, Any] = {
    "user": {"type": "string", "regex": r"^[a-z_][a-z0-9_.-]*\$?$"},
    "port": {"type": "integer", "min": 1, "max": 65535},
    "key_file": {"type": "string", "empty": False},
    "stack_dir": {"type": "string", "regex": r"^(/|~/)\S*$"},
    "environment": {"type": "string", "regex": r"^[a-z][a-z0-9-]*$"},
    "trust_host_key": {"type": "boolean"},
    "gpu": {"type": "dict", "keysrules": {"type": "string", "allowed": GPU_KEYS}},
    "known_hosts_file": {"type": "string", "empty": False},
    "connect_timeout": {"type": "number", "min": 0.1},
}
HOST_RULES: dict[str, Any] = {
    "type": "dict",
    "nullable": True,
    "schema": {"address": {"type": "string", "regex": ADDRESS_RE}, **VAR_RULES},
}
HOSTS_RULES: dict[str, Any] = {
    "type": "dict",
    "keysrules": {"type": "string", "regex": HOST_NAME_RE},
    "valuesrules": HOST_RULES,
}
INVENTORY_RULES: dict[str, Any] = {
    "forks": {"type": "integer", "min": 1, "max": 256},
    "known_hosts_file": {"type": "string", "empty": False},
    "vars": {"type": "dict", "schema": VAR_RULES},
    "hosts": HOSTS_RULES,
    "groups": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": GROUP_NAME_RE, "forbidden": ["all", "ungrouped"]},
        "valuesrules": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "vars": {"type": "dict", "schema": VAR_RULES},
                "hosts": {**HOSTS_RULES, "nullable": True},
            },
        },
    },
}

DEFAULTS: dict[str, Any] = {
    "user": None,
    "port": 22,
    "key_file": None,
    "stack_dir": "/opt/mmstack",
    "environment": "production",
    "trust_host_key": False,
    "gpu": {},
    "known_hosts_file": None,
    "connect_timeout": 10,
}


@dataclass(frozen=True)
class Host:
    """One host with every variable resolved."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    stack_dir: str = "/opt/mmstack"
    environment: str = "production"
    trust_host_key: bool = False
    gpu: dict[str, Any] = field(default_factory=dict)
    known_hosts_file: str | None = None
    connect_timeout: float = 10
    groups: tuple[str, ...] = ()
    source: str | None = None
    # Where each variable was written: name -> (file, line, key path), for errors about it.
    origins: dict[str, tuple[str, int | None, str]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def target(self) -> str:
        """``user@address:port`` for messages."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.address}:{self.port}"


@dataclass
class Inventory:
    """All hosts (in the order they were first defined) and the groups naming them."""

    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    forks: int = DEFAULT_FORKS
    files: tuple[str, ...] = ()

    def select(self, pattern: str | None = None, limit: str | None = None) -> list[Host]:
        """Hosts matching ``pattern`` (default all), narrowed by ``limit``; inventory order."""
        chosen = self._match(pattern or "all")
        if limit:
            chosen &= self._match(limit)
        return [h for name, h in self.hosts.items() if name in chosen]

    def _match(self, pattern: str) -> set[str]:
        """Ansible-like patterns: ``a,b`` or ``a:b`` union, ``!x`` exclude, ``&x`` intersect;
        each term a group, a host, ``all``/``*`` or a glob over host names."""
        terms = [t.strip() for t in pattern.replace(":", ",").split(",") if t.strip()]
        if not terms:
            raise ConfigError("empty host pattern", key_path="hosts",
                              fix="name a group, a host, a comma-separated list, or 'all'")
        # A pattern that starts by excluding ("!gpu1") means "all but ...", as in Ansible.
        selected: set[str] = set(self.hosts) if terms[0][0] == "!" else set()
        for term in terms:
            op = ""
            if term[0] in "!&":
                op, term = term[0], term[1:]
            names = self._term(term)
            if op == "!":
                selected -= names
            elif op == "&":
                selected &= names
            else:
                selected |= names
        return selected

    def _term(self, term: str) -> set[str]:
        if term in ("all", "*"):
            return set(self.hosts)
        if term in self.groups:
            return set(self.groups[term])
        if term in self.hosts:
            return {term}
        if any(ch in term for ch in "*?["):
            return {n for n in self.hosts if fnmatch.fnmatchcase(n, term)}
        known = ", ".join(sorted(self.groups)) or "(none)"
        raise ConfigError(
            f"no host or group named {term!r} in the inventory",
            file=", ".join(self.files) or None, key_path="hosts",
            fix=f"use one of the groups ({known}), a host name, a glob like 'gpu*', or 'all'",
        )


def inventory_files(root: Path, inventory: str | Path | None = None) -> list[Path]:
    """The files to load: ``inventory`` (a file or a folder), else ``ROOT/inventory/*.yml``."""
    if inventory is not None:
        path = Path(os.path.expanduser(str(inventory)))
        if not path.is_absolute():
            path = root / path
        if path.is_dir():
            return _folder_files(path, explicit=True)
        if not path.exists():
            raise ConfigError("inventory file not found", file=str(inventory),
                              fix="pass an existing file to --inventory, or omit it to use inventory/*.yml")
        return [path]
    return _folder_files(root / "inventory", explicit=False)


def has_inventory(root: Path) -> bool:
    """Whether ``ROOT/inventory/`` holds an inventory of its own (the sample does not count)."""
    return any(p.name != SAMPLE_NAME for p in _yaml_files(root / "inventory"))


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yml", ".yaml") and p.is_file())


def _folder_files(folder: Path, explicit: bool) -> list[Path]:
    files = _yaml_files(folder)
    real = [p for p in files if p.name != SAMPLE_NAME]
    if real:
        return real
    if explicit and files:
        return files
    raise ConfigError(
        "no inventory: only the sample exists" if files else "no inventory files found",
        file=str(folder),
        fix=f"cp {folder / SAMPLE_NAME} {folder / 'hosts.yml'} and edit it "
            "(real inventories are ignored by git), or pass --inventory FILE",
    )


def load_inventory(root: Path | None = None, inventory: str | Path | None = None,
                   cache: Any = None) -> Inventory:
    """Load and validate the inventory files; every error of every file is reported at once.

    With ``cache`` (an `engine.cache.ContentCache`, see `validation_cache`), a file whose exact
    content already passed validation with this very code is not validated again (nor is the
    validator imported).
    """
    root = root or Path.cwd()
    files = inventory_files(root, inventory)
    sources: list[YamlSource] = []
    errors: list[MmstackError] = []
    for path in files:
        try:
            src = load_yaml(path, display=display_name(path, root))
        except MmstackError as exc:
            errors.append(ConfigError(exc.message, file=exc.file, line=exc.line,
                                      key_path=exc.key_path, fix=exc.fix))
            continue
        if src.data is None:
            src.data = {}
        key = fingerprint(path.read_bytes()) if cache is not None else None
        found = []
        if key is None or not cache.get(key):
            found = validate_source(src)
            if key is not None and not found:
                cache.put(key, True)
        if not found:
            # Values that depend on more than the file (key files that must exist): every time.
            from .inventorycheck import value_errors

            found = value_errors(src, root)
        errors += found
        sources.append(src)
    if errors:
        raise errors[0] if len(errors) == 1 else MultiError(errors)
    return build_inventory(sources)


def validation_cache(state_dir: Path | None, *, writable: bool) -> Any:
    """The memo of inventory files that passed validation (keyed by content and this code)."""
    import sys

    from ..engine.cache import ContentCache, code_fingerprint
    from ..schema import yamlsrc

    return ContentCache(state_dir, "inventory-valid", code_fingerprint([sys.modules[__name__], yamlsrc]),
                        writable=writable)


_VALIDATOR: Any = None


def validate_source(src: YamlSource) -> list[MmstackError]:
    """Cerberus errors of one parsed file, each with file, line and key path."""
    global _VALIDATOR
    if not isinstance(src.data, dict):
        return [ConfigError("an inventory file must be a mapping (forks, vars, hosts, groups)",
                            file=src.file, line=1, fix="start from inventory/sample.yml")]
    if _VALIDATOR is None:
        from cerberus import Validator  # imported on first use: a cached validation needs none

        _VALIDATOR = Validator(INVENTORY_RULES, allow_unknown=False)
    if _VALIDATOR.validate(src.data, normalize=False):
        return []
    return [_error(src, path, msg) for path, msg in cerberus_error_paths(_VALIDATOR.errors)]


def _error(src: YamlSource, path: KeyPath, message: str) -> ConfigError:
    fix = None
    if message == "unknown field":
        message = "unknown key"
        allowed = ", ".join(["address", *VAR_RULES]) if "hosts" in path else None
        fix = f"remove it or check its spelling{f' (allowed: {allowed})' if allowed else ''}"
    elif message.startswith("must be of"):
        fix = "change the value to the expected type"
    elif message.startswith("unallowed value") and path[:1] == ("groups",):
        message = f"{path[-1]!r} is a reserved group name (it means every host)"
        fix = "rename the group"
    elif message.startswith("value does not match regex") and path[-1] == "address":
        from .inventorycheck import address_problem, lookup

        problem = address_problem(str(lookup(src.data, path)))
        message, fix = problem or (f"address {lookup(src.data, path)!r} is not a host name or IP address SSH can dial",
                                   "write a host name or an IP address (without a %zone)")
    elif message.startswith("value does not match regex"):
        fix = "see the format documented in inventory/sample.yml"
    elif message.startswith("unallowed value"):
        fix = f"use one of: {', '.join(GPU_KEYS)}" if "gpu" in path else "see inventory/sample.yml"
    elif message.startswith(("min value", "max value")):
        fix = f"bring the value into range ({message})"
    if fix is None:
        fix = "see the layout documented in inventory/sample.yml"
    return ConfigError(message, file=src.file, line=src.line_of(path),
                       key_path=format_path(path) or None, fix=fix)


def build_inventory(sources: Iterable[YamlSource]) -> Inventory:
    """Pure: resolve validated documents into hosts (host > group > all > defaults)."""
    all_vars: dict[str, Any] = {}
    forks = DEFAULT_FORKS
    top_known_hosts: str | None = None
    host_defs: dict[str, list[tuple[str | None, dict[str, Any]]]] = {}  # name -> [(group, vars)]
    # Where each level's variables were written: id(vars mapping) -> (source, key path).
    written: dict[int, tuple[YamlSource, KeyPath]] = {}
    host_source: dict[str, str] = {}
    group_vars: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    names: list[str] = []
    srcs = list(sources)

    def note(name: str, group: str | None, hvars: dict[str, Any] | None, src: YamlSource,
             path: KeyPath) -> None:
        if name not in host_defs:
            host_defs[name] = []
            names.append(name)
            host_source[name] = src.file
        copy = dict(hvars or {})
        written[id(copy)] = (src, path)
        host_defs[name].append((group, copy))

    origins_all: dict[str, tuple[str, int | None, str]] = {}
    origins_group: dict[str, dict[str, tuple[str, int | None, str]]] = {}

    def where(src: YamlSource, path: KeyPath) -> tuple[str, int | None, str]:
        return (src.file, src.line_of(path), format_path(path))

    for src in srcs:
        data = src.data or {}
        forks = data.get("forks", forks)
        top_known_hosts = data.get("known_hosts_file", top_known_hosts)
        all_vars.update(data.get("vars") or {})
        for key in (data.get("vars") or {}):
            origins_all[key] = where(src, ("vars", key))
        for name, hvars in (data.get("hosts") or {}).items():
            note(name, None, hvars, src, ("hosts", name))
        for gname, gdef in (data.get("groups") or {}).items():
            gdef = gdef or {}
            group_vars.setdefault(gname, {}).update(gdef.get("vars") or {})
            for key in (gdef.get("vars") or {}):
                origins_group.setdefault(gname, {})[key] = where(src, ("groups", gname, "vars", key))
            members = groups.setdefault(gname, [])
            for name, hvars in (gdef.get("hosts") or {}).items():
                note(name, gname, hvars, src, ("groups", gname, "hosts", name))
                if name not in members:
                    members.append(name)

    clashes = sorted(set(groups) & set(host_defs))
    if clashes:
        raise ConfigError(f"{clashes[0]!r} names both a group and a host", key_path=f"groups.{clashes[0]}",
                          file=", ".join(s.file for s in srcs),
                          fix="rename the host or the group; patterns must be unambiguous")

    hosts: dict[str, Host] = {}
    for name in names:
        member_of = sorted(g for g, members in groups.items() if name in members)
        merged: dict[str, Any] = dict(DEFAULTS)
        if top_known_hosts:
            merged["known_hosts_file"] = top_known_hosts
        merged.update(all_vars)
        origins = dict(origins_all)
        for g in member_of:
            merged.update(group_vars.get(g, {}))
            origins.update(origins_group.get(g, {}))
        for _group, hvars in host_defs[name]:
            merged.update(hvars)
            hsrc, hpath = written[id(hvars)]
            origins.update({key: where(hsrc, hpath + (key,)) for key in hvars})
        merged["gpu"] = _merged_gpu(all_vars, [group_vars.get(g, {}) for g in member_of],
                                    [hv for _, hv in host_defs[name]])
        hosts[name] = Host(
            name=name,
            address=str(merged.pop("address", None) or name),
            groups=tuple(member_of),
            source=host_source[name],
            origins=origins,
            **{k: merged[k] for k in DEFAULTS},
        )
    return Inventory(hosts=hosts, groups=groups, forks=int(forks), files=tuple(s.file for s in srcs))


def _merged_gpu(all_vars: dict[str, Any], group_levels: list[dict[str, Any]],
                host_levels: list[dict[str, Any]]) -> dict[str, Any]:
    """GPU overrides merge key by key across levels (a host may override one setting only)."""
    out: dict[str, Any] = {}
    for level in [all_vars, *group_levels, *host_levels]:
        out.update(level.get("gpu") or {})
    return out
