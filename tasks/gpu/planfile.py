"""The GPU plan document: what configure-gpu saves in ``.mmstack/gpu-plan.json`` and the compose
generator, the env templates and the remote renders read (`GpuPlan`, `load_saved_plan`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..engine.errors import GpuError
from ..engine.layout import GPU_PLAN_FILE

PLAN_SCHEMA_VERSION = 1
PLAN_FILE = GPU_PLAN_FILE


@dataclass
class GpuPlan:
    """What configure-gpu writes; the compose generator and env templates read it."""

    cpu_only: bool
    vllm_gpus: list[int] = field(default_factory=list)
    vllm_device_ids: list[str] = field(default_factory=list)  # UUIDs, in PCI bus order
    worker_gpus: list[int] = field(default_factory=list)
    worker_device_ids: list[str] = field(default_factory=list)
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    memory_utilization: float | None = None
    max_model_len: int | None = None
    link: str = "none"  # "nvlink", the worst PCIe level of the group, or "none" (one GPU / CPU)
    p2p_mode: str = "auto"
    p2p_enabled: bool = False
    nccl_env: dict[str, str] = field(default_factory=dict)
    vllm_args: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    model: str | None = None  # the catalogue key this plan was made for
    # Observations about this moment (memory in use now) that must not make a re-run differ:
    # printed, never saved.
    notes: list[str] = field(default_factory=list)
    schema_version: int = PLAN_SCHEMA_VERSION

    def vllm_env(self) -> dict[str, str]:
        """Environment for the vLLM container: NCCL's peer-to-peer settings only.

        The cards are pinned by Compose ``device_ids`` (UUIDs); inside the container they are
        numbered from 0, and vLLM reads CUDA_VISIBLE_DEVICES as integers, so nothing here
        names a device. Parallelism and memory go on vLLM's command line (it reads no
        environment for them).
        """
        if self.cpu_only or not self.vllm_device_ids:
            return {}
        return dict(sorted(self.nccl_env.items()))

    def worker_env(self) -> dict[str, str]:
        """Environment for the multimodal worker: whether it has GPUs (pinned by device_ids)."""
        return {"WORKER_DEVICE": "cuda" if self.worker_device_ids else "cpu"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "cpu_only": self.cpu_only,
            "vllm_gpus": list(self.vllm_gpus), "vllm_device_ids": list(self.vllm_device_ids),
            "worker_gpus": list(self.worker_gpus), "worker_device_ids": list(self.worker_device_ids),
            "tensor_parallel": self.tensor_parallel, "pipeline_parallel": self.pipeline_parallel,
            "memory_utilization": self.memory_utilization, "max_model_len": self.max_model_len,
            "link": self.link, "p2p_mode": self.p2p_mode, "p2p_enabled": self.p2p_enabled,
            "nccl_env": dict(sorted(self.nccl_env.items())), "vllm_args": list(self.vllm_args),
            "vllm_env": self.vllm_env(), "worker_env": self.worker_env(),
            "messages": list(self.messages), "model": self.model,
        }

    def to_json(self) -> str:
        """The saved form: stable key order, so an unchanged plan is a byte-identical file."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GpuPlan":
        known = {f.name for f in fields(cls)} - {"notes"}
        kwargs = {k: v for k, v in d.items() if k in known}
        if int(kwargs.get("schema_version", PLAN_SCHEMA_VERSION)) > PLAN_SCHEMA_VERSION:
            raise GpuError("the saved GPU plan is newer than this mmstack understands",
                           key_path="schema_version", fix="run `inv configure-gpu` again")
        return cls(**kwargs)


def load_saved_plan(state_dir: Path) -> GpuPlan | None:
    """The plan configure-gpu saved in ``state_dir`` (None when GPUs were never configured)."""
    path = Path(state_dir) / PLAN_FILE
    try:
        return GpuPlan.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise GpuError(f"cannot read the saved GPU plan: {exc}", file=str(path),
                       fix="run `inv configure-gpu` again") from None
