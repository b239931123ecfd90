"""A real Prometheus runs the generated configuration and scrapes a vLLM stand-in at vLLM's address.

Prometheus is Debian trixie's (2.53, in mmstack-test/prometheus:1, built by tests/images/build.sh
on the trixie base; the pinned image is prom/prometheus v3.14: see the README). It starts the way
the generated staging overlay starts prom/prometheus: the same entrypoint (the generated start
script), the same flags, the same read-only mounts of config/staging/*, the same env files. On a
network of its own, the OpenAI-compatible stand-in (tests/support/openai_standin.py, serving
vLLM's /metrics without a key, as vLLM does) answers as ``vllm``: Prometheus's targets API must
show that target up, and its query API the stand-in's vLLM series.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dockertest import labelled_resources
from tests.support.httpjson import env_file

pytestmark = pytest.mark.slow
ENV = "staging"
SUPPORT = Path(__file__).resolve().parents[1] / "support"
STANDIN = ("import sys, time; sys.path.insert(0, '/standin'); "
           "from openai_standin import OpenAIStandin; "
           "OpenAIStandin(host='0.0.0.0', port=8000, served_models=[sys.argv[1]]).start(); "
           "print('stand-in up', flush=True); time.sleep(10**9)")
SCRAPE_TIMEOUT_S = 120


def compose_service(stack: Path, name: str) -> dict[str, Any]:
    """The service as Compose merges compose.yml and the overlay (the overlay's `!override`s win)."""
    base = yaml.safe_load((stack / "compose.yml").read_text())["services"][name]
    overlay = yaml.safe_load((stack / f"compose.{ENV}.yml").read_text().replace("!override", ""))
    return {**base, **overlay["services"][name]}


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())["data"]


def exec_out(container: Any, *cmd: str) -> tuple[int, str]:
    code, out = container.exec_run(list(cmd))
    return code, out.decode(errors="replace")


def test_prometheus_scrapes_the_vllm_standin_with_the_generated_config(
        set_up_stack: Path, docker_client: Any, test_images: dict[str, str]) -> None:
    stack = set_up_stack
    prom = compose_service(stack, "prometheus")
    binds = {str((stack / v["source"]).resolve()): {"bind": v["target"], "mode": "ro"}
             for v in prom["volumes"] if v["type"] == "bind"}
    assert all(v["read_only"] for v in prom["volumes"] if v["type"] == "bind")
    environment = env_file(*(stack / ref for ref in prom["env_file"]))
    secret_values = [v for k, v in environment.items() if k.startswith("MMSTACK_SCRAPE_")]
    assert secret_values, "the staging Prometheus presents Qdrant's and MinIO's credentials"
    served = yaml.safe_load((stack / "config" / ENV / "litellm.yaml").read_text())["model_list"][0]["model_name"]
    image = test_images["prometheus"]

    with labelled_resources(docker_client, "mmstack-mon") as res:
        net = docker_client.networks.create(f"mmstack-mon-{res.suffix}", labels=res.labels)
        vllm = docker_client.containers.create(
            image, entrypoint=["python3", "-c", STANDIN, served], name=f"mmstack-mon-vllm-{res.suffix}",
            labels=res.labels, volumes={str(SUPPORT): {"bind": "/standin", "mode": "ro"}})
        net.connect(vllm, aliases=["vllm"])
        vllm.start()
        server = docker_client.containers.create(
            image, entrypoint=prom["entrypoint"], command=prom["command"],
            name=f"mmstack-mon-prometheus-{res.suffix}", labels=res.labels, environment=environment,
            volumes=binds, ports={"9090/tcp": ("127.0.0.1", None)})
        net.connect(server, aliases=["prometheus"])
        server.start()

        port, targets = None, []
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        vllm_target: dict[str, Any] = {}
        while time.monotonic() < deadline:
            server.reload()
            if server.status == "exited":
                pytest.fail("Prometheus exited:\n" + server.logs().decode(errors="replace")[-3000:])
            bound = (server.attrs["NetworkSettings"]["Ports"] or {}).get("9090/tcp")
            if bound:
                port = int(bound[0]["HostPort"])
                try:
                    targets = api(port, "/api/v1/targets")["activeTargets"]
                except OSError:
                    targets = []
                vllm_target = next((t for t in targets if t["labels"]["job"] == "vllm"), {})
                if vllm_target.get("health") == "up":
                    break
            time.sleep(1)
        logs = server.logs().decode(errors="replace")
        assert vllm_target.get("health") == "up", (vllm_target, logs[-3000:], vllm.logs()[-2000:])
        assert vllm_target["scrapeUrl"] == "http://vllm:8000/metrics"
        assert port is not None

        # Every running service with metrics: is a target; vLLM's series arrive with its labels.
        jobs = {t["labels"]["job"] for t in targets}
        assert {"vllm", "qdrant", "minio", "litellm", "dcgm-exporter", "node-exporter", "prometheus"} <= jobs
        series = api(port, "/api/v1/query", query='vllm:num_requests_running{job="vllm"}')["result"]
        assert [s["metric"]["model_name"] for s in series] == [served]
        # Every dashboard query is PromQL this Prometheus evaluates; the vLLM gauges have data.
        dash = json.loads((stack / "config" / ENV / "grafana-dashboard-inference.json").read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$model_name", ".*").replace("$__rate_interval", "1m")
                result = api(port, "/api/v1/query", query=expr)["result"]
                if "rate(" not in expr and "vllm:" in expr:
                    assert result, f"{panel['title']}: {expr} returned nothing"
        groups = {g["name"] for g in api(port, "/api/v1/rules")["groups"]}
        assert {"mmstack-targets", "mmstack-vllm", "mmstack-gpu", "mmstack-disk"} <= groups

        # The full check (rule files and credential files included) inside the container.
        code, out = exec_out(server, "promtool", "check", "config", "/etc/prometheus/prometheus.yml")
        assert code == 0, out
        # The credentials: 0600 files of the container's user in a 0700 directory, and gone from
        # Prometheus's own environment.
        code, out = exec_out(server, "stat", "-c", "%a %U %n", "/tmp/mmstack-scrape",
                             "/tmp/mmstack-scrape/qdrant", "/tmp/mmstack-scrape/minio")
        assert code == 0 and out.split("\n")[:3] == [
            "700 nobody /tmp/mmstack-scrape", "600 nobody /tmp/mmstack-scrape/qdrant",
            "600 nobody /tmp/mmstack-scrape/minio"], out
        code, qdrant_key = exec_out(server, "cat", "/tmp/mmstack-scrape/qdrant")
        assert code == 0 and qdrant_key == environment["MMSTACK_SCRAPE_QDRANT_TOKEN"]
        code, environ = exec_out(server, "cat", "/proc/1/environ")
        assert code == 0 and "prometheus" in exec_out(server, "cat", "/proc/1/cmdline")[1]
        assert "MMSTACK_SCRAPE_" not in environ and not any(v in environ for v in secret_values)
        assert not any(v in logs for v in secret_values), "a credential reached Prometheus's log"
