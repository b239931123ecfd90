"""The schema's semantic checks: the cross-references and invariants Cerberus cannot express.

`semantic_errors` runs on a `Stack` whose shape already passed Cerberus: every service in one
stack, every reference (service, template, secret, model, database) resolving, no dependency
cycle, no database shared between services, and no host port used twice in an environment.
It returns every problem found, each at its line in the schema with a fix.
"""

from __future__ import annotations

from typing import Any

from ..engine.errors import MmstackError
from . import composerules
from .model import TEMPLATES_DIR, Environment, Stack
from .yamlsrc import KeyPath, YamlSource

RESERVED_NAMES = {"base", "compose", "all", "default"}


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
