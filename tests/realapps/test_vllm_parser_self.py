"""The vLLM parser harness is vLLM 0.33.0's real `vllm serve` parser, not a stand-in.

tests.support.vllm_parser keeps one parser process for the session and caches its answers.
"""

from __future__ import annotations

import pytest

from tests.support.vllm_parser import VllmRejected, parse_vllm_command, parse_vllm_commands

pytestmark = pytest.mark.slow

VALID = [
    "Qwen/Qwen3-0.6B",
    "--served-model-name", "chat",
    "--revision", "c1899de289a04d12100db370d81485cdf75e47ca",
    "--tensor-parallel-size", "2",
    "--pipeline-parallel-size", "1",
    "--gpu-memory-utilization", "0.85",
    "--max-model-len", "8k",
    "--host", "0.0.0.0",
    "--port", "8001",
    "--disable-custom-all-reduce",
    "--dtype", "bfloat16",
    "--download-dir", "/models",
    "--api-key", "not-a-real-key",
]
UNKNOWN_FLAG = ["Qwen/Qwen3-0.6B", "--no-such-flag"]
BAD_TP = ["Qwen/Qwen3-0.6B", "--tensor-parallel-size", "two"]
BAD_DTYPE = ["Qwen/Qwen3-0.6B", "--dtype", "float8"]
MODEL_FLAG = ["--model", "Qwen/Qwen3-0.6B", "--port", "9000"]
BARE = ["Qwen/Qwen3-0.6B"]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict | VllmRejected]:
    names = ["valid", "unknown", "bad_tp", "bad_dtype", "model_flag", "bare"]
    argvs = [VALID, UNKNOWN_FLAG, BAD_TP, BAD_DTYPE, MODEL_FLAG, BARE]
    return dict(zip(names, parse_vllm_commands(argvs)))


def test_valid_command_parses_to_the_given_values(outcomes):
    parsed = outcomes["valid"]
    assert not isinstance(parsed, VllmRejected), parsed
    assert parsed["model"] == "Qwen/Qwen3-0.6B"
    assert parsed["model_tag"] == "Qwen/Qwen3-0.6B"
    assert parsed["served_model_name"] == ["chat"]
    assert parsed["revision"] == "c1899de289a04d12100db370d81485cdf75e47ca"
    assert parsed["tensor_parallel_size"] == 2
    assert parsed["pipeline_parallel_size"] == 1
    assert parsed["gpu_memory_utilization"] == 0.85
    assert parsed["max_model_len"] == 8000          # vLLM's human_readable_int: k = 1000
    assert parsed["host"] == "0.0.0.0"
    assert parsed["port"] == 8001
    assert parsed["disable_custom_all_reduce"] is True
    assert parsed["dtype"] == "bfloat16"
    assert parsed["download_dir"] == "/models"
    assert parsed["api_key"] is True and parsed["api_key_count"] == 1
    assert "not-a-real-key" not in repr(parsed)
    # Every other key of the real parser is there too (0.33.0 has ~320).
    assert len(parsed) > 250
    assert {"enable_prefix_caching", "quantization", "kv_cache_dtype"} <= parsed.keys()


def test_defaults_are_vllm_0_33_0s(outcomes):
    parsed = outcomes["bare"]
    assert not isinstance(parsed, VllmRejected), parsed
    assert parsed["port"] == 8000
    assert parsed["host"] is None
    assert parsed["tensor_parallel_size"] == 1
    assert parsed["gpu_memory_utilization"] == 0.92
    assert parsed["api_key"] is False
    assert parsed["served_model_name"] is None


def test_model_flag_is_moved_to_the_positional_place(outcomes):
    parsed = outcomes["model_flag"]
    assert not isinstance(parsed, VllmRejected), parsed
    assert parsed["model"] == parsed["model_tag"] == "Qwen/Qwen3-0.6B"
    assert parsed["port"] == 9000


def test_unknown_flag_is_rejected(outcomes):
    rejected = outcomes["unknown"]
    assert isinstance(rejected, VllmRejected)
    assert rejected.stage == "parse"
    assert "unrecognized arguments: --no-such-flag" in rejected.error


def test_non_integer_tensor_parallel_size_is_rejected(outcomes):
    rejected = outcomes["bad_tp"]
    assert isinstance(rejected, VllmRejected)
    assert rejected.stage == "parse"
    assert "argument --tensor-parallel-size/-tp: invalid int value: 'two'" in rejected.error


def test_bad_dtype_choice_is_rejected(outcomes):
    rejected = outcomes["bad_dtype"]
    assert isinstance(rejected, VllmRejected)
    assert rejected.stage == "parse"
    assert "argument --dtype: invalid choice: 'float8'" in rejected.error


def test_parse_vllm_command_raises_on_rejection_and_validates_combinations():
    # A combination check (validate_parsed_serve_args), past argparse.
    with pytest.raises(VllmRejected) as info:
        parse_vllm_command(["Qwen/Qwen3-0.6B", "--enable-auto-tool-choice"])
    assert info.value.stage == "validate"
    assert "--enable-auto-tool-choice requires --tool-call-parser" in info.value.error
