"""Load, validate and resolve the compose schema into per-environment service models.

`load_stack(stack_dir)` is the single entry point: it reads the schema and the optional
`mmstack.yaml` settings, validates both (Cerberus for shape, then the cross-references Cerberus
cannot see), and returns a `Stack` that can resolve the merged services of any environment.
All problems found are reported together, each with file, line, key path and a fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..engine.cache import ContentCache, code_fingerprint, fingerprint
from ..engine.errors import MmstackError, MultiError, SchemaError
from . import composerules, composevalues, rules
from .merge import MergeError, merge, resolve_operators
from .origins import value_at
from .yamlsrc import KeyPath, YamlSource, cerberus_error_paths, display_name, load_yaml

SCHEMA_PATH = Path("schemas/compose-schema.yaml")
SETTINGS_PATH = Path("mmstack.yaml")
TEMPLATES_DIR = Path("env-templates")
RESERVED_NAMES = {"base", "compose", "all", "default"}
# Nothing is published beyond loopback unless an environment or a port says so.
DEFAULT_BIND_ADDRESS = "127.0.0.1"
UNPINNED_TAGS = composevalues.UNPINNED_TAGS


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


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------

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
    errors += semantic_errors(stack, settings_source)
    if errors:
        raise MultiError(errors)
    if cache is not None and cache_key is not None:
        cache.put(cache_key, True)
    return stack


def validation_cache(state_dir: Path | None, *, writable: bool) -> "ContentCache":
    """The memo of schemas that passed validation (keyed by content and validator code)."""
    import sys

    from . import merge as merge_module
    from . import origins, yamlsrc

    code = code_fingerprint([rules, merge_module, yamlsrc, composerules, composevalues, origins,
                             sys.modules[__name__]])
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


def semantic_errors(stack: Stack, settings_source: YamlSource | None) -> list[MmstackError]:
    """Cross-references and invariants Cerberus cannot express."""
    src, data = stack.source, stack.data
    errs: list[MmstackError] = []
    services: dict[str, Any] = data["services"]
    templates = set(data.get("healthchecks") or {})
    stacks: dict[str, Any] = data["stacks"]
    envs: dict[str, Any] = data["environments"]

    def err(path: KeyPath, message: str, fix: str | None = None) -> None:
        errs.append(src.error(path, message, fix))

    # Stacks: every service belongs to one, and only real services are listed.
    placed: dict[str, str] = {}
    for sname, stack_def in stacks.items():
        if sname in RESERVED_NAMES:
            err(("stacks", sname), f"{sname!r} is a reserved name", fix="pick another name")
        for i, svc in enumerate(stack_def["services"]):
            if svc not in services:
                err(("stacks", sname, "services", i), f"unknown service {svc!r}",
                    fix=f"declare it under services, or remove it from stack {sname!r}")
            elif svc in placed:
                err(("stacks", sname, "services", i),
                    f"service {svc!r} is already in stack {placed[svc]!r}",
                    fix="a service belongs to exactly one stack")
            else:
                placed[svc] = sname
    for svc in services:
        if svc not in placed:
            err(("services", svc), f"service {svc!r} is in no stack",
                fix="add it to one of stacks.*.services")

    # Services: references to templates, networks, volumes, other services; pinned images.
    try:
        resolved = stack.resolved_services()
    except MmstackError as exc:
        return errs + [exc]
    for svc, spec in resolved.items():
        raw = services[svc]
        image = raw.get("image")
        if isinstance(image, dict) and set(image) != {"custom"}:
            err(("services", svc, "image"), "an image mapping takes exactly one key, 'custom'",
                fix="write image: {custom: NAME}, or a pinned image reference")
        hc = raw.get("healthcheck") or {}
        if hc.get("template") and hc["template"] not in templates:
            err(("services", svc, "healthcheck", "template"), f"unknown healthcheck template {hc['template']!r}",
                fix=f"use one of: {', '.join(sorted(templates))}")
        elif hc.get("template") and "{port}" in " ".join(data["healthchecks"][hc["template"]]["test"]) and "port" not in hc:
            err(("services", svc, "healthcheck"), f"template {hc['template']!r} needs a port",
                fix="add port: <container port> to the healthcheck")
        if raw.get("env_template"):
            tpl = stack.root / TEMPLATES_DIR / f"{raw['env_template']}.env.j2"
            if not tpl.exists():
                err(("services", svc, "env_template"), f"template {tpl.name} does not exist",
                    fix=f"create {TEMPLATES_DIR}/{tpl.name} or correct the name")
        # Networks and volumes: composerules checks each resolved service, where it was written.
        for i, cf in enumerate(raw.get("config_files") or []):
            if isinstance(cf, dict) and cf.get("requires") and cf["requires"] not in services:
                err(("services", svc, "config_files", i, "requires"), f"requires unknown service {cf['requires']!r}",
                    fix="name a service declared under services (the file is mounted only where it runs)")
        container_ports: set[tuple[int, str]] = set()
        for i, port in enumerate(spec.get("ports") or []):
            if isinstance(port, dict):
                key = (port.get("container"), port.get("protocol", "tcp"))
                if key in container_ports:
                    err(("services", svc, "ports", i), f"container port {key[0]} is listed twice",
                        fix="remove one of the two entries")
                container_ports.add(key)  # type: ignore[arg-type]
        for dep, cond in (raw.get("depends_on") or {}).items():
            if dep not in services:
                err(("services", svc, "depends_on", dep),
                    f"depends on unknown service {dep!r}{composerules.suggest(dep, services)}",
                    fix=f"declare {dep!r} under services or remove the dependency")
            elif dep == svc:
                err(("services", svc, "depends_on", dep), "a service cannot depend on itself",
                    fix="remove this entry")
            elif cond == "healthy" and resolved[dep].get("healthcheck") is None:
                err(("services", svc, "depends_on", dep),
                    f"waits for {dep!r} to be healthy, but {dep!r} has no healthcheck",
                    fix=f"give {dep!r} a healthcheck, or use condition 'started'")
    errs.extend(_cycle_errors(src, services))
    structural = bool(errs)  # past a broken reference, resolved values would only add noise
    errs.extend(composerules.image_errors(stack))
    errs.extend(composerules.settings_reference_errors(stack))
    if not structural:
        errs.extend(composerules.resolved_value_errors(stack, [None]))

    # Secrets: generation rules must be satisfiable.
    for name, rule in (data.get("secrets") or {}).items():
        rule = rule or {}
        if rule.get("kind") == "hex" and "length" in rule:
            err(("secrets", name, "length"), "a hex secret is sized with 'bytes', not 'length'",
                fix="write bytes: 32 instead of length")
        if "length" in rule and len(rule.get("prefix", "")) + 8 > rule["length"]:
            err(("secrets", name, "length"), "length leaves fewer than 8 random characters after the prefix",
                fix="raise length or shorten prefix")

    # Models, databases and object-store keys: every reference resolves, nothing is shared.
    models = data.get("models") or {}
    secrets_declared = set(data.get("secrets") or {})
    if data.get("default_model") and data["default_model"] not in models:
        err(("default_model",), f"unknown model {data['default_model']!r}",
            fix=f"declare it under models:, or use one of: {', '.join(models) or '(none declared)'}")
    for key, model in models.items():
        if model["attention_heads"] % model["kv_heads"]:
            err(("models", key, "kv_heads"),
                f"{model['attention_heads']} attention heads cannot be grouped into {model['kv_heads']} KV heads",
                fix="copy num_attention_heads and num_key_value_heads from the model's config.json")
    db_names: dict[str, str] = {}
    for svc, raw in services.items():
        db = raw.get("database")
        if db:
            if db["name"] in db_names:
                err(("services", svc, "database", "name"),
                    f"database {db['name']!r} is already the database of {db_names[db['name']]!r}",
                    fix="give every service a database of its own: a shared one lets one service destroy another's data")
            db_names[db["name"]] = svc
            if db["password"] not in secrets_declared:
                err(("services", svc, "database", "password"), f"secret {db['password']!r} is not declared",
                    fix="declare it under secrets:, e.g. {name}: {{length: 32}}".format(name=db["password"]))
        keys = raw.get("object_store_key") or {}
        for which in ("access_key", "secret_key"):
            if keys.get(which) and keys[which] not in secrets_declared:
                err(("services", svc, "object_store_key", which), f"secret {keys[which]!r} is not declared",
                    fix="declare it under secrets:")
        metrics_auth = (raw.get("metrics") or {}).get("auth") or {}
        needs = {"bearer": ("secret",), "minio-jwt": ("access_key", "secret_key")}.get(metrics_auth.get("type"), ())
        for which in needs:
            ref = metrics_auth.get(which)
            if not ref:
                err(("services", svc, "metrics", "auth"), f"auth type {metrics_auth['type']!r} needs {which!r}",
                    fix=f"add {which}: SECRET (a name under secrets:)")
            elif ref not in secrets_declared:
                err(("services", svc, "metrics", "auth", which), f"secret {ref!r} is not declared",
                    fix="declare it under secrets:, or name the secret the endpoint checks")
        if raw.get("buckets") and not keys:
            err(("services", svc, "buckets"), "a service with buckets needs an object_store_key of its own",
                fix="add object_store_key: {access_key: SECRET, secret_key: SECRET}")
        for dep in (raw.get("depends_on") or {}):
            if dep in services and services[dep].get("gpu_only") and not raw.get("gpu_only"):
                err(("services", svc, "depends_on", dep),
                    f"{dep!r} runs only where there is a GPU, so {svc!r} cannot depend on it",
                    fix=f"remove the dependency: {svc!r} must start (and report the model unavailable) without it")

    # Environments: names, references, overrides, and host ports per environment.
    if not envs:
        err(("environments",), "at least one environment is required",
            fix="add one, e.g. development: {stacks: [core]}")
    for ename, env in envs.items():
        env = env or {}
        if ename in RESERVED_NAMES:
            err(("environments", ename), f"{ename!r} is a reserved name",
                fix="pick another name (it would clash with compose.yml or a built-in)")
        if ename in stacks:
            err(("environments", ename), f"environment {ename!r} has the same name as a stack",
                fix="rename one: both become compose profiles and would be merged")
        if not env.get("stacks") and not env.get("services"):
            err(("environments", ename), "the environment runs no services",
                fix="add stacks: [...] or services: [...]")
        for i, sname in enumerate(env.get("stacks") or []):
            if sname not in stacks:
                err(("environments", ename, "stacks", i), f"unknown stack {sname!r}{composerules.suggest(sname, stacks)}",
                    fix=f"use one of: {', '.join(stacks)}")
        for i, svc in enumerate(env.get("services") or []):
            if svc not in services:
                err(("environments", ename, "services", i),
                    f"unknown service {svc!r}{composerules.suggest(svc, services)}",
                    fix=f"declare it under services, or use one of: {', '.join(services)}")
        model_key = env.get("model") or data.get("default_model")
        runs_vllm = any(services[s].get("gpu_only") for s in stack.dependency_closure(
            [x for st in env.get("stacks") or [] if st in stacks for x in stacks[st]["services"]]
            + [x for x in env.get("services") or [] if x in services]))
        if env.get("model") and env["model"] not in models:
            err(("environments", ename, "model"), f"unknown model {env['model']!r}",
                fix=f"use one of: {', '.join(models) or '(none declared)'}")
        elif runs_vllm and not model_key:
            err(("environments", ename), "the environment runs vLLM but names no model",
                fix="add model: NAME (a key of models:), or set default_model")
        if (env.get("settings") or {}).get("vllm_device") == "cpu" and \
                not (stack.settings.get("images") or {}).get("vllm"):
            err(("environments", ename, "settings", "vllm_device"),
                "vLLM on the CPU needs a CPU build of vLLM (the pinned image is CUDA-only)",
                fix="set images: {vllm: IMAGE} in mmstack.yaml to a vLLM CPU image you built or trust")
        over = env.get("overrides") or {}
        errs.extend(composerules.override_shape_errors(src, ("environments", ename, "overrides"), over))
        for svc in (over.get("services") or {}):
            if svc not in services:
                err(("environments", ename, "overrides", "services", svc),
                    f"override for unknown service {svc!r}{composerules.suggest(svc, services)}",
                    fix=f"use one of: {', '.join(services)}")
        for tpl in (over.get("healthchecks") or {}):
            if tpl not in templates:
                err(("environments", ename, "overrides", "healthchecks", tpl),
                    f"unknown healthcheck template {tpl!r}{composerules.suggest(tpl, templates)}",
                    fix=f"use one of: {', '.join(sorted(templates))}")
    if errs:
        return errs
    for ename in envs:
        try:
            env_model = stack.environment(ename)
            env_services = stack.resolved_services(ename)
        except MmstackError as exc:
            errs.append(exc)
            continue
        env_errors = composerules.resolved_value_errors(stack, [ename])
        errs.extend(env_errors)
        if not env_errors:
            errs.extend(_port_conflicts(stack, ename, env_model, env_services))
    return errs


def _cycle_errors(src: YamlSource, services: dict[str, Any]) -> list[MmstackError]:
    state: dict[str, int] = {}
    errors: list[MmstackError] = []

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in services:
            return
        if state.get(name) == 1:
            cycle = trail[trail.index(name):] + [name]
            errors.append(src.error(("services", trail[-1], "depends_on"),
                                    f"dependency cycle: {' -> '.join(cycle)}",
                                    fix="remove one of these depends_on entries"))
            return
        state[name] = 1
        for dep in (services[name].get("depends_on") or {}):
            visit(dep, trail + [name])
        state[name] = 2

    for name in services:
        if not errors:
            visit(name, [])
    return errors


def _port_conflicts(stack: Stack, ename: str, env: Environment,
                    specs: dict[str, dict[str, Any]]) -> list[MmstackError]:
    bind = env.bind_address
    used: dict[tuple[int, str], tuple[str, str]] = {}
    errors: list[MmstackError] = []
    for svc in env.services:
        for i, port in enumerate(specs[svc].get("ports") or []):
            host = port.get("host")
            if host is None:
                continue
            ip = port.get("host_ip", bind)
            proto = port.get("protocol", "tcp")
            key = (host, proto)
            if key in used:
                other_svc, other_ip = used[key]
                if ip == other_ip or "0.0.0.0" in (ip, other_ip):
                    errors.append(stack.source.error(
                        ("services", svc, "ports", i),
                        f"host port {host}/{proto} is already used by {other_svc!r} in environment {ename!r}",
                        fix="give one of them another host port",
                    ))
                    continue
            used[key] = (svc, ip)
    return errors

