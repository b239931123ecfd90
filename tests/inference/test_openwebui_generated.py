"""The generated Open WebUI env file, run by the real Open WebUI of the pinned release.

`inv setup` writes env/production/openwebui.env as users get it. Open WebUI 0.12.4
(tests/realapps/openwebui-venv.sh) runs with that environment on loopback, in front of the real
LiteLLM proxy run as tests/inference/test_litellm_generated.py runs it (the generated
litellm.yaml and litellm.env), itself in front of an OpenAI-compatible stand-in for vLLM that
checks vLLM's key and model name. One thing differs from the stack's Open WebUI, and only this:
the proxy's address replaces OPENAI_API_BASE_URL (``http://litellm:4000/v1`` names a host on the
Compose network). The rest of the env file goes in as generated. Around it the harness sets only
what the container's image sets or its volume implies (DATA_DIR, a folder of the test's, in
place of the /app/backend/data volume) and what keeps the run on this machine (OFFLINE_MODE:
no lookups on the Hugging Face hub or for new versions); see tests/support/openwebui.py. The
venv holds Open WebUI's slim set (USE_SLIM_DOCKER=true), where the stack's image is the full
one: the sign-in, sign-up, model-list and chat paths exercised here are the same code in both.

The LiteLLM proxy runs as in that test: the stand-in's address replaces vLLM's in the config, and
DATABASE_URL is left out of its environment.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.httpjson import call, env_file
from tests.support.litellm_proxy import require_litellm, run_litellm
from tests.support.openai_standin import OpenAIStandin
from tests.support.openwebui import require_openwebui, run_openwebui
from tests.support.realapp import AppURL, free_port
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = pytest.mark.slow
VLLM_ADDRESS = "http://vllm:8000/v1"
LITELLM_ADDRESS = "http://litellm:4000/v1"
MODEL = "qwen2.5-7b-instruct"


class WebUI:
    """The running Open WebUI, which can be restarted on the same data folder."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env, self.data_dir = env, data_dir
        self.port = free_port()
        self.starts = 0
        self._stack = ExitStack()
        self.url: AppURL = self._start()

    def _start(self) -> AppURL:
        self.starts += 1
        return self._stack.enter_context(run_openwebui(self.env, self.data_dir, port=self.port))

    def restart(self) -> None:
        """Stop it (leave its context) and start it again, same env, data folder and port."""
        self._stack.close()
        self._stack = ExitStack()
        self.url = self._start()

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_litellm()
    require_openwebui()
    stack = make_stack_copy(tmp_path_factory.mktemp("openwebui") / "stack")
    proc = run_inv(stack, "setup", "--env", "production")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        "stack": stack,
        "litellm_yaml": (stack / "config" / "production" / "litellm.yaml").read_text(),
        "litellm_env": env_file(stack / "env" / "production" / "litellm.env"),
        "vllm_env": env_file(stack / "env" / "production" / "vllm.env"),
        "openwebui_env": env_file(stack / "env" / "production" / "openwebui.env"),
    }


