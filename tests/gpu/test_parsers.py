"""nvidia-smi parsers over real captured outputs; expectations are SOURCES.md's "Expected" column.

The fixtures live in ``../shared/fixtures/gpu/`` beside the checkout; without that folder these
tests skip (they are never copied into the project).
"""

from __future__ import annotations

from itertools import combinations

import pytest
from invoke import MockContext, Result

from tasks.gpu import smi, smiparse
from tasks.gpu.facts import GpuFacts, LinkLevel
from tests.gpu.fakes import FIXTURES

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no GPU fixtures at {FIXTURES}")


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def labels(topo: smiparse.Topo) -> dict[tuple[int, int], str]:
    return {(t.a, t.b): t.label for t in topo.links}


def test_sources_md_lists_every_fixture() -> None:
    text = read("SOURCES.md")
    for path in FIXTURES.glob("*.txt"):
        assert f"`{path.name}`" in text, f"{path.name} has no entry (and no oracle) in SOURCES.md"


# -- topo -m ----------------------------------------------------------------------------------------
def test_topo_2x3090_nv4_spaces() -> None:
    topo = smiparse.parse_topo(read("topo-2x3090-nv4.txt"))
    assert topo.gpus == [0, 1]
    assert labels(topo) == {(0, 1): "NV4"}
    assert topo.nics == []
    for i in (0, 1):
        assert topo.affinity[i] == {"CPU Affinity": "4,6,9,15,17", "NUMA Affinity": "0",
                                    "GPU NUMA ID": None}


def test_topo_3xa6000_tabs_and_ansi_header_without_numa_id_column() -> None:
    raw = read("topo-3xa6000-nv4-pair-ansi.txt")
    assert "\x1b[4m" in raw and "\t" in raw  # the file really is the tty/TAB variant
    topo = smiparse.parse_topo(raw)
    assert topo.gpus == [0, 1, 2]
    assert labels(topo) == {(0, 1): "NV4", (0, 2): "NODE", (1, 2): "NODE"}
    for i in range(3):
        assert topo.affinity[i] == {"CPU Affinity": "0-31,64-95", "NUMA Affinity": "0"}


def test_topo_8xa100_all_nv12_and_17_nics() -> None:
    topo = smiparse.parse_topo(read("topo-8xa100-nv12-17nic.txt"))
    assert topo.gpus == list(range(8))
    assert labels(topo) == {pair: "NV12" for pair in combinations(range(8), 2)}
    assert len(topo.nics) == 17
    expected_devices = [f"mlx5_{n}" for n in range(2, 18)] + ["mlx5_bond_0"]
    assert [n.name for n in topo.nics] == [f"NIC{i}" for i in range(17)]
    assert [n.device for n in topo.nics] == expected_devices
    for nic_no, nic in enumerate(topo.nics):
        for gpu in range(8):
            near = nic_no < 16 and gpu // 2 == nic_no // 4
            assert nic.gpu_levels[gpu] == ("PXB" if near else "SYS"), (nic.name, gpu)
    for i in range(8):
        assert topo.affinity[i] == {"CPU Affinity": "0-103", "NUMA Affinity": "0", "GPU NUMA ID": None}


def test_topo_8xh100_nv18_two_numa_nodes() -> None:
    topo = smiparse.parse_topo(read("topo-8xh100-nv18.txt"))
    assert labels(topo) == {pair: "NV18" for pair in combinations(range(8), 2)}
    assert topo.nics == []
    for i in range(8):
        cpu, numa = ("0-47,96-143", "0") if i < 4 else ("48-95,144-191", "1")
        assert topo.affinity[i] == {"CPU Affinity": cpu, "NUMA Affinity": numa, "GPU NUMA ID": None}


def test_topo_2xh100_pcie_bridge_nv12() -> None:
    topo = smiparse.parse_topo(read("topo-2xh100pcie-nv12-bridge.txt"))
    assert labels(topo) == {(0, 1): "NV12"}
    assert topo.affinity[1] == {"CPU Affinity": "32-63,96-127", "NUMA Affinity": "1", "GPU NUMA ID": None}


