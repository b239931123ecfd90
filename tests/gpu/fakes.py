"""A fake NVML at the boundary (`tasks.gpu.nvml.Nvml`), and helpers to run the GPU tasks."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

from invoke import Program

from tasks.gpu import nvml

REPO = Path(__file__).resolve().parents[2]
# Real nvidia-smi outputs live beside the checkout (never copied into the project).
FIXTURES = REPO.parent / "shared" / "fixtures" / "gpu"

GiB = 2**30


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 3090"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    bus: str = "00000000:17:00.0"
    total: int = 24 * GiB
    used: int = 300 * 2**20
    cc: tuple[int, int] = (8, 6)
    display: bool = False
    processes: int = 0
    # link number -> remote bus id (active links); absent numbers up to n_links are inactive
    links: dict[int, str] = field(default_factory=dict)
    n_links: int = 0  # links the GPU has (NVML answers NOT_SUPPORTED past them)
    fail: dict[str, int] = field(default_factory=dict)  # method name -> NVML error code


@dataclass
class FakeNvml:
    """Implements the `Nvml` protocol from plain data; any call can be made to fail."""

    gpus: list[FakeGpu] = field(default_factory=list)
    driver: str = "550.54.15"
    cuda: int = 12040
    fail: dict[str, int] = field(default_factory=dict)  # global call -> error code
    topology: dict[tuple[int, int], int] = field(default_factory=dict)  # (a, b) -> ancestor code
    calls: list[str] = field(default_factory=list)
    shut: bool = False

    def _check(self, what: str, gpu: FakeGpu | None = None) -> None:
        self.calls.append(what)
        code = (gpu.fail.get(what) if gpu else None) or self.fail.get(what)
        if code:
            raise nvml.NvmlCallError(code)

    def init(self) -> None:
        self._check("init")

    def shutdown(self) -> None:
        self.shut = True

    def driver_version(self) -> str:
        self._check("driver_version")
        return self.driver

    def cuda_driver_version(self) -> int:
        self._check("cuda_driver_version")
        return self.cuda

    def device_count(self) -> int:
        self._check("device_count")
        return len(self.gpus)

    def handle(self, index: int) -> int:
        self._check("handle", self.gpus[index])
        return index

    def name(self, h: int) -> str:
        self._check("name", self.gpus[h])
        return self.gpus[h].name

    def uuid(self, h: int) -> str:
        self._check("uuid", self.gpus[h])
        return self.gpus[h].uuid

    def pci_bus_id(self, h: int) -> str:
        self._check("pci_bus_id", self.gpus[h])
        return self.gpus[h].bus

    def memory(self, h: int) -> tuple[int, int]:
        self._check("memory", self.gpus[h])
        return self.gpus[h].total, self.gpus[h].used

    def compute_capability(self, h: int) -> tuple[int, int]:
        self._check("compute_capability", self.gpus[h])
        return self.gpus[h].cc

    def display_active(self, h: int) -> bool:
        self._check("display_active", self.gpus[h])
        return self.gpus[h].display

    def process_count(self, h: int) -> int:
        self._check("process_count", self.gpus[h])
        return self.gpus[h].processes

    def nvlink_active(self, h: int, link: int) -> bool:
        self._check("nvlink_active", self.gpus[h])
        g = self.gpus[h]
        if link >= g.n_links:
            raise nvml.NvmlCallError(nvml.NOT_SUPPORTED if g.n_links == 0 else nvml.INVALID_ARGUMENT)
        return link in g.links

    def nvlink_remote_bus_id(self, h: int, link: int) -> str:
        self._check("nvlink_remote_bus_id", self.gpus[h])
        return self.gpus[h].links[link]

    def topology_common_ancestor(self, h1: int, h2: int) -> int:
        self._check("topology_common_ancestor")
        return self.topology.get((min(h1, h2), max(h1, h2)), 30)


def dual_3090(nvlink: bool = True, **kw) -> FakeNvml:
    """Two RTX 3090s (the buses and UUIDs of the club-3090 capture), NV4 when ``nvlink``."""
    a_bus, b_bus = "0000:17:00.0", "0000:65:00.0"  # NVML's legacy 4-digit domain on purpose
    a = FakeGpu(uuid="GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0", bus="00000000:17:00.0",
                n_links=4, links={i: b_bus for i in range(4)} if nvlink else {})
    b = FakeGpu(uuid="GPU-fef3f583-99bd-ac7f-c761-eddb679067e0", bus="00000000:65:00.0",
                n_links=4, links={i: a_bus for i in range(4)} if nvlink else {}, **kw)
    return FakeNvml(gpus=[a, b], topology={(0, 1): 50})


def run_task(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """Run the gpu collection's tasks in-process like `inv`; returns (exit code, stdout, stderr)."""
    from tasks.cli.gpu import ns

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    code = 0
    try:
        Program(namespace=ns, name="mmstack", binary="inv").run(["inv", *argv], exit=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            err.write(exc.code)
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return code, out.getvalue(), err.getvalue()
