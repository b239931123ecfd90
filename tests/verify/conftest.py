"""A stack the checks can pass on, started once per module against the real Docker engine.

See stack.py for what runs where. The stack is torn down by its project label, whatever the
tests leave.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.conftest import LiveStack, pick_offset, remove_project
from tests.support.needs import unavailable
from tests.support.stackcopy import make_stack_copy
from tests.verify.stack import write_verify_settings

REPO = Path(__file__).resolve().parents[2]
PYAPPS_SCRIPT = REPO / "tests" / "images" / "pyapps.sh"
N8N_SCRIPT = REPO / "tests" / "images" / "n8n-image.sh"


def built_image(script: Path) -> str:
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        unavailable(f"{script.name} failed: {proc.stderr.strip()[-600:]}",
                    f"bash {script.relative_to(REPO)}")
    return proc.stdout.strip().split("=", 1)[1]


@pytest.fixture(scope="session")
def pyapps_image(test_images: dict[str, str]) -> str:
    """mmstack-test/pyapps:1 (tests/images/pyapps.sh builds it from the cached app venvs)."""
    return built_image(PYAPPS_SCRIPT)


@pytest.fixture(scope="session")
def n8n_image(test_images: dict[str, str]) -> str:
    """mmstack-test/n8n:1 (tests/images/n8n-image.sh builds it from the cached n8n install)."""
    return built_image(N8N_SCRIPT)


class VerifyStack(LiveStack):
    def verify_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.inv("verify", *args, "--json")
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from None

    def add_object_store_users(self) -> None:
        """What minio-init does with `mc admin user add` and a policy (MinIO's client has no
        build here): each application's key, limited to its buckets, in the S3 stand-in; the
        keys on standard input."""
        minio = self.containers()["minio"]
        for svc, buckets in (("multimodal-worker", ["media"]), ("search-engine", ["documents"])):
            var = svc.upper().replace("-", "_")
            doc = json.dumps({"access_key": self.env_value("minio-init.env", f"MMSTACK_S3_{var}_ACCESS_KEY"),
                              "secret_key": self.env_value("minio-init.env", f"MMSTACK_S3_{var}_SECRET_KEY"),
                              "buckets": buckets})
            done = subprocess.run(["docker", "exec", "-i", minio.name, "/bin/sh", "/usr/local/bin/docker-entrypoint.sh",
                                   "add-user"], input=doc, capture_output=True, text=True, timeout=60,
                                  env={**os.environ})
            assert done.returncode == 0, done.stderr


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in doc["results"]}


def failed(doc: dict[str, Any]) -> set[str]:
    return {r["item"] for r in doc["results"] if r["status"] == "failed"}


@pytest.fixture(scope="module")
def verify_stack(tmp_path_factory: pytest.TempPathFactory, docker_client: Any, test_images: dict[str, str],
                 pyapps_image: str, n8n_image: str) -> Iterator[VerifyStack]:
    root = make_stack_copy(tmp_path_factory.mktemp("verify") / "stack")
    token = uuid.uuid4().hex[:8]
    project = f"mmsvf{token}"
    offset = pick_offset(root, int(token, 16) + 3000)
    write_verify_settings(root, project, offset, test_images, pyapps_image, n8n_image)
    stack = VerifyStack(root, project, offset, docker_client)
    try:
        stack.inv_ok("setup", "--env", "development")
        stack.inv_ok("start-dev", "--no-verify", "--timeout", "600", timeout=900)
        stack.add_object_store_users()
        yield stack
    finally:
        remove_project(docker_client, project)
