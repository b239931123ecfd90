"""The project's engine resources as facts: one docker CLI command each, and a pure parser.

Every listing selects by the engine's label filter ``com.docker.compose.project=<project>`` and
nothing else (never a name pattern), and each parser checks every line's project label again,
so a line of another project (an engine that ignored the filter, a fake, a race) is never taken
for one of ours. The commands run the same through a `Site` here and on a host.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import DockerError
from .engine import PROJECT_LABEL, SERVICE_LABEL, VOLUME_LABEL

SEPARATOR = "@@mmstack-resources@@"
_LABEL = '{{.Label "%s"}}'
RUNNING_STATES = ("running", "restarting", "paused")


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str      # created | running | restarting | paused | exited | dead ...
    service: str    # the Compose service ("" when the label is missing)
    image: str

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


@dataclass(frozen=True)
class Network:
    id: str
    name: str


@dataclass(frozen=True)
class Volume:
    name: str
    compose_name: str   # the volume's name in the compose file (its com.docker.compose.volume)


@dataclass
class Listing:
    containers: list[Container] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)


def _filter(project: str, **labels: str) -> str:
    words = [f"--filter {shlex.quote(f'label={PROJECT_LABEL}={project}')}"]
    words += [f"--filter {shlex.quote(f'label={k}={v}')}" for k, v in labels.items()]
    return " ".join(words)


def _format(*fields: str) -> str:
    return shlex.quote("\t".join(fields))


def containers_command(project: str, service: str | None = None) -> str:
    """The project's containers, every state (``service``: only that Compose service's)."""
    extra = {SERVICE_LABEL: service} if service else {}
    fmt = _format("{{.ID}}", "{{.Names}}", "{{.State}}", _LABEL % PROJECT_LABEL, _LABEL % SERVICE_LABEL,
                  "{{.Image}}")
    return f"docker ps -a --no-trunc {_filter(project, **extra)} --format {fmt}"


def networks_command(project: str) -> str:
    fmt = _format("{{.ID}}", "{{.Name}}", _LABEL % PROJECT_LABEL)
    return f"docker network ls --no-trunc {_filter(project)} --format {fmt}"


def volumes_command(project: str, compose_name: str | None = None) -> str:
    extra = {VOLUME_LABEL: compose_name} if compose_name else {}
    fmt = _format("{{.Name}}", _LABEL % PROJECT_LABEL, _LABEL % VOLUME_LABEL)
    return f"docker volume ls {_filter(project, **extra)} --format {fmt}"


def parse_containers(project: str, stdout: str) -> list[Container]:
    out = []
    for line in stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 4 and f[3] == project and f[0].strip():
            f += [""] * (6 - len(f))
            out.append(Container(f[0], f[1], f[2], f[4], f[5]))
    return sorted(out, key=lambda c: c.name)


def parse_networks(project: str, stdout: str) -> list[Network]:
    out = [Network(f[0], f[1]) for f in (line.split("\t") for line in stdout.splitlines())
           if len(f) >= 3 and f[2] == project and f[0].strip()]
    return sorted(out, key=lambda n: n.name)


def parse_volumes(project: str, stdout: str) -> list[Volume]:
    out = []
    for line in stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 2 and f[1] == project and f[0].strip():
            compose_name = (f[2] if len(f) > 2 else "") or f[0].removeprefix(f"{project}_")
            out.append(Volume(f[0], compose_name))
    return sorted(out, key=lambda v: v.name)


def listing_command(project: str) -> str:
    """Containers, networks and volumes in one command (one round trip to a host)."""
    sep = f"echo {SEPARATOR}"
    return (f"{containers_command(project)} && {sep} && {networks_command(project)} && {sep} && "
            f"{volumes_command(project)}")


def parse_listing(project: str, stdout: str) -> Listing:
    parts = stdout.split(SEPARATOR + "\n")
    if len(parts) != 3:
        raise DockerError("unexpected output while listing the project's resources",
                          fix="check that the docker CLI works for this user (`docker ps`)")
    return Listing(parse_containers(project, parts[0]), parse_networks(project, parts[1]),
                   parse_volumes(project, parts[2]))


def parse_volume_inspect(stdout: str) -> dict[str, dict[str, str]]:
    """Pure: `docker volume inspect NAME...` as {name: labels}."""
    try:
        items = json.loads(stdout or "[]")
    except ValueError:
        raise DockerError("unexpected output from `docker volume inspect`") from None
    return {str(v["Name"]): dict(v.get("Labels") or {}) for v in items if isinstance(v, dict)}


# -- running the facts at a site ------------------------------------------------------------

def engine_failure(site: Any, what: str, result: Any) -> DockerError:
    tail = " / ".join(line.strip() for line in (result.stderr or result.stdout or "").strip().splitlines()[-3:])
    return DockerError(f"{what} failed on {site.where()} (exit {result.exited})" + (f": {tail}" if tail else ""),
                       fix="check that the docker CLI is installed there and that the user may use the "
                           "engine (group docker)")


def run_fact(site: Any, command: str, what: str) -> str:
    """Run a read-only docker command at ``site``; its stdout, or a `DockerError` saying why not."""
    result = site.sh(command)
    if result.exited != 0:
        raise engine_failure(site, what, result)
    return result.stdout


def listing(site: Any, project: str) -> Listing:
    return parse_listing(project, run_fact(site, listing_command(project), "listing the project's resources"))


def containers(site: Any, project: str, service: str | None = None) -> list[Container]:
    return parse_containers(project, run_fact(site, containers_command(project, service),
                                              "listing the project's containers"))


def volumes(site: Any, project: str, compose_name: str | None = None) -> list[Volume]:
    return parse_volumes(project, run_fact(site, volumes_command(project, compose_name),
                                           "listing the project's volumes"))
