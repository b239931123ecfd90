"""GPU facts: what a host has, in one shape whichever source (NVML or nvidia-smi) found it.

Facts are plain data with a JSON round trip (`to_dict` / `from_dict`) so that
`inv detect-gpu --json | inv configure-gpu --facts -` works, and so that a remote host's facts can
be saved and planned for elsewhere. A host without a usable GPU is *not* an error: it is a
`GpuFacts` with no GPUs and a ``reason`` saying why (CPU-only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..engine.errors import GpuError

SCHEMA_VERSION = 1


class LinkLevel(str, Enum):
    """How two devices are connected, best first (the `nvidia-smi topo -m` vocabulary)."""

    NVLINK = "NV"  # a bonded set of NVLinks (the count is kept beside it)
    PIX = "PIX"  # at most one PCIe bridge
    PXB = "PXB"  # several PCIe bridges, no host bridge
    PHB = "PHB"  # through a PCIe host bridge (the CPU)
    NODE = "NODE"  # between host bridges inside one NUMA node
    SYS = "SYS"  # across the SMP interconnect between NUMA nodes (QPI/UPI)
    UNKNOWN = "UNKNOWN"

    @property
    def rank(self) -> int:
        """Lower is closer; used to compare and rank groups of GPUs."""
        return _RANK[self]

    @classmethod
    def parse_cell(cls, cell: str) -> tuple["LinkLevel", int]:
        """One `topo -m` cell -> (level, number of NVLinks). ``X`` (self) is not a level."""
        text = cell.strip().upper()
        match = re.fullmatch(r"NV(\d+)", text)
        if match:
            return cls.NVLINK, int(match.group(1))
        if text == "SOC":  # the name older drivers used for SYS
            return cls.SYS, 0
        try:
            level = cls(text)
        except ValueError:
            return cls.UNKNOWN, 0
        return level, 0


_RANK = {LinkLevel.NVLINK: 0, LinkLevel.PIX: 1, LinkLevel.PXB: 2, LinkLevel.PHB: 3,
         LinkLevel.NODE: 4, LinkLevel.SYS: 5, LinkLevel.UNKNOWN: 6}

_BUS_RE = re.compile(r"^(?:([0-9A-Fa-f]{1,8}):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-9A-Fa-f])$")


def normalize_bus_id(bus_id: str | bytes | None) -> str | None:
    """``0000:17:00.0`` / ``00000000:17:00.0`` / bytes -> ``00000000:17:00.0`` (upper-case hex).

    NVML and nvidia-smi disagree on the domain width (4 or 8 digits, "legacy" or not); comparing
    bus ids is how NVLink peers are found, so both sides go through here.
    """
    if bus_id is None:
        return None
    if isinstance(bus_id, bytes):
        bus_id = bus_id.decode("ascii", "replace")
    text = bus_id.strip().rstrip("\x00")
    match = _BUS_RE.match(text)
    if not match:
        return text.upper() or None
    domain, bus, dev, fn = match.groups()
    return f"{int(domain or '0', 16):08X}:{int(bus, 16):02X}:{int(dev, 16):02X}.{fn.upper()}"


@dataclass
class NvLink:
    """One NVLink of a GPU: its state and, where NVML told us, what is on the other end."""

    link: int
    active: bool
    speed_gbps: float | None = None
    remote_bus_id: str | None = None
    peer_index: int | None = None  # the GPU at remote_bus_id; None for an NVSwitch or unknown

    def to_dict(self) -> dict[str, Any]:
        return {"link": self.link, "active": self.active, "speed_gbps": self.speed_gbps,
                "remote_bus_id": self.remote_bus_id, "peer_index": self.peer_index}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NvLink":
        return cls(int(d["link"]), bool(d["active"]), _opt_float(d.get("speed_gbps")),
                   d.get("remote_bus_id"), _opt_int(d.get("peer_index")))


@dataclass
class Gpu:
    """One GPU. Fields a source could not read are None (never guessed)."""

    index: int
    name: str
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    compute_capability: str | None = None  # "8.6"
    display_active: bool | None = None
    processes: int | None = None  # compute + graphics processes this host can see
    nvlinks: list[NvLink] = field(default_factory=list)
    cpu_affinity: str | None = None
    numa_affinity: str | None = None

    @property
    def memory_free_mib(self) -> int | None:
        if self.memory_total_mib is None:
            return None
        return max(0, self.memory_total_mib - (self.memory_used_mib or 0))

    @property
    def active_nvlinks(self) -> int:
        return sum(1 for link in self.nvlinks if link.active)

    @property
    def device_id(self) -> str:
        """What pins this GPU for Docker and CUDA: the UUID, else the index."""
        return self.uuid or str(self.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id, "memory_total_mib": self.memory_total_mib,
            "memory_used_mib": self.memory_used_mib, "memory_free_mib": self.memory_free_mib,
            "compute_capability": self.compute_capability,
            "display_active": self.display_active, "processes": self.processes,
            "nvlinks": [link.to_dict() for link in self.nvlinks],
            "cpu_affinity": self.cpu_affinity, "numa_affinity": self.numa_affinity,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Gpu":
        return cls(
            index=int(d["index"]), name=str(d.get("name") or f"GPU{d['index']}"),
            uuid=d.get("uuid"), pci_bus_id=normalize_bus_id(d.get("pci_bus_id")),
            memory_total_mib=_opt_int(d.get("memory_total_mib")),
            memory_used_mib=_opt_int(d.get("memory_used_mib")),
            compute_capability=d.get("compute_capability"),
            display_active=_opt_bool(d.get("display_active")),
            processes=_opt_int(d.get("processes")),
            nvlinks=[NvLink.from_dict(x) for x in d.get("nvlinks") or []],
            cpu_affinity=d.get("cpu_affinity"), numa_affinity=_opt_str(d.get("numa_affinity")),
        )


@dataclass
class TopoLink:
    """How GPU ``a`` and GPU ``b`` (a < b) are connected."""

    a: int
    b: int
    level: LinkLevel
    nvlinks: int = 0

    @property
    def label(self) -> str:
        return f"NV{self.nvlinks}" if self.level is LinkLevel.NVLINK else self.level.value

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "level": self.level.value, "nvlinks": self.nvlinks}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TopoLink":
        a, b = sorted((int(d["a"]), int(d["b"])))
        return cls(a, b, LinkLevel(d["level"]), int(d.get("nvlinks") or 0))


@dataclass
class Nic:
    """A network device from `topo -m` (``NIC0`` = ``mlx5_2``) and its level to each GPU."""

    name: str
    device: str | None = None
    gpu_levels: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device,
                "gpu_levels": {str(k): v for k, v in sorted(self.gpu_levels.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Nic":
        return cls(d["name"], d.get("device"),
                   {int(k): v for k, v in (d.get("gpu_levels") or {}).items()})


@dataclass
class GpuFacts:
    """Everything detect-gpu found on one host."""

    source: str  # "nvml", "smi", "file" or "none"
    gpus: list[Gpu] = field(default_factory=list)
    topology: list[TopoLink] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    nics: list[Nic] = field(default_factory=list)
    reason: str | None = None  # why there are no GPUs (CPU-only), or None
    warnings: list[str] = field(default_factory=list)  # partial results: what could not be read
    host: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def cpu_only(self) -> bool:
        return not self.gpus

    def gpu(self, index: int) -> Gpu | None:
        return next((g for g in self.gpus if g.index == index), None)

    def link(self, a: int, b: int) -> TopoLink | None:
        lo, hi = sorted((a, b))
        return next((t for t in self.topology if t.a == lo and t.b == hi), None)

    def level(self, a: int, b: int) -> LinkLevel:
        link = self.link(a, b)
        return link.level if link else LinkLevel.UNKNOWN

    def nvlink_peers(self, index: int) -> dict[int, int]:
        """Peer GPU index -> number of NVLinks to it."""
        out: dict[int, int] = {}
        for t in self.topology:
            if t.level is LinkLevel.NVLINK and index in (t.a, t.b):
                out[t.b if t.a == index else t.a] = t.nvlinks
        return dict(sorted(out.items()))

    def nvlink_pairs(self) -> list[TopoLink]:
        return [t for t in self.topology if t.level is LinkLevel.NVLINK]

    def to_dict(self) -> dict[str, Any]:
        gpus = []
        for g in self.gpus:
            d = g.to_dict()
            d["nvlink_peers"] = {str(k): v for k, v in self.nvlink_peers(g.index).items()}
            gpus.append(d)
        return {
            "schema_version": self.schema_version, "source": self.source, "host": self.host,
            "cpu_only": self.cpu_only, "reason": self.reason,
            "driver_version": self.driver_version, "cuda_version": self.cuda_version,
            "gpus": gpus, "topology": [t.to_dict() for t in self.topology],
            "nics": [n.to_dict() for n in self.nics], "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, file: str | None = None) -> "GpuFacts":
        """Rebuild facts from JSON; also accepts `detect-gpu --json`'s whole document."""
        if isinstance(d, dict) and "facts" in d and "gpus" not in d:
            d = d["facts"]
        if not isinstance(d, dict) or "gpus" not in d:
            raise GpuError("not a GPU facts document (no 'gpus' key)", file=file,
                           fix="feed it the output of `inv detect-gpu --json`")
        version = d.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise GpuError(f"GPU facts schema_version {version!r} is newer than this mmstack "
                           f"understands ({SCHEMA_VERSION})", file=file, key_path="schema_version",
                           fix="upgrade mmstack on this machine, or detect with the same version")
        try:
            return cls(
                source=str(d.get("source") or "file"),
                gpus=[Gpu.from_dict(g) for g in d.get("gpus") or []],
                topology=[TopoLink.from_dict(t) for t in d.get("topology") or []],
                driver_version=d.get("driver_version"), cuda_version=d.get("cuda_version"),
                nics=[Nic.from_dict(n) for n in d.get("nics") or []],
                reason=d.get("reason"), warnings=list(d.get("warnings") or []),
                host=d.get("host"), schema_version=SCHEMA_VERSION,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GpuError(f"malformed GPU facts: {type(exc).__name__}: {exc}", file=file,
                           fix="regenerate them with `inv detect-gpu --json`") from None


def cpu_only(reason: str, source: str = "none", warnings: list[str] | None = None,
             driver_version: str | None = None) -> GpuFacts:
    """The CPU-only result: no GPUs, and why."""
    return GpuFacts(source=source, reason=reason, warnings=list(warnings or []),
                    driver_version=driver_version)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)
