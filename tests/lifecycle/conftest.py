"""One stack copy per module, started against the real engine and torn down by project label."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.stackconfig import ensure_stack_collection, write_test_settings
from tests.support.stackcopy import make_stack_copy, run_inv

PROJECT_LABEL = "com.docker.compose.project"
MAX_SCHEMA_PORT = 9600


def _ports_free(offset: int, ports: list[int]) -> bool:
    for p in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + offset))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_offset(stack: Path, seed: int) -> int:
    import yaml

    schema = yaml.safe_load((stack / "schemas" / "compose-schema.yaml").read_text())
    ports = [p["host"] for s in schema["services"].values() for p in s.get("ports") or [] if p.get("host")]
    for i in range(40):
        offset = 20000 + ((seed + i * 1000) % 40000)
        offset -= offset % 1000
        if max(ports) + offset < 65000 and _ports_free(offset, ports):
            return offset
    pytest.fail("no free host port range for the test stack")


def remove_project(client: Any, project: str) -> None:
    """Tear down by label (never by name), whatever state the tests left."""
    from docker.errors import APIError, NotFound

    flt = {"label": f"{PROJECT_LABEL}={project}"}
    for c in client.containers.list(all=True, filters=flt):
        try:
            c.remove(force=True)
        except (NotFound, APIError):
            pass
    for n in client.networks.list(filters=flt):
        try:
            n.remove()
        except (NotFound, APIError):
            pass
    for v in client.volumes.list(filters=flt):
        try:
            v.remove(force=True)
        except (NotFound, APIError):
            pass


class LiveStack:
    def __init__(self, root: Path, project: str, offset: int, client: Any) -> None:
        self.root = root
        self.project = project
        self.offset = offset
        self.client = client

    def inv(self, *args: str, input: str | None = None, timeout: float = 300) -> Any:
        return run_inv(self.root, *args, input=input, timeout=timeout)

    def inv_ok(self, *args: str, timeout: float = 300) -> Any:
        proc = self.inv(*args, timeout=timeout)
        assert proc.returncode == 0, f"inv {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def inv_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.inv(*args, "--json")
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"not JSON: {proc.stdout}\n{proc.stderr}") from None

    def env_value(self, env_file: str, key: str) -> str:
        for line in (self.root / "env" / "development" / env_file).read_text().splitlines():
            if line.startswith(f"{key}="):
                return line.split("=", 1)[1]
        raise KeyError(key)

    def containers(self) -> dict[str, Any]:
        out = {}
        for c in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            out[c.labels.get("com.docker.compose.service")] = c
        return out

    def psql(self, sql: str, password: str | None = None) -> tuple[int, str]:
        """A real password login over TCP (the test image trusts only its Unix socket)."""
        user = self.env_value("postgres.env", "POSTGRES_USER")
        password = password if password is not None else self.env_value("postgres.env", "POSTGRES_PASSWORD")
        pg = self.containers()["postgres"]
        code, out = pg.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", self.project, "-tAc", sql],
                                environment={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
        return code, out.decode("utf-8", "replace").strip()


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory, docker_client: Any,
               test_images: dict[str, str]) -> Iterator[LiveStack]:
    root = make_stack_copy(tmp_path_factory.mktemp("lifecycle") / "stack")
    ensure_stack_collection(root)
    token = uuid.uuid4().hex[:8]
    project = f"mmslc{token}"
    offset = pick_offset(root, int(token, 16))
    write_test_settings(root, project, offset, test_images)
    stack = LiveStack(root, project, offset, docker_client)
    try:
        stack.inv_ok("setup", "--env", "development")
        yield stack
    finally:
        remove_project(docker_client, project)
