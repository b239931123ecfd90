"""The LLM path: LiteLLM serves the model, a completion comes back from vLLM, vLLM serves what
was planned. The applications' key is LiteLLM's master key (``LLM_API_KEY`` and Open WebUI's
``OPENAI_API_KEY`` are rendered from it); vLLM's own key is ``VLLM_API_KEY``."""

from __future__ import annotations

import re
import shlex
from typing import Any

from ...schema.inference import VLLM_PORT
from ..registry import CheckSkipped, check
from .common import bearer, fail, restart_fix, unreachable_fix

LITELLM_PORT = 4000
PROMPT = "Reply with the single word: ready"


def served_name(t: Any) -> str:
    if not t.model:
        raise CheckSkipped(f"no model is served in {t.env}")
    return str(t.model["served_name"])


@check("litellm", "models", "LiteLLM lists the served model")
def litellm_models(t: Any, p: Any) -> str:
    name = served_name(t)
    r = p.http("GET", t.url("litellm", LITELLM_PORT) + "/v1/models", headers=bearer(t.secrets["litellm_master_key"]))
    if r.status in (401, 403):
        fail("LiteLLM refuses the applications' key", expected="HTTP 200 with the applications' key",
             got=r.describe(), fix=restart_fix(t, "litellm", "LITELLM_MASTER_KEY differs from the store"))
    if r.status != 200:
        fail("LiteLLM does not answer /v1/models", expected="HTTP 200", got=r.describe(),
             fix=unreachable_fix(t, "litellm"))
    ids = [m.get("id") for m in (r.json() or {}).get("data") or []]
    if name not in ids:
        fail(f"LiteLLM does not list {name}", expected=f"{name} among the models", got=f"models: {ids or 'none'}",
             fix=f"LiteLLM's model list (config/{t.env}/litellm.yaml) must route {name} to vLLM: "
                 f"`inv setup --env {t.env}`, then `inv restart --service litellm`")
    return name


@check("litellm", "chat", "a chat completion through LiteLLM to vLLM", needs=("vllm",))
def litellm_chat(t: Any, p: Any) -> str:
    name = served_name(t)
    r = p.http("POST", t.url("litellm", LITELLM_PORT) + "/v1/chat/completions",
               headers=bearer(t.secrets["litellm_master_key"]), timeout=120,
               json_body={"model": name, "max_tokens": 16, "temperature": 0,
                          "messages": [{"role": "user", "content": PROMPT}]})
    if r.status != 200:
        body = r.describe()
        fix = (f"LiteLLM reached vLLM but was refused: VLLM_API_KEY in env/{t.env}/litellm.env and "
               f"vllm.env must match; {restart_fix(t, 'litellm')}" if "401" in body or "Unauthorized" in body
               else "see `inv logs --service litellm` and `inv logs --service vllm`")
        fail("the completion failed", expected="HTTP 200 with a completion", got=body, fix=fix)
    doc = r.json() or {}
    choices = doc.get("choices") or [{}]
    text = ((choices[0].get("message") or {}).get("content") or "").strip()
    model = str(doc.get("model") or "")
    if not text:
        fail("the completion is empty", expected="a non-empty answer", got=r.describe(),
             fix="see `inv logs --service vllm`: the model loaded but generated nothing")
    if model.split("/")[-1] != name:
        fail("the answer came from another model", expected=name, got=model or "no model field",
             fix=f"LiteLLM routes {name} elsewhere: check config/{t.env}/litellm.yaml and `inv setup --env {t.env}`")
    return f"{len(text)} characters from {model}"


@check("vllm", "models", "vLLM serves the planned model")
def vllm_models(t: Any, p: Any) -> str:
    name = served_name(t)
    r = p.http("GET", t.url("vllm", VLLM_PORT) + "/v1/models", headers=bearer(t.secrets["vllm_api_key"]))
    if r.status in (401, 403):
        fail("vLLM refuses its key", expected="HTTP 200 with VLLM_API_KEY", got=r.describe(),
             fix=restart_fix(t, "vllm", "VLLM_API_KEY differs from the store"))
    if r.status != 200:
        fail("vLLM does not answer /v1/models", expected="HTTP 200", got=r.describe(), fix=unreachable_fix(t, "vllm"))
    cards = {m.get("id"): m for m in (r.json() or {}).get("data") or []}
    if name not in cards:
        fail(f"vLLM does not serve {name}", expected=name, got=f"served: {sorted(cards) or 'nothing'}",
             fix=f"vLLM's command comes from the schema's models: and the GPU plan: `inv setup --env {t.env}`, "
                 f"then `inv start --env {t.env}`")
    planned = _flag(t.vllm_command(), "--max-model-len")
    served_len = cards[name].get("max_model_len")
    if planned and served_len is not None and int(served_len) != int(planned):
        fail("vLLM runs another context length", expected=f"max_model_len {planned}",
             got=f"max_model_len {served_len}", fix=f"re-plan (`inv configure-gpu`), `inv setup --env {t.env}`, "
                                                   f"then `inv start --env {t.env}`")
    tp = _flag(t.vllm_command(), "--tensor-parallel-size") or "1"
    seen = _logged_parallelism(t, p)
    if seen is not None and seen != tp:
        fail("vLLM runs another tensor parallelism", expected=f"tensor_parallel_size={tp}",
             got=f"tensor_parallel_size={seen} (vLLM's log)",
             fix=f"`inv configure-gpu`, `inv setup --env {t.env}`, then `inv start --env {t.env}`")
    return f"{name}, max_model_len {served_len}" + (f", tensor parallel {seen}" if seen else "")


def _flag(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def _logged_parallelism(t: Any, p: Any) -> str | None:
    """The tensor parallelism vLLM's engine logged at start (only that number leaves the host)."""
    done = p.run(f"docker logs {shlex.quote(t.container('vllm'))} 2>&1 | grep -o 'tensor_parallel_size=[0-9]*' | tail -n 1")
    m = re.search(r"tensor_parallel_size=(\d+)", done.stdout)
    return m.group(1) if m else None
