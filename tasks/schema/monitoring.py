"""Prometheus, generated from the schema: what it scrapes, with which credentials, and the alerts.

A service declares where it serves metrics (``metrics: {port, path, auth, exporter}``); in an
environment that runs Prometheus, every running service with ``metrics:`` becomes one scrape job
(``job`` = the service name, target ``service:port`` on the stack's network), and nothing else:
a service the environment does not run gets no target.

Credentials never enter a world-readable file. ``prometheus.yml`` (0644) names only
``credentials_file`` paths inside the container; the values reach Prometheus through its 0600 env
file (``env/<env>/prometheus.env``, read by the Compose client, rendered from
``scrape_credentials``), and ``prometheus-start.sh``, the container's entrypoint, writes each one
into a 0600 file in a 0700 directory owned by the container's user, removes the variables from
the environment and execs Prometheus with the image's flags.

* ``prometheus.yml``: global settings, ``rule_files`` and one scrape job per target.
* ``prometheus-rules.yml``: alerts for a target down, vLLM not serving, GPU memory exhausted and a
  disk nearly full, each only where its metrics are scraped (promtool rejects nothing here).
* ``prometheus-start.sh``: the entrypoint described above.

Pure: nothing is read or written here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import yaml

from .configfiles import RenderedConfig
from .generate import config_dir
from .model import Stack

PROMETHEUS = "prometheus"
# Inside the Prometheus container: a directory only its user can read, re-created at each start.
SCRAPE_SECRETS_DIR = "/tmp/mmstack-scrape"
PROMETHEUS_BINARY = "/bin/prometheus"  # the image's own entrypoint
DEFAULT_METRICS_PATH = "/metrics"
SCRAPE_INTERVAL = "15s"
# `mc admin prometheus generate` signs a token valid for 100 years; a fixed expiry keeps the
# token (and so the env file) identical from run to run: 2100-01-01T00:00:00Z.
MINIO_JWT_EXPIRY = 4102444800
# Thresholds of the alert rules.
GPU_MEMORY_EXHAUSTED = 0.97   # vLLM preallocates --gpu-memory-utilization (0.90 by default)
KV_CACHE_FULL = 0.95
DISK_NEARLY_FULL = 0.10       # free fraction
MONITORING_FILES = frozenset({"prometheus.yml", "prometheus-rules.yml", "prometheus-start.sh",
                              "grafana-datasource-prometheus.yml", "grafana-dashboards.yml",
                              "grafana-dashboard-inference.json"})


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: a running service's metrics endpoint on the stack's network."""

    job: str
    address: str
    path: str
    interval: str | None
    auth: dict[str, Any] | None
    exporter: str | None  # vllm, dcgm, node: which alerts and dashboard panels apply

    @property
    def credential_var(self) -> str:
        """The env variable that carries this job's credential to the start script."""
        return f"MMSTACK_SCRAPE_{self.job.upper().replace('-', '_')}_TOKEN"

    @property
    def credentials_file(self) -> str:
        return f"{SCRAPE_SECRETS_DIR}/{self.job}"


def scrape_targets(stack: Stack, env: str, specs: dict[str, dict[str, Any]] | None = None) -> list[ScrapeTarget]:
    """The services Prometheus scrapes in ``env`` (none where Prometheus does not run).

    ``specs``: the environment's resolved services, when the caller has them already.
    """
    environment = stack.environment(env)
    if PROMETHEUS not in environment.services:
        return []
    specs = specs if specs is not None else stack.resolved_services(env)
    out = []
    for svc in environment.services:
        metrics = specs[svc].get("metrics")
        if not metrics:
            continue
        out.append(ScrapeTarget(
            job=svc, address=f"{svc}:{metrics['port']}", path=metrics.get("path", DEFAULT_METRICS_PATH),
            interval=metrics.get("interval"), auth=dict(metrics["auth"]) if metrics.get("auth") else None,
            exporter=metrics.get("exporter")))
    return out


def config_target(specs: dict[str, dict[str, Any]], service: str, file: str) -> str | None:
    """Where ``service`` mounts the generated ``file`` (its ``config_files:`` entry), if it does."""
    spec = specs.get(service) or {}
    for cf in spec.get("config_files") or []:
        if cf["file"] == file:
            return str(cf["target"])
    return None


# -- prometheus.yml ----------------------------------------------------------------------------

