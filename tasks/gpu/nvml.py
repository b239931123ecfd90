"""GPU facts through NVML: the one thin boundary to the `pynvml` bindings, and the collector.

`Nvml` is the whole surface mmstack uses, in plain Python types. `RealNvml` imports `pynvml`
only when constructed, and turns every `pynvml.NVMLError` into `NvmlCallError(code)`, so the
collector (and the fake NVML the tests inject) never see pynvml itself.

Failures map to results, never crashes: a missing library, a driver that is not loaded or no
permission gives a CPU-only result with the reason; a call a GPU does not support (NVLink on a
GeForce card without a bridge, display state in some VMs) leaves that field None and adds a
warning (a partial result).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .facts import Gpu, GpuFacts, LinkLevel, NvLink, TopoLink, cpu_only, normalize_bus_id

# NVML return codes (the values are NVML's ABI, the same in every pynvml release).
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
UNKNOWN = 999

_CODE_NAMES = {
    UNINITIALIZED: "NVML not initialised", INVALID_ARGUMENT: "invalid argument",
    NOT_SUPPORTED: "not supported", NO_PERMISSION: "no permission", NOT_FOUND: "not found",
    DRIVER_NOT_LOADED: "driver not loaded", LIBRARY_NOT_FOUND: "NVML library not found",
    FUNCTION_NOT_FOUND: "function not found in this driver's NVML", GPU_IS_LOST: "GPU is lost",
    UNKNOWN: "unknown error",
}

# Codes that mean "NVML stopped working" rather than "this one field is missing".
FATAL_CODES = (DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, UNINITIALIZED)

# nvmlDeviceGetTopologyCommonAncestor results -> topo -m levels.
_TOPOLOGY_LEVELS = {0: LinkLevel.PIX, 10: LinkLevel.PIX, 20: LinkLevel.PXB, 30: LinkLevel.PHB,
                    40: LinkLevel.NODE, 50: LinkLevel.SYS}
MAX_LINKS = 18  # NVLink links per GPU on every current part (H100: 18); more are never asked for


class NvmlCallError(Exception):
    """An NVML call failed with ``code`` (an NVML_ERROR_* value)."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail or _CODE_NAMES.get(code, f"NVML error {code}")
        super().__init__(self.detail)


