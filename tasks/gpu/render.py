"""Human summaries of GPU facts and plans (plain text unless writing to a terminal)."""

from __future__ import annotations

from .facts import GpuFacts
from .planfile import GpuPlan

from ..engine.console import paint as _paint

_BOLD, _GREEN, _DIM = "heading", "link", "dim"


def topology_matrix(facts: GpuFacts, colour: bool = False) -> list[str]:
    """The GPU-GPU matrix, like `nvidia-smi topo -m`: NV<n> where NVLink joins a pair."""
    idx = [g.index for g in facts.gpus]
    labels = [f"GPU{i}" for i in idx]
    width = max([len(x) for x in labels] + [4]) + 2
    lines = [" " * width + "".join(lab.ljust(width) for lab in labels).rstrip()]
    for a, label in zip(idx, labels):
        cells = []
        for b in idx:
            if a == b:
                cell = "X"
            else:
                link = facts.link(a, b)
                cell = link.label if link else "?"
            text = cell.ljust(width)
            if colour and cell.startswith("NV"):
                text = _paint(text, _GREEN, True)
            cells.append(text)
        lines.append(label.ljust(width) + "".join(cells).rstrip())
    return lines


def facts_summary(facts: GpuFacts, colour: bool = False) -> str:
    head = f"GPU facts (source: {facts.source}"
    if facts.host:
        head += f", host {facts.host}"
    head += f", driver {facts.driver_version or 'unknown'}, CUDA {facts.cuda_version or 'unknown'})"
    out = [_paint(head, _BOLD, colour)]
    if facts.cpu_only:
        out.append(f"  CPU only: {facts.reason or 'no GPU found'}")
    for g in facts.gpus:
        mem = "memory unknown"
        if g.memory_total_mib is not None:
            mem = f"{g.memory_total_mib} MiB"
            if g.memory_used_mib is not None:
                mem += f" ({g.memory_used_mib} used)"
        extra = []
        if g.compute_capability:
            extra.append(f"sm {g.compute_capability}")
        if g.display_active:
            extra.append("display")
        if g.processes:
            extra.append(f"{g.processes} process(es)")
        if g.active_nvlinks:
            extra.append(f"{g.active_nvlinks} NVLink(s) up")
        out.append(f"  GPU{g.index}  {g.name}  {mem}" + (f"  [{', '.join(extra)}]" if extra else ""))
        out.append(_paint(f"        bus {g.pci_bus_id or '?'}  {g.uuid or 'no UUID'}", _DIM, colour))
    if len(facts.gpus) > 1:
        out.append("Topology (NV# = bonded NVLinks; PIX/PXB/PHB/NODE/SYS = PCIe path):")
        out.extend("  " + line for line in topology_matrix(facts, colour))
        pairs = facts.nvlink_pairs()
        if pairs:
            out.append("NVLink pairs: " + ", ".join(f"GPU{t.a}-GPU{t.b} ({t.nvlinks} links)" for t in pairs))
        else:
            out.append("NVLink pairs: none")
    if facts.nics:
        out.append("NICs: " + ", ".join(f"{n.name}={n.device or '?'}" for n in facts.nics))
    for w in facts.warnings:
        out.append(f"  note: {w}")
    return "\n".join(out)


def plan_summary(plan: GpuPlan, colour: bool = False) -> str:
    out = [_paint("GPU plan", _BOLD, colour)]
    out.extend(f"  {m}" for m in plan.messages)
    out.extend(_paint(f"  now: {n}", _DIM, colour) for n in plan.notes)
    if not plan.cpu_only:
        for k, v in plan.vllm_env().items():
            out.append(f"    {k}={v}")
        if plan.vllm_args:
            out.append(f"    vLLM args: {' '.join(plan.vllm_args)}")
    return "\n".join(out)

