"""An OpenAI-compatible stand-in for vLLM's server, for tests that need a backend without a GPU.

    with OpenAIStandin(api_key="sk-vllm", served_models=["qwen"]) as vllm:
        client_base = vllm.url                      # http://127.0.0.1:PORT/v1
        ...
        assert vllm.requests[-1].model == "qwen" and vllm.requests[-1].authorized

It follows what ``vllm serve --api-key KEY --served-model-name NAME...`` answers:

- ``GET /v1/models``: ``{"object": "list", "data": [ModelCard...]}``, one card per served name with
  ``object: model``, ``owned_by: vllm``, ``root``, ``parent: null``, ``max_model_len`` and
  ``permission``.
- Every path under ``/v1`` needs ``Authorization: Bearer KEY`` when an api_key is set (vLLM's
  AuthenticationMiddleware guards only ``/v1``); otherwise 401 with vLLM's body
  ``{"error": "Unauthorized"}``.
- ``POST /v1/chat/completions`` and ``POST /v1/completions``: an unknown model gets 404 with vLLM's
  ErrorResponse ``{"error": {"message": "The model `X` does not exist.", "type": "NotFoundError",
  "param": "model", "code": 404}}``; a known one gets a deterministic non-empty completion with
  ``usage``. ``stream: true`` answers Server-Sent Events (``chat.completion.chunk`` objects, a
  usage chunk when ``stream_options.include_usage``, then ``data: [DONE]``), chunked like uvicorn.
- ``GET /health``: 200 with an empty body, no key needed.
- ``GET /metrics``: Prometheus text with vLLM metric names labelled ``model_name`` (and
  ``engine``), no key needed.

Every request is recorded in ``.requests`` (method, path, whether its Authorization header held
the key, the model asked for, whether it streamed), in arrival order.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# vLLM's default buckets for vllm:e2e_request_latency_seconds.
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    auth: str                # "valid" (Bearer with the key), "invalid", or "missing"
    model: str | None = None
    stream: bool = False
    body: Any = None         # the parsed JSON body of a POST, if any

    @property
    def authorized(self) -> bool:
        return self.auth == "valid"


@dataclass
class _ModelStats:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0
    latency_sum: float = 0.0
    latencies: list[float] = field(default_factory=list)


class OpenAIStandin:
    def __init__(self, api_key: str | None = None, served_models: Sequence[str] = ("test-model",),
                 host: str = "127.0.0.1", port: int = 0, max_model_len: int = 4096):
        if not served_models:
            raise ValueError("served_models must name at least one model")
        self.api_key = api_key
        self.served_models = list(served_models)
        self.max_model_len = max_model_len
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._stats = {m: _ModelStats() for m in self.served_models}
        self._created = int(time.time())

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "OpenAIStandin":
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-standin",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "OpenAIStandin":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------------------------
    @property
    def host(self) -> str:
        assert self._server is not None, "stand-in not started"
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        assert self._server is not None, "stand-in not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (where /health and /metrics live)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``, as vLLM's is."""
        return self.base_url + "/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def completions_for(self, model: str | None = None) -> list[RecordedRequest]:
        """The recorded POSTs to /v1/chat/completions or /v1/completions (for ``model``)."""
        return [r for r in self.requests
                if r.method == "POST" and r.path in ("/v1/chat/completions", "/v1/completions")
                and (model is None or r.model == model)]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- internals used by the handler -------------------------------------------------------
    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def _auth_state(self, header: str | None) -> str:
        if not header:
            return "missing"
        scheme, _, param = header.partition(" ")
        if self.api_key is None:
            return "valid"
        if scheme.lower() == "bearer" and secrets.compare_digest(
                hashlib.sha256(param.encode()).digest(), hashlib.sha256(self.api_key.encode()).digest()):
            return "valid"
        return "invalid"

    def _count(self, model: str, prompt_tokens: int, generation_tokens: int, latency: float) -> None:
        with self._lock:
            st = self._stats[model]
            st.prompt_tokens += prompt_tokens
            st.generation_tokens += generation_tokens
            st.requests += 1
            st.latency_sum += latency
            st.latencies.append(latency)

    def models_body(self) -> dict:
        return {"object": "list", "data": [{
            "id": name, "object": "model", "created": self._created, "owned_by": "vllm",
            "root": f"/models/{name}", "parent": None, "max_model_len": self.max_model_len,
            "permission": [{
                "id": f"modelperm-{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}",
                "object": "model_permission", "created": self._created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False}],
        } for name in self.served_models]}

    def metrics_text(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            stats = {m: (s.prompt_tokens, s.generation_tokens, s.requests, s.latency_sum,
                         list(s.latencies)) for m, s in self._stats.items()}
        lab = {m: f'engine="0",model_name="{m}"' for m in stats}
        family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
        out += [f"vllm:num_requests_running{{{lab[m]}}} 0.0" for m in stats]
        family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
        out += [f"vllm:num_requests_waiting{{{lab[m]}}} 0.0" for m in stats]
        family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
        out += [f"vllm:kv_cache_usage_perc{{{lab[m]}}} 0.0" for m in stats]
        family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.")
        out += [f"vllm:prompt_tokens_total{{{lab[m]}}} {float(s[0])}" for m, s in stats.items()]
        family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.")
        out += [f"vllm:generation_tokens_total{{{lab[m]}}} {float(s[1])}" for m, s in stats.items()]
        family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
        out += [f'vllm:request_success_total{{{lab[m]},finished_reason="stop"}} {float(s[2])}'
                for m, s in stats.items()]
        family("vllm:e2e_request_latency_seconds", "histogram",
               "Histogram of e2e request latency in seconds.")
        for m, (_, _, count, total, lats) in stats.items():
            for b in LATENCY_BUCKETS:
                out.append(f'vllm:e2e_request_latency_seconds_bucket{{{lab[m]},le="{b}"}} '
                           f"{float(sum(1 for x in lats if x <= b))}")
            out.append(f'vllm:e2e_request_latency_seconds_bucket{{{lab[m]},le="+Inf"}} {float(count)}')
            out.append(f"vllm:e2e_request_latency_seconds_count{{{lab[m]}}} {float(count)}")
            out.append(f"vllm:e2e_request_latency_seconds_sum{{{lab[m]}}} {total}")
        return "\n".join(out) + "\n"


def _prompt_text(body: dict, chat: bool) -> str:
    if not chat:
        p = body.get("prompt", "")
        return p if isinstance(p, str) else json.dumps(p)
    parts: list[str] = []
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return " ".join(parts)


def reply_text(model: str, prompt: str) -> str:
    """The deterministic completion the stand-in gives ``model`` for ``prompt``."""
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()[:8]
    return f"Stand-in reply from {model} ({digest})."


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStandin
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _read_body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        auth = self.owner._auth_state(self.headers.get("authorization"))
        raw = self._read_body() if self.command == "POST" else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        model = body.get("model") if isinstance(body, dict) else None
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        self.owner._record(RecordedRequest(self.command, path, auth, model, stream, body))

        if path.startswith("/v1") and self.owner.api_key is not None and auth != "valid":
            return self._json(401, {"error": "Unauthorized"})
        if path == "/health" and self.command in ("GET", "HEAD"):
            return self._send(200, b"")
        if path == "/metrics" and self.command in ("GET", "HEAD"):
            return self._send(200, self.owner.metrics_text().encode(),
                              "text/plain; version=0.0.4; charset=utf-8")
        if path == "/v1/models" and self.command in ("GET", "HEAD"):
            return self._json(200, self.owner.models_body())
        if path in ("/v1/chat/completions", "/v1/completions") and self.command == "POST":
            return self._completion(path == "/v1/chat/completions", body)
        if path in ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"):
            return self._json(405, {"detail": "Method Not Allowed"})
        return self._json(404, {"detail": "Not Found"})

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = lambda self: self._dispatch()

    # -- completions -------------------------------------------------------------------------
    def _error(self, status: int, message: str, err_type: str, param: str | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": err_type, "param": param,
                                      "code": status}})

    def _completion(self, chat: bool, body: Any) -> None:
        t0 = time.monotonic()
        if not isinstance(body, dict):
            return self._error(400, "Request body is not a JSON object.", "BadRequestError")
        model = body.get("model")
        if model not in self.owner.served_models:
            return self._error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        if chat and not body.get("messages"):
            return self._error(400, "messages: Field required", "BadRequestError", "messages")
        prompt = _prompt_text(body, chat)
        text = reply_text(model, prompt)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            self._stream(chat, rid, created, model, text, usage, bool(opts.get("include_usage")))
        elif chat:
            self._json(200, {
                "id": rid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {
                    "role": "assistant", "content": text, "refusal": None, "annotations": None,
                    "audio": None, "function_call": None, "tool_calls": [], "reasoning_content": None},
                    "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
                "service_tier": None, "system_fingerprint": None,
                "usage": {**usage, "prompt_tokens_details": None},
                "prompt_logprobs": None, "kv_transfer_params": None})
        else:
            self._json(200, {
                "id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop",
                             "stop_reason": None, "prompt_logprobs": None}],
                "service_tier": None, "system_fingerprint": None,
                "usage": {**usage, "prompt_tokens_details": None}, "kv_transfer_params": None})
        self.owner._count(model, usage["prompt_tokens"], usage["completion_tokens"],
                          time.monotonic() - t0)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _stream(self, chat: bool, rid: str, created: int, model: str, text: str, usage: dict,
                include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list, extra: dict | None = None) -> None:
            payload = {"id": rid, "object": obj, "created": created, "model": model,
                       "choices": choices, **(extra or {})}
            self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        words = text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        if chat:
            event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                    "finish_reason": None}])
            for p in pieces:
                event([{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}])
            event([{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "stop",
                    "stop_reason": None}])
        else:
            for p in pieces:
                event([{"index": 0, "text": p, "logprobs": None, "finish_reason": None}])
            event([{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop",
                    "stop_reason": None}])
        if include_usage:
            event([], {"usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
