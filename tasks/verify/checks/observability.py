"""Monitoring that sees the stack: Prometheus's targets are all up, Grafana's datasources pass
their health test, Elasticsearch is green or yellow and holds recent log lines of this stack.

Written against the APIs of the pinned releases: Prometheus v3 ``GET /api/v1/targets``
(``activeTargets[].health`` up/down/unknown, ``lastError``, ``scrapeUrl``); Grafana 13
``GET /api/datasources`` and ``GET /api/datasources/uid/UID/health`` (``status`` OK/ERROR) with
the admin's basic auth; Elasticsearch 9 ``GET /_cluster/health`` and ``POST INDICES/_count``
as the ``elastic`` user. Where the logs land is ``mmstack.verify.log_indices`` (index patterns).
"""

from __future__ import annotations

import base64
from typing import Any

from ..registry import check
from .common import fail, restart_fix, unreachable_fix

PROMETHEUS_PORT, GRAFANA_PORT, ELASTICSEARCH_PORT = 9090, 3000, 9200
DEFAULT_LOG_INDICES = "logs-*,logstash-*"
RECENT = "now-15m"


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@check("prometheus", "targets", "Prometheus scrapes every target")
def prometheus_targets(t: Any, p: Any) -> str:
    r = p.http("GET", t.url("prometheus", PROMETHEUS_PORT) + "/api/v1/targets?state=active")
    doc = r.json() or {}
    if r.status != 200 or doc.get("status") != "success":
        fail("Prometheus does not list its targets", expected='HTTP 200 {"status": "success"}', got=r.describe(),
             fix=unreachable_fix(t, "prometheus"))
    active = (doc.get("data") or {}).get("activeTargets") or []
    jobs = sorted({(tg.get("labels") or {}).get("job", "?") for tg in active})
    others = [tg for tg in active if (tg.get("labels") or {}).get("job") != "prometheus"]
    if not others:
        fail("Prometheus scrapes nothing of the stack", expected="targets for the stack's services",
             got=f"jobs: {jobs or 'none'}",
             fix=f"Prometheus's scrape configuration (config/{t.env}/) must list the services: "
                 f"`inv setup --env {t.env}`, then `inv restart --service prometheus`")
    down = [tg for tg in active if tg.get("health") != "up"]
    if down:
        got = "; ".join(f"{(tg.get('labels') or {}).get('job')} {tg.get('scrapeUrl')}: {tg.get('health')}"
                        + (f" ({tg.get('lastError')})" if tg.get("lastError") else "") for tg in down)
        first = (down[0].get("labels") or {}).get("job", "")
        fail(f"{len(down)} of {len(active)} targets are not up", expected="every target up", got=got,
             fix=f"is the scraped service running and serving metrics? `inv status`, `inv logs --service {first}`")
    return f"{len(active)} targets up ({', '.join(jobs)})"


@check("grafana", "datasources", "Grafana's datasources pass their health test")
def grafana_datasources(t: Any, p: Any) -> str:
    base = t.url("grafana", GRAFANA_PORT)
    auth = basic(t.secrets["grafana_admin_user"], t.secrets["grafana_admin_password"])
    r = p.http("GET", base + "/api/datasources", headers=auth)
    if r.status == 401:
        fail("Grafana refuses the admin", expected="HTTP 200 as the stored admin", got=r.describe(),
             fix=restart_fix(t, "grafana", "GF_SECURITY_ADMIN_PASSWORD only sets the password on the first "
                                           "start; `grafana cli admin reset-admin-password` sets it later"))
    if r.status != 200 or not isinstance(r.json(), list):
        fail("Grafana does not list its datasources", expected="HTTP 200 with a list", got=r.describe(),
             fix=unreachable_fix(t, "grafana"))
    sources = r.json()
    if not sources:
        fail("Grafana has no datasource", expected="at least one provisioned datasource", got="none",
             fix=f"Grafana's provisioning (config/{t.env}/) must declare Prometheus: `inv setup --env {t.env}`, "
                 "then `inv restart --service grafana`")
    bad = []
    for ds in sources:
        h = p.http("GET", f"{base}/api/datasources/uid/{ds.get('uid')}/health", headers=auth)
        body = h.json() or {}
        if h.status != 200 or body.get("status") != "OK":
            bad.append(f"{ds.get('name')} ({ds.get('type')}): {body.get('message') or h.describe()}")
    if bad:
        fail(f"{len(bad)} of {len(sources)} datasources fail their health test", expected="status OK",
             got="; ".join(bad), fix="is the datasource's service running at the URL Grafana was given? `inv status`")
    return f"{len(sources)} datasource(s) OK"


def _es(t: Any) -> tuple[str, dict[str, str]]:
    return t.url("elasticsearch", ELASTICSEARCH_PORT), basic("elastic", t.secrets["elastic_password"])


@check("elasticsearch", "health", "Elasticsearch is green or yellow")
def elasticsearch_health(t: Any, p: Any) -> str:
    base, auth = _es(t)
    r = p.http("GET", base + "/_cluster/health", headers=auth)
    if r.status == 401:
        fail("Elasticsearch refuses the elastic user", expected="HTTP 200 as elastic", got=r.describe(),
             fix="ELASTIC_PASSWORD sets the password only on the first start; reset it with "
                 "`elasticsearch-reset-password -u elastic` in the container, or wipe its volume")
    status = (r.json() or {}).get("status")
    if r.status != 200 or status not in ("green", "yellow"):
        fail("Elasticsearch's cluster is not usable", expected="status green or yellow",
             got=f"status {status}" if status else r.describe(),
             fix="see `inv logs --service elasticsearch` (disk watermarks, heap)")
    return f"cluster {status}"


@check("elasticsearch", "logs", "Elasticsearch holds recent log lines of this stack", needs=("logstash",))
def elasticsearch_logs(t: Any, p: Any) -> str:
    base, auth = _es(t)
    indices = str(t.options.get("log_indices") or DEFAULT_LOG_INDICES)
    query = {"query": {"bool": {"filter": [{"range": {"@timestamp": {"gte": RECENT}}},
                                           {"query_string": {"query": f'"{t.project}"'}}]}}}
    r = p.http("POST", f"{base}/{indices}/_count?ignore_unavailable=true&allow_no_indices=true",
               headers=auth, json_body=query)
    if r.status != 200:
        fail("Elasticsearch cannot count the log lines", expected="HTTP 200", got=r.describe(),
             fix=unreachable_fix(t, "elasticsearch"))
    n = int((r.json() or {}).get("count") or 0)
    if n == 0:
        fail("no recent log line of this stack", expected=f"log lines mentioning {t.project} since {RECENT} in {indices}",
             got="0", fix="Logstash ships the containers' logs: `inv logs --service logstash`; "
                          "set mmstack.verify.log_indices if they go to other indices")
    return f"{n} log lines since {RECENT}"
