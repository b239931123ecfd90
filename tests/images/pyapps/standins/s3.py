"""MinIO's S3 API (path-style, Signature Version 4), the part mmstack's verify uses, as a stand-in.

Every request must carry an AWS SigV4 ``Authorization`` header; the signature is checked with
botocore's own signer (an implementation independent of mmstack's), and so is the payload hash
(``x-amz-content-sha256``). Errors are S3's XML: InvalidAccessKeyId, SignatureDoesNotMatch,
XAmzContentSHA256Mismatch, AccessDenied (a key used outside the buckets its policy allows),
NoSuchBucket, NoSuchKey. Objects: PUT/GET/HEAD/DELETE /BUCKET/KEY (DELETE answers 204), and
GET /BUCKET?list-type=2 lists keys. GET /minio/health/live answers 200 without a key.

Root credentials are MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (root may use every bucket). Buckets
and per-application users are added as minio-init adds them with ``mc mb`` and ``mc admin user
add`` + a policy: here with ``python s3.py add-user`` reading {"access_key", "secret_key",
"buckets"} on stdin (the keys never on a command line).
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import Handler, serve  # noqa: E402

USERS_FILE = "/tmp/s3-users.json"
OBJECTS: dict = {}


def users():
    out = {}
    if os.environ.get("MINIO_ROOT_USER"):
        out[os.environ["MINIO_ROOT_USER"]] = {"secret_key": os.environ.get("MINIO_ROOT_PASSWORD", ""), "buckets": None}
    try:
        with open(USERS_FILE) as f:
            out.update(json.load(f))
    except FileNotFoundError:
        pass
    return out


def buckets():
    names = set()
    for u in users().values():
        names.update(u["buckets"] or [])
    return names


def error(status, code, message):
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
            f"</Message></Error>").encode()
    return status, body, {"content-type": "application/xml"}


def check_signature(h):
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = h.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return None, error(403, "AccessDenied", "Access Denied.")
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access, date, region, service, _ = parts["Credential"].split("/")
    user = users().get(access)
    if user is None:
        return None, error(403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.")
    declared = h.headers.get("x-amz-content-sha256", "")
    if declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(h.raw_body).hexdigest():
        return None, error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    signed = parts["SignedHeaders"].split(";")
    headers = {k: h.headers[k] for k in signed if k in h.headers}
    url = f"http://{h.headers['host']}{h.path}"
    request = AWSRequest(method=h.command, url=url, headers=headers, data=h.raw_body)
    request.context["timestamp"] = h.headers.get("x-amz-date", "")
    signer = S3SigV4Auth(Credentials(access, user["secret_key"]), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != parts["Signature"]:
        return None, error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
    return user, None


def objects(h, m, body):
    user, failure = check_signature(h)
    if failure:
        return failure
    bucket, key = m.group(1), m.group(2)
    if bucket not in buckets():
        return error(404, "NoSuchBucket", "The specified bucket does not exist")
    if user["buckets"] is not None and bucket not in user["buckets"]:
        return error(403, "AccessDenied", "Access Denied.")
    store = OBJECTS.setdefault(bucket, {})
    if h.command == "PUT":
        store[key] = h.raw_body
        return 200, b"", {"etag": '"%s"' % hashlib.md5(h.raw_body).hexdigest()}
    if h.command in ("GET", "HEAD"):
        if key not in store:
            return error(404, "NoSuchKey", "The specified key does not exist.")
        return 200, store[key]
    store.pop(key, None)
    return 204, b""


def live(h, m, body):
    return 200, b""


class S3(Handler):
    json_body = False
    routes = [("GET", r"/minio/health/live", live)] + [
        (method, r"/([^/]+)/(.+)", objects) for method in ("PUT", "GET", "HEAD", "DELETE")]

    def reply(self, status, body, headers=None):
        if status == 204:
            self.send_response(204)
            self.end_headers()
            return
        super().reply(status, body, headers)


if __name__ == "__main__":
    if sys.argv[1:2] == ["add-user"]:
        new = json.load(sys.stdin)
        try:
            with open(USERS_FILE) as f:
                known = json.load(f)
        except FileNotFoundError:
            known = {}
        known[new["access_key"]] = {"secret_key": new["secret_key"], "buckets": list(new["buckets"])}
        fd = os.open(USERS_FILE + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(known, f)
        os.replace(USERS_FILE + ".tmp", USERS_FILE)
    else:
        serve(S3, [9000, 9001])
