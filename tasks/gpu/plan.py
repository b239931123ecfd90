"""The GPU plan: which GPUs vLLM gets and how it is configured, from facts. Pure.

`plan_gpus(facts, overrides, previous)` decides, with no I/O:

* **the vLLM group**: among GPUs that are not already mostly used, the largest group fully
  connected by NVLink; without NVLink, the largest group whose worst PCIe link is the best
  (PIX > PXB > PHB > NODE > SYS). Groups are made of identical cards (same name and memory)
  unless the user pins GPUs, and their size is a power of two (times the pipeline size), so
  that tensor parallelism splits attention heads evenly.
* **tensor / pipeline parallel**: the group size (pipeline 1 unless asked).
* **memory utilization** and a **max model length** that fits the KV-cache budget.
* **NCCL**: NVLink -> ``NCCL_P2P_LEVEL=NVL``; no NVLink -> peer-to-peer off and vLLM's custom
  all-reduce off, unless ``p2p=on`` (peer-to-peer that the driver reports can still hang).
* **the rest**: GPUs vLLM does not use go to the multimodal worker; no GPU at all gives a
  CPU-only plan with a message saying what is left out.

What the user asks is `overrides.PlanOverrides`; the plan document (and loading the saved one)
is `planfile.GpuPlan`. ``previous`` (the saved plan) keeps re-runs stable while the stack is running: a card that looks
busy only because the stack's own vLLM holds it keeps the settings it was planned with.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine.errors import ConfigError, GpuError
from .facts import Gpu, GpuFacts, LinkLevel
from .overrides import PlanOverrides
from .planfile import GpuPlan

# NCCL_P2P_LEVEL takes LOC, NVL, PIX, PXB, PHB or SYS; NODE has no name of its own there,
# so allowing P2P across host bridges in one NUMA node needs SYS.
_NCCL_LEVEL = {LinkLevel.NVLINK: "NVL", LinkLevel.PIX: "PIX", LinkLevel.PXB: "PXB",
               LinkLevel.PHB: "PHB", LinkLevel.NODE: "SYS", LinkLevel.SYS: "SYS",
               LinkLevel.UNKNOWN: "SYS"}
MAX_EXHAUSTIVE = 16  # up to this many candidate GPUs, every subset is scored
MiB = 2**20


# -- planning ---------------------------------------------------------------------------------------
def plan_gpus(facts: GpuFacts, overrides: PlanOverrides | Mapping[str, Any] | None = None,
              previous: GpuPlan | None = None) -> GpuPlan:
    """Pure: the GPU plan for ``facts`` (see the module doc for the rules)."""
    o = overrides if isinstance(overrides, PlanOverrides) else PlanOverrides.from_mapping(overrides)
    if facts.cpu_only:
        return _cpu_plan(o, [f"no GPU: {facts.reason or 'none detected'}"])

    ours = set(previous.vllm_device_ids + previous.worker_device_ids) if previous and not previous.cpu_only else set()
    notes: list[str] = []
    messages: list[str] = []
    busy: list[Gpu] = []
    if o.gpus:
        candidates = _pinned(facts, o.gpus)
        for g in candidates:
            if _busy(g, o) and g.device_id not in ours:
                messages.append(f"GPU{g.index} is pinned but already more than "
                                f"{o.busy_fraction:.0%} used by something else")
        # Unpinned cards that are taken are not handed to the worker either.
        busy = [g for g in facts.gpus if g not in candidates and _busy(g, o) and g.device_id not in ours]
    else:
        candidates = []
        for g in facts.gpus:
            if _busy(g, o):
                if g.device_id in ours:
                    notes.append(f"GPU{g.index}: {_used(g)} in use; it is in the saved plan, "
                                 "so that is taken to be the stack itself")
                else:
                    busy.append(g)
                    messages.append(f"GPU{g.index} ({g.name}) is left out: more than "
                                    f"{o.busy_fraction:.0%} of its memory is already used by "
                                    "something else")
                    notes.append(f"GPU{g.index}: {_used(g)} in use")
                    continue
            candidates.append(g)
    if not candidates:
        return _cpu_plan(o, messages + ["no usable GPU: every GPU is already mostly used; stop "
                                        "what uses them, or pin GPUs with --gpus"], notes)

    pp = o.pipeline_parallel or 1
    if o.tensor_parallel and o.attention_heads and o.attention_heads % o.tensor_parallel:
        raise ConfigError(
            f"tensor parallel {o.tensor_parallel} does not divide the {o.attention_heads} attention "
            f"heads of {o.model or 'the model'}: vLLM refuses to start",
            key_path="mmstack.gpu.tensor_parallel",
            fix=f"use one of: {', '.join(str(d) for d in _tp_sizes(o.attention_heads, len(candidates)))}")
    if o.tensor_parallel:
        sizes = [o.tensor_parallel * pp]
        if sizes[0] > len(candidates):
            raise ConfigError(
                f"tensor parallel {o.tensor_parallel} x pipeline parallel {pp} needs {sizes[0]} "
                f"GPUs, but only {len(candidates)} usable GPU(s) are available",
                key_path="mmstack.gpu.tensor_parallel",
                fix="lower --tensor-parallel / --pipeline-parallel, or free or pin more GPUs")
    else:
        sizes = [pp * tp for tp in _tp_sizes(o.attention_heads, len(candidates) // pp)]
        if not sizes:
            raise ConfigError(f"pipeline parallel {pp} needs {pp} GPUs, but only "
                              f"{len(candidates)} usable GPU(s) are available",
                              key_path="mmstack.gpu.pipeline_parallel",
                              fix="lower --pipeline-parallel")
    if o.model:
        # A catalogue model's size is known: one that cannot fit is a planning error now,
        # not an out-of-memory crash when vLLM starts.
        fitting = [n for n in sizes if _weights_fit(candidates, n, o)]
        if not fitting:
            smallest = min(g.memory_total_mib or 0 for g in candidates) / 1024
            raise GpuError(
                f"model {o.model!r} does not fit: {o.model_weights_gib:g} GiB of weights over "
                f"{max(sizes)} GPU(s) of {smallest:.0f} GiB leave no room for its KV cache",
                key_path=f"models.{o.model}",
                fix="serve a smaller or quantized model (models: in the schema, then the "
                    "environment's model:), or use more GPUs")
        sizes = fitting
    group = _best_group(facts, candidates, sizes, o, ours, mixed=bool(o.gpus))
    if group is None:
        group = _best_group(facts, candidates, sizes, o, ours, mixed=True)
        messages.append("no set of identical cards is large enough: vLLM spans different models")
    assert group is not None
    tp = len(group) // pp
    if o.gpus and len(group) < len(candidates):
        left = [g.index for g in candidates if g not in group]
        messages.append(f"pinned GPU(s) {_names(left)} not used by vLLM: tensor x pipeline "
                        "parallel must be a power of two times the pipeline size")

    worker = [g for g in facts.gpus if g not in group and g not in busy]
    plan = GpuPlan(cpu_only=False, model=o.model, vllm_gpus=[g.index for g in group],
                   vllm_device_ids=[g.device_id for g in group],
                   worker_gpus=[g.index for g in worker],
                   worker_device_ids=[g.device_id for g in worker],
                   tensor_parallel=tp, pipeline_parallel=pp, p2p_mode=o.p2p)
    names = sorted({g.name for g in group})
    link, worst = _group_link(facts, group)
    plan.link = link
    messages.insert(0, f"vLLM: {_names(plan.vllm_gpus)} ({', '.join(names)})"
                       + (f" joined by {link}" if len(group) > 1 else "")
                       + f": tensor parallel {tp}, pipeline parallel {pp}")
    _plan_p2p(plan, worst, len(group), o, messages)
    _plan_memory(plan, group, o, previous, messages, notes)
    messages.append(f"multimodal worker: {_names(plan.worker_gpus)}" if worker
                    else "multimodal worker: no GPU left for it, it runs in CPU mode")
    plan.messages = messages
    plan.notes = notes
    return plan


plan_gpu = plan_gpus  # the name the remote deploy looks up


def _tp_sizes(heads: int | None, most: int) -> list[int]:
    """Tensor-parallel sizes to try: powers of two up to ``most`` that divide ``heads`` (any
    power of two when the heads are not known)."""
    return [tp for tp in (2**k for k in range(8)) if tp <= most and (not heads or heads % tp == 0)]


def _weights_fit(candidates: list[Gpu], n: int, o: PlanOverrides) -> bool:
    """Whether 1/n of the weights, vLLM's overhead and some KV cache fit on the smallest card."""
    totals = [g.memory_total_mib for g in candidates if g.memory_total_mib]
    if not totals:
        return True
    budget = min(totals) * o.base_utilization - o.overhead_mib
    # At least one full-length sequence of KV cache, or a quarter GiB, must be left.
    kv_min = max(256.0, o.kv_bytes_per_token * min(o.max_model_len_cap, 4096) / MiB / n)
    return o.model_weights_gib * 1024 / n + kv_min <= budget


