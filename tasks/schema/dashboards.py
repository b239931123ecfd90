"""Grafana provisioning, generated per environment: the Prometheus datasource and the dashboards.

Written in Grafana's own provisioning formats (read from ``/etc/grafana/provisioning`` at start):

* ``grafana-datasource-prometheus.yml``: ``apiVersion: 1`` with one ``datasources:`` entry, the
  stack's Prometheus (``http://prometheus:9090``), with a fixed ``uid`` the dashboards refer to.
* ``grafana-dashboards.yml``: ``apiVersion: 1`` with one file ``providers:`` entry that loads the
  dashboards from the directory the dashboard files are mounted in.
* ``grafana-dashboard-inference.json``: the inference path: vLLM's request rate, latency, tokens
  per second, KV-cache usage, running and waiting requests, and where a GPU exporter runs, the
  GPUs' memory, utilisation, temperature and power. Metric names are vLLM 0.33.0's
  (``vllm/v1/metrics/loggers.py``) and the DCGM exporter's default counters.

The admin account stays in Grafana's env file (``GF_SECURITY_ADMIN_*``, from the secrets store);
none of these files holds a secret. Pure: nothing is read or written here.
"""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING, Any

import yaml

from .configfiles import RenderedConfig
from .generate import config_dir

if TYPE_CHECKING:
    from .monitoring import ScrapeTarget

GRAFANA = "grafana"
DATASOURCE_UID = "mmstack-prometheus"
DASHBOARD_UID = "mmstack-inference"
PROMETHEUS_URL = "http://prometheus:9090"


def datasource_provisioning(scrape_interval: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": PROMETHEUS_URL,
            "isDefault": True,
            "editable": False,
            # Grafana's $__rate_interval is at least four scrape intervals.
            "jsonData": {"timeInterval": scrape_interval, "httpMethod": "POST"},
        }],
    }


def dashboard_provisioning(dashboards_dir: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "mmstack",
            "orgId": 1,
            "folder": "mmstack",
            "type": "file",
            # Generated files: a change made in the UI would be lost at the next start.
            "disableDeletion": True,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 60,
            "options": {"path": dashboards_dir, "foldersFromFilesStructure": False},
        }],
    }


def _panel(pid: int, title: str, grid: tuple[int, int, int, int], targets: list[tuple[str, str]],
           unit: str, description: str, kind: str = "timeseries", **defaults: Any) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, **defaults}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}} if kind == "timeseries" else {},
        "targets": [{"refId": chr(ord("A") + i), "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                     "expr": expr, "legendFormat": legend, "range": True}
                    for i, (expr, legend) in enumerate(targets)],
    }


