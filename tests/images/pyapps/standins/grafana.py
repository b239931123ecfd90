"""Grafana's HTTP API (13.x), the part mmstack's verify uses, as a stand-in on 3000.

Basic auth with GF_SECURITY_ADMIN_USER / GF_SECURITY_ADMIN_PASSWORD (401 {"message":
"Invalid username or password"} otherwise). GET /api/datasources lists the datasources given in
STANDIN_DATASOURCES (``name|type|url``, space separated) with Grafana's fields (id, uid, name,
type, url, access, isDefault); GET /api/datasources/uid/UID/health runs the datasource's own
test as Grafana does for Prometheus (a query to URL/api/v1/query): 200 {"status": "OK",
"message": "Successfully queried the Prometheus API."}, else 400 {"status": "ERROR", "message":
...}. GET /api/health answers {"database": "ok", "version": "13.2.3"} without auth."""

import base64
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import Handler, serve  # noqa: E402

SOURCES = []
for i, entry in enumerate(os.environ.get("STANDIN_DATASOURCES", "").split()):
    name, kind, url = entry.split("|")
    SOURCES.append({"id": i + 1, "uid": f"ds{i + 1}", "orgId": 1, "name": name, "type": kind, "url": url,
                    "access": "proxy", "isDefault": i == 0, "readOnly": True, "basicAuth": False})


def authed(h):
    want = f"{os.environ.get('GF_SECURITY_ADMIN_USER', 'admin')}:{os.environ.get('GF_SECURITY_ADMIN_PASSWORD', 'admin')}"
    return h.headers.get("authorization", "") == "Basic " + base64.b64encode(want.encode()).decode()


def guard(func):
    def wrapped(h, m, body):
        if not authed(h):
            return 401, {"message": "Invalid username or password"}
        return func(h, m, body)
    return wrapped


@guard
def listing(h, m, body):
    return 200, SOURCES


@guard
def health(h, m, body):
    ds = next((d for d in SOURCES if d["uid"] == m.group(1)), None)
    if ds is None:
        return 404, {"message": "Data source not found"}
    try:
        with urllib.request.urlopen(ds["url"].rstrip("/") + "/api/v1/query?query=1%2B1", timeout=5) as resp:
            resp.read()
        return 200, {"status": "OK", "message": "Successfully queried the Prometheus API."}
    except Exception as exc:  # noqa: BLE001
        return 400, {"status": "ERROR", "message": f"Post \"{ds['url']}/api/v1/query\": {getattr(exc, 'reason', exc)}"}


class Grafana(Handler):
    routes = [("GET", r"/api/health", lambda h, m, b: (200, {"database": "ok", "version": "13.2.3"})),
              ("GET", r"/api/datasources", listing),
              ("GET", r"/api/datasources/uid/([^/]+)/health", health)]


if __name__ == "__main__":
    serve(Grafana, [3000])
