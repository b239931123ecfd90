"""Small clients the real-app tests share: a JSON HTTP call with a bearer token, and the
``KEY=value`` lines of a rendered env file."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def call(url: str, path: str, token: str | None = None, body: dict | None = None,
         timeout: float = 60) -> tuple[int, Any]:
    """``GET`` (or ``POST`` with a JSON ``body``) ``url + path``; the status and the decoded JSON
    answer (its text where it is not JSON). An HTTP error status is an answer, not an exception."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers=headers,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def env_file(*paths: Path) -> dict[str, str]:
    """The ``KEY=value`` settings of env files as Compose reads them (later files win);
    comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                out[key] = value
    return out