def inference_dashboard(env: str, vllm_job: str | None, dcgm_job: str | None) -> dict[str, Any]:
    """The inference dashboard (Grafana's dashboard JSON model)."""
    panels: list[dict[str, Any]] = [
        _panel(20, "Scrape targets", (0, 0, 24, 4), [("up", "{{job}}")], "none",
               "1 for each service Prometheus scrapes successfully, 0 for one it cannot reach.",
               kind="stat"),
    ]
    y = 4
    if vllm_job:
        sel = f'job="{vllm_job}",model_name=~"$model_name"'
        rate = "[$__rate_interval]"

        def quantile(q: float, hist: str) -> str:
            return f"histogram_quantile({q}, sum by (le, model_name) (rate({hist}_bucket{{{sel}}}{rate})))"

        panels += [
            _panel(1, "vLLM up", (0, y, 4, 4), [(f'up{{job="{vllm_job}"}}', "{{instance}}")], "none",
                   "1 while Prometheus scrapes vLLM; 0 when it is down or still loading.", kind="stat"),
            _panel(2, "Requests running and waiting", (4, y, 10, 8), [
                (f"sum by (model_name) (vllm:num_requests_running{{{sel}}})", "running {{model_name}}"),
                (f"sum by (model_name) (vllm:num_requests_waiting{{{sel}}})", "waiting {{model_name}}"),
            ], "short", "Requests in the model's batches and requests queued for one."),
            _panel(3, "KV-cache usage", (14, y, 10, 8), [
                (f"max by (model_name) (vllm:kv_cache_usage_perc{{{sel}}})", "{{model_name}}"),
            ], "percentunit", "Share of the KV cache in use; near 100% requests wait or are preempted.",
                min=0, max=1),
            _panel(4, "Request rate", (0, y + 8, 12, 8), [
                (f"sum by (model_name, finished_reason) (rate(vllm:request_success_total{{{sel}}}{rate}))",
                 "{{model_name}} {{finished_reason}}"),
            ], "reqps", "Finished requests per second, by why they finished."),
            _panel(5, "Tokens per second", (12, y + 8, 12, 8), [
                (f"sum by (model_name) (rate(vllm:generation_tokens_total{{{sel}}}{rate}))",
                 "generated {{model_name}}"),
                (f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{sel}}}{rate}))",
                 "prompt {{model_name}}"),
            ], "short", "Generated and prompt (prefill) tokens per second."),
            _panel(6, "End-to-end request latency", (0, y + 16, 12, 8), [
                (quantile(0.5, "vllm:e2e_request_latency_seconds"), "p50 {{model_name}}"),
                (quantile(0.95, "vllm:e2e_request_latency_seconds"), "p95 {{model_name}}"),
            ], "s", "From arrival to the last token."),
            _panel(7, "Time to first token and between tokens", (12, y + 16, 12, 8), [
                (quantile(0.95, "vllm:time_to_first_token_seconds"), "TTFT p95 {{model_name}}"),
                (quantile(0.95, "vllm:inter_token_latency_seconds"), "inter-token p95 {{model_name}}"),
            ], "s", "How long users wait for the first token, and for each one after it."),
        ]
        y += 24
    if dcgm_job:
        sel = f'job="{dcgm_job}"'
        legend = "GPU {{gpu}} {{modelName}}"
        panels += [
            _panel(10, "GPU memory used", (0, y, 12, 8), [
                (f"DCGM_FI_DEV_FB_USED{{{sel}}} / (DCGM_FI_DEV_FB_USED{{{sel}}} + DCGM_FI_DEV_FB_FREE{{{sel}}})",
                 legend),
            ], "percentunit", "Framebuffer memory in use (vLLM preallocates its share at start).",
                min=0, max=1),
            _panel(11, "GPU utilisation", (12, y, 12, 8), [
                (f"DCGM_FI_DEV_GPU_UTIL{{{sel}}}", legend),
            ], "percent", "Share of time a kernel was running.", min=0, max=100),
            _panel(12, "GPU temperature", (0, y + 8, 12, 8), [
                (f"DCGM_FI_DEV_GPU_TEMP{{{sel}}}", legend),
            ], "celsius", "Core temperature."),
            _panel(13, "GPU power draw", (12, y + 8, 12, 8), [
                (f"DCGM_FI_DEV_POWER_USAGE{{{sel}}}", legend),
            ], "watt", "Board power."),
        ]
    templating: list[dict[str, Any]] = []
    if vllm_job:
        templating.append({
            "name": "model_name", "label": "Model", "type": "query",
            "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
            "query": {"query": f'label_values(vllm:num_requests_running{{job="{vllm_job}"}}, model_name)',
                      "refId": "model_name"},
            "definition": f'label_values(vllm:num_requests_running{{job="{vllm_job}"}}, model_name)',
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        })
    return {
        "uid": DASHBOARD_UID,
        "title": f"mmstack inference ({env})",
        "description": "Generated by mmstack (inv generate-compose); edits are replaced at the next run.",
        "tags": ["mmstack", "vllm", "gpu"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "panels": panels,
    }


def render_grafana_configs(env: str, wanted: set[str], targets: list["ScrapeTarget"],
                           specs: dict[str, dict[str, Any]]) -> list[RenderedConfig]:
    from .monitoring import SCRAPE_INTERVAL, config_target

    def dump(doc: dict[str, Any]) -> str:
        return yaml.safe_dump(doc, sort_keys=False, width=100)

    out: list[RenderedConfig] = []
    if "grafana-datasource-prometheus.yml" in wanted:
        out.append(RenderedConfig(f"{config_dir(env)}/grafana-datasource-prometheus.yml",
                                  dump(datasource_provisioning(SCRAPE_INTERVAL))))
    dashboard = config_target(specs, GRAFANA, "grafana-dashboard-inference.json")
    if "grafana-dashboards.yml" in wanted and dashboard:
        out.append(RenderedConfig(f"{config_dir(env)}/grafana-dashboards.yml",
                                  dump(dashboard_provisioning(posixpath.dirname(dashboard)))))
    if "grafana-dashboard-inference.json" in wanted:
        by_exporter = {t.exporter: t.job for t in targets if t.exporter}
        doc = inference_dashboard(env, by_exporter.get("vllm"), by_exporter.get("dcgm"))
        out.append(RenderedConfig(f"{config_dir(env)}/grafana-dashboard-inference.json",
                                  json.dumps(doc, indent=2) + "\n"))
    return out
