"""detect-gpu / configure-gpu / start-gpu-auto end to end, with a fake NVML at the boundary."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import shutil
from pathlib import Path

import pytest
from invoke import MockContext, Result

from tasks.gpu import detect, nvml, smi
from tasks.gpu.facts import cpu_only
from tests.gpu.fakes import FIXTURES, REPO, FakeGpu, FakeNvml, dual_3090, run_task
from tests.support.needs import unavailable
from tests.support.stackcopy import snapshot

UUID0 = "GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0"
UUID1 = "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0"


@pytest.fixture()
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack directory with the shipped schema and templates (MMSTACK_DIR): the planner
    takes the served model's sizes from the schema."""
    d = tmp_path / "stack"
    d.mkdir()
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "schemas", d / "schemas")
    shutil.copytree(root / "env-templates", d / "env-templates")
    monkeypatch.setenv("MMSTACK_DIR", str(d))
    monkeypatch.delenv("MMSTACK_DEBUG", raising=False)
    return d


def use_nvml(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> FakeNvml:
    monkeypatch.setattr(nvml, "make_boundary", lambda: fake)
    return fake


def no_smi(monkeypatch: pytest.MonkeyPatch, reason: str = "nvidia-smi not found (no NVIDIA driver installed)") -> None:
    monkeypatch.setattr(detect, "gather_via_smi", lambda c: cpu_only(reason, source="smi"))


# -- the collector --------------------------------------------------------------------------------
def test_collect_dual_3090_nvlink() -> None:
    fake = dual_3090()
    facts = nvml.collect(fake)
    assert fake.shut, "NVML is always shut down"
    assert (facts.source, facts.driver_version, facts.cuda_version) == ("nvml", "550.54.15", "12.4")
    assert [(g.index, g.uuid, g.pci_bus_id, g.memory_total_mib, g.memory_used_mib, g.compute_capability)
            for g in facts.gpus] == [(0, UUID0, "00000000:17:00.0", 24576, 300, "8.6"),
                                     (1, UUID1, "00000000:65:00.0", 24576, 300, "8.6")]
    # NVML's 4-digit-domain remote bus ids still find the peer GPU.
    assert [l.peer_index for l in facts.gpus[0].nvlinks] == [1, 1, 1, 1]
    assert facts.gpus[0].nvlinks[0].remote_bus_id == "00000000:65:00.0"
    assert facts.nvlink_peers(0) == {1: 4} and facts.nvlink_peers(1) == {0: 4}
    assert [t.label for t in facts.topology] == ["NV4"]
    assert facts.warnings == []


def test_collect_without_nvlink_uses_the_pcie_ancestor() -> None:
    facts = nvml.collect(dual_3090(nvlink=False))
    assert [t.label for t in facts.topology] == ["SYS"]
    assert [(l.link, l.active) for l in facts.gpus[0].nvlinks] == [(0, False), (1, False), (2, False), (3, False)]
    assert facts.nvlink_peers(0) == {}


def test_collect_nvswitch_board_gives_nv18_between_every_pair() -> None:
    gpus = [FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i}", bus=f"00000000:{0x18 + i:02X}:00.0",
                    total=80 * 2**30, n_links=18, links={l: f"00000000:{0xA0 + l % 4:02X}:00.0" for l in range(18)})
            for i in range(8)]
    facts = nvml.collect(FakeNvml(gpus=gpus))
    assert len(facts.topology) == 28 and {t.label for t in facts.topology} == {"NV18"}
    assert all(l.peer_index is None for l in facts.gpus[0].nvlinks)  # the far end is a switch


@pytest.mark.parametrize("code, reason", [
    (nvml.DRIVER_NOT_LOADED, "the NVIDIA driver is not loaded"),
    (nvml.LIBRARY_NOT_FOUND, "NVML is not available"),
    (nvml.NO_PERMISSION, "no permission to query the GPUs"),
])
def test_collect_init_failures_are_cpu_only(code: int, reason: str) -> None:
    facts = nvml.collect(FakeNvml(gpus=[FakeGpu()], fail={"init": code}))
    assert facts.cpu_only and facts.gpus == [] and reason in (facts.reason or "")


