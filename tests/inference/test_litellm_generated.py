"""The generated LiteLLM config and env file, run by the real LiteLLM proxy of the pinned release.

`inv setup` writes config/production/litellm.yaml and env/gpu/litellm.env as users get them. The proxy
(tests/realapps/litellm-venv.sh) runs with that file and that environment on loopback, in front
of an OpenAI-compatible stand-in that checks vLLM's key and model name. Two things differ from
the stack, and only these: the stand-in's address replaces vLLM's (``http://vllm:8000/v1`` names
a host on the Compose network), and DATABASE_URL is left out (LiteLLM's database client fetches
its Prisma engines from the internet outside the official image; that path runs in the image).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tasks.schema.load import load_stack
from tests.support.litellm_proxy import require_litellm, run_litellm
from tests.support.openai_standin import OpenAIStandin
from tests.support.httpjson import call, env_file
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = pytest.mark.slow
VLLM_ADDRESS = "http://vllm:8000/v1"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_litellm()
    stack = make_stack_copy(tmp_path_factory.mktemp("litellm") / "stack")
    proc = run_inv(stack, "setup", "--env", "production")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((stack / "config" / "production" / "litellm.yaml").read_text())
    return {
        "stack": stack,
        "config": config,
        "litellm_env": env_file(stack / "env" / "production" / "litellm.env"),
        "vllm_env": env_file(stack / "env" / "production" / "vllm.env"),
        "openwebui_env": env_file(stack / "env" / "production" / "openwebui.env"),
        "apps_env": env_file(stack / "env" / "production" / "ai-agents.env"),
    }


@pytest.fixture(scope="module")
def proxy(generated: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    config = generated["config"]
    served = [m["model_name"] for m in config["model_list"]]
    with OpenAIStandin(api_key=generated["vllm_env"]["VLLM_API_KEY"], served_models=served) as vllm:
        text = (generated["stack"] / "config" / "production" / "litellm.yaml").read_text()
        assert text.count(VLLM_ADDRESS) == len(served)
        path = tmp_path_factory.mktemp("cfg") / "litellm.yaml"
        path.write_text(text.replace(VLLM_ADDRESS, vllm.url))
        env = {k: v for k, v in generated["litellm_env"].items() if k != "DATABASE_URL"}
        with run_litellm(path, env) as url:
            yield url, vllm


def test_the_config_routes_the_served_model_to_vllm_with_its_key(generated: dict[str, Any]) -> None:
    (entry,) = generated["config"]["model_list"]
    assert entry["model_name"] == "qwen2.5-7b-instruct"
    assert entry["litellm_params"] == {"model": "hosted_vllm/qwen2.5-7b-instruct",
                                       "api_base": VLLM_ADDRESS, "api_key": "os.environ/VLLM_API_KEY"}
    # No secret in the file: every key is a reference to the container's environment.
    text = (generated["stack"] / "config" / "production" / "litellm.yaml").read_text()
    for value in (generated["litellm_env"]["LITELLM_MASTER_KEY"], generated["vllm_env"]["VLLM_API_KEY"]):
        assert value not in text
    assert generated["litellm_env"]["VLLM_API_KEY"] == generated["vllm_env"]["VLLM_API_KEY"]


def test_litellm_lists_the_served_model(proxy: Any, generated: dict[str, Any]) -> None:
    url, _ = proxy
    status, body = call(url, "/v1/models", token=generated["litellm_env"]["LITELLM_MASTER_KEY"])
    assert status == 200, (body, url.log())
    assert [m["id"] for m in body["data"]] == ["qwen2.5-7b-instruct"]


def test_a_chat_completion_reaches_vllm_with_vllms_key_and_served_name(proxy: Any, generated: dict[str, Any]) -> None:
    url, vllm = proxy
    vllm.clear()
    status, body = call(url, "/v1/chat/completions", token=generated["litellm_env"]["LITELLM_MASTER_KEY"],
                        body={"model": "qwen2.5-7b-instruct", "max_tokens": 8,
                              "messages": [{"role": "user", "content": "Say hi"}]})
    assert status == 200, (body, url.log())
    assert body["choices"][0]["message"]["content"]
    (seen,) = vllm.completions_for("qwen2.5-7b-instruct")
    assert seen.authorized, "LiteLLM must present vLLM's own key (VLLM_API_KEY)"


def test_the_keys_open_webui_and_the_apps_hold_are_accepted(proxy: Any, generated: dict[str, Any]) -> None:
    url, _ = proxy
    openwebui = generated["openwebui_env"]
    assert openwebui["OPENAI_API_BASE_URL"] == "http://litellm:4000/v1" and openwebui["ENABLE_OLLAMA_API"] == "false"
    # Open WebUI 0.12.4 creates this admin at start-up when it has no user; signup stays closed.
    assert openwebui["WEBUI_ADMIN_EMAIL"].startswith("admin@") and len(openwebui["WEBUI_ADMIN_PASSWORD"]) >= 24
    assert openwebui["ENABLE_SIGNUP"] == "false"
    apps = generated["apps_env"]
    assert apps["LLM_API_BASE"] == "http://litellm:4000/v1" and apps["LLM_MODEL"] == "qwen2.5-7b-instruct"
    for key in (openwebui["OPENAI_API_KEY"], apps["LLM_API_KEY"]):
        status, body = call(url, "/v1/models", token=key)
        assert status == 200 and body["data"][0]["id"] == "qwen2.5-7b-instruct", body


def test_a_wrong_key_is_refused_and_vllm_is_not_asked(proxy: Any) -> None:
    url, vllm = proxy
    vllm.clear()
    body = {"model": "qwen2.5-7b-instruct", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = call(url, "/v1/chat/completions", token=None, body=body)
    assert status == 401
    # Without a database LiteLLM takes any other key for a virtual key it cannot look up (400).
    status, _ = call(url, "/v1/chat/completions", token="sk-not-the-master-key", body=body)
    assert status in (400, 401)
    assert vllm.completions_for("qwen2.5-7b-instruct") == []


def test_litellm_serves_the_metrics_prometheus_scrapes(proxy: Any, generated: dict[str, Any]) -> None:
    """The schema declares LiteLLM's metrics at :4000/metrics behind its master key; the real proxy
    serves them there because the generated config turns on its prometheus callback, and refuses
    a scrape without the key."""
    url, _ = proxy
    key = generated["litellm_env"]["LITELLM_MASTER_KEY"]
    status, _ = call(url, "/v1/chat/completions", token=key,
                     body={"model": "qwen2.5-7b-instruct", "max_tokens": 4,
                           "messages": [{"role": "user", "content": "count me"}]})
    assert status == 200
    status, _ = call(url, "/metrics")
    assert status == 401
    stack = load_stack(generated["stack"])
    auth = stack.resolved_services("production")["litellm"]["metrics"]["auth"]
    scrape_key = env_file(generated["stack"] / "env" / "production" / "prometheus.env")["MMSTACK_SCRAPE_LITELLM_TOKEN"]
    assert auth == {"type": "bearer", "secret": "litellm_master_key"} and scrape_key == key
    status, text = call(url, "/metrics", token=scrape_key)
    assert status == 200, text
    assert "litellm_proxy_total_requests_metric" in text or "litellm_requests_metric" in text, text[:2000]