class Nvml(Protocol):
    """The NVML calls mmstack needs; ``handle`` is whatever the implementation hands out."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int: ...  # e.g. 12020 for CUDA 12.2
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def name(self, h: Any) -> str: ...
    def uuid(self, h: Any) -> str: ...
    def pci_bus_id(self, h: Any) -> str: ...
    def memory(self, h: Any) -> tuple[int, int]: ...  # (total, used) in bytes
    def compute_capability(self, h: Any) -> tuple[int, int]: ...
    def display_active(self, h: Any) -> bool: ...
    def process_count(self, h: Any) -> int: ...
    def nvlink_active(self, h: Any, link: int) -> bool: ...
    def nvlink_remote_bus_id(self, h: Any, link: int) -> str: ...
    def topology_common_ancestor(self, h1: Any, h2: Any) -> int: ...


class RealNvml:
    """`Nvml` over the `pynvml` module (from NVIDIA's nvidia-ml-py package)."""

    def __init__(self) -> None:
        # A dependency of mmstack, imported only when NVML is asked (`inv --list` stays light).
        # Without an NVIDIA driver it still imports; nvmlInit then fails with LIBRARY_NOT_FOUND.
        import pynvml

        self._nv = pynvml

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nv.NVMLError as exc:
            raise NvmlCallError(int(getattr(exc, "value", UNKNOWN)), str(exc)) from None

    @staticmethod
    def _text(v: Any) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    def init(self) -> None:
        self._call(self._nv.nvmlInit)

    def shutdown(self) -> None:
        self._call(self._nv.nvmlShutdown)

    def driver_version(self) -> str:
        return self._text(self._call(self._nv.nvmlSystemGetDriverVersion))

    def cuda_driver_version(self) -> int:
        return int(self._call(self._nv.nvmlSystemGetCudaDriverVersion))

    def device_count(self) -> int:
        return int(self._call(self._nv.nvmlDeviceGetCount))

    def handle(self, index: int) -> Any:
        return self._call(self._nv.nvmlDeviceGetHandleByIndex, index)

    def name(self, h: Any) -> str:
        return self._text(self._call(self._nv.nvmlDeviceGetName, h))

    def uuid(self, h: Any) -> str:
        return self._text(self._call(self._nv.nvmlDeviceGetUUID, h))

    def pci_bus_id(self, h: Any) -> str:
        return self._text(self._call(self._nv.nvmlDeviceGetPciInfo, h).busId)

    def memory(self, h: Any) -> tuple[int, int]:
        info = self._call(self._nv.nvmlDeviceGetMemoryInfo, h)
        return int(info.total), int(info.used)

    def compute_capability(self, h: Any) -> tuple[int, int]:
        major, minor = self._call(self._nv.nvmlDeviceGetCudaComputeCapability, h)
        return int(major), int(minor)

    def display_active(self, h: Any) -> bool:
        return bool(self._call(self._nv.nvmlDeviceGetDisplayActive, h))

    def process_count(self, h: Any) -> int:
        # Compute processes only: a display's Xorg is a graphics process and is already
        # accounted for by display_active; what competes with vLLM is other CUDA work.
        return len({p.pid for p in self._call(self._nv.nvmlDeviceGetComputeRunningProcesses, h)})

    def nvlink_active(self, h: Any, link: int) -> bool:
        return bool(self._call(self._nv.nvmlDeviceGetNvLinkState, h, link))

    def nvlink_remote_bus_id(self, h: Any, link: int) -> str:
        return self._text(self._call(self._nv.nvmlDeviceGetNvLinkRemotePciInfo, h, link).busId)

    def topology_common_ancestor(self, h1: Any, h2: Any) -> int:
        return int(self._call(self._nv.nvmlDeviceGetTopologyCommonAncestor, h1, h2))


def make_boundary() -> Nvml:
    """The boundary detect-gpu uses; tests replace this function to inject a fake NVML."""
    return RealNvml()


def reason_for(code: int, detail: str = "") -> str:
    """A clear CPU-only reason for an NVML failure that leaves no GPU to look at."""
    if code == LIBRARY_NOT_FOUND:
        return "NVML is not available (no NVIDIA driver library on this host)" + (f": {detail}" if detail else "")
    if code == DRIVER_NOT_LOADED:
        return "the NVIDIA driver is not loaded"
    if code == NO_PERMISSION:
        return "no permission to query the GPUs through NVML (check /dev/nvidia* access)"
    return f"NVML failed: {detail or _CODE_NAMES.get(code, code)}"


def collect(nvml: Nvml) -> GpuFacts:
    """Gather `GpuFacts` through ``nvml``. Never raises for NVML errors (see module doc)."""
    try:
        nvml.init()
    except NvmlCallError as exc:
        return cpu_only(reason_for(exc.code, exc.detail), source="nvml")
    try:
        return _collect(nvml)
    finally:
        try:
            nvml.shutdown()
        except NvmlCallError:
            pass


def _collect(nvml: Nvml) -> GpuFacts:
    warnings: list[str] = []

    def optional(what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """A field one GPU may not support: None plus a warning, not a failure."""
        try:
            return fn(*args)
        except NvmlCallError as exc:
            if exc.code in FATAL_CODES:
                raise
            warnings.append(f"{what}: {exc.detail}")
            return None

    try:
        driver = optional("driver version", nvml.driver_version)
        cuda_int = optional("CUDA version", nvml.cuda_driver_version)
        count = nvml.device_count()
    except NvmlCallError as exc:
        return cpu_only(reason_for(exc.code, exc.detail), source="nvml", warnings=warnings)
    cuda = f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}" if cuda_int else None
    if count == 0:
        return cpu_only("the NVIDIA driver is loaded but no GPU was found", source="nvml",
                        warnings=warnings, driver_version=driver)

    gpus: list[Gpu] = []
    handles: dict[int, Any] = {}
    try:
        for index in range(count):
            try:
                h = nvml.handle(index)
            except NvmlCallError as exc:
                if exc.code in FATAL_CODES:
                    raise
                # e.g. NO_PERMISSION on one GPU of a shared box, or a lost GPU: skip that one.
                warnings.append(f"GPU{index}: skipped ({exc.detail})")
                continue
            handles[index] = h
            mem = optional(f"GPU{index} memory", nvml.memory, h)
            cc = optional(f"GPU{index} compute capability", nvml.compute_capability, h)
            gpus.append(Gpu(
                index=index,
                name=optional(f"GPU{index} name", nvml.name, h) or f"GPU{index}",
                uuid=optional(f"GPU{index} UUID", nvml.uuid, h),
                pci_bus_id=normalize_bus_id(optional(f"GPU{index} PCI bus id", nvml.pci_bus_id, h)),
                memory_total_mib=mem[0] // 2**20 if mem else None,
                memory_used_mib=mem[1] // 2**20 if mem else None,
                compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                display_active=optional(f"GPU{index} display state", nvml.display_active, h),
                processes=optional(f"GPU{index} processes", nvml.process_count, h),
            ))
        for gpu in gpus:
            gpu.nvlinks = _links(nvml, handles[gpu.index], gpu, warnings)
    except NvmlCallError as exc:
        return cpu_only(reason_for(exc.code, exc.detail), source="nvml", warnings=warnings,
                        driver_version=driver)
    if not gpus:
        return cpu_only("no GPU could be queried through NVML", source="nvml",
                        warnings=warnings, driver_version=driver)
    _resolve_peers(gpus)
    topology = _topology(nvml, gpus, handles, warnings)
    return GpuFacts(source="nvml", gpus=gpus, topology=topology, driver_version=driver,
                    cuda_version=cuda, warnings=warnings)


def _links(nvml: Nvml, h: Any, gpu: Gpu, warnings: list[str]) -> list[NvLink]:
    """Every NVLink the GPU reports. The first NOT_SUPPORTED / INVALID_ARGUMENT ends the list:
    that is how NVML says "this GPU has no link N" (or no NVLink at all)."""
    links: list[NvLink] = []
    for link in range(MAX_LINKS):
        try:
            active = nvml.nvlink_active(h, link)
        except NvmlCallError as exc:
            if exc.code in (NOT_SUPPORTED, INVALID_ARGUMENT, NOT_FOUND, FUNCTION_NOT_FOUND):
                break
            if exc.code in FATAL_CODES:
                raise
            warnings.append(f"GPU{gpu.index} NVLink {link}: {exc.detail}")
            break
        remote = None
        if active:
            try:
                remote = normalize_bus_id(nvml.nvlink_remote_bus_id(h, link))
            except NvmlCallError as exc:
                warnings.append(f"GPU{gpu.index} NVLink {link} remote: {exc.detail}")
        links.append(NvLink(link, active, remote_bus_id=remote))
    return links


def _resolve_peers(gpus: list[Gpu]) -> None:
    by_bus = {g.pci_bus_id: g.index for g in gpus if g.pci_bus_id}
    for g in gpus:
        for link in g.nvlinks:
            if link.remote_bus_id:
                link.peer_index = by_bus.get(link.remote_bus_id)


def _topology(nvml: Nvml, gpus: list[Gpu], handles: dict[int, Any],
              warnings: list[str]) -> list[TopoLink]:
    """Pairwise levels: NV<count> where NVLinks join the pair, else the PCIe common ancestor.

    Links whose far end is not a GPU go to an NVSwitch (HGX/DGX boards): every pair of GPUs
    that both have switch links is NVLink-connected, with as many links as the smaller side
    has, which is what `nvidia-smi topo -m` shows there (NV18 on an 8x H100 SXM board).
    """
    gpu_buses = {g.pci_bus_id for g in gpus}
    out: list[TopoLink] = []
    for i, a in enumerate(gpus):
        for b in gpus[i + 1:]:
            direct = sum(1 for l in a.nvlinks if l.active and l.peer_index == b.index)
            direct = max(direct, sum(1 for l in b.nvlinks if l.active and l.peer_index == a.index))
            sw_a = sum(1 for l in a.nvlinks if l.active and l.remote_bus_id and l.remote_bus_id not in gpu_buses)
            sw_b = sum(1 for l in b.nvlinks if l.active and l.remote_bus_id and l.remote_bus_id not in gpu_buses)
            if direct:
                out.append(TopoLink(a.index, b.index, LinkLevel.NVLINK, direct))
                continue
            if sw_a and sw_b:
                out.append(TopoLink(a.index, b.index, LinkLevel.NVLINK, min(sw_a, sw_b)))
                continue
            try:
                code = nvml.topology_common_ancestor(handles[a.index], handles[b.index])
                level = _TOPOLOGY_LEVELS.get(code, LinkLevel.UNKNOWN)
            except NvmlCallError as exc:
                warnings.append(f"GPU{a.index}-GPU{b.index} topology: {exc.detail}")
                level = LinkLevel.UNKNOWN
            out.append(TopoLink(a.index, b.index, level, 0))
    return out