def test_collect_not_supported_fields_give_a_partial_result() -> None:
    fake = dual_3090()
    fake.gpus[1].fail = {"display_active": nvml.NOT_SUPPORTED, "process_count": nvml.NO_PERMISSION}
    fake.fail = {"cuda_driver_version": nvml.FUNCTION_NOT_FOUND}
    facts = nvml.collect(fake)
    assert len(facts.gpus) == 2 and facts.cuda_version is None
    assert facts.gpus[1].display_active is None and facts.gpus[1].processes is None
    assert facts.gpus[0].display_active is False
    assert any("GPU1 display state: not supported" in w for w in facts.warnings)
    assert any("GPU1 processes: no permission" in w for w in facts.warnings)


def test_collect_gpu_without_nvlink_support_has_no_links_and_no_warning() -> None:
    facts = nvml.collect(FakeNvml(gpus=[FakeGpu(n_links=0)]))
    assert facts.gpus[0].nvlinks == [] and facts.warnings == []


def test_collect_one_gpu_without_permission_is_skipped() -> None:
    fake = dual_3090()
    fake.gpus[1].fail = {"handle": nvml.NO_PERMISSION}
    facts = nvml.collect(fake)
    assert [g.index for g in facts.gpus] == [0]
    assert any("GPU1: skipped (no permission)" in w for w in facts.warnings)


def test_collect_driver_gone_midway_is_cpu_only() -> None:
    fake = dual_3090()
    fake.gpus[0].fail = {"memory": nvml.DRIVER_NOT_LOADED}
    facts = nvml.collect(fake)
    assert facts.cpu_only and "driver is not loaded" in (facts.reason or "")
    assert fake.shut


def _nvml_library_present() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_the_real_pynvml_boundary_reports_this_machine() -> None:
    """The real pynvml boundary, not a fake: a machine with the driver library lists its GPUs;
    one without it (this CPU machine, CI) is CPU-only with NVML's own reason, never a crash."""
    facts = nvml.collect(nvml.make_boundary())
    assert facts.source == "nvml"
    if _nvml_library_present():
        assert facts.gpus and all(g.uuid and (g.memory_total_mib or 0) > 0 for g in facts.gpus), facts.reason
    else:
        assert facts.gpus == []
        assert (facts.reason or "").startswith("NVML is not available"), facts.reason


# -- source selection -----------------------------------------------------------------------------
def test_auto_falls_back_to_smi_when_nvml_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    if not FIXTURES.is_dir():
        unavailable(f"no GPU fixtures at {FIXTURES}", "check out shared/ beside the repository")
    use_nvml(monkeypatch, FakeNvml(fail={"init": nvml.LIBRARY_NOT_FOUND}))
    c = MockContext(run={
        smi.CMD_QUERY: Result("", exited=9), smi.CMD_TABLE: Result((FIXTURES / "smi-2x3090-nvlink-noprocs.txt").read_text()),
        smi.CMD_TOPO: Result((FIXTURES / "topo-2x3090-nv4.txt").read_text()),
        smi.CMD_NVLINK: Result((FIXTURES / "nvlink-status-2x3090.txt").read_text()),
        smi.CMD_APPS: Result("gpu_uuid, pid, used_memory [MiB]\n"),
    })
    facts = detect.detect_facts(c, "auto")
    assert facts.source == "smi" and len(facts.gpus) == 2
    assert facts.warnings[0].startswith("NVML unavailable (NVML is not available")
    assert facts.nvlink_peers(0) == {1: 4}


def test_both_sources_failing_is_cpu_only_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    use_nvml(monkeypatch, FakeNvml(fail={"init": nvml.DRIVER_NOT_LOADED}))
    no_smi(monkeypatch)
    facts = detect.detect_facts(MockContext(), "auto")
    assert facts.cpu_only
    assert facts.reason == "the NVIDIA driver is not loaded; nvidia-smi not found (no NVIDIA driver installed)"


