"""The LiteLLM harness itself: the real proxy, a hand-written config, the vLLM stand-in behind it.

The config is the smallest one the generated stack's resembles: one served name routed to an
OpenAI-compatible vLLM server through LiteLLM's ``hosted_vllm/`` provider (the one its docs name
for vLLM; it sends ``api_key`` on as ``Authorization: Bearer``), a master key read from the
environment, and no database.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request

import pytest

from tests.support.httpjson import call
from tests.support.litellm_proxy import require_litellm, run_litellm
from tests.support.openai_standin import OpenAIStandin, reply_text

pytestmark = pytest.mark.slow

MASTER_KEY = "sk-master-" + secrets.token_hex(8)
VLLM_KEY = "vllm-" + secrets.token_hex(8)
SERVED = "test-model"

CONFIG = """\
model_list:
  - model_name: {served}
    litellm_params:
      model: hosted_vllm/{served}
      api_base: {api_base}
      api_key: os.environ/VLLM_API_KEY
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    require_litellm()          # skip (or fail on CI) before starting anything
    with OpenAIStandin(api_key=VLLM_KEY, served_models=[SERVED]) as vllm:
        config = tmp_path_factory.mktemp("litellm") / "config.yaml"
        config.write_text(CONFIG.format(served=SERVED, api_base=vllm.url))
        env = {"LITELLM_MASTER_KEY": MASTER_KEY, "VLLM_API_KEY": VLLM_KEY}
        with run_litellm(config, env) as url:
            yield url, vllm


def test_secrets_are_not_on_the_command_line(proxy):
    url, _ = proxy
    argv = " ".join(map(str, url.process.args))
    assert MASTER_KEY not in argv and VLLM_KEY not in argv, argv


def test_models_lists_the_served_name(proxy):
    url, _ = proxy
    status, body = call(url, "/v1/models", MASTER_KEY)
    assert status == 200, (body, url.log())
    assert [m["id"] for m in body["data"]] == [SERVED], body


def test_chat_completion_is_answered_by_the_standin(proxy):
    url, vllm = proxy
    vllm.clear()
    status, body = call(url, "/v1/chat/completions", MASTER_KEY,
                        {"model": SERVED, "messages": [{"role": "user", "content": "hello"}]})
    assert status == 200, (body, url.log())
    assert body["choices"][0]["message"]["content"] == reply_text(SERVED, "hello"), body
    assert body["usage"]["total_tokens"] > 0, body
    seen = vllm.completions_for()
    assert len(seen) == 1, vllm.requests
    assert seen[0].path == "/v1/chat/completions"
    assert seen[0].model == SERVED
    assert seen[0].authorized, "LiteLLM did not send the vLLM key as a Bearer token"


def test_streaming_chat_completion_passes_through(proxy):
    url, vllm = proxy
    req = urllib.request.Request(
        url + "/v1/chat/completions", method="POST",
        data=json.dumps({"model": SERVED, "stream": True,
                         "messages": [{"role": "user", "content": "hello"}]}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {MASTER_KEY}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        events = [line[len(b"data: "):] for line in resp.read().splitlines()
                  if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]", events
    text = "".join((json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                   for e in events[:-1])
    assert text == reply_text(SERVED, "hello"), (text, url.log())
    assert vllm.completions_for()[-1].stream


def test_a_wrong_key_is_rejected(proxy):
    """Without a database LiteLLM takes any key but the master key for a virtual key it cannot
    look up, and answers 400 ``no_db_connection`` ("No connected db."), not 401."""
    url, vllm = proxy
    vllm.clear()
    status, body = call(url, "/v1/chat/completions", "sk-wrong-" + secrets.token_hex(4),
                        {"model": SERVED, "messages": [{"role": "user", "content": "hello"}]})
    assert (status, body["error"]["type"]) == (400, "no_db_connection"), (status, body, url.log())
    assert vllm.completions_for() == [], "a request with a wrong key reached vLLM"


def test_no_key_gets_401(proxy):
    url, vllm = proxy
    vllm.clear()
    status, body = call(url, "/v1/chat/completions", None,
                        {"model": SERVED, "messages": [{"role": "user", "content": "hello"}]})
    assert (status, body["error"]["type"]) == (401, "auth_error"), (status, body, url.log())
    assert call(url, "/v1/models")[0] == 401
    assert vllm.completions_for() == [], "a request without a key reached vLLM"


def test_no_database_is_configured(proxy):
    url, _ = proxy
    status, body = call(url, "/health/readiness")       # no key needed
    assert status == 200, (body, url.log())
    assert body["status"] == "healthy" and body["db"] == "Not connected", body


def test_liveliness_needs_no_key(proxy):
    url, _ = proxy
    assert call(url, "/health/liveliness") == (200, "I'm alive!")
