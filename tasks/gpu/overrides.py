"""What the user asks of the GPU planner: `PlanOverrides` (argument > config ``mmstack.gpu.*`` >
its defaults), and what each setting takes (the inventory's checks read the same table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ..engine.errors import ConfigError

P2P_MODES = {"auto": "auto", "on": "on", "off": "off", "force-on": "on", "force-off": "off",
             "true": "on", "false": "off", "yes": "on", "no": "off"}
# What the overrides below take: the planner's own checks and the inventory's (a host's gpu:
# vars, remote/inventorycheck.py) read these, so both refuse the same values.
WHOLE_NUMBER_SETTINGS = ("tensor_parallel", "pipeline_parallel", "max_model_len", "attention_heads",
                         "kv_bytes_per_token", "max_model_len_cap", "min_concurrent_seqs",
                         "overhead_mib", "idle_used_mib", "headroom_mib")
FRACTION_SETTINGS = {"memory_utilization": (0.05, 0.99), "base_utilization": (0.05, 0.99),
                     "display_utilization": (0.05, 0.99), "shared_utilization": (0.05, 0.99),
                     "busy_fraction": (0.0, 1.0)}


@dataclass(frozen=True)
class PlanOverrides:
    """What the user asks for (argument > config ``mmstack.gpu.*`` > these defaults)."""

    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    memory_utilization: float | None = None
    max_model_len: int | None = None
    p2p: str = "auto"
    gpus: tuple[str, ...] = ()  # pin vLLM to these GPUs (indices or UUIDs)
    # The KV-cache budget: the model's weights and its KV bytes per token (all layers, K and V).
    # Defaults fit the stack's default model, Qwen2.5-7B-Instruct in bf16: 15.2 GB of weights;
    # 28 layers x 4 KV heads x 128 dims x 2 (K, V) x 2 bytes = 57344 bytes per token.
    model_weights_gib: float = 15.0
    kv_bytes_per_token: int = 57344
    max_model_len_cap: int = 32768  # the model's own context limit
    # Tensor parallelism must divide the model's attention heads (vLLM refuses otherwise);
    # None: not known, any power of two.
    attention_heads: int | None = None
    model: str | None = None  # the catalogue key the plan is made for (reported, saved)
    min_concurrent_seqs: int = 4  # the KV cache must hold this many full-length sequences
    overhead_mib: int = 2048  # activations, CUDA graphs and the CUDA context, per GPU
    base_utilization: float = 0.90  # an idle, headless card
    display_utilization: float = 0.85  # a display (Xorg, a compositor) may grow into the card
    shared_utilization: float = 0.80  # other processes already use the card
    busy_fraction: float = 0.5  # more than this share of memory used: the card is taken
    idle_used_mib: int = 1024  # more used than this (and no display) means someone else is there
    headroom_mib: int = 512  # kept free beyond vLLM's share, so used + reserved < free

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "PlanOverrides":
        """Build from config/arguments (unknown keys ignored; None means the default)."""
        values = dict(values or {})
        kwargs: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key in names and value is not None and value != "":
                kwargs[key] = value
        try:
            return cls(**kwargs)._validated()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid GPU setting: {exc}", key_path="mmstack.gpu",
                              fix="give numbers for the sizes and auto, on or off for p2p") from None

    def _validated(self) -> "PlanOverrides":
        p2p = P2P_MODES.get(str(self.p2p).strip().lower())
        if p2p is None:
            raise ConfigError(f"--p2p must be auto, on or off, not {self.p2p!r}",
                              key_path="mmstack.gpu.p2p", fix="use auto, on (force-on) or off (force-off)")
        gpus = self.gpus
        if isinstance(gpus, str):
            gpus = tuple(x.strip() for x in gpus.split(",") if x.strip())
        out = replace(self, p2p=p2p, gpus=tuple(str(g) for g in gpus),
                      tensor_parallel=_pos_int(self.tensor_parallel, "tensor_parallel"),
                      pipeline_parallel=_pos_int(self.pipeline_parallel, "pipeline_parallel"),
                      max_model_len=_pos_int(self.max_model_len, "max_model_len"),
                      kv_bytes_per_token=int(self.kv_bytes_per_token),
                      max_model_len_cap=int(self.max_model_len_cap),
                      min_concurrent_seqs=max(1, int(self.min_concurrent_seqs)),
                      overhead_mib=int(self.overhead_mib), idle_used_mib=int(self.idle_used_mib),
                      headroom_mib=int(self.headroom_mib),
                      model_weights_gib=float(self.model_weights_gib),
                      attention_heads=_pos_int(self.attention_heads, "attention_heads"))
        for name, (low, high) in FRACTION_SETTINGS.items():
            value = getattr(out, name)
            if value is None:
                continue
            value = float(value)
            if not low <= value <= high:
                raise ConfigError(f"{name.replace('_', ' ')} must be between {low} and {high}, not {value}",
                                  key_path=f"mmstack.gpu.{name}",
                                  fix="give a fraction of each GPU's memory, e.g. 0.85")
            out = replace(out, **{name: value})
        return out


def _pos_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number < 1:
        raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, not {number}",
                          key_path=f"mmstack.gpu.{name}", fix=f"give {name} a whole number of at least 1")
    return number
