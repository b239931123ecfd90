"""What `inv verify` checks: one environment of one stack, on one host.

Built from local facts (the start record, the secrets store, the saved GPU plan) or, for a
remote host, from the same local schema and secrets plus the host's record and GPU plan. The
containers are one fact, read with the docker CLI through the probe (`containers_command`,
parsed by `parse_containers`), so local and remote runs see them alike.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from ..stack.engine import PROJECT_LABEL, SERVICE_LABEL


@dataclass
class Target:
    env: str
    stack: Any
    expected: list[str]
    secrets: dict[str, str]
    plan: dict[str, Any] | None = None
    containers: dict[str, tuple[str, str]] = field(default_factory=dict)  # service -> (name, state)
    host: str = "localhost"
    options: dict[str, Any] = field(default_factory=dict)  # mmstack.verify.* settings

    @property
    def project(self) -> str:
        return str(self.stack.project)

    @property
    def running(self) -> set[str]:
        return {s for s, (_, state) in self.containers.items() if state == "running"}

    @property
    def model(self) -> dict[str, Any] | None:
        return self.stack.served_model(self.env)

    @property
    def environment(self) -> Any:
        return self.stack.environment(self.env)

    def container(self, service: str) -> str:
        return self.containers[service][0]

    def url(self, service: str, container_port: int) -> str:
        """The service's published address on its host, as `inv status` shows it."""
        spec = self.stack.resolved_services(self.env)[service]
        bind = self.environment.bind_address
        for p in spec.get("ports") or []:
            if p["container"] == container_port and p.get("host") is not None:
                ip = p.get("host_ip", bind)
                ip = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(ip, ip)
                host = f"[{ip}]" if ":" in ip else ip
                return f"http://{host}:{p['host'] + self.stack.host_port_offset}"
        from .registry import CheckFailed

        raise CheckFailed(f"{service} publishes no port for {container_port}",
                          expected=f"container port {container_port} published on the host",
                          got="no host port in the schema", fix=f"give services.{service}.ports a host port")

    def vllm_command(self) -> list[str]:
        """The command mmstack generated for vLLM here (one home: `inference.vllm_command`)."""
        from ..schema.inference import vllm_command

        env = self.environment
        return vllm_command(self.model or {}, self.plan if env.gpu else None,
                            device="cpu" if env.vllm_device == "cpu" else "gpu")


def containers_command(project: str) -> str:
    fmt = f'{{{{.Label "{SERVICE_LABEL}"}}}}\t{{{{.Names}}}}\t{{{{.State}}}}'
    return (f"docker ps -a --filter {shlex.quote(f'label={PROJECT_LABEL}={project}')} "
            f"--format {shlex.quote(fmt)}")


def parse_containers(stdout: str) -> dict[str, tuple[str, str]]:
    """Pure: service -> (container name, state); a running container wins over an exited one."""
    out: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0]:
            continue
        svc, name, state = parts
        if svc not in out or state == "running":
            out[svc] = (name, state)
    return out


def gather_containers(probe: Any, project: str) -> dict[str, tuple[str, str]]:
    from ..engine.errors import DockerError

    done = probe.run(containers_command(project))
    if done.exited != 0:
        raise DockerError(f"cannot list the stack's containers on {getattr(probe.c, 'host', 'this host')}: "
                          f"{done.output[-300:]}", fix="check that Docker runs there and this user may use it")
    return parse_containers(done.stdout)
