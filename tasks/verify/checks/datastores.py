"""The data stores, each reached as its consumers reach it and left as it was found:

* PostgreSQL: each consumer's role logs in to its own database with the password the store
  holds (psql in the postgres container, over the network address, where the official image asks
  for a password; 127.0.0.1 it trusts);
* Redis: PONG with the password, NOAUTH without it (redis-cli in the redis container);
* Qdrant: a throwaway collection is created, written, searched and deleted with the API key;
* MinIO: in each declared bucket, with that application's own access key, an object is put,
  read back and deleted (S3 Signature Version 4, signed here; only the signature travels).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets as pysecrets
from typing import Any
from urllib.parse import quote, urlsplit

from ...schema.configfiles import databases, object_store_users
from ..registry import check
from .common import fail, restart_fix, unreachable_fix

PSQL_LOGIN = ('IFS= read -r PGPASSWORD; export PGPASSWORD; export PGCONNECT_TIMEOUT=5; '
              'exec psql -h "$1" -U "$2" -d "$2" -v ON_ERROR_STOP=1 -tAXc '
              '"SELECT current_user || chr(64) || current_database()"')
REDIS_PING = ('IFS= read -r REDISCLI_AUTH; export REDISCLI_AUTH; redis-cli -h "$1" ping 2>&1; echo "--"; '
              'env -u REDISCLI_AUTH redis-cli -h "$1" ping 2>&1')
QDRANT_PORT, MINIO_PORT = 6333, 9000


def consumers(t: Any) -> list[str]:
    return sorted(databases(t.stack, t.env))


@check("postgres", "login", "the consumer logs in to its own database", instances=consumers)
def postgres_login(t: Any, p: Any, consumer: str) -> str:
    db = databases(t.stack, t.env)[consumer]
    name = db["name"]  # postgres-init names the role after its database
    done = p.exec(t.container("postgres"), ["sh", "-c", PSQL_LOGIN, "sh", "postgres", name],
                  stdin=t.secrets[db["password"]] + "\n")
    got = done.stdout.strip()
    if done.exited != 0 or got != f"{name}@{name}":
        why = done.output.splitlines()[-1] if done.output else f"exit {done.exited}"
        fix = (f"the role's password in PostgreSQL is not the stored {db['password']} (changed outside "
               f"mmstack?): `inv start --env {t.env}` runs postgres-init again, which sets it from the store"
               if "password authentication failed" in why else
               f"postgres-init creates the role and database at every start: `inv start --env {t.env}`, "
               f"then `inv logs --service postgres-init`")
        fail(f"{consumer} cannot log in to database {name}", expected=f"{name}@{name}", got=why, fix=fix)
    return got


@check("redis", "auth", "Redis answers with its password, and only with it")
def redis_auth(t: Any, p: Any) -> str:
    done = p.exec(t.container("redis"), ["sh", "-c", REDIS_PING, "sh", "redis"],
                  stdin=t.secrets["redis_password"] + "\n")
    with_auth, _, without = done.stdout.partition("--")
    if with_auth.strip() != "PONG":
        fail("Redis refuses the stored password", expected="PONG", got=with_auth.strip() or done.output,
             fix=restart_fix(t, "redis", "REDIS_PASSWORD differs from the store"))
    if "NOAUTH" not in without:
        fail("Redis answers without a password", expected="NOAUTH without the password", got=without.strip(),
             fix="redis-server must run with requirepass (the schema's redis command): "
                 f"`inv setup --env {t.env}`, then `inv restart --service redis`")
    return "PONG with the password, NOAUTH without"


@check("qdrant", "vectors", "a Qdrant collection is created, written, searched and deleted")
def qdrant_vectors(t: Any, p: Any) -> str:
    base = t.url("qdrant", QDRANT_PORT)
    key = {"api-key": t.secrets["qdrant_api_key"]}
    name = f"mmstack-verify-{pysecrets.token_hex(4)}"
    r = p.http("PUT", f"{base}/collections/{name}", headers=key,
               json_body={"vectors": {"size": 4, "distance": "Cosine"}})
    if r.status in (401, 403):
        fail("Qdrant refuses the API key", expected="HTTP 200 with QDRANT_API_KEY", got=r.describe(),
             fix=restart_fix(t, "qdrant", "QDRANT__SERVICE__API_KEY differs from the store"))
    if r.status != 200:
        fail("Qdrant cannot create a collection", expected="HTTP 200", got=r.describe(), fix=unreachable_fix(t, "qdrant"))
    try:
        r = p.http("PUT", f"{base}/collections/{name}/points?wait=true", headers=key,
                   json_body={"points": [{"id": 1, "vector": [0.1, 0.9, 0.1, 0.1], "payload": {"probe": "a"}},
                                         {"id": 2, "vector": [0.9, 0.1, 0.1, 0.1], "payload": {"probe": "b"}}]})
        if r.status != 200:
            fail("Qdrant does not take a write", expected="HTTP 200", got=r.describe(), fix="see `inv logs --service qdrant`")
        r = p.http("POST", f"{base}/collections/{name}/points/search", headers=key,
                   json_body={"vector": [0.85, 0.15, 0.1, 0.1], "limit": 1})
        hits = (r.json() or {}).get("result") or [] if r.status == 200 else []
        if not hits or hits[0].get("id") != 2:
            fail("Qdrant's search does not find the point written", expected="point 2 first",
                 got=r.describe(), fix="see `inv logs --service qdrant`")
    finally:
        r = p.http("DELETE", f"{base}/collections/{name}", headers=key)
    if r.status != 200:
        fail("Qdrant cannot delete the probe's collection", expected="HTTP 200", got=r.describe(),
             fix=f"delete collection {name} by hand; see `inv logs --service qdrant`")
    return "create, upsert, search, delete"


def buckets(t: Any) -> list[str]:
    return [f"{svc}:{b}" for svc, u in sorted(object_store_users(t.stack, t.env).items()) for b in u["buckets"]]


@check("minio", "objects", "an object is put, read and deleted with the application's key", instances=buckets)
def minio_objects(t: Any, p: Any, instance: str) -> str:
    svc, bucket = instance.split(":", 1)
    user = object_store_users(t.stack, t.env)[svc]
    access, secret = t.secrets[user["access_key"]], t.secrets[user["secret_key"]]
    url = f"{t.url('minio', MINIO_PORT)}/{bucket}/mmstack-verify-{pysecrets.token_hex(4)}.txt"
    body = f"mmstack verify {pysecrets.token_hex(8)}"

    def call(method: str, data: str = "") -> Any:
        return p.http(method, url, body=data if method == "PUT" else None,
                      headers=sign_v4(method, url, data.encode(), access, secret))

    r = call("PUT", body)
    if r.status != 200:
        code = _s3_code(r.body)
        fix = {"InvalidAccessKeyId": f"minio-init creates {svc}'s key at every start: `inv start --env {t.env}`, "
                                     f"then `inv logs --service minio-init`",
               "SignatureDoesNotMatch": f"{svc}'s secret key in MinIO is not the stored one: `inv start --env {t.env}` "
                                        "runs minio-init again, which sets it from the store",
               "AccessDenied": f"{svc}'s policy must allow {bucket}: `inv start --env {t.env}` (minio-init)",
               "NoSuchBucket": f"minio-init creates {bucket}: `inv start --env {t.env}`"}.get(code, unreachable_fix(t, "minio"))
        fail(f"{svc} cannot write to {bucket}", expected="HTTP 200 for PUT", got=r.describe(), fix=fix)
    try:
        r = call("GET")
        if r.status != 200 or r.body != body:
            fail(f"{svc} cannot read back from {bucket}", expected="the object just written", got=r.describe(),
                 fix="see `inv logs --service minio`")
    finally:
        r = call("DELETE")
    if r.status not in (200, 204):
        fail(f"{svc} cannot delete from {bucket}", expected="HTTP 204 for DELETE", got=r.describe(),
             fix=f"{svc}'s policy must allow s3:DeleteObject on {bucket}; delete the probe object by hand")
    return f"put, get, delete in {bucket}"


def _s3_code(body: str) -> str:
    start = body.find("<Code>")
    return body[start + 6: body.find("</Code>")] if start >= 0 else ""


def sign_v4(method: str, url: str, payload: bytes, access: str, secret: str, region: str = "us-east-1",
            now: datetime.datetime | None = None) -> dict[str, str]:
    """The headers of an AWS Signature Version 4 request to S3 (path-style, no query string)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    parts = urlsplit(url)
    payload_hash = hashlib.sha256(payload).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, quote(parts.path or "/", safe="/~"), parts.query,
                           "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"x-amz-content-sha256": payload_hash, "x-amz-date": amz_date,
            "authorization": f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, "
                             f"Signature={signature}"}
