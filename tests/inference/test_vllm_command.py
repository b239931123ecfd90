"""vLLM's generated command, parsed by vLLM's own argument parser of the pinned release.

The path is the user's: real `nvidia-smi` outputs (../shared/fixtures/gpu/) -> GPU facts ->
`inv configure-gpu --facts` in a copy of the stack -> the compose files -> the `command:` the
vllm/vllm-openai image appends to its `vllm serve` entrypoint -> vLLM's parser (PyPI vllm, in
the venv tests/realapps/vllm-venv.sh builds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.gpu import smi
from tasks.gpu.facts import GpuFacts
from tests.gpu.fakes import FIXTURES
from tests.support.stackcopy import run_inv, set_up_copy
from tests.support.vllm_parser import parse_vllm_command

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no GPU fixtures at {FIXTURES}")]
MODEL = {"hf_id": "Qwen/Qwen2.5-7B-Instruct", "served": "qwen2.5-7b-instruct", "heads": 28}


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def facts_2x3090() -> Any:
    """The NVLinked pair as the fixtures show it, with its memory freed: the saved output was
    taken while a model filled both cards, and the planner leaves busy cards out (its own test
    covers that); here the host is ready to serve."""
    facts = smi.facts_from_smi(None, read("topo-2x3090-nv4.txt"), read("nvlink-status-2x3090.txt"),
                               read("smi-2x3090-nvlink-noprocs.txt"))
    doc = facts.to_dict()
    for gpu in doc["gpus"]:
        assert gpu["memory_total_mib"] and gpu["memory_used_mib"] > gpu["memory_total_mib"] / 2
        gpu["memory_used_mib"], gpu["processes"] = 300, 0
    return GpuFacts.from_dict(doc)


def facts_8xh100() -> Any:
    """The 8-GPU NV18 topology as saved; the saved outputs name only GPU0 (an H100 80GB HBM3),
    so the query rows give all eight that card, idle."""
    rows = "".join(f"{i}, GPU-{i:08x}-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, "
                   f"00000000:{0x18 + i:02X}:00.0, 81559 MiB, 1 MiB, Disabled, 9.0, 550.54.15\n"
                   for i in range(8))
    query = ("index, uuid, name, pci.bus_id, memory.total [MiB], memory.used [MiB], display_active, "
             "compute_cap, driver_version\n" + rows)
    return smi.facts_from_smi(query, read("topo-8xh100-nv18.txt"))


def facts_1xh100() -> Any:
    return smi.facts_from_smi(None, None, read("nvlink-status-h100sxm-gpu0.txt"))


def vllm_command(stack: Path, env: str) -> list[str]:
    """The command Compose gives vllm in ``env``: the overlay's when it has one, else the base's."""
    def load(name: str) -> dict[str, Any]:
        return yaml.safe_load((stack / name).read_text().replace("!override", "").replace("!reset", ""))
    overlay = load(f"compose.{env}.yml")["services"].get("vllm") or {}
    return overlay.get("command") or load("compose.yml")["services"]["vllm"]["command"]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return set_up_copy(tmp_path / "stack")


def configure(stack: Path, facts: Any) -> dict[str, Any]:
    path = stack.parent / "facts.json"
    path.write_text(json.dumps(facts.to_dict()))
    proc = run_inv(stack, "configure-gpu", "--facts", str(path), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["plan"]


@pytest.mark.parametrize("facts, gpus", [(facts_2x3090, 2), (facts_8xh100, 4), (facts_1xh100, 1)],
                         ids=["2x3090-nvlink", "8xh100-nv18", "1xh100"])
def test_the_planned_command_is_what_vllm_parses(stack: Path, facts: Any, gpus: int) -> None:
    plan = configure(stack, facts())
    for env in ("gpu", "production"):
        args = parse_vllm_command(vllm_command(stack, env))
        assert args["model"] == MODEL["hf_id"]
        assert args["served_model_name"] in (MODEL["served"], [MODEL["served"]])
        # 2 NVLinked 3090s: both; 8 H100s: 4, the largest power of two dividing 28 heads.
        assert args["tensor_parallel_size"] == plan["tensor_parallel"] == gpus
        assert MODEL["heads"] % args["tensor_parallel_size"] == 0
        assert args["pipeline_parallel_size"] == 1
        assert args["gpu_memory_utilization"] == pytest.approx(plan["memory_utilization"])
        assert args["max_model_len"] == plan["max_model_len"] <= 32768
        assert args["port"] == 8000 and args["host"] == "0.0.0.0"
        assert args["dtype"] == "bfloat16"
        # vLLM reads its key from VLLM_API_KEY: never on the command line.
        assert not args.get("api_key")


def test_the_nvlink_pair_keeps_custom_all_reduce_and_pcie_turns_it_off(stack: Path) -> None:
    configure(stack, facts_2x3090())
    assert parse_vllm_command(vllm_command(stack, "gpu"))["disable_custom_all_reduce"] is False
    # The same cards with peer-to-peer forced off: vLLM's custom all-reduce (P2P) must be off too.
    path = stack.parent / "facts.json"
    proc = run_inv(stack, "configure-gpu", "--facts", str(path), "--p2p", "off")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert parse_vllm_command(vllm_command(stack, "gpu"))["disable_custom_all_reduce"] is True


def test_the_command_without_a_plan_is_valid_too(stack: Path) -> None:
    args = parse_vllm_command(vllm_command(stack, "staging"))
    assert args["model"] == MODEL["hf_id"] and args["tensor_parallel_size"] == 1
