"""GPUs: `detect-gpu`, `configure-gpu`, `start-gpu-auto`.

Thin tasks: arguments and config resolved here, then `tasks.gpu`'s steps, and for
configure-gpu the chain (tasks/chains.py) that validates what the plan feeds before writing it. Nothing heavy is imported at module
load: pynvml only when NVML is asked, fabric only with ``--host``, so `inv --list` stays fast.

    inv detect-gpu                        # summary with the NVLink matrix
    inv detect-gpu --json | inv configure-gpu --facts -
    inv configure-gpu --check --diff      # what the plan would change
    inv start-gpu-auto                    # detect -> configure -> generate -> start
"""

from __future__ import annotations

import json as jsonlib
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context, task

from ..engine.errors import ConfigError, GpuError
from ..engine.run import Run, boundary, config_value, resolve, stack_dir_of
from ..engine.settings import defaults_for
from ..gpu.overrides import PlanOverrides

if TYPE_CHECKING:
    from ..remote.inventory import Host
    from ..gpu.facts import GpuFacts

GPU_ENVIRONMENT = "gpu"
# Config keys under mmstack.gpu that feed the planner: its overrides, less the model (--model,
# or the gpu environment's, resolved from the schema).
PLAN_KEYS = tuple(f.name for f in fields(PlanOverrides) if f.name != "model")


def _gather(c: Context, source: str | None, host: str | None) -> "GpuFacts":
    """Facts for this host (NVML or nvidia-smi) or for ``host`` over SSH (nvidia-smi)."""
    from ..gpu.detect import detect_facts

    src = resolve(source, c, "gpu.source")
    if not host:
        return detect_facts(c, src)
    if src == "nvml":
        raise ConfigError("NVML reads only the local machine", key_path="--source",
                          fix="use --source smi (or auto) with --host")
    # Fabric and paramiko load only for remote detection. The connection goes through the one
    # host-key policy (tasks/remote/hosts.py): an unknown key is refused, never added.
    from ..gpu.smibatch import gather_via_smi_batch
    from ..remote.hosts import connected

    target = _ssh_target(c, host)
    with connected(target, c.config) as conn:
        facts = gather_via_smi_batch(conn)  # one round trip for every query
    facts.host = target.name
    return facts


def _ssh_target(c: Context, spec: str) -> "Host":
    """``--host``: an inventory host's name (its user, key and known_hosts), else ``[user@]address[:port]``."""
    from ..remote.inventory import Host, load_inventory

    try:
        inventory = load_inventory(stack_dir_of(c), config_value(c, "remote.inventory"))
    except ConfigError:
        # No (valid) inventory: fine for an address, but a bare name meant an inventory host.
        if not re.search(r"[@.:]", spec):
            raise
    else:
        if spec in inventory.hosts:
            return inventory.hosts[spec]
    match = re.fullmatch(r"(?:([^@\s]+)@)?([^@:\s\[\]]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?", spec)
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise ConfigError(f"--host {spec!r} is neither an inventory host nor [user@]address[:port]",
                          key_path="--host", fix="name a host from inventory/, or give user@address[:port]")
    user, address, port = match.group(1), match.group(2).strip("[]"), match.group(3)
    return Host(name=spec, address=address, port=int(port or 22), user=user)


def _read_facts(path: str) -> "GpuFacts":
    from ..gpu.facts import GpuFacts

    name = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise GpuError(f"cannot read GPU facts: {exc.strerror or exc}", file=name,
                       fix="save them with `inv detect-gpu --json > FILE`") from None
    try:
        doc = jsonlib.loads(text)
    except ValueError as exc:
        raise GpuError(f"GPU facts are not JSON: {exc}", file=name,
                       fix="feed it the output of `inv detect-gpu --json`") from None
    return GpuFacts.from_dict(doc, file=name)


def _overrides(c: Context, args: dict[str, Any]) -> dict[str, Any]:
    """argument > config mmstack.gpu.* > the planner's defaults."""
    out: dict[str, Any] = {}
    for key in PLAN_KEYS:
        value = resolve(args.get(key), c, f"gpu.{key}")
        if value is not None:
            out[key] = value
    for key in ("tensor_parallel", "pipeline_parallel", "max_model_len"):
        if key in out:
            out[key] = _number(out[key], int, key)
    if "memory_utilization" in out:
        out["memory_utilization"] = _number(out["memory_utilization"], float, "memory_utilization")
    if isinstance(out.get("gpus"), (list, tuple)):
        out["gpus"] = ",".join(str(g) for g in out["gpus"])
    return out


def _model_inputs(run: Run, model: str | None) -> dict[str, Any]:
    """The planner's model facts: ``--model`` (a key of the schema's models:), else the model
    the gpu environment serves (config mmstack.gpu.* still overrides each number)."""
    from ..schema.inference import planner_inputs
    from ..schema.load import load_stack

    stack = load_stack(run.stack)
    if model:
        entry = stack.model_entry(model)
        if entry is None:
            raise ConfigError(f"unknown model {model!r}", key_path="models",
                              fix=f"use one of: {', '.join(stack.models) or '(none declared)'}")
    else:
        entry = stack.served_model(GPU_ENVIRONMENT) if GPU_ENVIRONMENT in stack.environment_names else None
    return planner_inputs(entry) if entry else {}