def test_topo_8xquadro_pix_pxb_no_nvlink_double_tab_numa_columns() -> None:
    raw = read("topo-8xquadrortx6000-pix-pxb-ansi.txt")
    assert "0\t\tN/A" in raw  # NUMA Affinity and GPU NUMA ID separated by two tabs
    topo = smiparse.parse_topo(raw)
    groups = [{0, 1, 6, 7}, {2, 3, 4, 5}]
    got = labels(topo)
    assert len(got) == 28
    assert not any(t.level is LinkLevel.NVLINK for t in topo.links)
    for (a, b), label in got.items():
        same = any(a in g and b in g for g in groups)
        assert label == ("PIX" if same else "PXB"), (a, b)
    assert sum(1 for v in got.values() if v == "PIX") == 12
    assert sum(1 for v in got.values() if v == "PXB") == 16
    for i in range(8):
        assert topo.affinity[i] == {"CPU Affinity": "0-19", "NUMA Affinity": "0", "GPU NUMA ID": None}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("topo-*.txt")) if FIXTURES.is_dir() else [])
def test_topo_parse_is_whitespace_style_independent(name: str) -> None:
    """Expanding or keeping TABs, adding ANSI codes or trailing spaces changes nothing."""
    raw = read(name)
    base = smiparse.parse_topo(raw)
    variants = [raw.expandtabs(8), raw.replace("\n", " \n"), raw.expandtabs(4)]
    if "\x1b[" not in raw:
        first, rest = raw.split("\n", 1)
        variants.append(f"\x1b[4m{first}\x1b[0m\n{rest}")
    for text in variants:
        other = smiparse.parse_topo(text)
        assert labels(other) == labels(base)
        assert other.affinity == base.affinity
        assert [(n.name, n.device, n.gpu_levels) for n in other.nics] == \
               [(n.name, n.device, n.gpu_levels) for n in base.nics]


# -- nvlink --status --------------------------------------------------------------------------------
def status(name: str) -> list[tuple[int, str, str | None, int, list[int]]]:
    return [(s.index, s.name, s.uuid, s.active, [l.link for l in s.links if not l.active])
            for s in smiparse.parse_nvlink_status(read(name))]


def test_nvlink_status_2x3090() -> None:
    parsed = smiparse.parse_nvlink_status(read("nvlink-status-2x3090.txt"))
    assert status("nvlink-status-2x3090.txt") == [
        (0, "NVIDIA GeForce RTX 3090", "GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0", 4, []),
        (1, "NVIDIA GeForce RTX 3090", "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0", 4, []),
    ]
    assert all(l.speed_gbps == 14.062 and l.link in range(4) for s in parsed for l in s.links)


def test_nvlink_status_3xa6000_native_tab_and_all_inactive_gpu() -> None:
    assert status("nvlink-status-3xa6000.txt") == [
        (0, "NVIDIA RTX A6000", "GPU-5baec991-de63-c196-1766-04c38407e133", 4, []),
        (1, "NVIDIA RTX A6000", "GPU-39fc2446-cb50-2067-2867-d95efd470a2c", 4, []),
        (2, "NVIDIA RTX A6000", "GPU-02c05ee3-bdb5-aac7-f9e8-a4c8f3f725b3", 0, []),
    ]


def test_nvlink_status_2xh100_pcie_bridge_12_active_6_inactive() -> None:
    parsed = smiparse.parse_nvlink_status(read("nvlink-status-2xh100pcie-bridge.txt"))
    assert [(s.index, s.name, s.uuid) for s in parsed] == [
        (0, "NVIDIA H100 PCIe", "GPU-6968dfc2-d444-d92c-c36b-6abe53445cb9"),
        (1, "NVIDIA H100 PCIe", "GPU-9b1446e2-8a89-4cf6-b68c-a98d99e958d3"),
    ]
    for s in parsed:
        assert [l.link for l in s.links] == list(range(18))
        assert [l.link for l in s.links if l.active] == [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15]
        assert [l.link for l in s.links if not l.active] == [4, 5, 10, 11, 16, 17]
        assert {l.speed_gbps for l in s.links if l.active} == {26.562}


def test_nvlink_status_h100_sxm_single_gpu_18_links() -> None:
    assert status("nvlink-status-h100sxm-gpu0.txt") == [
        (0, "NVIDIA H100 80GB HBM3", "GPU-5a10e6e5-95f7-2785-ed63-6f6147f304f7", 18, [])]


