"""Turn a validated `Stack` into compose documents: `compose.yml` plus one overlay per environment.

Layout of the output (all in the stack directory):

- ``compose.yml``: every service with its defaults. Each service carries compose ``profiles``:
  the stacks and environments that run it (dependencies included), so ``--profile production``
  selects exactly the production services and ``--profile core`` exactly the core stack.
- ``compose.<env>.yml``: only what the environment changes. Every changed list or mapping is
  written with Compose's ``!override`` tag, so Compose replaces it instead of merging it in
  its own per-key way; the overlay means exactly what it says.

Everything here is pure: no file is read or written.
"""

from __future__ import annotations

from typing import Any

import yaml

from .inference import vllm_command
from .logging import log_shipping
from .model import DEFAULT_BIND_ADDRESS, Environment, Stack

BASE_FILE = "compose.yml"
# Set on services another waits for with `completed` (postgres-init, minio-init): they run at
# every start and exit; status, start and the security scan read it.
ONE_SHOT_LABEL = "org.mmstack.one-shot"
ENV_DIR = "env"
SERVICE_KEY_ORDER = (
    "image", "profiles", "command", "entrypoint", "user", "restart", "env_file", "environment",
    "ports", "volumes", "networks", "depends_on", "healthcheck", "shm_size", "deploy",
    "logging", "stop_grace_period", "labels",
)


class Override:
    """A value that Compose must take as is (`!override`), not merge into the base."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Reset:
    """A key the overlay removes from the base (`!reset`)."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _represent_override(dumper: yaml.SafeDumper, data: Override) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping("!override", data.value)
    return dumper.represent_sequence("!override", data.value)


def _represent_reset(dumper: yaml.SafeDumper, data: Reset) -> yaml.Node:
    return dumper.represent_scalar("!reset", "null")


_Dumper.add_representer(Override, _represent_override)
_Dumper.add_representer(Reset, _represent_reset)


def dump_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=100, allow_unicode=True)


def config_dir(env: str) -> str:
    """Where the config files of ``env`` are generated (configfiles.py), relative to the stack."""
    return f"config/{env}"


def mounted_config_files(spec: dict[str, Any], running: list[str]) -> list[dict[str, Any]]:
    """The config files a service gets where ``running`` run: those whose ``requires:`` runs too."""
    return [cf for cf in spec.get("config_files") or [] if cf.get("requires") in (None, *running)]


def env_file_name(env: str) -> str:
    return f"compose.{env}.yml"


def env_files_dir(env: str) -> str:
    return f"{ENV_DIR}/{env}"


# --------------------------------------------------------------------------------------------

