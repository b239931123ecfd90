"""Checks before a start: engine, Compose, host ports, files, secrets, GPU runtime.

Gathering (`gather_*`) touches the system; `evaluate` is pure and turns the facts into findings,
each with a message that names the problem and a fix.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
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
        out.append(Finding("engine", False, f.engine_error,
                           "start the Docker engine (`sudo systemctl start docker`) and check $DOCKER_HOST"))
    else:
        out.append(Finding("engine", True, "reachable"))
    if f.compose_error:
        out.append(Finding("compose", False, f.compose_error,
                           "install the docker compose plugin or a docker-compose v2 binary"))
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
    if f.ports and not busy:
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


def gather_ports(needs: list[PortNeed], containers: list[dict[str, Any]], project: str) -> dict[PortNeed, str | None]:
    """Who holds each needed port: None when free or held by this very service of the project.

    ``containers`` are the engine's running containers (list API shape, with ``Ports``).
    """
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
        if probe_free(need.host_ip, need.port, need.protocol):
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
            out[need] = process_holding(need.port, need.protocol) or "another process"
    return out


def probe_free(host_ip: str, port: int, protocol: str = "tcp") -> bool:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    s = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        return True
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return True  # the address is not on this host: Compose will say so itself
        return False
    finally:
        s.close()


def process_holding(port: int, protocol: str = "tcp", proc: Path = Path("/proc")) -> str | None:
    """``name (pid N)`` of a process listening on ``port``, from /proc (Linux only)."""
    inodes: set[str] = set()
    tables = ("tcp", "tcp6") if protocol == "tcp" else ("udp", "udp6")
    for table in tables:
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10:
                continue
            local, state, inode = cols[1], cols[3], cols[9]
            if int(local.rsplit(":", 1)[1], 16) == port and (protocol != "tcp" or state == "0A") and inode != "0":
                inodes.add(inode)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = os.listdir(pid_dir / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(pid_dir / "fd" / fd) in targets:
                    name = (pid_dir / "comm").read_text().strip()
                    return f"process {name} (pid {pid_dir.name})"
            except OSError:
                continue
    return "a process this user cannot see (try as root: `ss -ltnp`)"
