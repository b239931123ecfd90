"""Prometheus's HTTP API (v3), the part mmstack's verify reads, as a stand-in on 9090.

GET /api/v1/targets answers {"status": "success", "data": {"activeTargets": [...],
"droppedTargets": []}} with one target per STANDIN_TARGETS entry (``job=URL``, space separated):
the stand-in scrapes each URL every 2 s as Prometheus does, and reports ``health`` "up", or
"down" with ``lastError`` (e.g. "connection refused"), ``scrapeUrl``, ``lastScrape``,
``labels`` {job, instance}. GET/POST /api/v1/query answers a scalar (what Grafana's datasource
health test asks). GET /-/healthy answers "Prometheus Server is Healthy."."""

import datetime
import os
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(__file__))
from common import Handler, serve  # noqa: E402

TARGETS = [t.split("=", 1) for t in os.environ.get("STANDIN_TARGETS", "").split()]
STATE: dict = {}


def scrape_loop():
    while True:
        for job, url in TARGETS:
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    resp.read()
                    error, health = "", "up"
            except Exception as exc:  # noqa: BLE001
                reason = getattr(exc, "reason", exc)
                error, health = f'Get "{url}": {reason}', "down"
            STATE[(job, url)] = {"health": health, "lastError": error,
                                 "lastScrape": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                                 "lastScrapeDuration": time.monotonic() - t0}
        time.sleep(2)


def targets(h, m, body):
    active = []
    for job, url in TARGETS:
        st = STATE.get((job, url), {"health": "unknown", "lastError": "", "lastScrape": "0001-01-01T00:00:00Z",
                                    "lastScrapeDuration": 0})
        active.append({"discoveredLabels": {"__address__": urlsplit(url).netloc, "job": job},
                       "labels": {"instance": urlsplit(url).netloc, "job": job}, "scrapePool": job,
                       "scrapeUrl": url, "globalUrl": url, "scrapeInterval": "15s", "scrapeTimeout": "10s",
                       **st})
    return 200, {"status": "success", "data": {"activeTargets": active, "droppedTargets": [],
                                               "droppedTargetCounts": {}}}


class Prometheus(Handler):
    routes = [("GET", r"/api/v1/targets", targets),
              ("GET", r"/-/healthy", lambda h, m, b: (200, b"Prometheus Server is Healthy.\n", {"content-type": "text/plain"})),
              ("GET", r"/api/v1/query", lambda h, m, b: (200, {"status": "success", "data": {
                  "resultType": "scalar", "result": [time.time(), "2"]}})),
              ("POST", r"/api/v1/query", lambda h, m, b: (200, {"status": "success", "data": {
                  "resultType": "scalar", "result": [time.time(), "2"]}})),
              ("GET", r"/metrics", lambda h, m, b: (200, b"up 1\n", {"content-type": "text/plain"}))]


if __name__ == "__main__":
    threading.Thread(target=scrape_loop, daemon=True).start()
    serve(Prometheus, [9090])
