"""Qdrant's REST API (v1.x), the part mmstack's verify uses, as a stand-in on 6333 (and 6334).

The key is QDRANT__SERVICE__API_KEY, checked as Qdrant does: header ``api-key`` or
``Authorization: Bearer``; without it every route but the health ones answers 401 with the text
"Must provide an API key or an Authorization bearer token". Collections: PUT /collections/NAME
{"vectors": {"size", "distance"}} (400 when it exists), GET /collections, PUT
/collections/NAME/points?wait=true {"points": [...]} (400 on a wrong vector size),
POST /collections/NAME/points/search {"vector", "limit"} (cosine), DELETE /collections/NAME.
Answers are Qdrant's envelope {"result", "status": "ok", "time"}."""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import Handler, serve  # noqa: E402

KEY = os.environ.get("QDRANT__SERVICE__API_KEY")
COLLECTIONS: dict = {}


def ok(result):
    return 200, {"result": result, "status": "ok", "time": 0.0001}


def err(status, text):
    return status, {"status": {"error": text}, "time": 0.0}


def authed(h):
    if not KEY:
        return True
    auth = h.headers.get("authorization", "")
    return h.headers.get("api-key") == KEY or auth == f"Bearer {KEY}"


def guard(func):
    def wrapped(h, m, body):
        if not authed(h):
            return 401, b"Must provide an API key or an Authorization bearer token", {"content-type": "text/plain"}
        return func(h, m, body)
    return wrapped


@guard
def create(h, m, body):
    name = m.group(1)
    if name in COLLECTIONS:
        return err(409, f"Wrong input: Collection `{name}` already exists!")
    vectors = (body or {}).get("vectors") or {}
    if "size" not in vectors or "distance" not in vectors:
        return err(400, "Wrong input: vectors config needs size and distance")
    COLLECTIONS[name] = {"size": int(vectors["size"]), "points": {}}
    return ok(True)


@guard
def listing(h, m, body):
    return ok({"collections": [{"name": n} for n in COLLECTIONS]})


@guard
def upsert(h, m, body):
    col = COLLECTIONS.get(m.group(1))
    if col is None:
        return err(404, f"Not found: Collection `{m.group(1)}` doesn't exist!")
    for p in (body or {}).get("points") or []:
        if len(p["vector"]) != col["size"]:
            return err(400, f"Wrong input: Vector dimension error: expected dim: {col['size']}, got {len(p['vector'])}")
        col["points"][p["id"]] = p
    return ok({"operation_id": 1, "status": "completed"})


def cosine(a, b):
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na and nb else 0.0


@guard
def search(h, m, body):
    col = COLLECTIONS.get(m.group(1))
    if col is None:
        return err(404, f"Not found: Collection `{m.group(1)}` doesn't exist!")
    scored = sorted(({"id": p["id"], "version": 0, "score": cosine(body["vector"], p["vector"]),
                      "payload": None} for p in col["points"].values()), key=lambda r: -r["score"])
    return ok(scored[: int(body.get("limit", 10))])


@guard
def delete(h, m, body):
    return ok(COLLECTIONS.pop(m.group(1), None) is not None)


class Qdrant(Handler):
    routes = [("GET", r"/healthz", lambda h, m, b: (200, b"healthz check passed", {"content-type": "text/plain"})),
              ("GET", r"/collections", listing),
              ("PUT", r"/collections/([^/]+)", create),
              ("DELETE", r"/collections/([^/]+)", delete),
              ("PUT", r"/collections/([^/]+)/points", upsert),
              ("POST", r"/collections/([^/]+)/points/search", search)]


if __name__ == "__main__":
    serve(Qdrant, [6333, 6334])