def test_nvlink_status_2xa100_no_links() -> None:
    assert status("nvlink-status-2xa100pcie-nolink.txt") == [
        (0, "NVIDIA A100-PCIE-40GB", "GPU-3fb142e7-7102-c7ac-bd5a-fc829e11ed84", 0, []),
        (1, "NVIDIA A100-PCIE-40GB", "GPU-14ac2834-0d81-0508-69eb-e25264c08d21", 0, []),
    ]


# -- query CSV ---------------------------------------------------------------------------------------
def test_query_csv_8xquadro() -> None:
    rows = smiparse.parse_query_csv(read("query-csv-8xquadrortx6000.txt"))
    assert list(rows[0]) == ["index", "name", "pci.bus_id", "pcie.link.gen.current",
                             "pcie.link.gen.max", "pcie.link.width.current", "pcie.link.width.max"]
    assert [r["index"] for r in rows] == [str(i) for i in range(8)]
    assert {r["name"] for r in rows} == {"Quadro RTX 6000"}
    assert [r["pci.bus_id"] for r in rows] == [f"00000000:{b}:00.0" for b in
                                               ("1A", "1B", "1F", "20", "21", "22", "23", "24")]
    for r in rows:
        assert (r["pcie.link.gen.current"], r["pcie.link.gen.max"]) == ("1", "3")
        assert (r["pcie.link.width.current"], r["pcie.link.width.max"]) == ("16", "16")


def test_query_csv_2xa100_units_and_no_index_column() -> None:
    rows = smiparse.parse_query_csv(read("query-csv-2xa100pcie.txt"))
    assert len(rows) == 2
    assert [r["index"] for r in rows] == ["0", "1"]  # row order
    assert [r["pci.bus_id"] for r in rows] == ["00000000:12:00.0", "00000000:8A:00.0"]
    for r in rows:
        assert r["name"] == "NVIDIA A100-PCIE-40GB"
        assert r["vbios_version"] == "92.00.25.00.08"
        assert (r["memory.total"], r["memory.free"], r["memory.used"]) == ("40960", "40447", "1")
        assert r["utilization.gpu"] == "0" and r["clocks.applications.graphics"] == "765"
    assert [r["temperature.gpu"] for r in rows] == ["39", "37"]


# -- default table ----------------------------------------------------------------------------------
def test_smi_table_2x3090_new_banner_without_driver_version_label() -> None:
    table = smiparse.parse_smi_table(read("smi-2x3090-nvlink-noprocs.txt"))
    assert (table.driver_version, table.cuda_version) == ("610.43.02", "13.3")
    g0, g1 = table.gpus
    assert (g0["index"], g0["name"], g0["pci_bus_id"]) == (0, "NVIDIA GeForce RTX 3090", "00000000:17:00.0")
    assert (g1["index"], g1["pci_bus_id"]) == (1, "00000000:65:00.0")
    assert (g0["display_active"], g1["display_active"]) == (False, True)
    assert (g0["memory_used_mib"], g0["memory_total_mib"]) == (23074, 24576)
    assert (g1["memory_used_mib"], g1["memory_total_mib"]) == (23106, 24576)
    assert (g0["fan"], g0["temperature"], g0["perf"], g0["power"], g0["utilization"]) == \
           ("32%", "28C", "P8", "188W / 350W", "0%")
    assert (g1["fan"], g1["temperature"], g1["power"]) == ("30%", "33C", "25W / 350W")
    assert not g0["persistence_mode"] and not g1["persistence_mode"]
    assert table.processes == {}  # "No running processes found"


def test_smi_table_old_banner() -> None:
    old = ("| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |\n"
           "|   0  NVIDIA GeForce RTX 3090        On  | 00000000:01:00.0 Off |                  N/A |\n"
           "| 30%   35C    P8              20W / 350W |  20000MiB / 24576MiB |      0%      Default |\n"
           "| Processes:                                                                            |\n"
           "|    0   N/A  N/A      1234      C   python3                                   19990MiB |\n")
    table = smiparse.parse_smi_table(old)
    assert (table.driver_version, table.cuda_version) == ("535.104.05", "12.2")
    assert table.gpus[0]["memory_used_mib"] == 20000 and table.gpus[0]["persistence_mode"]
    assert table.processes == {0: 1}


