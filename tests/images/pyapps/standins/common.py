"""Shared plumbing of the stand-ins: a threaded JSON HTTP server on every port given.

Each stand-in subclasses `Handler`, sets ``routes`` [(method, regex, function)] and calls `serve`.
A function gets (handler, match, body) and returns (status, json-able body[, headers]). GET
/health answers 200 on every port (the test healthchecks use busybox wget).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    routes: list[tuple[str, str, Any]] = []
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stdout.flush()

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.raw_body = raw
        path = self.path.split("?", 1)[0]
        if method == "GET" and path == "/health":
            return self.reply(200, {"status": "ok"})
        for m, pattern, func in self.routes:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                try:
                    body = json.loads(raw) if raw and self.json_body else raw
                except ValueError:
                    return self.reply(400, {"error": "invalid JSON"})
                out = func(self, match, body)
                return self.reply(*out)
        self.reply(404, {"error": f"no route {method} {path}"})

    json_body = True

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        ctype = (headers or {}).pop("content-type", None) if headers else None
        self.send_header("content-type", ctype or ("application/octet-stream" if isinstance(body, bytes) else "application/json"))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")


def serve(handler: type[Handler], ports: list[int]) -> None:
    servers = [ThreadingHTTPServer(("0.0.0.0", p), handler) for p in ports]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"standin {handler.__name__} on ports {ports}", flush=True)
    servers[0].serve_forever()
