"""Checks before a start: engine, Compose, host ports, files, secrets, GPU runtime.

The facts are gathered at the site in one command (`facts.preflight_command`); `gather_ports`
and `evaluate` are pure and turn them into findings, each with a message that names the problem
and a fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .engine import PROJECT_LABEL, SERVICE_LABEL


@dataclass(frozen=True)
class PortNeed:
    service: str
    host_ip: str
    port: int
    protocol: str = "tcp"

    @property
    def label(self) -> str:
        return f"{self.host_ip}:{self.port}/{self.protocol}"


@dataclass
class Facts:
    env: str
    engine_error: str | None = None
    compose_error: str | None = None
    compose_fix: str | None = None
    compose: tuple[str, ...] = ()
    runtimes: set[str] = field(default_factory=set)
    gpu_services: list[str] = field(default_factory=list)  # services that reserve a GPU
    # GPU-only services (vLLM's CUDA image) that would start without a GPU: a refusal, not a crash.
    gpu_starved: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    secrets_present: bool = True
    ports: list[PortNeed] = field(default_factory=list)
    port_holders: dict[PortNeed, str | None] = field(default_factory=dict)  # None: free (or ours)
    # Data volumes this start would reuse although the last start was for another environment
    # (each environment has its own secrets, and a database keeps the password it was made with).
    previous_env: str | None = None
    reused_volumes: list[str] = field(default_factory=list)
    where: str = "this host"
    ports_checked: bool = True  # False: the site can list no listening sockets (no ss, no python3)


@dataclass(frozen=True)
class Finding:
    item: str
    ok: bool
    message: str
    fix: str | None = None


def evaluate(f: Facts) -> list[Finding]:
    """Pure: one finding per check, in the order a user would fix them."""
    out: list[Finding] = []
    if f.engine_error:
        out.append(Finding("engine", False, f"the Docker engine is not reachable from {f.where}: {f.engine_error}",
                           "start the Docker engine (`sudo systemctl start docker`) and check $DOCKER_HOST"))
    else:
        out.append(Finding("engine", True, "reachable"))
    if f.compose_error:
        out.append(Finding("compose", False, f.compose_error,
                           f.compose_fix or "install the docker compose plugin or a docker-compose v2 binary"))
    else:
        out.append(Finding("compose", True, " ".join(f.compose)))
    if f.missing_files:
        shown = ", ".join(f.missing_files[:5]) + (f" and {len(f.missing_files) - 5} more" if len(f.missing_files) > 5 else "")
        out.append(Finding("files", False, f"missing: {shown}", f"run `inv setup --env {f.env}`"))
    else:
        out.append(Finding("files", True, "compose and env files present"))
    if not f.secrets_present:
        out.append(Finding("secrets", False, f"no secrets generated for environment {f.env!r}",
                           f"run `inv setup --env {f.env}`"))
    else:
        out.append(Finding("secrets", True, "present"))
    if f.gpu_starved:
        out.append(Finding("gpu", False,
                           f"{', '.join(f.gpu_starved)} needs a GPU, and the saved GPU plan gives it none "
                           "(this host has no usable GPU): its CUDA image would stop at once",
                           "start it on a GPU host (`inv configure-gpu` there), or start development "
                           "here (it runs without vLLM)"))
    if f.gpu_services and not f.engine_error:
        if "nvidia" in f.runtimes:
            out.append(Finding("gpu", True, "nvidia runtime present"))
        else:
            out.append(Finding("gpu", False,
                               f"environment {f.env!r} gives a GPU to {', '.join(f.gpu_services)} but the "
                               f"engine has no nvidia runtime (runtimes: {', '.join(sorted(f.runtimes)) or 'none'})",
                               "install the NVIDIA Container Toolkit and run "
                               "`sudo nvidia-ctk runtime configure --runtime=docker`, then restart docker"))
    if f.previous_env and f.previous_env != f.env and f.reused_volumes:
        out.append(Finding(
            "data", False,
            f"volumes {', '.join(f.reused_volumes)} were made by environment {f.previous_env!r}; "
            f"{f.env!r} has other secrets, so its services could not log in to that data",
            f"`inv wipe` (after `inv backup`) to start {f.env!r} fresh, or give it its own "
            f"project: `project: <name>` in mmstack.yaml"))
    busy = [(need, holder) for need, holder in f.port_holders.items() if holder]
    for need, holder in busy:
        out.append(Finding(f"port {need.label}", False,
                           f"needed by {need.service}, already in use by {holder}",
                           "stop that, or set host_port_offset in mmstack.yaml and run `inv setup`"))
    if f.ports and not f.ports_checked:
        out.append(Finding("ports", True, f"not checked: neither `ss` nor python3 on {f.where} "
                                          "lists its listening sockets (Compose will say if one is taken)"))
    elif f.ports and not busy:
        out.append(Finding("ports", True, f"{len(f.ports)} host port(s) free"))
    return out


# ----------------------------------------------------------------------------------------------
# Gathering
# ----------------------------------------------------------------------------------------------

def port_needs(stack: Any, env: str) -> list[PortNeed]:
    """Host ports the environment publishes (offset applied), from the schema."""
    model = stack.environment(env)
    specs = stack.resolved_services(env)
    bind = model.bind_address
    out = []
    for svc in model.services:
        for p in specs[svc].get("ports") or []:
            if p.get("host") is None:
                continue
            out.append(PortNeed(svc, p.get("host_ip", bind), int(p["host"]) + stack.host_port_offset,
                                p.get("protocol", "tcp")))
    return out


def gather_ports(needs: list[PortNeed], containers: list[dict[str, Any]], project: str,
                 listeners: list[Any]) -> dict[PortNeed, str | None]:
    """Pure: who holds each needed port; None when free or held by this very service of the
    project. ``containers``: the running containers (engine list shape, with ``Ports``);
    ``listeners``: the site's listening sockets (`facts.parse_listeners`)."""
    published: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for c in containers:
        for p in c.get("Ports") or []:
            if p.get("PublicPort"):
                published.setdefault((int(p["PublicPort"]), p.get("Type", "tcp")), []).append(c)
    out: dict[PortNeed, str | None] = {}
    for need in needs:
        holders = published.get((need.port, need.protocol), [])
        mine = [c for c in holders if c.get("Labels", {}).get(PROJECT_LABEL) == project
                and c.get("Labels", {}).get(SERVICE_LABEL) == need.service]
        if mine:
            out[need] = None
            continue
        socket_holders = [s for s in listeners if s.holds(need.host_ip, need.port, need.protocol)]
        if not socket_holders:
            out[need] = None
            continue
        if holders:
            c = holders[0]
            labels = c.get("Labels", {})
            name = (c.get("Names") or ["?"])[0].lstrip("/")
            where = (f" (project {labels[PROJECT_LABEL]}, service {labels.get(SERVICE_LABEL, '?')})"
                     if PROJECT_LABEL in labels else "")
            out[need] = f"container {name}{where}"
        else:
            named = [s.process for s in socket_holders if s.process]
            out[need] = named[0] if named else "a process this user cannot see (try as root: `ss -ltnp`)"
    return out
