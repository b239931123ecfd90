"""Elasticsearch's REST API (9.x), the part mmstack's verify uses, as a stand-in on 9200.

Basic auth as ``elastic`` with ELASTIC_PASSWORD (401 with ES's security_exception otherwise).
GET /_cluster/health answers {"cluster_name", "status": STANDIN_STATUS or "yellow",
"number_of_nodes": 1, ...}. Documents: POST /INDEX/_doc stores one (201 {"result": "created"}).
POST /PATTERN/_count with a bool filter of a ``range`` on @timestamp (``gte: now-Nm``) and a
``query_string`` query counts the stored documents whose @timestamp is that recent and whose
string fields contain the query's words; PATTERN is a comma list of index globs."""

import base64
import datetime
import fnmatch
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import Handler, serve  # noqa: E402

DOCS: list = []


def authed(h):
    want = f"elastic:{os.environ.get('ELASTIC_PASSWORD', '')}"
    return h.headers.get("authorization", "") == "Basic " + base64.b64encode(want.encode()).decode()


def guard(func):
    def wrapped(h, m, body):
        if not authed(h):
            return 401, {"error": {"type": "security_exception", "reason": "unable to authenticate user [elastic] for REST request"}, "status": 401}
        return func(h, m, body)
    return wrapped


@guard
def health(h, m, body):
    return 200, {"cluster_name": "docker-cluster", "status": os.environ.get("STANDIN_STATUS", "yellow"),
                 "timed_out": False, "number_of_nodes": 1, "number_of_data_nodes": 1,
                 "active_primary_shards": 1, "active_shards": 1, "unassigned_shards": 1}


@guard
def add(h, m, body):
    DOCS.append((m.group(1), body))
    return 201, {"_index": m.group(1), "result": "created"}


def since(expr):
    now = datetime.datetime.now(datetime.timezone.utc)
    mt = re.fullmatch(r"now-(\d+)([smh])", expr)
    if not mt:
        return datetime.datetime.fromisoformat(expr.replace("Z", "+00:00"))
    n, unit = int(mt.group(1)), mt.group(2)
    return now - datetime.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours"}[unit]: n})


@guard
def count(h, m, body):
    patterns = m.group(1).split(",")
    filters = ((body or {}).get("query") or {}).get("bool", {}).get("filter", [])
    n = 0
    for index, doc in DOCS:
        if not any(fnmatch.fnmatch(index, p) for p in patterns if not p.startswith("-")):
            continue
        keep = True
        for f in filters:
            if "range" in f:
                gte = since(f["range"]["@timestamp"]["gte"])
                ts = datetime.datetime.fromisoformat(str(doc.get("@timestamp", "1970-01-01T00:00:00Z")).replace("Z", "+00:00"))
                keep = keep and ts >= gte
            if "query_string" in f:
                words = f["query_string"]["query"].strip('"').split()
                text = " ".join(str(v) for v in doc.values())
                keep = keep and all(w in text for w in words)
        n += keep
    return 200, {"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}


class Elasticsearch(Handler):
    routes = [("GET", r"/_cluster/health", health), ("POST", r"/([^/_][^/]*)/_doc", add),
              ("POST", r"/([^/]+)/_count", count), ("GET", r"/([^/]+)/_count", count)]


if __name__ == "__main__":
    serve(Elasticsearch, [9200])