def _cpu_plan(o: PlanOverrides, messages: list[str], notes: list[str] | None = None) -> GpuPlan:
    return GpuPlan(cpu_only=True, model=o.model, p2p_mode=o.p2p, notes=list(notes or []),
                   messages=messages + [
        "no GPU for vLLM: its CUDA image cannot run here, so the GPU environments will not "
        "start on this host; development runs without vLLM (or set its vllm_device: cpu with "
        "a CPU build of vLLM); the multimodal worker runs in CPU mode"])


def _pinned(facts: GpuFacts, pins: Sequence[str]) -> list[Gpu]:
    out: list[Gpu] = []
    for pin in pins:
        g = next((g for g in facts.gpus if pin in (str(g.index), g.uuid)), None)
        if g is None:
            known = ", ".join(f"{g.index} ({g.uuid})" for g in facts.gpus)
            raise ConfigError(f"--gpus names GPU {pin!r}, which this host does not have",
                              key_path="mmstack.gpu.gpus", fix=f"use an index or UUID of: {known}")
        if g not in out:
            out.append(g)
    return sorted(out, key=lambda g: g.index)


def _busy(g: Gpu, o: PlanOverrides) -> bool:
    if not g.memory_total_mib or g.memory_used_mib is None:
        return False
    return g.memory_used_mib > o.busy_fraction * g.memory_total_mib


