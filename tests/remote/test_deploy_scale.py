"""`deploy` at scale, over the real loopback sshd servers: what is rendered once, what each host
is asked, and the SSH socket itself.

Sixteen inventory hosts are spread over the three servers (each with its own stack_dir), so
the sharing is exercised at the size users run without sixteen sshd processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from invoke import Config, Context

import tasks.schema.steps as steps
from tasks.cli.remote import deploy
from tasks.remote.hosts import open_connection
from tasks.remote.inventory import Inventory
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    root = make_stack_copy(tmp_path / "stack")
    done = run_inv(root, "setup")
    assert done.returncode == 0, done.stderr
    return root


def spread_inventory(farm: SshdFarm, path: Path, count: int) -> tuple[Path, dict[str, Path]]:
    """``count`` inventory hosts over the farm's servers; returns the file and each stack_dir."""
    doc = farm.inventory_data()
    hosts, dirs = {}, {}
    for i in range(count):
        server = farm.hosts[i % len(farm.hosts)]
        name = f"n{i + 1}"
        dirs[name] = server.remote_root / f"srv-{path.parent.name}" / name
        hosts[name] = {"address": server.address, "port": server.port, "stack_dir": str(dirs[name])}
    doc["groups"] = {"gpu_servers": {"hosts": hosts}}
    doc["forks"] = count
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, dirs


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".mmstack" not in p.parts}


def run_deploy(stack: Path, inventory: Path, capsys: pytest.CaptureFixture, **kw) -> dict:
    c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
    capsys.readouterr()
    deploy(c, inventory=str(inventory), no_start=True, json=True, **kw)
    return json.loads(capsys.readouterr().out)


def vllm_devices(stack_dir: Path) -> list[str]:
    """The GPUs the deployed production overlay reserves for vLLM (none: [])."""
    doc = yaml.safe_load((stack_dir / "compose.production.yml").read_text().replace("!override", ""))
    deploy_key = (doc["services"].get("vllm") or {}).get("deploy") or {}
    devices = (deploy_key.get("resources") or {}).get("reservations", {}).get("devices") or [{}]
    return list(devices[0].get("device_ids") or [])


