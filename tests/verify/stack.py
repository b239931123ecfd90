"""The verify test stack: the lifecycle tests' stack (real PostgreSQL and Redis, busybox
stand-ins), with the services the checks reach run by mmstack-test/pyapps:1 instead:

* LiteLLM 1.108.7 and Open WebUI 0.12.4, the real ones, with the generated config, env files and
  command (the image's entrypoint drops only LiteLLM's DATABASE_URL, see pyapps/entrypoint.sh);
* vLLM, Qdrant, MinIO: stand-ins following the real APIs (pyapps/standins/), vLLM's from the
  command mmstack generates. Development runs vLLM here with ``vllm_device: cpu`` (its CPU
  command), so the whole LLM path runs: LiteLLM -> vLLM's address on the stack network.

n8n is the real n8n 2.41.1 in mmstack-test/n8n:1 (tests/images/n8n-image.sh), with the generated
env file and the schema's readiness healthcheck (polled fast: its first start migrates PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.lifecycle.stackconfig import test_settings

PYAPPS = {"litellm": "litellm", "openwebui": "openwebui", "vllm": "vllm", "qdrant": "qdrant", "minio": "s3"}


def live(port: int, path: str) -> list[str]:
    return ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{port}{path} || exit 1"]


def verify_settings(schema: dict[str, Any], project: str, offset: int, images: dict[str, str],
                    pyapps: str, n8n: str) -> dict[str, Any]:
    settings = test_settings(schema, project, offset, images)
    services = settings["overrides"]["services"]
    settings["images"]["n8n"] = n8n
    hc = schema["services"]["n8n"]["healthcheck"]
    services["n8n"] = {"resources": {"cpus": 1.0, "memory": "1g"},
                       "healthcheck": {"$replace": {"test": live(hc["port"], hc["path"]), "interval": "2s",
                                                    "timeout": "3s", "retries": 300, "start_period": "0s"}}}
    for name, app in PYAPPS.items():
        settings["images"][name] = pyapps
        spec = schema["services"][name]
        port = spec["ports"][0]["container"]
        path = {"litellm": "/health/liveliness", "openwebui": "/health"}.get(name, "/health")
        services[name] = {"resources": {"cpus": 1.0, "memory": "2g" if app in ("litellm", "openwebui") else "256m"},
                          "environment": {"MMSTACK_APP": app},
                          # The image's liveness URL, polled fast; written out, since the test
                          # settings point every template at the busybox stand-ins (and
                          # mmstack.yaml may tune templates, not define new ones).
                          "healthcheck": {"$replace": {"test": live(port, path), "interval": "1s", "timeout": "3s",
                                                       "retries": 240, "start_period": "0s"}}}
        if spec.get("shm_size"):
            services[name]["shm_size"] = "64m"
    return settings


def write_verify_settings(root: Path, project: str, offset: int, images: dict[str, str], pyapps: str,
                          n8n: str) -> None:
    schema_path = root / "schemas" / "compose-schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    # vLLM's CPU build runs without a GPU reservation: development then runs vLLM too.
    text = schema_path.read_text().replace(
        "    settings: {log_level: debug, bind_address: 127.0.0.1}",
        "    settings: {log_level: debug, bind_address: 127.0.0.1, vllm_device: cpu}", 1)
    assert "vllm_device: cpu" in text
    schema_path.write_text(text)
    (root / "mmstack.yaml").write_text(yaml.safe_dump(verify_settings(schema, project, offset, images, pyapps, n8n),
                                                      sort_keys=False))