def _used(g: Gpu) -> str:
    return f"{g.memory_used_mib} of {g.memory_total_mib} MiB"


def _names(indices: Sequence[int]) -> str:
    return ", ".join(f"GPU{i}" for i in indices)


def _best_group(facts: GpuFacts, candidates: list[Gpu], sizes: list[int], o: PlanOverrides,
                ours: set[str], mixed: bool) -> list[Gpu] | None:
    """The best subset of ``candidates`` whose size is one of ``sizes``.

    Ranking, most important first: fully NVLink-connected; larger; better worst link; more
    NVLinks per pair; fewer cards shared with other processes; fewer displays; more total
    memory; lower indices. Only stable signals rank groups (free memory drifts from run to
    run and would make a re-run pick other cards); the stack's own cards (``ours``) never
    count as shared. Without ``mixed``, a subset holds only identical cards.
    """
    classes: list[list[Gpu]]
    if mixed:
        classes = [candidates]
    else:
        by_model: dict[tuple[str, int | None], list[Gpu]] = {}
        for g in candidates:
            by_model.setdefault((g.name, g.memory_total_mib), []).append(g)
        classes = list(by_model.values())
    best: tuple[Any, ...] | None = None
    best_group: list[Gpu] | None = None
    for cls in classes:
        for size in sizes:
            if size > len(cls):
                continue
            for subset in _subsets(cls, size):
                key = _score(facts, list(subset), o, ours)
                if best is None or key > best:
                    best, best_group = key, list(subset)
    return best_group


def _subsets(gpus: list[Gpu], size: int) -> Any:
    if len(gpus) <= MAX_EXHAUSTIVE:
        return itertools.combinations(gpus, size)
    return [gpus[:size]]  # very large hosts: lowest indices (they are rarely mixed)


def _looks_used(g: Gpu, o: PlanOverrides) -> bool:
    return (g.memory_used_mib or 0) > o.idle_used_mib or (g.processes or 0) > 0


def _score(facts: GpuFacts, group: list[Gpu], o: PlanOverrides, ours: set[str]) -> tuple[Any, ...]:
    pairs = [facts.link(a.index, b.index) for a, b in itertools.combinations(group, 2)]
    all_nv = bool(pairs) and all(p is not None and p.level is LinkLevel.NVLINK for p in pairs)
    worst = max((p.level.rank if p else LinkLevel.UNKNOWN.rank for p in pairs), default=0)
    min_links = min((p.nvlinks if p else 0 for p in pairs), default=0)
    shared = sum(1 for g in group if g.device_id not in ours and _looks_used(g, o))
    displays = sum(1 for g in group if g.display_active)
    total = sum(g.memory_total_mib or 0 for g in group)
    return (all_nv, len(group), -worst, min_links, -shared, -displays, total,
            tuple(-g.index for g in group))


def _group_link(facts: GpuFacts, group: list[Gpu]) -> tuple[str, LinkLevel]:
    """("nvlink (NV4)" or the worst PCIe level, that level)."""
    if len(group) < 2:
        return "none", LinkLevel.NVLINK
    pairs = [facts.link(a.index, b.index) for a, b in itertools.combinations(group, 2)]
    levels = [p.level if p else LinkLevel.UNKNOWN for p in pairs]
    worst = max(levels, key=lambda lv: lv.rank)
    if worst is LinkLevel.NVLINK:
        counts = sorted({p.nvlinks for p in pairs if p})
        return f"NVLink ({'/'.join(f'NV{c}' for c in counts)})", worst
    return f"PCIe ({worst.value})", worst