def compose_documents(stack: Stack, gpu_plan: dict[str, Any] | None = None,
                      environments: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> compose document, for the base file and every environment (or only the
    overlays of ``environments``: a host gets one, and building the others is wasted work)."""
    base_specs = stack.resolved_services()
    profiles = service_profiles(stack)
    base_services = {
        name: translate_service(stack, name, spec, DEFAULT_BIND_ADDRESS, profiles[name])
        for name, spec in base_specs.items()
    }
    default_model = stack.model_entry(stack.data.get("default_model"))
    for name, spec in base_specs.items():
        if spec.get("model_server") and default_model:
            base_services[name]["command"] = vllm_command(default_model, None)
    docs: dict[str, dict[str, Any]] = {
        BASE_FILE: {
            "name": stack.project,
            "services": base_services,
            "networks": {n: _network(stack, n) for n in stack.data.get("networks") or {}},
            "volumes": {v: _volume(stack, v) for v in stack.data.get("volumes") or {}},
        }
    }
    for env_name in stack.environment_names if environments is None else environments:
        env = stack.environment(env_name)
        docs[env_file_name(env_name)] = overlay_document(stack, env, base_services, profiles, gpu_plan)
    return docs


def service_profiles(stack: Stack) -> dict[str, list[str]]:
    """For each service, the stacks and environments that run it (dependencies included)."""
    out: dict[str, set[str]] = {name: set() for name in stack.service_names}
    for sname, sdef in stack.data["stacks"].items():
        for svc in stack.dependency_closure(list(sdef["services"])):
            out[svc].add(sname)
    for ename in stack.environment_names:
        for svc in stack.environment(ename).services:
            out[svc].add(ename)
    return {name: sorted(p) for name, p in out.items()}


def overlay_document(stack: Stack, env: Environment, base_services: dict[str, dict[str, Any]],
                     profiles: dict[str, list[str]], gpu_plan: dict[str, Any] | None) -> dict[str, Any]:
    specs = stack.resolved_services(env.name)
    bind = env.bind_address
    services: dict[str, Any] = {}
    for name in env.services:
        full = translate_service(stack, name, specs[name], bind, profiles[name])
        model = stack.served_model(env.name)
        if specs[name].get("model_server") and model:
            full["command"] = vllm_command(model, gpu_plan if env.gpu else None,
                                           device="cpu" if env.vllm_device == "cpu" else "gpu")
        for cf in mounted_config_files(specs[name], env.services):
            full.setdefault("volumes", []).append({
                "type": "bind", "source": f"./{config_dir(env.name)}/{cf['file']}",
                "target": cf["target"], "read_only": True})
        device = gpu_device(env, name, specs[name], gpu_plan)
        if device is not None:
            _add_gpu_reservation(full, device)
        full["env_file"] = env_file_refs(stack, env.name, name, specs[name])
        shipping = log_shipping(env, specs, name, stack.host_port_offset)
        if shipping is not None:
            full["logging"] = shipping
        delta: dict[str, Any] = {}
        base = base_services[name]
        for key in SERVICE_KEY_ORDER:
            if key in full and full[key] != base.get(key):
                value = full[key]
                delta[key] = Override(value) if key in base and isinstance(value, (dict, list)) else value
            elif key in base and key not in full:
                delta[key] = Reset()
        services[name] = delta
    return {"name": stack.project, "services": services}


def env_file_refs(stack: Stack, env: str, service: str, spec: dict[str, Any]) -> list[str]:
    refs = [f"{env_files_dir(env)}/core.env"]
    if spec.get("env_template"):
        refs.append(f"{env_files_dir(env)}/{service}.env")
    return refs


def translate_service(stack: Stack, name: str, spec: dict[str, Any], bind: str,
                      profiles: list[str]) -> dict[str, Any]:
    """One schema service -> one compose service (keys in a fixed, readable order)."""
    out: dict[str, Any] = {
        "image": stack.image_of(name, spec),
        "profiles": list(profiles),
    }
    for key in ("command", "entrypoint"):
        if spec.get(key):
            out[key] = list(spec[key])
    if spec.get("user"):
        out["user"] = spec["user"]
    out["restart"] = spec.get("restart", "unless-stopped")
    if spec.get("environment"):
        out["environment"] = {k: _env_value(v) for k, v in sorted(spec["environment"].items())}
    ports = [_port(p, bind, stack.host_port_offset) for p in spec.get("ports") or []]
    if ports:
        out["ports"] = ports
    if spec.get("volumes"):
        out["volumes"] = [_mount(m) for m in spec["volumes"]]
    out["networks"] = list(spec.get("networks") or ["default"])
    if spec.get("depends_on"):
        out["depends_on"] = {
            dep: {"condition": f"service_{cond}" if cond != "completed" else "service_completed_successfully",
                  "required": True}
            for dep, cond in spec["depends_on"].items()
        }
    hc = spec.get("healthcheck")
    if hc:
        out["healthcheck"] = {k: hc[k] for k in ("test", "interval", "timeout", "retries", "start_period") if k in hc}
    if spec.get("shm_size"):
        out["shm_size"] = spec["shm_size"]
    res = spec.get("resources") or {}
    limits = {}
    if "cpus" in res:
        limits["cpus"] = f"{float(res['cpus']):g}"
    if "memory" in res:
        limits["memory"] = res["memory"]
    if limits:
        out["deploy"] = {"resources": {"limits": limits}}
    if spec.get("logging"):
        out["logging"] = spec["logging"]
    if spec.get("stop_grace_period"):
        out["stop_grace_period"] = spec["stop_grace_period"]
    out["labels"] = {
        "org.mmstack.service": name,
        "org.mmstack.stack": stack.stack_of(name) or "",
    }
    if name in stack.one_shot_services:
        out["labels"][ONE_SHOT_LABEL] = "true"
    return out


def gpu_device(env: Environment, name: str, spec: dict[str, Any],
               gpu_plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The GPU reservation ``name`` gets in ``env``, or None when it runs without a GPU.

    Without a saved plan a GPU service gets every GPU; with one, exactly the devices the plan
    gave it (vLLM its NVLink group, the worker what is left), or none: CPU mode.
    """
    if not (env.gpu and spec.get("gpu")):
        return None
    device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
    if gpu_plan is None:
        device["count"] = "all"
        return device
    if spec.get("gpu_monitor"):  # an exporter watches every card the plan gives the stack
        ids = list(dict.fromkeys([*(gpu_plan.get("vllm_device_ids") or []),
                                  *(gpu_plan.get("worker_device_ids") or [])]))
    else:
        ids = gpu_plan.get("vllm_device_ids" if name == "vllm" else "worker_device_ids") or []
    if not ids:
        return None
    device["device_ids"] = list(ids)
    return device


def _add_gpu_reservation(service: dict[str, Any], device: dict[str, Any]) -> None:
    deploy = dict(service.get("deploy") or {})
    resources = dict(deploy.get("resources") or {})
    resources["reservations"] = {"devices": [device]}
    deploy["resources"] = resources
    service["deploy"] = deploy


def _port(port: dict[str, Any], bind: str, offset: int) -> dict[str, Any]:
    out: dict[str, Any] = {"target": port["container"]}
    if port.get("host") is not None:
        out["published"] = str(port["host"] + offset)
        out["host_ip"] = port.get("host_ip", bind)
    out["protocol"] = port.get("protocol", "tcp")
    return out


def _mount(mount: dict[str, Any]) -> dict[str, Any]:
    out = {"type": "volume", "source": mount["source"], "target": mount["target"]}
    if mount.get("read_only"):
        out["read_only"] = True
    return out


def _network(stack: Stack, name: str) -> dict[str, Any]:
    decl = (stack.data.get("networks") or {}).get(name) or {}
    out: dict[str, Any] = {"labels": {"org.mmstack.network": name}}
    if decl.get("internal"):
        out["internal"] = True
    return out


def _volume(stack: Stack, name: str) -> dict[str, Any]:
    return {"labels": {"org.mmstack.volume": name}}


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