def prometheus_config(stack: Stack, env: str, targets: list[ScrapeTarget],
                      specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rules = config_target(specs, PROMETHEUS, "prometheus-rules.yml")
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "10s",
            "evaluation_interval": SCRAPE_INTERVAL,
            "external_labels": {"project": stack.project, "environment": env},
        },
    }
    if rules:
        doc["rule_files"] = [rules]
    jobs = []
    for t in targets:
        job: dict[str, Any] = {"job_name": t.job, "metrics_path": t.path}
        if t.interval:
            job["scrape_interval"] = t.interval
        if t.auth:
            job["authorization"] = {"type": "Bearer", "credentials_file": t.credentials_file}
        job["static_configs"] = [{"targets": [t.address], "labels": {"service": t.job}}]
        jobs.append(job)
    doc["scrape_configs"] = jobs
    return doc


# -- credentials -------------------------------------------------------------------------------

def auth_secrets(auth: dict[str, Any] | None) -> list[str]:
    """The secrets (by name) an endpoint's ``auth:`` needs."""
    if not auth:
        return []
    if auth["type"] == "bearer":
        return [auth["secret"]] if auth.get("secret") else []
    return [auth[k] for k in ("access_key", "secret_key") if auth.get(k)]


def scrape_credentials(stack: Stack, env: str, secrets: dict[str, str],
                       specs: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Env variable -> credential value, for the start script (``env/<env>/prometheus.env``)."""
    out = {}
    for t in scrape_targets(stack, env, specs):
        if not t.auth:
            continue
        if t.auth["type"] == "bearer":
            out[t.credential_var] = secrets[t.auth["secret"]]
        else:
            out[t.credential_var] = minio_metrics_jwt(secrets[t.auth["access_key"]],
                                                      secrets[t.auth["secret_key"]])
    return out


def minio_metrics_jwt(access_key: str, secret_key: str) -> str:
    """The bearer token MinIO's metrics endpoints accept, as `mc admin prometheus generate` makes it.

    MinIO (cmd/jwt.go, metricsRequestAuthenticate) reads the access key from the ``sub`` claim and
    checks the HS512 signature with that key's secret key.
    """
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64(json.dumps({"exp": MINIO_JWT_EXPIRY, "sub": access_key, "iss": "prometheus"},
                            separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(secret_key.encode(), signing_input, hashlib.sha512).digest()
    return f"{header}.{claims}.{b64(signature)}"


def start_script(targets: list[ScrapeTarget]) -> str:
    """The Prometheus container's entrypoint: credentials into 0600 files, then Prometheus."""
    lines = [
        "#!/bin/sh",
        "# Generated by mmstack: writes each scrape credential from the environment (the 0600 env",
        "# file) into a file only this container's user can read, then runs Prometheus without them.",
        "set -eu",
        "umask 077",
        f"rm -rf {SCRAPE_SECRETS_DIR}",
        f"mkdir -p {SCRAPE_SECRETS_DIR}",
    ]
    unset = []
    for t in targets:
        if t.auth:
            var = t.credential_var
            # printf is a shell builtin: the value is never on a command line.
            lines.append(f"printf '%s' \"${{{var}:?is not set: run inv render-env}}\" > {t.credentials_file}")
            unset += ["-u", var]
    runner = f"env {' '.join(unset)} {PROMETHEUS_BINARY}" if unset else PROMETHEUS_BINARY
    lines.append(f'exec {runner} "$@"')
    return "\n".join(lines) + "\n"


# -- alert rules -------------------------------------------------------------------------------

def alert_rules(targets: list[ScrapeTarget]) -> dict[str, Any]:
    by_exporter = {t.exporter: t for t in targets if t.exporter}
    groups: list[dict[str, Any]] = [{"name": "mmstack-targets", "rules": [{
        "alert": "TargetDown",
        "expr": "up == 0",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.job }} ({{ $labels.instance }}) is down",
            "description": "Prometheus could not scrape {{ $labels.job }} for 5 minutes: the service "
                           "is stopped or unhealthy, or its metrics endpoint refuses the scrape.",
        },
    }]}]
    vllm = by_exporter.get("vllm")
    if vllm:
        job = vllm.job
        groups.append({"name": "mmstack-vllm", "rules": [
            {"alert": "VLLMNotServing",
             "expr": f'absent(up{{job="{job}"}} == 1)',
             "for": "5m",
             "labels": {"severity": "critical"},
             "annotations": {
                 "summary": "vLLM is not serving",
                 "description": "vLLM's metrics endpoint has not answered for 5 minutes: the model "
                                "server is down or still loading, so every model request fails."}},
            {"alert": "VLLMStalled",
             "expr": f'sum by (model_name) (vllm:num_requests_waiting{{job="{job}"}}) > 0 and '
                     f'sum by (model_name) (rate(vllm:generation_tokens_total{{job="{job}"}}[5m])) == 0',
             "for": "5m",
             "labels": {"severity": "critical"},
             "annotations": {
                 "summary": "vLLM has waiting requests but generates no tokens ({{ $labels.model_name }})",
                 "description": "Requests are queued and no token was generated for 5 minutes."}},
            {"alert": "VLLMKVCacheFull",
             "expr": f'max by (model_name) (vllm:kv_cache_usage_perc{{job="{job}"}}) > {KV_CACHE_FULL}',
             "for": "10m",
             "labels": {"severity": "warning"},
             "annotations": {
                 "summary": f"vLLM's KV cache is over {KV_CACHE_FULL:.0%} full "
                            "({{ $labels.model_name }})",
                 "description": "Requests are being queued or preempted for lack of KV cache: "
                                "lower --max-model-len or give vLLM more GPU memory."}},
        ]})
    dcgm = by_exporter.get("dcgm")
    if dcgm:
        groups.append({"name": "mmstack-gpu", "rules": [
            {"alert": "GPUMemoryExhausted",
             "expr": f'DCGM_FI_DEV_FB_USED{{job="{dcgm.job}"}} / (DCGM_FI_DEV_FB_USED{{job="{dcgm.job}"}} '
                     f'+ DCGM_FI_DEV_FB_FREE{{job="{dcgm.job}"}}) > {GPU_MEMORY_EXHAUSTED}',
             "for": "5m",
             "labels": {"severity": "critical"},
             "annotations": {
                 "summary": "GPU {{ $labels.gpu }} ({{ $labels.UUID }}) memory is over "
                            f"{GPU_MEMORY_EXHAUSTED:.0%} used",
                 "description": "Something besides vLLM's preallocated share is using the card: "
                                "vLLM or the worker may fail with out-of-memory errors."}},
        ]})
    node = by_exporter.get("node")
    if node:
        sel = f'job="{node.job}",fstype!~"tmpfs|overlay|squashfs"'
        groups.append({"name": "mmstack-disk", "rules": [
            {"alert": "DiskNearlyFull",
             "expr": f"node_filesystem_avail_bytes{{{sel}}} / node_filesystem_size_bytes{{{sel}}} "
                     f"< {DISK_NEARLY_FULL}",
             "for": "10m",
             "labels": {"severity": "critical"},
             "annotations": {
                 "summary": "Disk under {{ $labels.mountpoint }} is over "
                            f"{1 - DISK_NEARLY_FULL:.0%} full",
                 "description": "The filesystem holding the stack's Docker volumes has less than "
                                "{:.0%} free: databases, model downloads and metrics will fail "
                                "to write.".format(DISK_NEARLY_FULL)}},
            {"alert": "DiskFillingUp",
             "expr": f"predict_linear(node_filesystem_avail_bytes{{{sel}}}[6h], 24 * 3600) < 0",
             "for": "1h",
             "labels": {"severity": "warning"},
             "annotations": {
                 "summary": "Disk under {{ $labels.mountpoint }} fills up within a day at this rate",
                 "description": "Free space has fallen steadily for 6 hours."}},
        ]})
    return {"groups": groups}


# -- the files ---------------------------------------------------------------------------------

def render_monitoring_configs(stack: Stack, env: str, wanted: set[str]) -> list[RenderedConfig]:
    if not wanted & MONITORING_FILES:
        return []
    specs = stack.resolved_services(env)
    targets = scrape_targets(stack, env, specs)
    out: list[RenderedConfig] = []

    def dump(doc: dict[str, Any]) -> str:
        return yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)

    if "prometheus.yml" in wanted:
        out.append(RenderedConfig(f"{config_dir(env)}/prometheus.yml",
                                  dump(prometheus_config(stack, env, targets, specs))))
    if "prometheus-rules.yml" in wanted:
        out.append(RenderedConfig(f"{config_dir(env)}/prometheus-rules.yml", dump(alert_rules(targets))))
    if "prometheus-start.sh" in wanted:
        out.append(RenderedConfig(f"{config_dir(env)}/prometheus-start.sh", start_script(targets), 0o755))
    from .dashboards import render_grafana_configs

    return out + render_grafana_configs(env, wanted, targets, specs)