def _number(value: Any, kind: type, key: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{key.replace('_', '-')} takes a number, not {value!r}",
                          key_path=f"mmstack.gpu.{key}",
                          fix=f"pass a number, e.g. --{key.replace('_', '-')} 2") from None


@task(help={
    "json": "print the facts as JSON (for pipelines: `| inv configure-gpu --facts -`)",
    "source": "auto (NVML, else nvidia-smi), nvml or smi",
    "host": "detect over SSH with nvidia-smi: an inventory host name, or user@address[:port] (its key must be in known_hosts)",
})
@boundary
def detect_gpu(c: Context, json: bool = False, source: str | None = None,
               host: str | None = None) -> None:
    """Detect GPUs, memory and NVLink/PCIe topology (a host without GPUs is CPU-only, not an error)."""
    from ..gpu.steps import report_facts_step

    run = Run.start(c, json=json)
    facts = _gather(c, source, host)
    report_facts_step(run, facts)
    run.add_output("facts", facts.to_dict())
    run.finish()


_CONFIGURE_HELP = {
    "facts": "plan from saved facts (FILE, or - for stdin) instead of detecting",
    "source": "when detecting: auto, nvml or smi",
    "tensor_parallel": "tensor parallel size (default: the chosen GPU group's size)",
    "pipeline_parallel": "pipeline parallel size (default 1)",
    "memory_utilization": "vLLM gpu_memory_utilization (default: from free memory, 0.80-0.90)",
    "max_model_len": "vLLM max model length (default: what the KV cache fits)",
    "p2p": "peer-to-peer: auto (NVLink only), on (force-on) or off (force-off)",
    "gpus": "pin vLLM to these GPUs: indices or UUIDs, comma-separated",
    "model": "plan for this model (a key of the schema's models:; default: the gpu environment's)",
    "generate": "regenerate compose files and env files from the plan (default: yes)",
    "check": "change nothing; report what would change",
    "diff": "show a unified diff of every file that changes",
    "json": "print the results (and the plan) as JSON",
}


@task(help=_CONFIGURE_HELP)
@boundary
def configure_gpu(c: Context, facts: str | None = None, source: str | None = None,
                  tensor_parallel: str | None = None, pipeline_parallel: str | None = None,
                  memory_utilization: str | None = None, max_model_len: str | None = None,
                  p2p: str | None = None, gpus: str | None = None, model: str | None = None,
                  generate: bool = True, check: bool = False, diff: bool = False,
                  json: bool = False) -> None:
    """Plan vLLM's GPUs (NVLink group, tensor parallel, memory, NCCL) and write it into the stack."""
    from ..chains import configure_gpu_chain

    run = Run.start(c, check=check, diff=diff, json=json)
    gpu_facts = _read_facts(facts) if facts else _gather(c, source, None)
    overrides = {**_model_inputs(run, model), **_overrides(c, locals())}
    configure_gpu_chain(run, gpu_facts, overrides, generate=generate)
    run.finish()


@task(help={**{k: v for k, v in _CONFIGURE_HELP.items() if k not in ("generate",)},
            "check": "change nothing and start nothing; report what would change",
            "no_verify": "do not run `inv verify` once the stack is up"})
@boundary
def start_gpu_auto(c: Context, facts: str | None = None, source: str | None = None,
                   tensor_parallel: str | None = None, pipeline_parallel: str | None = None,
                   memory_utilization: str | None = None, max_model_len: str | None = None,
                   p2p: str | None = None, gpus: str | None = None, model: str | None = None,
                   check: bool = False, diff: bool = False, json: bool = False,
                   no_verify: bool = False) -> None:
    """Detect GPUs, configure vLLM for them, regenerate the files, start the gpu environment."""
    from ..chains import configure_gpu_chain
    from ..gpu.steps import report_facts_step

    run = Run.start(c, check=check, diff=diff, json=json)
    gpu_facts = _read_facts(facts) if facts else _gather(c, source, None)
    report_facts_step(run, gpu_facts)
    overrides = {**_model_inputs(run, model), **_overrides(c, locals())}
    plan = configure_gpu_chain(run, gpu_facts, overrides, generate=True)
    if run.reporter.failed_any:
        run.finish()
        return
    if check:
        run.reporter.skipped(f"start {GPU_ENVIRONMENT}", "check mode: nothing started")
        run.finish()
        return
    if plan.cpu_only:
        run.finish()
        raise ConfigError(f"no usable GPU here: the {GPU_ENVIRONMENT} environment serves vLLM, whose "
                          "CUDA image cannot run without one, so nothing was started",
                          key_path=f"environments.{GPU_ENVIRONMENT}",
                          fix="run it on a GPU host, or `inv start-dev` here (it runs without vLLM)")
    run.finish()  # the recap of detect/configure; starting prints its own
    _start_environment(c, GPU_ENVIRONMENT, no_verify)


def _start_environment(c: Context, env: str, no_verify: bool = False) -> None:
    """Start ``env`` with the lifecycle's own start task (preflight, wait for health, verify)."""
    from .stack import start

    start(c, env=env, no_verify=no_verify)


ns = Collection("gpu")
ns.add_task(detect_gpu, "detect-gpu")
ns.add_task(configure_gpu, "configure-gpu")
ns.add_task(start_gpu_auto, "start-gpu-auto")
ns.configure(defaults_for("gpu"))