# -- the tasks --------------------------------------------------------------------------------------
def test_detect_gpu_summary_draws_the_nvlink_matrix(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_nvml(monkeypatch, dual_3090(display=True))
    code, out, err = run_task(["detect-gpu"])
    assert code == 0, err
    assert "ok: [GPU0] NVIDIA GeForce RTX 3090, 24576 MiB" in out
    lines = out.splitlines()
    header = next(i for i, l in enumerate(lines) if l.split() == ["GPU0", "GPU1"])
    assert lines[header + 1].split() == ["GPU0", "X", "NV4"]
    assert lines[header + 2].split() == ["GPU1", "NV4", "X"]
    assert "NVLink pairs: GPU0-GPU1 (4 links)" in out
    assert "\x1b[" not in out, "plain text when stdout is not a terminal"
    assert "RECAP ok=2 changed=0 failed=0 skipped=0" in out


def test_detect_gpu_json_is_one_document_of_facts(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_nvml(monkeypatch, dual_3090())
    code, out, _ = run_task(["detect-gpu", "--json"])
    assert code == 0
    doc = json.loads(out)
    facts = doc["facts"]
    assert facts["schema_version"] == 1 and facts["source"] == "nvml" and facts["cpu_only"] is False
    assert [g["uuid"] for g in facts["gpus"]] == [UUID0, UUID1]
    assert facts["gpus"][0]["nvlink_peers"] == {"1": 4}
    assert facts["topology"] == [{"a": 0, "b": 1, "level": "NV", "nvlinks": 4}]


@pytest.mark.parametrize("code", [nvml.NOT_SUPPORTED, nvml.NO_PERMISSION, nvml.DRIVER_NOT_LOADED,
                                  nvml.LIBRARY_NOT_FOUND])
def test_detect_gpu_nvml_errors_exit_0_cpu_only(stack: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    use_nvml(monkeypatch, FakeNvml(gpus=[FakeGpu()], fail={"device_count": code}))
    no_smi(monkeypatch)
    rc, out, err = run_task(["detect-gpu", "--json"])
    assert rc == 0, err
    facts = json.loads(out)["facts"]
    assert facts["cpu_only"] is True and facts["gpus"] == []
    assert facts["reason"].endswith("nvidia-smi not found (no NVIDIA driver installed)")
    assert "Traceback" not in err
    rc, out, _ = run_task(["detect-gpu"])
    assert rc == 0 and "skipped: [gpu] CPU only:" in out


def test_detect_gpu_source_smi_through_the_context(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not FIXTURES.is_dir():
        unavailable(f"no GPU fixtures at {FIXTURES}", "check out shared/ beside the repository")
    query = (FIXTURES / "query-csv-8xquadrortx6000.txt").read_text()
    canned = MockContext(run={smi.CMD_QUERY: Result(query), smi.CMD_TABLE: Result("", exited=1),
                              smi.CMD_TOPO: Result((FIXTURES / "topo-8xquadrortx6000-pix-pxb-ansi.txt").read_text()),
                              smi.CMD_NVLINK: Result("", exited=1), smi.CMD_APPS: Result("", exited=1)})
    real = smi.gather_via_smi
    monkeypatch.setattr(detect, "gather_via_smi", lambda c: real(canned))
    monkeypatch.setattr(nvml, "make_boundary", lambda: pytest.fail("--source smi must not touch NVML"))
    code, out, _ = run_task(["detect-gpu", "--source", "smi", "--json"])
    assert code == 0
    facts = json.loads(out)["facts"]
    assert facts["source"] == "smi" and len(facts["gpus"]) == 8
    assert {t["level"] for t in facts["topology"]} == {"PIX", "PXB"}


def test_unknown_source_is_a_clean_error(stack: Path) -> None:
    code, _, err = run_task(["detect-gpu", "--source", "magic"])
    assert code == 1 and "unknown GPU facts source 'magic'" in err and "Traceback" not in err


def _facts_file(tmp_path: Path, fake: FakeNvml) -> Path:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(nvml.collect(fake).to_dict()))
    return path


def test_configure_gpu_writes_the_plan_idempotently(stack: Path, tmp_path: Path) -> None:
    facts = _facts_file(tmp_path, dual_3090(display=True))
    plan_path = stack / ".mmstack" / "gpu-plan.json"

    code, out, err = run_task(["configure-gpu", "--facts", str(facts), "--no-generate", "--check"])
    assert code == 0, err
    assert "changed (check): [.mmstack/gpu-plan.json]" in out and not plan_path.exists()

    code, out, err = run_task(["configure-gpu", "--facts", str(facts), "--no-generate"])
    assert code == 0, err
    assert "RECAP ok=1 changed=1" in out  # validate-schema, then the plan
    assert stat.S_IMODE(plan_path.stat().st_mode) == 0o600
    saved = json.loads(plan_path.read_text())
    assert saved["vllm_device_ids"] == [UUID0, UUID1] and saved["tensor_parallel"] == 2
    assert saved["vllm_env"]["NCCL_P2P_LEVEL"] == "NVL"
    assert saved["memory_utilization"] == 0.85  # GPU1 drives a display
    assert saved["model"] == "qwen2.5-7b-instruct"  # planned for the gpu environment's model
    mtime = plan_path.stat().st_mtime_ns

    code, out, _ = run_task(["configure-gpu", "--facts", str(facts), "--no-generate"])
    assert code == 0 and "RECAP ok=2 changed=0" in out
    assert plan_path.stat().st_mtime_ns == mtime

    code, out, _ = run_task(["configure-gpu", "--facts", str(facts), "--no-generate", "--check",
                             "--diff", "--p2p", "off"])
    assert code == 0 and "changed (check)" in out
    assert '+    "NCCL_P2P_DISABLE": "1"' in out and '-    "NCCL_P2P_LEVEL": "NVL"' in out
    assert json.loads(plan_path.read_text()) == saved, "check mode changes nothing"


def test_detect_json_pipes_into_configure(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_nvml(monkeypatch, dual_3090())
    code, detected, _ = run_task(["detect-gpu", "--json"])
    assert code == 0
    monkeypatch.setattr(nvml, "make_boundary", lambda: pytest.fail("--facts - must not detect"))
    code, out, err = run_task(["configure-gpu", "--facts", "-", "--json", "--no-generate",
                               "--tensor-parallel", "1"], stdin=detected)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["recap"]["changed"] == 1
    assert doc["plan"]["vllm_gpus"] == [0] and doc["plan"]["worker_gpus"] == [1]
    assert doc["plan"]["worker_device_ids"] == [UUID1] and doc["plan"]["worker_env"] == {"WORKER_DEVICE": "cuda"}


def test_configure_gpu_bad_input_is_a_clean_error(stack: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    code, _, err = run_task(["configure-gpu", "--facts", str(bad), "--no-generate"])
    assert code == 1 and "GPU facts are not JSON" in err and str(bad) in err
    facts = _facts_file(tmp_path, dual_3090())
    code, _, err = run_task(["configure-gpu", "--facts", str(facts), "--no-generate", "--tensor-parallel", "4"])
    assert code == 1 and "needs 4 GPUs" in err and "fix:" in err
    # Qwen2.5-7B has 28 attention heads: vLLM cannot split them 8 ways.
    code, _, err = run_task(["configure-gpu", "--facts", str(facts), "--no-generate", "--tensor-parallel", "8"])
    assert code == 1 and "does not divide the 28 attention heads" in err and "fix: use one of: 1, 2" in err
    code, _, err = run_task(["configure-gpu", "--facts", str(facts), "--no-generate",
                             "--memory-utilization", "lots"])
    assert code == 1 and "takes a number" in err


def test_configure_gpu_cpu_only_host(stack: Path, tmp_path: Path) -> None:
    facts = _facts_file(tmp_path, FakeNvml(fail={"init": nvml.DRIVER_NOT_LOADED}))
    code, out, _ = run_task(["configure-gpu", "--facts", str(facts), "--no-generate", "--json"])
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan["cpu_only"] is True and plan["vllm_device_ids"] == []
    assert any("the GPU environments will not start on this host" in m for m in plan["messages"])


def test_configure_gpu_check_mode_diffs_the_planned_overlay(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Check mode saves no plan, yet the compose diff shows what the new plan makes."""
    stack = _set_up_stack(tmp_path, monkeypatch)
    facts = _facts_file(tmp_path, dual_3090())
    before = (stack / "compose.gpu.yml").read_bytes()
    code, out, err = run_task(["configure-gpu", "--facts", str(facts), "--check", "--diff"])
    assert code == 0, out + err
    assert "changed (check): [compose.gpu.yml]" in out
    assert any(line.startswith("+") and UUID0 in line for line in out.splitlines())
    assert (stack / "compose.gpu.yml").read_bytes() == before
    assert not (stack / ".mmstack" / "gpu-plan.json").exists()


def test_a_plan_compose_refuses_stops_configure_gpu_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan feeds device_ids into compose.gpu.yml; a value there that Compose refuses (here a
    GPU id that is a broken interpolation) stops the run before the plan or any file is written,
    as `inv setup` stops before writing what Compose would refuse."""
    stack = _set_up_stack(tmp_path, monkeypatch)
    fake = dual_3090()
    fake.gpus[1].uuid = "GPU-${broken"
    facts = _facts_file(tmp_path, fake)
    before = snapshot(stack)

    code, out, err = run_task(["configure-gpu", "--facts", str(facts)])

    assert code == 1, out + err
    assert "Compose refuses the generated files of environment" in err and "Traceback" not in err
    assert "fix:" in err
    assert snapshot(stack) == before, "nothing may be written"
    assert not (stack / ".mmstack" / "gpu-plan.json").exists()


def _set_up_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack copy after `inv setup`, which the in-process tasks below act on (MMSTACK_DIR)."""
    from tests.support.stackcopy import set_up_copy

    stack = set_up_copy(tmp_path / "stack")
    monkeypatch.setenv("MMSTACK_DIR", str(stack))
    for var in ("MMSTACK_SECRETS_KEY", "MMSTACK_TEST_SECRETS_KEY"):
        monkeypatch.delenv(var, raising=False)
    return stack


def test_configure_then_generate_on_a_real_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan reaches compose.gpu.yml (device_ids) and env/gpu/vllm.env; a re-run changes nothing."""
    stack = _set_up_stack(tmp_path, monkeypatch)
    facts = _facts_file(tmp_path, dual_3090())
    code, out, err = run_task(["configure-gpu", "--facts", str(facts)])
    assert code == 0, out + err
    compose_gpu = (stack / "compose.gpu.yml").read_text()
    assert UUID0 in compose_gpu and UUID1 in compose_gpu and "device_ids" in compose_gpu
    import yaml

    vllm = yaml.safe_load(compose_gpu.replace("!override", ""))["services"]["vllm"]
    command = vllm["command"]
    assert command[0] == "Qwen/Qwen2.5-7B-Instruct"
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    vllm_env = (stack / "env" / "gpu" / "vllm.env").read_text()
    assert "NCCL_P2P_LEVEL=NVL" in vllm_env
    # The cards are pinned by device_ids alone; vLLM would int() a UUID in CUDA_VISIBLE_DEVICES.
    assert "CUDA_VISIBLE_DEVICES" not in vllm_env and UUID0 not in vllm_env
    code, out, err = run_task(["configure-gpu", "--facts", str(facts), "--json"])
    assert code == 0, err
    assert json.loads(out)["recap"]["changed"] == 0


def test_start_gpu_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_up_stack(tmp_path, monkeypatch)
    use_nvml(monkeypatch, dual_3090())
    code, out, _ = run_task(["start-gpu-auto", "--check"])
    assert code == 0 and "skipped: [start gpu] check mode: nothing started" in out

    import tasks.cli.stack as stack_cli

    # The lifecycle's start is the boundary here: it is exercised for real in tests/lifecycle.
    started: list[str] = []
    monkeypatch.setattr(stack_cli, "start", lambda c, env=None, no_verify=False: started.append(env))
    code, out, err = run_task(["start-gpu-auto"])
    assert code == 0, err
    assert started == ["gpu"]
    assert "changed: [.mmstack/gpu-plan.json] absent" in out


def test_loading_the_gpu_collection_imports_nothing_heavy() -> None:
    heavy = ("pynvml", "docker", "fabric", "paramiko", "rich", "cryptography")
    code = ("import sys; import tasks.cli.gpu; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
