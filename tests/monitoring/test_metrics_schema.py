"""`metrics:` in the schema: a mistake is a clear error (file, line, key path, fix), and the GPU
exporter reserves exactly the cards the GPU plan gives the stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.schema.generate import compose_documents
from tasks.schema.load import load_stack
from tests.support.schemaedit import Case, assert_refused, line_of
from tests.support.stackcopy import REPO, make_stack_copy, run_inv

CASES = [
    Case("metrics-secret-not-declared", "  qdrant:\n", "secret: qdrant_read_only_api_key}", "secret: qdrant_key}",
         "services.qdrant.metrics.auth.secret", "secret 'qdrant_key' is not declared"),
    Case("metrics-auth-missing-secret", "  qdrant:\n", "auth: {type: bearer, secret: qdrant_read_only_api_key}",
         "auth: {type: bearer}", "services.qdrant.metrics.auth", "auth type 'bearer' needs 'secret'"),
    Case("metrics-unknown-auth", "  qdrant:\n", "type: bearer,", "type: basic,",
         "services.qdrant.metrics.auth.type", "unallowed value basic"),
    Case("metrics-port-missing", "  vllm:\n", "metrics: {port: 8000, path: /metrics, exporter: vllm}",
         "metrics: {path: /metrics, exporter: vllm}", "services.vllm.metrics.port", "required field"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_metrics_mistake_is_a_clear_error(case: Case, tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    mutated, err = assert_refused(stack, case)
    line = line_of(mutated, case.new.strip().splitlines()[0], case.anchor)
    assert f"schemas/compose-schema.yaml:{line}:" in err, err


PLAN = {"vllm_device_ids": ["GPU-aaaa", "GPU-bbbb"], "worker_device_ids": ["GPU-cccc"],
        "tensor_parallel": 2, "pipeline_parallel": 1, "memory_utilization": 0.9, "max_model_len": 8192}


def devices(doc: dict, service: str) -> list[dict]:
    svc = doc["services"].get(service) or {}
    deploy = svc.get("deploy")
    value = getattr(deploy, "value", deploy) or {}
    return (value.get("resources") or {}).get("reservations", {}).get("devices", [])


def test_the_gpu_exporter_reserves_the_cards_of_the_plan_and_only_where_gpus_are() -> None:
    stack = load_stack(REPO)
    docs = compose_documents(stack, PLAN)
    for env in ("staging", "production"):
        (vllm,) = devices(docs[f"compose.{env}.yml"], "vllm")
        (dcgm,) = devices(docs[f"compose.{env}.yml"], "dcgm-exporter")
        assert vllm["device_ids"] == ["GPU-aaaa", "GPU-bbbb"]
        assert dcgm["device_ids"] == ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"] and dcgm["driver"] == "nvidia"
    for env in ("development", "elk", "gpu"):
        assert "dcgm-exporter" not in docs[f"compose.{env}.yml"]["services"], env
    assert "dcgm-exporter" in stack.environment("elk").left_out
    # Without a saved plan: every GPU, as vLLM gets.
    (dcgm,) = devices(compose_documents(stack, None)["compose.production.yml"], "dcgm-exporter")
    assert dcgm["count"] == "all"


def test_generate_says_why_the_gpu_exporter_is_left_out_of_elk(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    proc = run_inv(stack, "generate-compose")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "elk: dcgm-exporter left out: this environment reserves no GPU" in out
    assert "elk: dcgm-exporter left out: it needs a GPU and this environment reserves none, so LiteLLM" not in out
