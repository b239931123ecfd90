"""The stack's model: a validated schema plus local settings, resolved per environment.

A `Stack` (made by `load.load_stack`) answers what the generators, secrets and lifecycle steps
ask of the schema: its services, stacks and environments, the merged services of any
environment (defaults, overrides, healthcheck templates), images and the served model.
An `Environment` is one environment's services, GPU use and settings. Both are read-only once
made. The paths here are where a stack directory keeps the files the model is made from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..engine.errors import SchemaError
from . import composerules, rules
from .merge import MergeError, merge, resolve_operators
from .yamlsrc import KeyPath, YamlSource

SCHEMA_PATH = Path("schemas/compose-schema.yaml")
SETTINGS_PATH = Path("mmstack.yaml")
TEMPLATES_DIR = Path("env-templates")
# Nothing is published beyond loopback unless an environment or a port says so.
DEFAULT_BIND_ADDRESS = "127.0.0.1"


@dataclass
class Environment:
    name: str
    description: str
    services: list[str]
    gpu: bool
    settings: dict[str, Any]
    overrides: dict[str, Any]
    model: str | None = None  # the key under `models:` that vLLM serves here
    # GPU-only services the environment's stacks name but that cannot run in it (no GPU).
    left_out: list[str] = field(default_factory=list)

    @property
    def bind_address(self) -> str:
        """Where published ports listen unless a port says otherwise."""
        return str(self.settings.get("bind_address", DEFAULT_BIND_ADDRESS))

    @property
    def vllm_device(self) -> str:
        return str(self.settings.get("vllm_device") or ("gpu" if self.gpu else "none"))


@dataclass
class Stack:
    """A validated schema plus local settings, ready to resolve environments."""

    root: Path
    source: YamlSource
    data: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    settings_source: YamlSource | None = None  # mmstack.yaml, for errors at its lines
    # Environments and resolved services, computed once each: a deploy asks for them hundreds
    # of times, and a Stack is never changed after loading. Callers treat them as read-only.
    _memo: dict[tuple[str, str | None], Any] = field(default_factory=dict, init=False, repr=False,
                                                     compare=False)

    # -- plain accessors ----------------------------------------------------------------------
    @property
    def project(self) -> str:
        return str(self.settings.get("project") or self.data["project"])

    @property
    def schema_file(self) -> str:
        return self.source.file

    @property
    def service_names(self) -> list[str]:
        return list(self.data["services"])

    @property
    def environment_names(self) -> list[str]:
        return list(self.data["environments"])

    @property
    def stack_names(self) -> list[str]:
        return list(self.data["stacks"])

    @property
    def secret_declarations(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v or {}) for k, v in (self.data.get("secrets") or {}).items()}

    @property
    def host_port_offset(self) -> int:
        return int(self.settings.get("host_port_offset", 0))

    def stack_of(self, service: str) -> str | None:
        for name, stack in self.data["stacks"].items():
            if service in stack["services"]:
                return name
        return None

    # -- resolution -----------------------------------------------------------------------------
    @cached_property
    def _templates(self) -> dict[str, dict[str, Any]]:
        return self.data.get("healthchecks") or {}

    def environment(self, name: str) -> Environment:
        memo = self._memo.get(("environment", name))
        if memo is None:
            memo = self._memo[("environment", name)] = self._environment(name)
        return memo

    def _environment(self, name: str) -> Environment:
        envs = self.data["environments"]
        if name not in envs:
            raise SchemaError(
                f"unknown environment {name!r}{composerules.suggest(name, envs)}",
                file=self.schema_file,
                key_path="environments",
                fix=f"use one of: {', '.join(envs)}",
            )
        raw = envs[name] or {}
        wanted: list[str] = []
        for stack in raw.get("stacks") or []:
            wanted.extend(self.data["stacks"][stack]["services"])
        wanted.extend(raw.get("services") or [])
        gpu = bool(raw.get("gpu", False))
        settings = dict(raw.get("settings") or {})
        services = self.dependency_closure(wanted)
        # vLLM's CUDA image stops at once without a GPU ("Failed to infer device type"): an
        # environment that reserves none runs without it, unless it names a CPU build.
        left_out = [] if gpu or settings.get("vllm_device") == "cpu" else \
            [s for s in services if self.data["services"][s].get("gpu_only")]
        return Environment(
            name=name,
            description=raw.get("description", ""),
            services=[s for s in services if s not in left_out],
            gpu=gpu,
            settings=settings,
            overrides=dict(raw.get("overrides") or {}),
            model=raw.get("model") or self.data.get("default_model"),
            left_out=left_out,
        )

    @cached_property
    def one_shot_services(self) -> frozenset[str]:
        """Services another waits for with ``completed``: they run at every start and exit."""
        waited = {dep for spec in self.data["services"].values()
                  for dep, cond in (spec.get("depends_on") or {}).items() if cond == "completed"}
        return frozenset(waited | {name for name, spec in self.data["services"].items() if spec.get("one_shot")})

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("models") or {})

    def model_entry(self, key: str | None) -> dict[str, Any] | None:
        """The catalogue entry ``key`` (with the key itself as ``key``), or None."""
        if not key or key not in self.models:
            return None
        return {"key": key, **self.models[key]}

    def served_model(self, env: str) -> dict[str, Any] | None:
        """The catalogue entry vLLM serves in ``env``, or None."""
        return self.model_entry(self.environment(env).model)

    def dependency_closure(self, names: list[str]) -> list[str]:
        """``names`` plus everything they depend on, in schema order."""
        services = self.data["services"]
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen or name not in services:
                continue  # an unknown name is reported by the semantic checks
            seen.add(name)
            todo.extend((services[name].get("depends_on") or {}).keys())
        return [s for s in services if s in seen]

    def resolved_services(self, env: str | None = None) -> dict[str, dict[str, Any]]:
        """Every service with defaults merged in (and the environment's overrides, if given)."""
        memo = self._memo.get(("resolved", env))
        if memo is None:
            overrides: dict[str, Any] = self.environment(env).overrides if env else {}
            prefix = ("environments", env, "overrides") if env else ("overrides",)
            memo = self._memo[("resolved", env)] = _resolve_services(self.data, overrides,
                                                                     self.source, prefix)
        return memo

    def image_of(self, name: str, spec: dict[str, Any]) -> str:
        override = (self.settings.get("images") or {}).get(name)
        if override:
            return str(override)
        image = spec["image"]
        if isinstance(image, dict):
            custom = {**(self.data.get("images") or {}), **(self.settings.get("custom_images") or {})}
            registry = str(custom.get("registry", "")).rstrip("/")
            tag = str(custom.get("tag", ""))
            return f"{registry}/{image['custom']}:{tag}" if registry else f"{image['custom']}:{tag}"
        return str(image)


def _resolve_services(data: dict[str, Any], overrides: dict[str, Any], source: YamlSource,
                      prefix: KeyPath) -> dict[str, dict[str, Any]]:
    try:
        defaults = merge(data.get("defaults") or {}, overrides.get("defaults") or {},
                         prefix + ("defaults",))
        templates = merge(data.get("healthchecks") or {}, overrides.get("healthchecks") or {},
                          ("healthchecks",))
        out: dict[str, dict[str, Any]] = {}
        svc_over = overrides.get("services") or {}
        for name, raw in data["services"].items():
            # A service's own value replaces a default (that is what "unless it says otherwise"
            # means); an environment override of a list must say how (strict).
            spec = merge(defaults, raw, ("services", name), strict_lists=False)
            if name in svc_over:
                spec = merge(spec, svc_over[name], prefix + ("services", name))
            spec = resolve_operators(spec, ("services", name))
            spec["healthcheck"] = _expand_healthcheck(spec.get("healthcheck"), templates)
            out[name] = spec
        return out
    except MergeError as exc:
        raise source.error(exc.path, exc.message, exc.fix) from None


def _expand_healthcheck(ref: dict[str, Any] | None, templates: dict[str, Any]) -> dict[str, Any] | None:
    if not ref or ref.get("disable"):
        return None
    merged: dict[str, Any] = {"test": []}
    if "template" in ref:
        # An unknown template is reported by the semantic checks; resolve what we can.
        merged.update(templates.get(ref["template"]) or {})
    merged.update({k: v for k, v in ref.items() if k in rules.HEALTHCHECK_FIELDS})
    port, path = ref.get("port"), ref.get("path", "/")
    merged["test"] = [part.replace("{port}", str(port)).replace("{path}", path) for part in merged["test"]]
    return merged
