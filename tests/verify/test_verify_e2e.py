"""`inv verify` on a running stack, end to end: the real Docker engine, the real PostgreSQL and
Redis images, the real LiteLLM proxy, Open WebUI and n8n, in front of a vLLM stand-in at vLLM's
address (tests/verify/stack.py). Every check passes on the stack as mmstack made it; each
break, made behind mmstack's back, fails exactly the check that guards it, with its fix."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.verify.conftest import VerifyStack, failed, results

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PASSING = {"litellm/models", "litellm/chat", "vllm/models", "openwebui/admin", "openwebui/models",
           "redis/auth", "qdrant/vectors", "minio/objects multimodal-worker:media",
           "minio/objects search-engine:documents", "n8n/ready", "n8n/database",
           *(f"postgres/login {s}" for s in ("ai-agents", "litellm", "memory-system", "multimodal-worker",
                                              "n8n", "user-management"))}
NOT_HERE = {"prometheus/targets", "grafana/datasources", "elasticsearch/health", "elasticsearch/logs"}


def test_every_check_passes_on_the_stack_mmstack_made(verify_stack: VerifyStack) -> None:
    code, doc = verify_stack.verify_json()
    got = results(doc)
    assert code == 0, json.dumps([r for r in doc["results"] if r["status"] == "failed"], indent=1)
    assert {i for i, r in got.items() if r["status"] == "ok"} == PASSING
    # Monitoring does not run in development, and vLLM runs on its CPU build: skipped, saying why.
    for item in NOT_HERE:
        assert got[item]["status"] == "skipped" and "run in development" in got[item]["message"]
    for item in ("vllm/gpus", "vllm/p2p"):
        assert got[item]["status"] == "skipped" and "without a GPU" in got[item]["message"]
    assert all(isinstance(r["data"]["seconds"], float) for r in doc["results"])
    assert doc["recap"]["failed"] == 0 and doc["recap"]["ok"] == len(PASSING)
    # The answer came through LiteLLM from the model vLLM serves.
    assert "from qwen2.5-7b-instruct" in got["litellm/chat"]["message"] or \
        "qwen2.5-7b-instruct" in got["litellm/chat"]["message"]


def test_start_dev_verifies_at_its_end_and_plain_output_says_what_ran(verify_stack: VerifyStack) -> None:
    proc = verify_stack.inv("start-dev", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "TASK [verify development]" in out
    assert "ok: [litellm/chat] a chat completion through LiteLLM to vLLM:" in out
    assert "skipped: [prometheus/targets]" in out and "\x1b[" not in out  # plain text off a terminal
    assert out.rstrip().splitlines()[-1].startswith("RECAP ok=") and " failed=0 " in out.rstrip().splitlines()[-1]
    # No secret value the checks used in what verify printed.
    used = [verify_stack.env_value(f, k) for f, k in (
        ("litellm.env", "LITELLM_MASTER_KEY"), ("litellm.env", "VLLM_API_KEY"), ("redis.env", "REDIS_PASSWORD"),
        ("openwebui.env", "WEBUI_ADMIN_PASSWORD"), ("qdrant.env", "QDRANT__SERVICE__API_KEY"),
        ("minio-init.env", "MMSTACK_S3_SEARCH_ENGINE_SECRET_KEY"))]
    assert not [v for v in used if v in out + proc.stderr]
    # Not what runs here: an input error naming both, not a failed check.
    proc = verify_stack.inv("verify", "--env", "production")
    assert proc.returncode == 1 and "is 'development', not 'production'" in proc.stderr


def test_a_database_password_rotated_behind_mmstacks_back_fails_that_login_only(verify_stack: VerifyStack) -> None:
    code, out = verify_stack.psql("ALTER ROLE ai_agents PASSWORD 'changed-by-hand'")
    assert code == 0, out
    code, doc = verify_stack.verify_json()
    assert code == 2 and failed(doc) == {"postgres/login ai-agents"}, failed(doc)
    data = results(doc)["postgres/login ai-agents"]["data"]
    assert data["expected"] == "ai_agents@ai_agents" and "password authentication failed" in data["got"]
    assert "postgres-init" in data["fix"] and "inv start --env development" in data["fix"]
    # The fix works: a start runs postgres-init, which sets the stored password again, then verifies.
    verify_stack.inv_ok("start-dev", timeout=600)


def test_litellm_without_the_model_fails_the_model_checks(verify_stack: VerifyStack) -> None:
    config = verify_stack.root / "config" / "development" / "litellm.yaml"
    original = config.read_text()
    doc = yaml.safe_load(original)
    doc["model_list"] = []
    config.write_text(yaml.safe_dump(doc))
    try:
        verify_stack.inv_ok("restart", "--service", "litellm", timeout=600)
        code, doc = verify_stack.verify_json()
        # What LiteLLM no longer routes: its list and the completion (Open WebUI may still show the
        # model from the list it cached before; it fails too once it asks LiteLLM again).
        assert code == 2 and {"litellm/models", "litellm/chat"} <= failed(doc), failed(doc)
        assert failed(doc) <= {"litellm/models", "litellm/chat", "openwebui/models"}, failed(doc)
        data = results(doc)["litellm/models"]["data"]
        assert data["expected"] == "qwen2.5-7b-instruct among the models" and data["got"] == "models: none"
        assert "config/development/litellm.yaml" in data["fix"] and "inv restart --service litellm" in data["fix"]
    finally:
        config.write_text(original)
        verify_stack.inv_ok("restart", "--service", "litellm", timeout=600)


def test_a_wrong_key_for_open_webui_fails_its_model_list_only(verify_stack: VerifyStack) -> None:
    env_file = verify_stack.root / "env" / "development" / "openwebui.env"
    original = env_file.read_text()
    key = verify_stack.env_value("openwebui.env", "OPENAI_API_KEY")
    env_file.write_text(original.replace(f"OPENAI_API_KEY={key}", "OPENAI_API_KEY=sk-not-the-master-key"))
    try:
        verify_stack.inv_ok("restart", "--service", "openwebui", timeout=600)
        code, doc = verify_stack.verify_json()
        assert code == 2 and failed(doc) == {"openwebui/models"}, failed(doc)
        data = results(doc)["openwebui/models"]["data"]
        assert data["got"] == "models: none" and "OPENAI_API_KEY" in data["fix"]
        assert results(doc)["openwebui/admin"]["status"] == "ok"
    finally:
        env_file.write_text(original)
        verify_stack.inv_ok("restart", "--service", "openwebui", timeout=600)
