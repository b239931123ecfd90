"""The batched nvidia-smi fact: one command (run here by a real /bin/sh), one pure split.

The batch is run by the real shell against the test hosts' fake nvidia-smi, which prints the
real captured outputs in ``../shared/fixtures/gpu/``; its facts must be those of asking each
query on its own, for every GPU profile.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from invoke import Context

from tasks.gpu import smi, smibatch, smiparse
from tests.gpu.fakes import FIXTURES
from tests.support.sshd import GPU_PROFILES, SshHost

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no GPU fixtures at {FIXTURES}")


class Shell:
    """Runs commands with the real /bin/sh, with only ``bin_dir`` and the system on PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C"}
        self.commands: list[str] = []
        self.context = Context()

    def run(self, command: str, **kw):
        self.commands.append(command)
        return self.context.run(command, env=self.env, replace_env=True, shell="/bin/sh", **kw)


def fake_host(tmp_path: Path, profile: str | None) -> Shell:
    host = SshHost("fake", "127.0.0.254", tmp_path, farm=None)  # type: ignore[arg-type]
    host.dir.mkdir(parents=True, exist_ok=True)
    host.bin_dir.mkdir(parents=True, exist_ok=True)
    host.set_gpu_profile(profile)
    return Shell(host.bin_dir)


def stub_smi(tmp_path: Path, script: str) -> Shell:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi_path = bin_dir / "nvidia-smi"
    smi_path.write_text("#!/bin/sh\n" + script)
    smi_path.chmod(smi_path.stat().st_mode | stat.S_IXUSR)
    return Shell(bin_dir)


@pytest.mark.parametrize("profile", sorted(GPU_PROFILES))
def test_batch_gives_the_facts_of_one_query_at_a_time(tmp_path: Path, profile: str) -> None:
    shell = fake_host(tmp_path, profile)
    batched = smibatch.gather_via_smi_batch(shell)
    assert len(shell.commands) == 1, "one command for every query"
    one_by_one = smi.gather_via_smi(shell)
    assert len(shell.commands) > 2
    assert batched.to_dict() == one_by_one.to_dict()
    assert batched.gpus and batched.source == "smi"


def test_batch_on_the_dual_3090_profile(tmp_path: Path) -> None:
    facts = smibatch.gather_via_smi_batch(fake_host(tmp_path, "2x3090"))
    assert [g.uuid for g in facts.gpus] == ["GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0",
                                            "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0"]
    assert facts.nvlink_peers(0) == {1: 4}
    assert facts.cuda_version == "13.3"  # only the plain table prints it
    assert [g.compute_capability for g in facts.gpus] == ["8.6", "8.6"]
    assert [g.processes for g in facts.gpus] == [0, 0]


def test_batch_without_nvidia_smi_is_cpu_only(tmp_path: Path) -> None:
    facts = smibatch.gather_via_smi_batch(fake_host(tmp_path, None))
    assert facts.cpu_only and facts.reason == "nvidia-smi not found (no NVIDIA driver installed)"


def test_batch_old_driver_falls_back_to_the_query_without_compute_cap(tmp_path: Path) -> None:
    shell = stub_smi(tmp_path, r'''
case "$*" in
  *compute_cap*) echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
  *--query-gpu=*) printf 'index, uuid, name, pci.bus_id, memory.total [MiB], memory.used [MiB], display_active, driver_version\n0, GPU-x, Tesla T4, 00000000:00:04.0, 15360 MiB, 0 MiB, Disabled, 470.1\n' ;;
  *) echo "unsupported: $*" >&2; exit 9 ;;
esac
''')
    facts = smibatch.gather_via_smi_batch(shell)
    assert [(g.name, g.memory_total_mib, g.compute_capability) for g in facts.gpus] == [("Tesla T4", 15360, None)]
    assert facts.driver_version == "470.1"


def test_parse_batch_splits_exactly(tmp_path: Path) -> None:
    """Output without a trailing newline, empty output, stderr and exit codes each land in
    their own section; a fallback the shell did not need is absent."""
    shell = stub_smi(tmp_path, r'''
case "$*" in
  --query-gpu=*) printf 'no newline at the end'; echo 'query warning' >&2 ;;
  "") printf 'table\n\n' ;;
  "topo -m") exit 0 ;;
  "nvlink --status") echo 'links' ; echo 'nvlink failed' >&2; exit 3 ;;
  *) echo "apps: $*" ;;
esac
''')
    result = shell.run(smibatch.CMD_SMI_BATCH, hide=True, warn=True, in_stream=False)
    parts = smibatch.parse_smi_batch(result.stdout, result.stderr)
    assert set(parts) == {"query", "table", "topo", "nvlink", "apps"}  # no query_old, no list
    assert parts["query"] == smi.SmiOutput(True, "no newline at the end", "query warning\n")
    assert parts["table"] == smi.SmiOutput(True, "table\n\n", "")
    assert parts["topo"] == smi.SmiOutput(True, "", "")
    assert parts["nvlink"] == smi.SmiOutput(False, "links\n", "nvlink failed\n")
    assert parts["apps"].stdout == f"apps: {smi.CMD_APPS.split(' ', 1)[1]}\n"


def test_batch_when_the_shell_itself_fails() -> None:
    class Broken:
        def run(self, command: str, **kw):
            from invoke import Result
            return Result(stdout="", stderr="fish: Unknown command: s\n", exited=127)

    facts = smibatch.gather_via_smi_batch(Broken())
    assert facts.cpu_only
    assert (facts.reason or "").startswith("nvidia-smi failed") and "Unknown command: s" in (facts.reason or "")


def test_every_real_fixture_still_parses() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.txt"))
    assert names
    for name in names:
        text = (FIXTURES / name).read_text()
        if name.startswith("topo-"):
            assert smiparse.parse_topo(text).gpus, name
        elif name.startswith("nvlink-status-"):
            assert smiparse.parse_nvlink_status(text), name
        elif name.startswith("query-csv-"):
            assert smiparse.parse_query_csv(text), name
        elif name.startswith("smi-"):
            assert smiparse.parse_smi_table(text).gpus, name
