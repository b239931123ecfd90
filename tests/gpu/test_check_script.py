"""scripts/check-gpu.sh against a fake nvidia-smi and saved `detect-gpu --json` output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.gpu import nvml
from tests.gpu.fakes import FIXTURES, REPO, FakeNvml, dual_3090

SCRIPT = REPO / "scripts" / "check-gpu.sh"
QUERY = ("0, GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0, NVIDIA GeForce RTX 3090, 00000000:17:00.0, 24576\n"
         "1, GPU-fef3f583-99bd-ac7f-c761-eddb679067e0, NVIDIA GeForce RTX 3090, 00000000:65:00.0, 24576\n")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_check(tmp_path: Path, facts: dict, smi_script: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "facts.json").write_text(json.dumps({"recap": {}, "facts": facts}))
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + smi_script)
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "MMSTACK_CMD": f"cat {tmp_path / 'facts.json'}"}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)


def fake_smi(query: str, topo_file: Path) -> str:
    (topo_file.parent / "query.csv").write_text(query)
    return (f'case "$1" in\n  topo) cat "{topo_file}" ;;\n'
            f'  --query-gpu=*) cat "{topo_file.parent / "query.csv"}" ;;\n  *) exit 9 ;;\nesac\n')


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no GPU fixtures")
def test_agreeing_facts_give_zero_mismatches(tmp_path: Path) -> None:
    facts = nvml.collect(dual_3090()).to_dict()
    proc = run_check(tmp_path, facts, fake_smi(QUERY, FIXTURES / "topo-2x3090-nv4.txt"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0 mismatches"]


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no GPU fixtures")
def test_each_mismatch_is_one_line_and_exit_1(tmp_path: Path) -> None:
    facts = nvml.collect(dual_3090(nvlink=False)).to_dict()
    facts["gpus"][1]["memory_total_mib"] = 12288
    facts["gpus"][0]["uuid"] = "GPU-wrong"
    proc = run_check(tmp_path, facts, fake_smi(QUERY, FIXTURES / "topo-2x3090-nv4.txt"))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "mismatch: GPU0 uuid: mmstack='GPU-wrong' nvidia-smi='GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0'",
        "mismatch: GPU1 memory.total MiB: mmstack=12288 nvidia-smi='24576'",
        "mismatch: GPU0-GPU1 topology: mmstack='SYS' nvidia-smi='NV4'",
        "3 mismatches",
    ]


def test_host_without_driver_agrees_on_cpu_only(tmp_path: Path) -> None:
    facts = nvml.collect(FakeNvml(fail={"init": nvml.DRIVER_NOT_LOADED})).to_dict()
    failing = "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n"
    proc = run_check(tmp_path, facts, failing)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0 mismatches"]
    facts = nvml.collect(dual_3090()).to_dict()
    proc = run_check(tmp_path, facts, failing)
    assert proc.returncode == 1 and "mismatch: GPU count: mmstack=2" in proc.stdout
