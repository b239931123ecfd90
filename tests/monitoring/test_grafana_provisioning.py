"""The generated Grafana provisioning: Grafana's formats, mounted where Grafana reads them, and
every panel's query naming a metric the scraped software really exports.

Metric names come from the real sources (metric_names.py): vLLM 0.33.0's own loggers in its venv
(tests/realapps/vllm-venv.sh; CI builds it) and the DCGM exporter's default counters file.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.metric_names import (PROMETHEUS_SYNTHETIC, dcgm_default_fields,
                                           declared_vllm_metrics, exposed_series, metric_names,
                                           vllm_source_dir)
from tests.support.vllm_parser import vllm_python

DATASOURCE_KEYS = {"name", "type", "access", "url", "uid", "isDefault", "editable", "jsonData",
                   "orgId", "basicAuth", "database", "user", "version", "secureJsonData"}
PROVIDER_KEYS = {"name", "orgId", "folder", "folderUid", "type", "disableDeletion",
                 "allowUiUpdates", "updateIntervalSeconds", "options"}


@pytest.fixture(scope="module")
def vllm_series() -> set[str]:
    declared = declared_vllm_metrics(vllm_source_dir(vllm_python()) / "v1" / "metrics")
    assert "vllm:num_requests_running" in declared and declared["vllm:prompt_tokens"] == "counter"
    return exposed_series(declared)


def grafana_mounts(stack: Path, env: str) -> dict[str, str]:
    """Target in the container -> generated file, from the environment's compose overlay."""
    overlay = yaml.safe_load((stack / f"compose.{env}.yml").read_text().replace("!override", ""))
    return {v["target"]: v["source"] for v in overlay["services"]["grafana"]["volumes"]
            if v.get("type") == "bind"}


def dashboard(stack: Path, env: str) -> dict[str, Any]:
    text = (stack / "config" / env / "grafana-dashboard-inference.json").read_text()
    return json.loads(text)  # strict JSON: Grafana's file provider parses it the same way


def queries(dash: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\)", q)
        out.append(m.group(1) if m else q)
    return out


@pytest.mark.parametrize("env", ["staging", "production", "elk"])
def test_files_are_grafana_provisioning_and_mounted_read_only(set_up_stack: Path, env: str) -> None:
    mounts = grafana_mounts(set_up_stack, env)
    ds_target = "/etc/grafana/provisioning/datasources/prometheus.yml"
    prov_target = "/etc/grafana/provisioning/dashboards/mmstack.yml"
    assert mounts[ds_target] == f"./config/{env}/grafana-datasource-prometheus.yml"
    overlay = yaml.safe_load((set_up_stack / f"compose.{env}.yml").read_text().replace("!override", ""))
    assert all(v.get("read_only") for v in overlay["services"]["grafana"]["volumes"] if v["type"] == "bind")

    ds = yaml.safe_load((set_up_stack / mounts[ds_target]).read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert set(source) <= DATASOURCE_KEYS
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://prometheus:9090" and source["isDefault"] is True
    assert "secureJsonData" not in source, "Prometheus needs no credentials from Grafana"

    prov = yaml.safe_load((set_up_stack / mounts[prov_target]).read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert set(provider) <= PROVIDER_KEYS and provider["type"] == "file"
    # The provider loads the directory the dashboard file is mounted in.
    dash_targets = [t for t, s in mounts.items() if s.endswith(".json")]
    assert dash_targets and all(posixpath.dirname(t) == provider["options"]["path"] for t in dash_targets)

    dash = dashboard(set_up_stack, env)
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))


@pytest.mark.parametrize("env", ["staging", "production", "elk"])
def test_every_query_names_a_metric_the_scraped_services_export(set_up_stack: Path, env: str,
                                                                 vllm_series: set[str]) -> None:
    known = vllm_series | dcgm_default_fields() | PROMETHEUS_SYNTHETIC
    for expr in queries(dashboard(set_up_stack, env)):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{sorted(unknown)} in {expr!r} is exported by neither vLLM 0.33.0 nor DCGM"


def test_the_metric_check_can_fail(vllm_series: set[str]) -> None:
    """A renamed metric (vLLM 0.x's gpu_cache_usage_perc) is caught; the real one is not."""
    assert "vllm:gpu_cache_usage_perc" not in vllm_series
    assert "vllm:kv_cache_usage_perc" in vllm_series
    assert metric_names('sum(rate(vllm:generation_tokens_total{job="vllm"}[$__rate_interval]))') == \
        {"vllm:generation_tokens_total"}


def test_the_inference_dashboard_shows_what_users_ask_for(set_up_stack: Path) -> None:
    dash = dashboard(set_up_stack, "production")
    names = set().union(*(metric_names(q) for q in queries(dash)))
    for needed in ("vllm:request_success_total",                 # request rate
                   "vllm:e2e_request_latency_seconds_bucket",     # latency
                   "vllm:generation_tokens_total",                # tokens per second
                   "vllm:kv_cache_usage_perc",
                   "vllm:num_requests_running", "vllm:num_requests_waiting",
                   "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL"):
        assert needed in names, needed
    elk = set().union(*(metric_names(q) for q in queries(dashboard(set_up_stack, "elk"))))
    assert not any(n.startswith(("vllm:", "DCGM_")) for n in elk), "elk runs neither vLLM nor a GPU"


def test_the_dashboard_carries_its_checksum_and_a_hand_edit_is_reported(set_up_stack: Path) -> None:
    from tasks.engine.files import is_hand_edited

    path = set_up_stack / "config" / "staging" / "grafana-dashboard-inference.json"
    content = path.read_bytes()
    assert content.startswith(b'{"mmstack_checksum": "sha256:') and not is_hand_edited(content)
    title = json.loads(content)["title"]
    edited = content.replace(json.dumps(title).encode(), b'"mine"', 1)
    assert json.loads(edited)["title"] == "mine" and is_hand_edited(edited)


def test_grafanas_admin_comes_from_the_secrets_store(set_up_stack: Path) -> None:
    env = dict(line.split("=", 1) for line in
               (set_up_stack / "env" / "production" / "grafana.env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    stored = (set_up_stack / ".mmstack" / "secrets").rglob("*")
    assert env["GF_SECURITY_ADMIN_PASSWORD"] and env["GF_SECURITY_ADMIN_USER"].startswith("mms_")
    assert any(p.is_file() for p in stored)
    for path in (set_up_stack / "config" / "production").glob("grafana-*"):
        assert env["GF_SECURITY_ADMIN_PASSWORD"] not in path.read_text()
