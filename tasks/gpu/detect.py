"""Pick a source for GPU facts: NVML first, nvidia-smi when NVML cannot answer.

``auto`` tries NVML; if NVML is unavailable (no library, no driver, no permission) it asks
nvidia-smi, which may still work (a container with the binary but no bindings, a driver whose
NVML version the bindings do not know). Both failing is a CPU-only result whose reason names
both attempts. Nothing here raises for a host without GPUs.
"""

from __future__ import annotations

from typing import Any

from ..engine.errors import ConfigError
from . import nvml as nvml_mod
from .facts import GpuFacts, cpu_only
from .smi import gather_via_smi

SOURCES = ("auto", "nvml", "smi")


def detect_facts(c: Any, source: str = "auto") -> GpuFacts:
    """Facts for the host ``c`` runs commands on (NVML is only ever local)."""
    if source not in SOURCES:
        raise ConfigError(f"unknown GPU facts source {source!r}", key_path="mmstack.gpu.source",
                          fix=f"use one of: {', '.join(SOURCES)}")
    if source == "smi":
        return gather_via_smi(c)
    facts = _via_nvml()
    if source == "nvml" or facts.gpus:
        return facts
    smi = gather_via_smi(c)
    if smi.gpus:
        smi.warnings.insert(0, f"NVML unavailable ({facts.reason}); facts read from nvidia-smi")
        return smi
    return cpu_only(f"{facts.reason}; {smi.reason}", source="none",
                    warnings=facts.warnings + smi.warnings,
                    driver_version=facts.driver_version or smi.driver_version)


def _via_nvml() -> GpuFacts:
    try:
        boundary = nvml_mod.make_boundary()
    except nvml_mod.NvmlCallError as exc:
        return cpu_only(nvml_mod.reason_for(exc.code, exc.detail), source="nvml")
    return nvml_mod.collect(boundary)