def _plan_p2p(plan: GpuPlan, worst: LinkLevel, size: int, o: PlanOverrides,
              messages: list[str]) -> None:
    if size < 2:
        plan.link = "none"
        return
    plan.link = "nvlink" if worst is LinkLevel.NVLINK else worst.value
    enable = {"on": True, "off": False}.get(o.p2p, worst is LinkLevel.NVLINK)
    plan.p2p_enabled = enable
    if enable:
        plan.nccl_env = {"NCCL_P2P_LEVEL": _NCCL_LEVEL[worst]}
        if worst is not LinkLevel.NVLINK:
            messages.append(f"peer-to-peer forced on over PCIe ({worst.value}): if NCCL hangs at "
                            "start-up, use --p2p auto")
    else:
        # NCCL then goes through host memory, and vLLM's custom all-reduce (which needs P2P)
        # must be off too, or it tries P2P anyway.
        plan.nccl_env = {"NCCL_P2P_DISABLE": "1"}
        plan.vllm_args = ["--disable-custom-all-reduce"]
        why = "turned off (--p2p off)" if o.p2p == "off" else \
            f"off: no NVLink between the chosen GPUs (worst link {worst.value}); --p2p on forces it"
        messages.append(f"peer-to-peer {why}")


def _floor2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100


def _plan_memory(plan: GpuPlan, group: list[Gpu], o: PlanOverrides, previous: GpuPlan | None,
                 messages: list[str], notes: list[str]) -> None:
    """Memory utilization (one value for every GPU of the group) and the max model length."""
    prev_vllm = set(previous.vllm_device_ids) if previous and previous.memory_utilization else set()
    utils: list[float] = []
    caps: list[float] = []
    for g in group:
        total = g.memory_total_mib
        if not total:
            utils.append(o.base_utilization)
            continue
        used = g.memory_used_mib or 0
        looks_used = _looks_used(g, o)
        if looks_used and g.device_id in prev_vllm and previous is not None:
            # The stack's own vLLM holds this card: keep what was planned for it.
            assert previous.memory_utilization is not None
            utils.append(previous.memory_utilization)
            notes.append(f"GPU{g.index}: keeps memory utilization {previous.memory_utilization:.2f} "
                         "from the saved plan while the stack runs on it")
            continue
        util = o.base_utilization
        if g.display_active:
            util = min(util, o.display_utilization)
            messages.append(f"GPU{g.index} drives a display: memory utilization at most "
                            f"{o.display_utilization:.2f}")
        if looks_used:
            util = min(util, o.shared_utilization)
            messages.append(f"GPU{g.index} is shared with other processes: memory utilization at "
                            f"most {o.shared_utilization:.2f}")
            notes.append(f"GPU{g.index}: {_used(g)} in use, {g.processes or 0} process(es) seen")
        # vLLM reserves utilization x total; that must fit in what is free now, with headroom.
        cap = _floor2((total - used - o.headroom_mib) / total)
        caps.append(cap)
        if cap < util:
            util = cap
            messages.append(f"GPU{g.index}: memory utilization capped at {cap:.2f} by its free memory")
        utils.append(util)
    util = _floor2(min(utils)) if utils else o.base_utilization
    if o.memory_utilization is not None:
        if caps and o.memory_utilization > min(caps):
            messages.append(f"memory utilization {o.memory_utilization:.2f} was asked for, but "
                            f"only {min(caps):.2f} is free on some GPU: vLLM may fail to start")
        util = o.memory_utilization
    plan.memory_utilization = util

    # Max model length from the KV-cache budget:
    #   kv_per_gpu  = total_mib x utilization - weights_mib / (tp x pp) - overhead_mib
    #   kv_tokens   = kv_per_gpu x n_gpus x MiB / kv_bytes_per_token   (KV is split over GPUs)
    #   max_len     = kv_tokens / min_concurrent_seqs, rounded down to a multiple of 1024,
    #                 at most the model's own limit (max_model_len_cap)
    totals = [g.memory_total_mib for g in group if g.memory_total_mib]
    if not totals:
        plan.max_model_len = o.max_model_len or o.max_model_len_cap
        return
    n = len(group)
    kv_per_gpu = min(totals) * util - o.model_weights_gib * 1024 / n - o.overhead_mib
    tokens = int(max(0.0, kv_per_gpu) * n * MiB // o.kv_bytes_per_token)
    fit = min(o.max_model_len_cap, (tokens // o.min_concurrent_seqs) // 1024 * 1024)
    if o.max_model_len is not None:
        if o.max_model_len > tokens:
            messages.append(f"max model length {o.max_model_len} was asked for, but the KV cache "
                            f"holds about {tokens} tokens: vLLM may refuse to start")
        plan.max_model_len = o.max_model_len
    elif fit < 1024:
        plan.max_model_len = 1024
        messages.append(f"the model barely fits: the KV cache holds about {tokens} tokens; "
                        "use more GPUs, a smaller or quantized model, or set model_weights_gib")
    else:
        plan.max_model_len = fit
