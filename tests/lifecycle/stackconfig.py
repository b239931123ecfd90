"""The test configuration of a stack copy: real PostgreSQL and Redis, a stand-in for the rest.

Only `mmstack.yaml` differs from what users get: images, host ports (an offset), and for the
stand-ins, healthchecks that busybox can run and the ports to serve (`STANDIN_PORTS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REAL = {"postgres", "redis"}
# One-shots: postgres-init is psql in the real PostgreSQL image; minio-init (MinIO's client has no
# build any registry here serves) is replaced by a parse check of the generated script, which
# exits 0 as the real job does when it succeeds.
REAL_IMAGE_OF = {"postgres-init": "postgres"}
# The ELK one-shots (curl against Elasticsearch and Kibana, which no registry here serves) get
# the same parse check; tests/logging runs them for real against stand-ins.
ELK_ONE_SHOTS = {"elasticsearch-setup": ["/bin/sh", "-n", "/mmstack/elasticsearch-setup.sh"],
                 "kibana-setup": ["/bin/sh", "-n", "/mmstack/kibana-setup.sh"]}
ONE_SHOT_STANDIN = {"minio-init": ["/bin/sh", "-n", "/mmstack/minio-init.sh"], **ELK_ONE_SHOTS}
STANDIN_HEALTH = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:{port}/health || exit 1"]
FAST = {"interval": "1s", "timeout": "3s", "retries": 60, "start_period": "0s"}


def development_services() -> list[str]:
    """What `inv start-dev` starts, from the shipped schema (vLLM is left out: no GPU there)."""
    from tasks.schema.load import load_stack

    return load_stack(Path(__file__).resolve().parents[2]).environment("development").services


# The one-shots of the development environment (the ELK ones run only where the ELK stack does).
ONE_SHOTS = (frozenset(REAL_IMAGE_OF) | frozenset(ONE_SHOT_STANDIN)) - frozenset(ELK_ONE_SHOTS)


def test_settings(schema: dict[str, Any], project: str, offset: int, images: dict[str, str]) -> dict[str, Any]:
    services: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    for name, spec in schema["services"].items():
        over: dict[str, Any] = {"resources": {"cpus": 0.5, "memory": "256m"}}
        if name in REAL:
            mapping[name] = images[name]
            over["resources"]["memory"] = "512m"
        elif name in REAL_IMAGE_OF:
            mapping[name] = images[REAL_IMAGE_OF[name]]
        elif name in ONE_SHOT_STANDIN:
            mapping[name] = images["standin"]
            over["entrypoint"] = {"$replace": ONE_SHOT_STANDIN[name]}
            over["command"] = {"$delete": True}
        else:
            mapping[name] = images["standin"]
            # What it publishes, and the port its healthcheck asks (an exporter publishes none).
            served = [p["container"] for p in spec.get("ports") or []]
            health_port = (spec.get("healthcheck") or {}).get("port")
            if health_port and health_port not in served:
                served.append(health_port)
            ports = " ".join(str(p) for p in served)
            over["environment"] = {"STANDIN_PORTS": ports}
            if spec.get("command"):
                over["command"] = {"$delete": True}
            if spec.get("entrypoint"):  # Prometheus's start script: the stand-in runs its own
                over["entrypoint"] = {"$delete": True}
            if spec.get("shm_size"):
                over["shm_size"] = "64m"
        services[name] = over
    healthchecks: dict[str, Any] = {t: {"test": {"$replace": STANDIN_HEALTH}, **FAST}
                                    for t in ("http", "http-wget", "http-python", "tcp", "elasticsearch", "kibana")}
    healthchecks["postgres"] = dict(FAST)
    healthchecks["redis"] = dict(FAST)
    return {
        "project": project,
        "host_port_offset": offset,
        "images": mapping,
        "overrides": {"healthchecks": healthchecks, "services": services},
    }


def write_test_settings(stack: Path, project: str, offset: int, images: dict[str, str]) -> Path:
    schema = yaml.safe_load((stack / "schemas" / "compose-schema.yaml").read_text())
    path = stack / "mmstack.yaml"
    path.write_text(yaml.safe_dump(test_settings(schema, project, offset, images), sort_keys=False))
    # busybox stand-ins answer /health and nothing else, so `inv verify`'s checks cannot pass on
    # this stack: start-* does not verify here (tests/verify runs a stack that can).
    (stack / "invoke.yaml").write_text(yaml.safe_dump({"mmstack": {"verify": {"after_start": False}}}))
    return path


def ensure_stack_collection(stack: Path) -> None:
    """Until the root namespace lists the stack collection, add it in this copy (only here)."""
    root = stack / "tasks" / "cli" / "root.py"
    text = root.read_text()
    if '"stack"' in text:
        return
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("MODULES = ("):
            lines[i] = line.replace("MODULES = (", 'MODULES = ("stack", ', 1)
            break
    root.write_text("".join(lines))