@pytest.fixture(scope="module")
def chain(generated: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stand-in for vLLM, the real LiteLLM in front of it, the real Open WebUI in front of that."""
    config = yaml.safe_load(generated["litellm_yaml"])
    served = [m["model_name"] for m in config["model_list"]]
    with OpenAIStandin(api_key=generated["vllm_env"]["VLLM_API_KEY"], served_models=served) as vllm:
        text = generated["litellm_yaml"]
        assert text.count(VLLM_ADDRESS) == len(served)
        path = tmp_path_factory.mktemp("cfg") / "litellm.yaml"
        path.write_text(text.replace(VLLM_ADDRESS, vllm.url))
        litellm_env = {k: v for k, v in generated["litellm_env"].items() if k != "DATABASE_URL"}
        with run_litellm(path, litellm_env) as proxy:
            env = dict(generated["openwebui_env"])
            assert env["OPENAI_API_BASE_URL"] == LITELLM_ADDRESS
            env["OPENAI_API_BASE_URL"] = proxy + "/v1"
            webui = WebUI(env, tmp_path_factory.mktemp("openwebui-data"))
            try:
                yield {"vllm": vllm, "proxy": proxy, "webui": webui}
            finally:
                webui.close()


@pytest.fixture(scope="module")
def admin(generated: dict[str, Any]) -> dict[str, str]:
    env = generated["openwebui_env"]
    return {"email": env["WEBUI_ADMIN_EMAIL"], "password": env["WEBUI_ADMIN_PASSWORD"],
            "name": env["WEBUI_ADMIN_NAME"]}


def signin(url: str, email: str, password: str) -> tuple[int, Any]:
    # Open WebUI rate-limits sign-ins per email (15 in 3 minutes): the tests sign in sparingly.
    return call(url, "/api/v1/auths/signin", body={"email": email, "password": password})


def stranger_signs_up(url: str) -> tuple[int, Any]:
    who = secrets.token_hex(4)
    return call(url, "/api/v1/auths/signup", body={"name": f"stranger {who}", "password": secrets.token_urlsafe(18),
                                                   "email": f"stranger-{who}@example.com"})


@pytest.fixture(scope="module")
def admin_token(chain: dict[str, Any], admin: dict[str, str]) -> str:
    webui = chain["webui"]
    status, body = signin(webui.url, admin["email"], admin["password"])
    assert status == 200, (body, webui.url.log())
    return body["token"]


def test_the_env_file_points_open_webui_at_litellm_with_its_key(generated: dict[str, Any]) -> None:
    env = generated["openwebui_env"]
    assert env["OPENAI_API_BASE_URL"] == LITELLM_ADDRESS
    assert env["OPENAI_API_KEY"]
    assert env["ENABLE_OPENAI_API"] == "true" and env["ENABLE_OLLAMA_API"] == "false"
    assert env["ENABLE_SIGNUP"] == "false"
    assert len(env["WEBUI_SECRET_KEY"]) >= 32


def test_the_generated_admin_signs_in_as_admin(chain: dict[str, Any], admin: dict[str, str]) -> None:
    webui = chain["webui"]
    status, body = signin(webui.url, admin["email"], admin["password"])
    assert status == 200, (body, webui.url.log())
    assert body["role"] == "admin" and body["email"] == admin["email"] and body["name"] == admin["name"]
    assert body["token"]


def test_a_wrong_admin_password_is_refused(chain: dict[str, Any], admin: dict[str, str]) -> None:
    webui = chain["webui"]
    status, body = signin(webui.url, admin["email"], admin["password"] + "x")
    assert status == 400 and "token" not in body, body
    status, body = signin(webui.url, admin["email"], "")
    assert status == 400 and "token" not in body, body


def test_a_stranger_cannot_sign_up(chain: dict[str, Any]) -> None:
    webui = chain["webui"]
    status, body = stranger_signs_up(webui.url)
    assert status == 403, (body, webui.url.log())


def test_the_admin_sees_the_served_model_through_litellm(chain: dict[str, Any], admin_token: str) -> None:
    webui = chain["webui"]
    status, body = call(webui.url, "/api/models", token=admin_token)
    assert status == 200, (body, webui.url.log())
    assert MODEL in [m["id"] for m in body["data"]], (body, webui.url.log())
    status, _ = call(webui.url, "/api/models")
    assert status == 401


def test_a_chat_through_open_webui_reaches_vllm_with_vllms_key(chain: dict[str, Any],
                                                                admin_token: str) -> None:
    webui, vllm = chain["webui"], chain["vllm"]
    vllm.clear()
    status, body = call(webui.url, "/api/chat/completions", token=admin_token,
                        body={"model": MODEL, "stream": False, "max_tokens": 8,
                              "messages": [{"role": "user", "content": "Say hi"}]})
    assert status == 200, (body, webui.url.log(), chain["proxy"].log())
    assert body["choices"][0]["message"]["content"], body
    seen = vllm.completions_for(MODEL)
    assert seen and all(r.authorized for r in seen), "LiteLLM must present vLLM's own key (VLLM_API_KEY)"


def test_after_a_restart_the_same_admin_signs_in_and_signup_stays_closed(
        chain: dict[str, Any], admin: dict[str, str]) -> None:
    webui = chain["webui"]
    status, body = signin(webui.url, admin["email"], admin["password"])
    assert status == 200, body
    before = body["id"]
    webui.restart()
    assert webui.starts == 2
    status, body = stranger_signs_up(webui.url)
    assert status == 403, (body, webui.url.log())
    status, body = signin(webui.url, admin["email"], admin["password"])
    assert status == 200, (body, webui.url.log())
    assert body["id"] == before and body["role"] == "admin"
    status, users = call(webui.url, "/api/v1/users/", token=body["token"])
    assert status == 200, users
    assert [u["email"] for u in users["users"]] == [admin["email"]]
    status, models = call(webui.url, "/api/models", token=body["token"])
    assert status == 200 and MODEL in [m["id"] for m in models["data"]], models


def test_the_running_open_webui_took_the_generated_settings(chain: dict[str, Any], admin_token: str) -> None:
    """What Open WebUI itself reports for a signed-in user: signup closed, no community sharing."""
    status, body = call(chain["webui"].url, "/api/config", token=admin_token)
    assert status == 200, body
    assert body["features"]["enable_signup"] is False
    assert body["features"]["enable_community_sharing"] is False
