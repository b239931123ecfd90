"""`detect-gpu --host` connects through the one host-key policy (tasks/remote/hosts.py).

An unknown host key is refused before any command runs there, whether ``--host`` names an
inventory host or gives ``user@address:port``; a known key (the inventory's known_hosts file)
connects and reads the host's GPUs with its nvidia-smi.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return make_stack_copy(tmp_path / "stack")


def _home_with_client_key(farm: SshdFarm, tmp_path: Path) -> dict[str, str]:
    """A HOME whose ~/.ssh has the farm's client key and an empty known_hosts."""
    home = tmp_path / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    shutil.copy(farm.client_key, ssh / "id_ed25519")
    os.chmod(ssh / "id_ed25519", 0o600)
    (ssh / "known_hosts").write_text("")
    return {"HOME": str(home)}


def test_an_unknown_host_key_is_refused_for_an_address(farm: SshdFarm, stack: Path, tmp_path: Path,
                                                       gpu_fixtures: Path) -> None:
    host = farm.hosts[0]
    host.clear_log()
    user = pwd.getpwuid(os.getuid()).pw_name
    env = _home_with_client_key(farm, tmp_path)
    proc = run_inv(stack, "detect-gpu", "--json", "--host", f"{user}@{host.address}:{host.port}", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is unknown; refusing to connect" in proc.stderr
    assert "ssh-keyscan -p" in proc.stderr and "Traceback" not in proc.stderr
    assert host.commands() == []  # nothing ran there
    assert (Path(env["HOME"]) / ".ssh" / "known_hosts").read_text() == ""  # and nothing was added


def test_an_inventory_host_uses_its_known_hosts_and_key(farm: SshdFarm, stack: Path, tmp_path: Path,
                                                        gpu_fixtures: Path) -> None:
    (stack / "inventory").mkdir(exist_ok=True)
    farm.inventory_file(stack / "inventory" / "hosts.yml")
    env = _home_with_client_key(farm, tmp_path)  # its empty known_hosts must not matter
    proc = run_inv(stack, "detect-gpu", "--json", "--host", "h2", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts = json.loads(proc.stdout)
    facts = facts.get("facts", facts)
    assert [g["name"] for g in facts["gpus"]] == ["NVIDIA GeForce RTX 3090"] * 2
    assert any("nvidia-smi" in cmd for cmd in farm.hosts[1].commands())


def test_an_inventory_host_with_an_unknown_key_is_refused(farm: SshdFarm, stack: Path,
                                                          tmp_path: Path) -> None:
    (stack / "inventory").mkdir(exist_ok=True)
    doc = farm.inventory_data()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    doc["known_hosts_file"] = str(empty)
    (stack / "inventory" / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    farm.hosts[2].clear_log()
    proc = run_inv(stack, "detect-gpu", "--host", "h3", env=_home_with_client_key(farm, tmp_path))
    assert proc.returncode == 1 and "refusing to connect" in proc.stderr, proc.stderr
    assert farm.hosts[2].commands() == []
    assert empty.read_text() == ""


def test_a_malformed_host_is_a_clear_error(stack: Path) -> None:
    proc = run_inv(stack, "detect-gpu", "--host", "user@host:99999")
    assert proc.returncode == 1 and "--host" in proc.stderr and "fix:" in proc.stderr, proc.stderr
