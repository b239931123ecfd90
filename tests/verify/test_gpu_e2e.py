"""The GPU checks against what the real Docker engine made of mmstack's compose files.

No GPU is reachable, so vLLM's container is created by Compose (``up --no-start``: the engine
refuses to *start* a container asking for the nvidia driver without it, but records the
request) from the gpu environment's files for a saved dual-card NVLink plan; the checks read it
back with ``docker inspect`` as they do on a GPU host. Then the plan moves to another pair of
cards while vLLM keeps the old one: exactly the GPU check fails, naming both sets and the fix.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from invoke import Context

from tasks.gpu.planfile import GpuPlan
from tasks.schema.load import load_stack
from tasks.stack.composecmd import find_compose_command
from tasks.verify.checks.gpu import vllm_gpus, vllm_p2p
from tasks.verify.probe import Probe
from tasks.verify.registry import CheckFailed
from tasks.verify.target import Target, gather_containers
from tests.lifecycle.conftest import pick_offset, remove_project
from tests.lifecycle.stackconfig import write_test_settings
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.docker]
PAIR = ["GPU-7a1b6c1e-0000-4000-8000-000000000001", "GPU-7a1b6c1e-0000-4000-8000-000000000002"]
OTHER = ["GPU-7a1b6c1e-0000-4000-8000-000000000001", "GPU-7a1b6c1e-0000-4000-8000-000000000003"]


def nvlink_plan(ids: list[str]) -> GpuPlan:
    return GpuPlan(cpu_only=False, vllm_gpus=[0, 1], vllm_device_ids=list(ids), tensor_parallel=2,
                   memory_utilization=0.9, max_model_len=32768, link="nvlink", p2p_enabled=True,
                   nccl_env={"NCCL_P2P_LEVEL": "NVL"}, model="qwen2.5-7b-instruct")


def save_plan(root: Path, plan: GpuPlan) -> dict[str, Any]:
    (root / ".mmstack").mkdir(exist_ok=True)
    (root / ".mmstack" / "gpu-plan.json").write_text(plan.to_json())
    proc = run_inv(root, "setup", "--env", "gpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return plan.to_dict()


@pytest.fixture
def gpu_stack(tmp_path: Path, docker_client: Any, test_images: dict[str, str]) -> Any:
    root = make_stack_copy(tmp_path / "stack")
    project = f"mmsgpu{uuid.uuid4().hex[:8]}"
    write_test_settings(root, project, pick_offset(root, 4242), test_images)
    try:
        yield root, project
    finally:
        remove_project(docker_client, project)


def test_vllm_on_the_planned_cards_then_on_the_wrong_ones(gpu_stack: Any) -> None:
    root, project = gpu_stack
    plan = save_plan(root, nvlink_plan(PAIR))
    compose = list(find_compose_command(None))
    up = subprocess.run([*compose, "-p", project, "-f", "compose.yml", "-f", "compose.gpu.yml", "--profile", "gpu",
                         "up", "--no-start", "--no-deps", "vllm"], cwd=root, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    stack = load_stack(root)
    probe = Probe(Context())
    target = Target(env="gpu", stack=stack, expected=stack.environment("gpu").services, secrets={}, plan=plan)
    target.containers = gather_containers(probe, project)
    assert target.containers["vllm"][1] == "created"
    assert vllm_gpus(target, probe) == ", ".join(PAIR)
    assert vllm_p2p(target, probe) == "peer-to-peer on over nvlink (NCCL_P2P_LEVEL=NVL)"

    # The plan now says other cards; the container still has the old ones.
    target.plan = save_plan(root, nvlink_plan(OTHER))
    with pytest.raises(CheckFailed) as failed:
        vllm_gpus(target, probe)
    assert failed.value.expected == ", ".join(OTHER) and failed.value.got == ", ".join(PAIR)
    assert "inv configure-gpu" in failed.value.fix and "inv start --env gpu" in failed.value.fix
    assert vllm_p2p(target, probe)  # peer-to-peer is still as planned: only the cards differ

    # A plan without NVLink turns peer-to-peer off; the container still has it on.
    pcie = nvlink_plan(PAIR)
    pcie.link, pcie.p2p_enabled, pcie.nccl_env = "SYS", False, {"NCCL_P2P_DISABLE": "1"}
    target.plan = pcie.to_dict()
    with pytest.raises(CheckFailed) as failed:
        vllm_p2p(target, probe)
    assert failed.value.expected == '{"NCCL_P2P_DISABLE": "1"}' and failed.value.got == '{"NCCL_P2P_LEVEL": "NVL"}'
