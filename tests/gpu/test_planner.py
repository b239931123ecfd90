"""Table-driven planner tests: one JSON file per named state in ``plans/``.

Each file is ``{"facts": ..., "overrides": ..., "previous"?: ..., "expect": ...}``. ``expect``
holds plan fields that must be equal, plus ``env`` (entries of `vllm_env()`), ``env_absent``,
``worker_env``, ``messages_contain`` / ``messages_absent`` (substrings), or ``error`` /
``error_contains`` for plans that must be refused.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.engine import errors
from tasks.gpu.facts import Gpu, GpuFacts, LinkLevel, TopoLink
from tasks.gpu.overrides import PlanOverrides
from tasks.gpu.plan import plan_gpus
from tasks.gpu.planfile import GpuPlan, load_saved_plan

PLANS = sorted((Path(__file__).parent / "plans").glob("*.json"))
SPECIAL = {"env", "env_absent", "worker_env", "messages_contain", "messages_absent", "error",
           "error_contains"}


def test_the_named_states_are_all_there() -> None:
    names = {p.stem for p in PLANS}
    for required in ("one-gpu", "two-3090-nvlink", "two-3090-pcie-no-nvlink", "three-one-linked-pair",
                     "four-two-linked-pairs", "eight-all-nv12", "eight-pcie-only-pix-pxb",
                     "display-attached-headless-pair", "mixed-models-prefers-identical-pair",
                     "one-gpu-mostly-used-is-left-out", "cpu-only-no-driver"):
        assert required in names


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_plan_fixture(path: Path) -> None:
    case = json.loads(path.read_text())
    facts = GpuFacts.from_dict(case["facts"])
    previous = GpuPlan.from_dict(case["previous"]) if "previous" in case else None
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(getattr(errors, expect["error"])) as info:
            plan_gpus(facts, case.get("overrides"), previous)
        assert expect["error_contains"] in str(info.value)
        return
    plan = plan_gpus(facts, case.get("overrides"), previous)
    got = plan.to_dict()
    for key, value in expect.items():
        if key not in SPECIAL:
            assert got[key] == value, f"{key}: {got[key]!r} != {value!r}\n{plan.messages}"
    env = plan.vllm_env()
    for key, value in expect.get("env", {}).items():
        assert env.get(key) == value, f"{key}: {env.get(key)!r} != {value!r}"
    for key in expect.get("env_absent", []):
        assert key not in env
    for key, value in expect.get("worker_env", {}).items():
        assert plan.worker_env()[key] == value
    text = "\n".join(plan.messages)
    for part in expect.get("messages_contain", []):
        assert part in text, f"{part!r} not in:\n{text}"
    for part in expect.get("messages_absent", []):
        assert part not in text, f"{part!r} in:\n{text}"
    # Invariants every plan keeps.
    assert not set(plan.vllm_device_ids) & set(plan.worker_device_ids)
    if not plan.cpu_only:
        assert plan.tensor_parallel * plan.pipeline_parallel == len(plan.vllm_gpus)
    # Cards are pinned by Compose device_ids only: vLLM reads CUDA_VISIBLE_DEVICES as integers,
    # so no UUID (nor any device variable) may reach its environment.
    assert not {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"} & set(env)
    assert not any(uuid in value for value in env.values() for uuid in plan.vllm_device_ids)
    # Planning is pure and deterministic: same input, byte-identical saved form.
    assert plan_gpus(facts, case.get("overrides"), previous).to_json() == plan.to_json()


def test_saved_plan_round_trip(tmp_path: Path) -> None:
    case = json.loads((Path(__file__).parent / "plans" / "two-3090-nvlink.json").read_text())
    plan = plan_gpus(GpuFacts.from_dict(case["facts"]))
    assert load_saved_plan(tmp_path) is None
    (tmp_path / "gpu-plan.json").write_text(plan.to_json())
    again = load_saved_plan(tmp_path)
    assert again is not None and again.to_json() == plan.to_json()
    # The keys the compose generator and env templates read.
    saved = json.loads(plan.to_json())
    assert saved["tensor_parallel"] == 2 and saved["vllm_env"] == {"NCCL_P2P_LEVEL": "NVL"}
    assert saved["vllm_device_ids"] == plan.vllm_device_ids and saved["worker_device_ids"] == []
    assert saved["vllm_args"] == [] and saved["cpu_only"] is False
    (tmp_path / "gpu-plan.json").write_text("{not json")
    with pytest.raises(errors.GpuError):
        load_saved_plan(tmp_path)


def test_facts_round_trip_and_newer_schema_is_refused() -> None:
    case = json.loads((Path(__file__).parent / "plans" / "four-two-linked-pairs.json").read_text())
    facts = GpuFacts.from_dict(case["facts"])
    assert facts.nvlink_peers(0) == {1: 4} and facts.nvlink_peers(2) == {3: 4}
    assert GpuFacts.from_dict(json.loads(json.dumps(facts.to_dict()))).to_dict() == facts.to_dict()
    # detect-gpu --json's whole document is accepted too.
    assert GpuFacts.from_dict({"recap": {}, "facts": facts.to_dict()}).to_dict() == facts.to_dict()
    with pytest.raises(errors.GpuError, match="newer"):
        GpuFacts.from_dict({**facts.to_dict(), "schema_version": 99})
    with pytest.raises(errors.GpuError, match="no 'gpus' key"):
        GpuFacts.from_dict({"hello": 1})


# -- properties over random hosts -------------------------------------------------------------------
LEVELS = ["NV4", "NV12", "PIX", "PXB", "PHB", "NODE", "SYS"]


@st.composite
def hosts(draw: st.DrawFn) -> GpuFacts:
    n = draw(st.integers(1, 8))
    gpus = []
    for i in range(n):
        name, total = draw(st.sampled_from([("NVIDIA GeForce RTX 3090", 24576),
                                            ("NVIDIA GeForce RTX 3060", 12288)]))
        used = draw(st.sampled_from([0, 300, 2000, 20000]))
        gpus.append(Gpu(i, name, f"GPU-{i}", f"00000000:{i + 16:02X}:00.0", total, min(used, total),
                        "8.6", draw(st.booleans()), draw(st.integers(0, 2))))
    topo = []
    for a, b in combinations(range(n), 2):
        cell = draw(st.sampled_from(LEVELS))
        level, count = LinkLevel.parse_cell(cell)
        topo.append(TopoLink(a, b, level, count))
    return GpuFacts("file", gpus, topo)


@settings(max_examples=150, deadline=None)
@given(hosts(), st.sampled_from(["auto", "on", "off"]))
def test_plan_invariants(facts: GpuFacts, p2p: str) -> None:
    plan = plan_gpus(facts, PlanOverrides(p2p=p2p))
    if plan.cpu_only:
        assert plan.vllm_device_ids == [] and plan.vllm_env() == {}
        return
    n = len(plan.vllm_gpus)
    assert n & (n - 1) == 0, "tensor parallel is a power of two"
    assert plan.tensor_parallel == n and plan.pipeline_parallel == 1
    assert len({facts.gpu(i).name for i in plan.vllm_gpus}) == 1, "identical cards only"
    assert set(plan.vllm_gpus).isdisjoint(plan.worker_gpus)
    assert plan.memory_utilization is not None and 0 < plan.memory_utilization <= 0.90
    for i in plan.vllm_gpus:
        g = facts.gpu(i)
        # used + reserved never exceeds what is free (the cap), except the 0.01 rounding floor
        assert g.memory_used_mib + plan.memory_utilization * g.memory_total_mib <= g.memory_total_mib
    assert plan.max_model_len is not None and plan.max_model_len % 1024 == 0
    all_nv = n > 1 and all(facts.level(a, b) is LinkLevel.NVLINK for a, b in combinations(plan.vllm_gpus, 2))
    if n > 1:
        assert ("--disable-custom-all-reduce" in plan.vllm_args) == (not plan.p2p_enabled)
        assert plan.p2p_enabled == {"on": True, "off": False}.get(p2p, all_nv)
    else:
        assert plan.nccl_env == {} and plan.vllm_args == []
    # The largest NVLink-connected set of usable identical cards is never passed over for a
    # smaller one.
    if all_nv:
        assert plan.link == "nvlink"


@pytest.mark.parametrize("key, value", [("base_utilization", 1.5), ("busy_fraction", -0.1),
                                        ("memory_utilization", 0.995)])
def test_a_fraction_out_of_range_is_refused_as_the_inventory_refuses_it(key: str, value: float) -> None:
    """configure-gpu's config (mmstack.gpu.*) and a host's gpu: vars in the inventory take the
    same values: one table of what each setting takes (gpu/overrides.py)."""
    from tasks.engine.errors import ConfigError
    from tasks.gpu.overrides import P2P_MODES, PlanOverrides
    from tasks.remote.inventorycheck import gpu_problem

    with pytest.raises(ConfigError) as caught:
        PlanOverrides.from_mapping({key: value})
    assert caught.value.key_path == f"mmstack.gpu.{key}"
    assert "must be between" in caught.value.message
    inventory_says = gpu_problem(key, value, P2P_MODES)
    assert inventory_says is not None and "must be between" in inventory_says[0]
