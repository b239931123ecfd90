"""How a check reaches the services: through an Invoke context's ``c.run``, on the stack's host.

A local `invoke.Context` runs on this machine, a Fabric `Connection` on the remote host; the
checks cannot tell them apart. Secrets never travel as arguments:

* `Probe.http` runs `HTTP_PROGRAM` (fixed text, in ``python3 -I -c``) on the host; the request,
  its headers (the keys) included, goes to it as JSON on standard input and the answer comes
  back as JSON on standard output.
* `Probe.exec` is ``docker exec -i CONTAINER ARGV`` with ``stdin`` on standard input (the
  programs read their password from there with ``read``).
"""

from __future__ import annotations

import io
import json
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

# Runs on the stack's host with nothing but the standard library.
HTTP_PROGRAM = r"""
import json, sys, urllib.request, urllib.error
q = json.load(sys.stdin)
data = q["body"].encode() if q.get("body") is not None else None
req = urllib.request.Request(q["url"], data=data, headers=q.get("headers") or {}, method=q["method"])
out = {}
try:
    with urllib.request.urlopen(req, timeout=q.get("timeout", 30)) as resp:
        out = {"status": resp.status, "body": resp.read(1 << 20).decode("utf-8", "replace")}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "body": e.read(1 << 20).decode("utf-8", "replace")}
except Exception as e:
    out = {"status": 0, "error": str(getattr(e, "reason", e)) or type(e).__name__}
json.dump(out, sys.stdout)
"""


@dataclass
class Reply:
    status: int               # 0: no HTTP answer (see ``error``)
    body: str = ""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        text = " ".join(self.body.split())
        return f"HTTP {self.status}" + (f": {text[:200]}" if text else "")


@dataclass
class Done:
    exited: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


@dataclass
class Probe:
    c: Any
    timeout: float = 30.0
    python: str = field(default="")

    def __post_init__(self) -> None:
        if not self.python:
            # A Fabric Connection (it has a .host) runs on the remote host's python3.
            self.python = "python3" if hasattr(self.c, "host") else sys.executable

    def run(self, command: str, stdin: str = "", timeout: float | None = None) -> Done:
        from invoke.exceptions import CommandTimedOut

        try:
            r = self.c.run(command, hide=True, warn=True, in_stream=io.StringIO(stdin), pty=False,
                           timeout=timeout or self.timeout + 15)
        except CommandTimedOut:
            return Done(124, "", f"timed out after {timeout or self.timeout + 15:.0f}s")
        return Done(r.exited, r.stdout or "", r.stderr or "")

    def http(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             json_body: Any = None, body: str | None = None, timeout: float | None = None) -> Reply:
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            hdrs.setdefault("content-type", "application/json")
        request = {"method": method, "url": url, "headers": hdrs, "body": body,
                   "timeout": timeout or self.timeout}
        done = self.run(f"{shlex.quote(self.python)} -I -c {shlex.quote(HTTP_PROGRAM)}", json.dumps(request),
                        timeout=(timeout or self.timeout) + 15)
        try:
            out = json.loads(done.stdout)
        except ValueError:
            return Reply(0, error=f"the HTTP probe failed on the host (exit {done.exited}): "
                                  f"{done.stderr.strip()[-300:] or 'no output'}")
        return Reply(int(out.get("status", 0)), out.get("body", ""), out.get("error", ""))

    def exec(self, container: str, argv: list[str], stdin: str = "") -> Done:
        return self.run(f"docker exec -i {shlex.quote(container)} " + " ".join(shlex.quote(a) for a in argv), stdin)

    def docker(self, argv: list[str]) -> Done:
        return self.run("docker " + " ".join(shlex.quote(a) for a in argv))
