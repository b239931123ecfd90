"""The pure parts of `inv verify`: which checks run where, the container fact, the GPU grant,
published addresses, and the probe (a real HTTP server; the key only in the request)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from invoke import Context

from tasks.schema.load import load_stack
from tasks.verify.checks.gpu import granted
from tasks.verify.probe import Probe
from tasks.verify.registry import REGISTRY, all_checks, plan
from tasks.verify.target import Target, parse_containers

REPO = Path(__file__).resolve().parents[2]


def by_item(planned: list[Any]) -> dict[str, Any]:
    return {p.item: p for p in planned}


def test_every_check_is_declared_by_a_service_of_the_schema() -> None:
    stack = load_stack(REPO)
    checks = all_checks()
    assert {c.service for c in checks} <= set(stack.service_names)
    assert set(REGISTRY) >= {"litellm", "vllm", "openwebui", "postgres", "redis", "qdrant", "minio",
                             "prometheus", "grafana", "elasticsearch"}
    for c in checks:
        assert set(c.needs) <= set(stack.service_names) and c.needs[0] == c.service


def test_checks_run_only_where_their_services_run() -> None:
    stack = load_stack(REPO)
    dev = stack.environment("development").services
    consumers = {"postgres": ["litellm", "n8n"], "minio": ["search-engine:documents"]}
    got = by_item(plan(all_checks(), "development", dev, set(dev),
                       lambda c: consumers.get(c.service, [])))
    # vLLM is left out in development: its checks and the chat through LiteLLM are skipped.
    assert got["litellm/chat"].skip == "vllm does not run in development"
    assert got["vllm/models"].skip == "vllm does not run in development"
    assert got["prometheus/targets"].skip == "prometheus does not run in development"
    assert got["litellm/models"].skip is None and got["openwebui/models"].skip is None
    # One check per consumer and per bucket.
    assert got["postgres/login litellm"].skip is None and got["postgres/login n8n"].instance == "n8n"
    assert "minio/objects search-engine:documents" in got


def test_a_service_of_the_environment_that_is_not_running_is_named() -> None:
    stack = load_stack(REPO)
    dev = stack.environment("development").services
    got = by_item(plan(all_checks(), "development", dev, set(dev) - {"litellm"}, lambda c: []))
    assert got["openwebui/models"].missing == ("litellm",)
    assert got["openwebui/admin"].missing == ()


def test_containers_fact() -> None:
    out = "postgres\tp-postgres-1\trunning\npostgres-init\tp-postgres-init-1\texited\n\tstray\trunning\n"
    assert parse_containers(out) == {"postgres": ("p-postgres-1", "running"),
                                     "postgres-init": ("p-postgres-init-1", "exited")}


def test_the_gpu_grant_as_docker_inspect_shows_compose_reservations() -> None:
    pinned = [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["GPU-a", "GPU-b"], "Capabilities": [["gpu"]],
               "Options": {}}]
    assert granted(pinned) == (["GPU-a", "GPU-b"], 0)
    assert granted([{"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]]}]) == ([], -1)
    assert granted([]) == ([], 0)


def test_published_addresses_follow_offset_and_bind(tmp_path: Path) -> None:
    stack = load_stack(REPO)
    t = Target(env="production", stack=stack, expected=[], secrets={})
    assert t.url("litellm", 4000) == "http://127.0.0.1:4000"      # 0.0.0.0 in production: loopback
    assert t.url("minio", 9000) == "http://127.0.0.1:9002"        # the host port, not the container's


class _Echo(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Echo.seen.append({"auth": self.headers.get("authorization"), "body": json.loads(body)})
        data = json.dumps({"ok": True}).encode()
        self.send_response(201)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class RecordingContext(Context):
    commands: list[str] = []

    def run(self, command: str, **kw: Any) -> Any:  # type: ignore[override]
        RecordingContext.commands.append(command)
        return super().run(command, **kw)


def test_the_probe_sends_the_key_in_a_header_never_on_a_command_line() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key = "sk-" + "s3cr3t" * 6
        probe = Probe(RecordingContext())
        r = probe.http("POST", f"http://127.0.0.1:{server.server_address[1]}/x",
                       headers={"authorization": f"Bearer {key}"}, json_body={"q": 1})
        assert (r.status, r.json()) == (201, {"ok": True})
        assert _Echo.seen[-1] == {"auth": f"Bearer {key}", "body": {"q": 1}}
        assert RecordingContext.commands and not any(key in c for c in RecordingContext.commands)
        # Nothing listens there: a clear "no answer", not an exception.
        r = probe.http("GET", "http://127.0.0.1:9/", timeout=3)
        assert r.status == 0 and "refused" in r.describe().lower()
    finally:
        server.shutdown()
