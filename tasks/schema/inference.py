"""The inference path, from the model catalogue: vLLM's command line and LiteLLM's model list.

Pure functions of the schema's ``models:`` entry and the GPU plan. Each output is written for
the interface its real image reads at the pinned release:

* vLLM (``vllm/vllm-openai``): the image's entrypoint is ``vllm serve``; the model and every
  engine setting come from command-line flags only (no environment variable sets the model,
  the parallelism or the memory share). The API key is the one exception: vLLM reads
  ``VLLM_API_KEY`` from its environment, which keeps it off the command line.
* LiteLLM (``ghcr.io/berriai/litellm``): a config file given with ``--config``; values written
  as ``os.environ/NAME`` are read from the container's environment, so the file holds no secret.
"""

from __future__ import annotations

from typing import Any

VLLM_PORT = 8000
VLLM_URL = f"http://vllm:{VLLM_PORT}/v1"  # vLLM's OpenAI API on the stack's network
LITELLM_CONFIG_TARGET = "/app/config.yaml"
# Bytes per KV-cache element: a catalogue model's dtype (or kv_cache_dtype when it is fp8).
_DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1}
# Used when the environment runs vLLM without a saved GPU plan (one GPU, nothing else on it).
UNPLANNED_MEMORY_UTILIZATION = 0.90


def kv_bytes_per_token(model: dict[str, Any]) -> int:
    """K and V, for every layer and KV head: 2 x layers x kv_heads x head_dim x element size."""
    dtype = model.get("kv_cache_dtype") if model.get("kv_cache_dtype") == "fp8" else model["dtype"]
    return 2 * model["layers"] * model["kv_heads"] * model["head_dim"] * _DTYPE_BYTES[dtype]


def planner_inputs(model: dict[str, Any]) -> dict[str, Any]:
    """What the GPU planner needs to know of a catalogue model (PlanOverrides field names)."""
    return {
        "model": model["key"],
        "model_weights_gib": float(model["weights_gib"]),
        "kv_bytes_per_token": kv_bytes_per_token(model),
        "max_model_len_cap": int(model["max_context"]),
        "attention_heads": int(model["attention_heads"]),
    }


def vllm_command(model: dict[str, Any], plan: dict[str, Any] | None, *, device: str = "gpu") -> list[str]:
    """The arguments after the image's ``vllm serve``: the model first, then its settings.

    ``plan`` is the saved GPU plan (None: one GPU, vLLM's own context limit); ``device`` is
    ``cpu`` for a CPU build of vLLM, where GPU memory and parallelism do not apply.
    """
    args = [model["hf_id"], "--served-model-name", model["served_name"]]
    if model.get("revision"):
        args += ["--revision", model["revision"]]
    args += ["--dtype", model["dtype"]]
    if model.get("quantization"):
        args += ["--quantization", model["quantization"]]
    if model.get("kv_cache_dtype"):
        args += ["--kv-cache-dtype", model["kv_cache_dtype"]]
    args += ["--host", "0.0.0.0", "--port", str(VLLM_PORT)]
    if device == "cpu":
        return args + ["--max-model-len", str(model["max_context"])]
    usable = plan is not None and not plan.get("cpu_only") and plan.get("vllm_device_ids")
    tp = int(plan.get("tensor_parallel") or 1) if usable else 1
    pp = int(plan.get("pipeline_parallel") or 1) if usable else 1
    util = plan.get("memory_utilization") if usable else None
    max_len = plan.get("max_model_len") if usable else None
    args += ["--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp),
             "--gpu-memory-utilization", f"{float(util or UNPLANNED_MEMORY_UTILIZATION):.2f}"]
    # Never longer than the model's own context, whatever the plan was made for.
    args += ["--max-model-len", str(min(int(max_len or model["max_context"]), int(model["max_context"])))]
    if usable:
        args += [str(a) for a in plan.get("vllm_args") or []]
    return args


def litellm_config(models: list[dict[str, Any]], *, vllm_url: str) -> dict[str, Any]:
    """LiteLLM's config: each served model routed to vLLM, keys and database from the environment.

    ``hosted_vllm/`` is LiteLLM's provider for vLLM's OpenAI-compatible server: it sends the
    model name after the prefix, which is the name vLLM serves (``--served-model-name``).
    """
    model_list = [{
        "model_name": m["served_name"],
        "litellm_params": {
            "model": f"hosted_vllm/{m['served_name']}",
            "api_base": vllm_url,
            "api_key": "os.environ/VLLM_API_KEY",
        },
        "model_info": {"max_input_tokens": int(m["max_context"]), "hf_id": m["hf_id"]},
    } for m in models]
    return {
        "model_list": model_list,
        # "prometheus" makes the proxy serve /metrics on its own port (LiteLLM's
        # PrometheusLogger._mount_metrics_endpoint); Prometheus scrapes it.
        "litellm_settings": {"drop_params": True, "request_timeout": 600, "callbacks": ["prometheus"]},
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "database_url": "os.environ/DATABASE_URL",
        },
    }