# -- the whole smi source ---------------------------------------------------------------------------
def test_facts_from_smi_2x3090_match_the_nvlink_count() -> None:
    facts = smi.facts_from_smi(None, read("topo-2x3090-nv4.txt"), read("nvlink-status-2x3090.txt"),
                               read("smi-2x3090-nvlink-noprocs.txt"))
    assert (facts.source, facts.driver_version, facts.cuda_version) == ("smi", "610.43.02", "13.3")
    assert [g.uuid for g in facts.gpus] == ["GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0",
                                            "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0"]
    assert facts.nvlink_peers(0) == {1: 4} and facts.nvlink_peers(1) == {0: 4}
    assert [g.active_nvlinks for g in facts.gpus] == [4, 4]
    assert [g.display_active for g in facts.gpus] == [False, True]
    assert facts.gpus[0].cpu_affinity == "4,6,9,15,17"
    again = GpuFacts.from_dict(facts.to_dict())
    assert again.to_dict() == facts.to_dict()


def _mock(outputs: dict[str, tuple[str, int]]) -> MockContext:
    return MockContext(run={cmd: Result(stdout=out, exited=code) for cmd, (out, code) in outputs.items()})


def test_gather_via_smi_runs_the_exact_commands_through_the_context() -> None:
    query = ("index, uuid, name, pci.bus_id, memory.total [MiB], memory.used [MiB], display_active, "
             "compute_cap, driver_version\n"
             "0, GPU-a, NVIDIA H100 PCIe, 00000000:12:00.0, 81559 MiB, 1 MiB, Disabled, 9.0, 550.54.15\n"
             "1, GPU-b, NVIDIA H100 PCIe, 00000000:8A:00.0, 81559 MiB, 1 MiB, Disabled, 9.0, 550.54.15\n")
    c = _mock({
        smi.CMD_QUERY: (query, 0),
        smi.CMD_TABLE: ("| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |\n", 0),
        smi.CMD_TOPO: (read("topo-2xh100pcie-nv12-bridge.txt"), 0),
        smi.CMD_NVLINK: (read("nvlink-status-2xh100pcie-bridge.txt"), 0),
        smi.CMD_APPS: ("gpu_uuid, pid, used_memory [MiB]\nGPU-b, 4242, 900 MiB\n", 0),
    })
    facts = smi.gather_via_smi(c)
    assert facts.cuda_version == "12.4" and facts.driver_version == "550.54.15"
    assert [(g.name, g.memory_total_mib, g.compute_capability, g.processes) for g in facts.gpus] == [
        ("NVIDIA H100 PCIe", 81559, "9.0", 0), ("NVIDIA H100 PCIe", 81559, "9.0", 1)]
    assert facts.nvlink_peers(0) == {1: 12}
    assert [g.active_nvlinks for g in facts.gpus] == [12, 12]


def test_gather_via_smi_old_driver_without_compute_cap_retries() -> None:
    c = _mock({
        smi.CMD_QUERY: ('Field "compute_cap" is not a valid field to query.\n', 2),
        smi.CMD_QUERY_OLD: ("index, uuid, name, pci.bus_id, memory.total [MiB], memory.used [MiB], "
                            "display_active, driver_version\n"
                            "0, GPU-x, Tesla T4, 00000000:00:04.0, 15360 MiB, 0 MiB, Disabled, 470.1\n", 0),
        smi.CMD_TABLE: ("", 1), smi.CMD_TOPO: ("", 1), smi.CMD_NVLINK: ("", 1), smi.CMD_APPS: ("", 1),
    })
    facts = smi.gather_via_smi(c)
    assert [(g.name, g.memory_total_mib, g.compute_capability) for g in facts.gpus] == [("Tesla T4", 15360, None)]
    assert facts.driver_version == "470.1"


@pytest.mark.parametrize("stdout, code, reason", [
    ("bash: nvidia-smi: command not found\n", 127, "nvidia-smi not found"),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
     "the latest NVIDIA driver is installed and running.\n", 9, "driver is not loaded"),
    ("No devices were found\n", 6, "no GPU was found"),
])
def test_gather_via_smi_without_gpus_is_cpu_only(stdout: str, code: int, reason: str) -> None:
    c = _mock({cmd: (stdout, code) for cmd in (smi.CMD_QUERY, smi.CMD_QUERY_OLD, smi.CMD_TABLE,
                                                 smi.CMD_LIST, smi.CMD_TOPO, smi.CMD_NVLINK, smi.CMD_APPS)})
    facts = smi.gather_via_smi(c)
    assert facts.cpu_only and reason in (facts.reason or "")
