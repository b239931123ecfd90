"""Fixtures for real-SSH tests: a farm of loopback sshd servers and an inventory for them.

Without openssh-server the SSH tests are skipped, except on CI (``CI=true``) where a missing
server is a failure: CI must exercise real SSH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.remote.inventory import Inventory, load_inventory
from tests.support import needs
from tests.support.sshd import FIXTURES_GPU, SshdFarm, SshHost, missing_tools

DEBIAN_PACKAGES = "openssh-server openssh-client openssh-sftp-server"


def unavailable(reason: str) -> None:
    needs.unavailable(reason, f"apt-get install -y {DEBIAN_PACKAGES}")


@pytest.fixture(scope="session")
def sshd_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdFarm]:
    """Three sshd servers (127.0.0.2-4), started once for the session."""
    missing = missing_tools()
    if missing:
        unavailable("real SSH unavailable, missing " + ", ".join(missing))
    farm = SshdFarm(tmp_path_factory.mktemp("sshd"), count=3)
    try:
        farm.start()
        yield farm
    finally:
        farm.close()


@pytest.fixture
def farm(sshd_farm: SshdFarm) -> Iterator[SshdFarm]:
    """The session farm with every server running and the dual-3090 fake nvidia-smi."""
    for host in sshd_farm.hosts:
        host.start()
        host.set_gpu_profile("2x3090")
    yield sshd_farm
    for host in sshd_farm.hosts:  # a test may have stopped one
        host.start()


@pytest.fixture
def inventory_path(farm: SshdFarm, tmp_path: Path) -> Path:
    """An inventory for the farm whose stack directories are unique to this test."""
    return farm.inventory_file(tmp_path / "inventory.yml", stack_subdir=f"srv-{tmp_path.name}/stack")


@pytest.fixture
def inventory(inventory_path: Path, tmp_path: Path) -> Inventory:
    return load_inventory(tmp_path, inventory_path)


@pytest.fixture
def stop_host(farm: SshdFarm) -> Callable[[str], SshHost]:
    """``stop_host("h2")`` stops that host's sshd; it is restarted after the test."""

    def stop(name: str) -> SshHost:
        host = next(h for h in farm.hosts if h.name == name)
        host.stop()
        return host

    return stop


@pytest.fixture
def gpu_fixtures() -> Path:
    if not FIXTURES_GPU.is_dir():
        pytest.skip(f"GPU fixtures not found at {FIXTURES_GPU}")
    return FIXTURES_GPU


@pytest.fixture
def shell_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command sent to a host shell (`HostShell.send`) during the test, in order; the
    real method still sends it."""
    from tasks.remote.hostshell import HostShell

    sent: list[str] = []
    real = HostShell.send

    def recording(self: HostShell, command: str) -> int:
        sent.append(command)
        return real(self, command)

    monkeypatch.setattr(HostShell, "send", recording)
    return sent
