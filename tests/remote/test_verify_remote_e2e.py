"""`inv deploy` verifies each host at its end, and `inv verify --hosts` runs the same checks over
SSH (a loopback sshd; the remote commands reach this machine's dockerd), on the host against its
own stack. The stack is the monitoring environment (elk), with stand-ins that follow the real
APIs of Prometheus, Grafana and Elasticsearch (tests/images/pyapps/standins/): Prometheus scrapes
itself, Kibana and Elasticsearch, Grafana's datasource is that Prometheus.

A fresh stack has no log line yet, so the first deploy fails its host on exactly that check;
once lines arrive (posted as Logstash would), verify passes; with Kibana stopped, exactly the
Prometheus targets check fails. No secret reaches a remote command line or its environment.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Config, Context

from tasks.cli.remote import deploy
from tasks.cli.verify import verify
from tests.lifecycle.conftest import pick_offset, remove_project
from tests.lifecycle.stackconfig import test_settings as lifecycle_settings
from tests.remote import test_remote_stack_e2e as remote_e2e
from tests.remote.test_deploy import secret_values
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv
from tests.verify import conftest as verify_fixtures
from tests.verify.stack import live

# Fixtures defined beside other tests, made available here under their own names.
compose_on_h1 = remote_e2e.compose_on_h1
pyapps_image = verify_fixtures.pyapps_image
run_json = remote_e2e.run_json

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]


def elk_settings(schema: dict[str, Any], project: str, offset: int, images: dict[str, str], pyapps: str) -> dict[str, Any]:
    settings = lifecycle_settings(schema, project, offset, images)
    env = {
        "prometheus": {"STANDIN_TARGETS": "prometheus=http://127.0.0.1:9090/metrics kibana=http://kibana:5601/health "
                                          "elasticsearch=http://elasticsearch:9200/health"},
        "grafana": {"STANDIN_DATASOURCES": "Prometheus|prometheus|http://prometheus:9090"},
        "elasticsearch": {},
    }
    for name, extra in env.items():
        settings["images"][name] = pyapps
        port = schema["services"][name]["ports"][0]["container"]
        # On top of the stand-in settings (which also drop a service's own entrypoint).
        settings["overrides"]["services"][name] = {
            **settings["overrides"]["services"].get(name, {}),
            "resources": {"cpus": 0.5, "memory": "256m"}, "environment": {"MMSTACK_APP": name, **extra},
            "healthcheck": {"$replace": {"test": live(port, "/health"), "interval": "1s", "timeout": "3s",
                                         "retries": 120, "start_period": "0s"}}}
    return settings


def by_item(doc: dict[str, Any], host: str = "h1") -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in doc["hosts"]["hosts"][host]["results"]}


def failed(doc: dict[str, Any], host: str = "h1") -> set[str]:
    return {i for i, r in by_item(doc, host).items() if r["status"] == "failed"}


def post_log_line(url: str, password: str, project: str) -> None:
    doc = {"@timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
           "message": "GET /health 200", "container": {"name": f"{project}-grafana-1"}}
    req = urllib.request.Request(f"{url}/logs-docker/_doc", data=json.dumps(doc).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": "Basic " +
                                          base64.b64encode(f"elastic:{password}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201


def test_deploy_verifies_each_host_and_verify_runs_over_ssh(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, docker_client: Any, test_images: dict[str, str],
        pyapps_image: str, compose_on_h1: None, capsys: pytest.CaptureFixture) -> None:
    token = uuid.uuid4().hex[:8]
    project = f"mmsvr{token}"
    stack = make_stack_copy(tmp_path / "stack")
    offset = pick_offset(stack, int(token, 16) + 11000)
    schema = yaml.safe_load((stack / "schemas" / "compose-schema.yaml").read_text())
    (stack / "mmstack.yaml").write_text(yaml.safe_dump(elk_settings(schema, project, offset, test_images, pyapps_image)))
    h1 = farm.hosts[0]
    remote = h1.remote_root / f"srv-{tmp_path.name}" / "stack"
    c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
    inv = str(inventory_path)
    try:
        setup = run_inv(stack, "setup", "--env", "elk")
        assert setup.returncode == 0, setup.stdout + setup.stderr
        h1.clear_log()

        # The stack comes up healthy, then verify runs on the host: no log line has arrived yet.
        code, doc = run_json(capsys, deploy, c, hosts="h1", env="elk", inventory=inv, timeout=300)
        got = by_item(doc)
        assert code == 2 and doc["hosts"]["hosts"]["h1"]["status"] == "failed"
        assert failed(doc) == {"elasticsearch/logs"}, {
            r["item"]: r.get("message", "")[:300] for r in doc["hosts"]["hosts"]["h1"]["results"]
            if r["status"] == "failed"}
        assert got["elasticsearch/logs"]["data"]["got"] == "0" and "Logstash" in got["elasticsearch/logs"]["data"]["fix"]
        for item in ("prometheus/targets", "grafana/datasources", "elasticsearch/health"):
            assert got[item]["status"] == "ok", got[item]
        assert got["prometheus/targets"]["message"].startswith("Prometheus scrapes every target: 3 targets up")
        assert got["litellm/models"]["status"] == "skipped"  # not part of elk
        assert doc["hosts"]["recap"]["h1"]["failed"] == 1

        # Logs arrive: `inv verify --hosts` passes.
        es = f"http://127.0.0.1:{9200 + offset}"
        post_log_line(es, (remote / "env" / "elk" / "elasticsearch.env").read_text().split("ELASTIC_PASSWORD=")[1]
                      .splitlines()[0], project)
        code, doc = run_json(capsys, verify, c, hosts="h1", env="elk", inventory=inv)
        assert code == 0 and failed(doc) == set(), json.dumps(doc, indent=1)[:3000]

        # A target goes down: exactly Prometheus's check fails, naming it.
        docker_client.containers.get(f"{project}-kibana-1").stop(timeout=1)
        time.sleep(5)  # the stand-in scrapes every 2 s, like a short scrape_interval
        code, doc = run_json(capsys, verify, c, hosts="h1", env="elk", inventory=inv)
        assert code == 2 and failed(doc) == {"prometheus/targets"}, failed(doc)
        data = by_item(doc)["prometheus/targets"]["data"]
        assert data["expected"] == "every target up" and "kibana http://kibana:5601/health: down" in data["got"]
        assert "inv logs --service kibana" in data["fix"]

        # The checks ran on the host, through SSH; no secret on a command line or in its environment.
        assert any("docker ps -a --filter" in cmd for cmd in h1.commands())
        values = secret_values(remote)
        assert values and not [v for v in values if v in h1.log_text()]
    finally:
        remove_project(docker_client, project)