def count_renders(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Record every rendering of a host file set (the real function still does the work)."""
    calls: list[tuple[str, object]] = []
    real = steps.desired_stack_files

    def recording(stack_dir, environment, gpu_plan, *args, **kw):
        calls.append((environment, gpu_plan))
        return real(stack_dir, environment, gpu_plan, *args, **kw)

    monkeypatch.setattr(steps, "desired_stack_files", recording)
    return calls


def test_sixteen_hosts_with_one_plan_render_once(farm: SshdFarm, stack: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    inventory, dirs = spread_inventory(farm, tmp_path / "inventory.yml", 16)
    renders = count_renders(monkeypatch)
    doc = run_deploy(stack, inventory, capsys)
    assert len(renders) == 1
    assert all(doc["hosts"]["recap"][name]["changed"] > 0 for name in dirs)
    [file_set] = doc["file_sets"]
    assert file_set["environment"] == "production" and file_set["hosts"] == list(dirs)
    trees = {name: tree(d) for name, d in dirs.items()}
    first = trees["n1"]
    assert len(first) == file_set["files"] and "compose.production.yml" in first
    assert all(t == first for t in trees.values()), "every host got the same bytes"


def test_hosts_with_other_gpus_get_their_own_rendering(farm: SshdFarm, stack: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture,
                                                       gpu_fixtures: Path) -> None:
    farm.hosts[2].set_gpu_profile("8xquadro")  # every third inventory host: eight Quadros, no NVLink
    inventory, dirs = spread_inventory(farm, tmp_path / "inventory.yml", 16)
    renders = count_renders(monkeypatch)
    doc = run_deploy(stack, inventory, capsys)
    assert len(renders) == 2
    on_quadros = [f"n{i + 1}" for i in range(16) if i % 3 == 2]
    sets = {tuple(s["hosts"]): s for s in doc["file_sets"]}
    assert set(sets) == {tuple(on_quadros), tuple(n for n in dirs if n not in on_quadros)}
    quadro_set, nvlinked_set = sets[tuple(on_quadros)], sets[tuple(n for n in dirs if n not in on_quadros)]
    assert quadro_set["vllm_device_ids"] != nvlinked_set["vllm_device_ids"]
    assert quadro_set["vllm_device_ids"], "eight free Quadros: vLLM gets some"
    # What each host got is its own plan's rendering: the overlay pins the planned cards.
    assert vllm_devices(dirs["n3"]) == quadro_set["vllm_device_ids"]
    assert vllm_devices(dirs["n1"]) == nvlinked_set["vllm_device_ids"]
    assert tree(dirs["n3"]) == tree(dirs["n6"]) and tree(dirs["n1"]) == tree(dirs["n2"])
    assert tree(dirs["n1"]) != tree(dirs["n3"])
    # The same run again: every file set is still rendered once, and nothing changes.
    renders.clear()
    again = run_deploy(stack, inventory, capsys)
    assert len(renders) == 2
    assert all(r["changed"] == 0 for r in again["hosts"]["recap"].values())


def test_a_no_op_deploy_opens_one_channel_per_host(farm: SshdFarm, stack: Path, inventory_path: Path,
                                                   shell_requests: list[str],
                                                   capsys: pytest.CaptureFixture) -> None:
    run_deploy(stack, inventory_path, capsys)
    for host in farm.hosts:
        host.clear_log()
        (host.dir / "nvidia-smi.calls").unlink(missing_ok=True)
    shell_requests.clear()   # only the second (no-op) deploy's
    sent = shell_requests
    doc = run_deploy(stack, inventory_path, capsys)
    assert all(r["changed"] == 0 for r in doc["hosts"]["recap"].values())
    for host in farm.hosts:
        # ONE channel: the host's stack lock, and in it the shell that answers everything else
        # (no SFTP: nothing changed).
        [command] = host.commands()
        assert "flock -x" in command and command.endswith(" sh -s")
        calls = (host.dir / "nvidia-smi.calls").read_text().splitlines()
        assert any(c.startswith("--query-gpu=") for c in calls) and "topo -m" in calls
        assert "nvlink --status" in calls and "" in calls  # the plain table, for the CUDA version
    # What the shells were asked: per host, the GPU facts once and the file checksums once.
    assert len(sent) == 2 * len(farm.hosts)
    assert sum("nvidia-smi" in c for c in sent) == len(farm.hosts)
    assert sum("sha256sum" in c and "stat -L -c" in c for c in sent) == len(farm.hosts)


def test_tcp_nodelay_is_set_on_the_real_ssh_socket(farm: SshdFarm, inventory: Inventory) -> None:
    host = inventory.hosts["h1"]
    conn = open_connection(host)
    try:
        sock = conn.transport.sock
        assert isinstance(sock, socket.socket)
        assert sock.getpeername()[:2] == (host.address, host.port)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert conn.run("echo ready", hide=True, in_stream=False).stdout == "ready\n"
    finally:
        conn.close()


def test_no_start_deploy_loads_neither_the_stack_module_nor_the_validator(
        farm: SshdFarm, stack: Path, inventory_path: Path) -> None:
    """After `inv setup` the schema is known valid, and after one deploy the inventory: a
    files-only deploy then validates neither again (the validator is not even imported), nor
    imports the start step (Compose on the host)."""
    probe = """
import atexit, runpy, sys
import tasks.schema.semantics as semantics
validations = []
real = semantics.semantic_errors
semantics.semantic_errors = lambda *a, **k: validations.append(1) or real(*a, **k)
atexit.register(lambda: print("PROBE", len(validations), "tasks.stack.start" in sys.modules,
                              "cerberus" in sys.modules, file=sys.stderr))
sys.argv = ["inv", "--search-root", sys.argv[1], "deploy", "--no-start", "--inventory", sys.argv[2]]
runpy.run_module("invoke", run_name="__main__")
"""
    env = {k: v for k, v in os.environ.items() if k != "INVOKE_RUNTIME_CONFIG"}
    env["PYTHONPATH"] = str(stack)
    first = run_inv(stack, "deploy", "--no-start", "--inventory", str(inventory_path))
    assert first.returncode == 0, first.stderr  # validates the inventory once, as a user's first run
    proc = subprocess.run([sys.executable, "-c", probe, str(stack), str(inventory_path)], cwd=stack,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    probe_line = next(line for line in proc.stderr.splitlines() if line.startswith("PROBE"))
    # The second deploy: no schema validation, no validator loaded at all, no start step.
    assert probe_line.split()[1:] == ["0", "False", "False"], probe_line


def test_a_schema_edited_after_setup_is_validated_again(farm: SshdFarm, stack: Path,
                                                        inventory_path: Path, tmp_path: Path) -> None:
    schema = stack / "schemas" / "compose-schema.yaml"
    schema.write_text(schema.read_text() + "\nbogus_key: 1\n")
    proc = run_inv(stack, "deploy", "--no-start", "--inventory", str(inventory_path))
    assert proc.returncode == 1
    assert "schemas/compose-schema.yaml" in proc.stderr and "bogus_key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any((h.remote_root / f"srv-{tmp_path.name}").exists() for h in farm.hosts)


def test_an_inventory_edited_after_a_deploy_is_validated_again(farm: SshdFarm, stack: Path,
                                                               inventory_path: Path) -> None:
    assert run_inv(stack, "deploy", "--no-start", "--inventory", str(inventory_path)).returncode == 0
    doc = yaml.safe_load(inventory_path.read_text())
    doc["groups"]["gpu_servers"]["hosts"]["h1"]["prot"] = 22
    inventory_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_inv(stack, "deploy", "--no-start", "--inventory", str(inventory_path))
    assert proc.returncode == 1 and "prot" in proc.stderr and "unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
