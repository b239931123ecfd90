"""Pure parsers of nvidia-smi's text outputs: text in, plain records out.

They take real-world output as it comes: TAB-separated or space-expanded `topo -m` matrices,
ANSI underline codes around the header, NIC rows, optional `NUMA Affinity` / `GPU NUMA ID`
columns, trailing spaces, CSV values with units (``24576 MiB``), the old banner
(``Driver Version:``) and the new one (``KMD Version:`` / ``CUDA UMD Version:``). `smi` runs the
commands and makes `GpuFacts` from what these return.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from .facts import LinkLevel, Nic, NvLink, TopoLink, normalize_bus_id

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DEVICE_RE = re.compile(r"^(GPU|NIC)(\d+)$")
_KNOWN_TRAILING = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
_MISSING = {"", "N/A", "[N/A]", "[NOT SUPPORTED]", "NOT SUPPORTED", "[UNKNOWN ERROR]"}


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


# -- topo -m --------------------------------------------------------------------------------------
@dataclass
class Topo:
    """`nvidia-smi topo -m`: the GPU-GPU pairs, per-GPU affinity columns, and the NICs."""

    gpus: list[int] = field(default_factory=list)
    links: list[TopoLink] = field(default_factory=list)
    affinity: dict[int, dict[str, str | None]] = field(default_factory=dict)
    nics: list[Nic] = field(default_factory=list)

    def link(self, a: int, b: int) -> TopoLink | None:
        lo, hi = sorted((a, b))
        return next((t for t in self.links if (t.a, t.b) == (lo, hi)), None)


def _trailing_columns(rest: str) -> list[str]:
    """Names of the columns after the device columns ("CPU Affinity", "NUMA Affinity", ...).

    Known names are matched as phrases because tab expansion can leave a single space between
    them; anything else is split on tabs or runs of 2+ spaces.
    """
    names: list[str] = []
    rest = rest.strip()
    while rest:
        known = next((k for k in _KNOWN_TRAILING if rest.startswith(k)), None)
        if known:
            names.append(known)
            rest = rest[len(known):].strip()
            continue
        parts = re.split(r"\t+|\s{2,}", rest, maxsplit=1)
        names.append(parts[0].strip())
        rest = parts[1].strip() if len(parts) > 1 else ""
    return names


def parse_topo(text: str) -> Topo:
    """Parse `nvidia-smi topo -m` (either whitespace style, with or without ANSI codes)."""
    lines = [strip_ansi(line).rstrip() for line in text.splitlines()]
    header_at = next((i for i, line in enumerate(lines) if re.match(r"^\s+GPU0(\s|$)", line)), None)
    topo = Topo()
    if header_at is None:
        return topo
    header = lines[header_at]
    tokens = header.split()
    devices: list[str] = []
    for tok in tokens:
        if _DEVICE_RE.match(tok):
            devices.append(tok)
        else:
            break
    # Everything after the last device name is the trailing columns' header text; tokens are
    # matched whole, so "GPU1" never matches inside "GPU10".
    pos = 0
    for dev in devices:
        pos = _find_token(header, dev, pos) + len(dev)
    rest = header[pos:]
    trailing = _trailing_columns(rest)

    rows: dict[str, list[str]] = {}
    for line in lines[header_at + 1:]:
        if not line.strip():
            break  # the matrix ends at the blank line before the legend
        cells = line.split()
        if not cells or not _DEVICE_RE.match(cells[0]):
            break
        rows[cells[0]] = cells[1:]
    gpu_cols = [d for d in devices if d.startswith("GPU")]
    topo.gpus = [int(d[3:]) for d in gpu_cols]
    for name, cells in rows.items():
        matrix = cells[:len(devices)]
        extra = cells[len(devices):]
        if name.startswith("GPU"):
            idx = int(name[3:])
            topo.affinity[idx] = {col: _none_if_missing(val) for col, val in zip(trailing, extra)}
            for col, cell in zip(devices, matrix):
                if not col.startswith("GPU") or col == name:
                    continue
                other = int(col[3:])
                if other <= idx and topo.link(idx, other):
                    continue
                level, count = LinkLevel.parse_cell(cell)
                lo, hi = sorted((idx, other))
                topo.links.append(TopoLink(lo, hi, level, count))
        else:
            levels = {int(col[3:]): cell for col, cell in zip(devices, matrix) if col.startswith("GPU")}
            topo.nics.append(Nic(name=name, gpu_levels=levels))
    topo.links.sort(key=lambda t: (t.a, t.b))
    legend = dict(re.findall(r"^\s*(NIC\d+):\s*(\S+)\s*$", "\n".join(lines), re.MULTILINE))
    for nic in topo.nics:
        nic.device = legend.get(nic.name)
    return topo


def _find_token(text: str, token: str, start: int) -> int:
    match = re.compile(rf"(?<!\S){re.escape(token)}(?!\S)").search(text, start)
    return match.start() if match else start


def _none_if_missing(value: str | None) -> str | None:
    if value is None or value.strip().upper() in _MISSING:
        return None
    return value.strip()


# -- nvlink --status --------------------------------------------------------------------------------
@dataclass
class NvlinkStatus:
    index: int
    name: str
    uuid: str | None
    links: list[NvLink] = field(default_factory=list)

    @property
    def active(self) -> int:
        return sum(1 for link in self.links if link.active)


_GPU_LINE_RE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]+)\))?\s*$")
_LINK_RE = re.compile(r"^\s*Link (\d+):\s*(.+?)\s*$")


def parse_nvlink_status(text: str) -> list[NvlinkStatus]:
    """Parse `nvidia-smi nvlink --status`: per GPU, each link's speed or ``<inactive>``.

    A GPU followed only by "NVML: Unable to retrieve NVLink information as all links are
    inActive" has no active link (it simply lists none).
    """
    out: list[NvlinkStatus] = []
    for raw in strip_ansi(text).splitlines():
        line = raw.rstrip()
        m = _GPU_LINE_RE.match(line)
        if m:
            out.append(NvlinkStatus(int(m.group(1)), m.group(2).strip(), m.group(3)))
            continue
        m = _LINK_RE.match(line)
        if m and out:
            value = m.group(2)
            speed = re.match(r"([\d.]+)\s*GB/s", value)
            active = speed is not None and float(speed.group(1)) > 0
            out[-1].links.append(NvLink(int(m.group(1)), active,
                                        float(speed.group(1)) if speed else None))
    return out


# -- --query-gpu CSV --------------------------------------------------------------------------------
def parse_query_csv(text: str) -> list[dict[str, str | None]]:
    """Parse `--format=csv` output into one dict per row, keyed by the bare field name.

    Units are dropped from the header (``memory.total [MiB]`` -> ``memory.total``) and from the
    values (``24576 MiB`` -> ``24576``, ``0 %`` -> ``0``); ``[N/A]`` and friends become None.
    Without an ``index`` column, the row order is the GPU order, so ``index`` is filled in.
    """
    lines = [strip_ansi(line).strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    rows = list(reader)
    header = [re.sub(r"\s*\[[^\]]*\]\s*$", "", h.strip()) for h in rows[0]]
    out: list[dict[str, str | None]] = []
    for n, row in enumerate(rows[1:]):
        record = {h: _strip_unit(v) for h, v in zip(header, row)}
        if "index" not in record:
            record["index"] = str(n)
        out.append(record)
    return out


def _strip_unit(value: str) -> str | None:
    value = value.strip()
    if value.upper() in _MISSING:
        return None
    m = re.fullmatch(r"(-?[\d.]+)\s*(MiB|GiB|KiB|%|MHz|W|C)", value)
    return m.group(1) if m else value


# -- the default nvidia-smi table --------------------------------------------------------------------
@dataclass
class SmiTable:
    driver_version: str | None
    cuda_version: str | None
    gpus: list[dict[str, Any]]
    processes: dict[int, int] | None  # GPU index -> processes listed; None if no section


_TABLE_GPU_RE = re.compile(
    r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])"
    r"\s+(On|Off)\s+\|")
_TABLE_MEM_RE = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")
_TABLE_PROC_RE = re.compile(r"^\|\s+(\d+)\s+(?:N/A|\d+)\s+(?:N/A|\d+)\s+(\d+)\s+\S+\s+.*?\s(\d+)MiB\s*\|")


def parse_smi_table(text: str) -> SmiTable:
    """Parse plain `nvidia-smi`: versions from the banner, then GPUs, memory and processes.

    The banner is either ``Driver Version: X  CUDA Version: Y`` (most drivers) or, on newer
    ones, ``NVIDIA-SMI X  KMD Version: X  CUDA UMD Version: Y`` with no "Driver Version" label.
    """
    text = strip_ansi(text)
    driver = _first(r"Driver Version:\s*([\w.]+)", text) or _first(r"KMD Version:\s*([\w.]+)", text) \
        or _first(r"NVIDIA-SMI\s+([\d.]+)", text)
    cuda = _first(r"CUDA(?: UMD)? Version:\s*([\w.]+)", text)
    lines = text.splitlines()
    gpus: list[dict[str, Any]] = []
    processes: dict[int, int] | None = None
    in_procs = False
    for i, line in enumerate(lines):
        if re.match(r"^\|\s*Processes:", line):
            in_procs, processes = True, {}
            continue
        if in_procs:
            m = _TABLE_PROC_RE.match(line)
            if m:
                idx = int(m.group(1))
                processes[idx] = processes.get(idx, 0) + 1  # type: ignore[index]
            continue
        m = _TABLE_GPU_RE.match(line)
        if not m:
            continue
        gpu: dict[str, Any] = {"index": int(m.group(1)), "name": m.group(2).strip(),
                               "persistence_mode": m.group(3) == "On",
                               "pci_bus_id": normalize_bus_id(m.group(4)),
                               "display_active": m.group(5) == "On"}
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        mem = _TABLE_MEM_RE.search(nxt)
        if mem:
            gpu["memory_used_mib"], gpu["memory_total_mib"] = int(mem.group(1)), int(mem.group(2))
        cells = [c.strip() for c in nxt.strip().strip("|").split("|")]
        if cells:
            fields = cells[0].split()
            gpu["fan"] = fields[0] if fields else None
            gpu["temperature"] = next((f for f in fields if re.fullmatch(r"\d+C", f)), None)
            gpu["perf"] = next((f for f in fields if re.fullmatch(r"P\d+", f)), None)
            power = re.search(r"(\S+W)\s*/\s*(\S+W)", cells[0])
            gpu["power"] = f"{power.group(1)} / {power.group(2)}" if power else None
        if len(cells) > 2:
            util = re.search(r"(\d+)%", cells[2])
            gpu["utilization"] = f"{util.group(1)}%" if util else None
        gpus.append(gpu)
    return SmiTable(driver, cuda, gpus, processes)


def _first(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None
