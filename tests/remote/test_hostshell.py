"""The deploy's one channel per host, over real SSH: the host shell (`remote.hostshell`), the
stack lock it holds (exclusive against other deploys, `host_lock` and local runs; released
when the block ends or the connection drops), and what `deploy` does through it (check mode
takes no lock, ``~/`` stack directories, hand-edited files kept, nothing secret in what is
sent)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from invoke import Config, Context, Exit
from invoke.exceptions import UnexpectedExit

from tasks.cli.remote import deploy
from tasks.engine.errors import LockError
from tasks.engine.lock import stack_lock
from tasks.remote.hostfacts import host_facts
from tasks.remote.hosts import connected, open_connection
from tasks.remote.hostshell import HostShell
from tasks.remote.inventory import Inventory
from tasks.remote.lock import host_lock
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_stack_copy(tmp_path_factory.mktemp("hostshell") / "stack")
    done = run_inv(root, "setup")
    assert done.returncode == 0, done.stderr
    return root


def run_deploy(stack: Path, inventory: Path, capsys: pytest.CaptureFixture, **kw) -> dict:
    c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
    capsys.readouterr()
    try:
        deploy(c, inventory=str(inventory), no_start=True, json=True, **kw)
    except Exit as exc:
        assert exc.code == 2, exc
    return json.loads(capsys.readouterr().out)


# -- the shell -------------------------------------------------------------------------------
def test_commands_answer_like_run_and_can_be_sent_ahead(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    with connected(h1) as conn, HostShell.open(conn) as shell:
        first = shell.send("printf one")
        second = shell.send("echo two; echo oops >&2; exit 4")
        third = shell.send("cat; echo three")  # stdin is /dev/null: it never eats the requests
        assert shell.result(first).stdout == "one"
        failed = shell.result(second, warn=True)
        assert (failed.exited, failed.stdout, failed.stderr) == (4, "two\n", "oops\n")
        assert shell.result(third).stdout == "three\n"
        with pytest.raises(UnexpectedExit) as info:
            shell.run("echo gone >&2; false")
        assert info.value.result.exited == 1 and info.value.result.stderr == "gone\n"
        assert shell.run("echo after").stdout == "after\n"  # a failure leaves the shell usable


def test_the_shell_lock_excludes_host_lock_another_shell_and_a_local_run(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    state = Path(h1.stack_dir) / ".mmstack"  # the loopback host's files are this machine's
    with connected(h1) as first, connected(h1) as second:
        with HostShell.open(first, lock_dir=h1.stack_dir) as shell:
            assert shell.run("echo locked").stdout == "locked\n"  # the first answer: lock held
            with pytest.raises(LockError) as info:
                with host_lock(second, h1.stack_dir, timeout=0.5):
                    pass
            assert "another mmstack run" in str(info.value)
            with pytest.raises(LockError):
                with HostShell.open(second, lock_dir=h1.stack_dir, lock_timeout=0.5) as other:
                    other.run("true")
            with pytest.raises(LockError):
                with stack_lock(state, timeout=0.3):
                    pass
        # Released when the block ended: the others get it at once.
        with stack_lock(state, timeout=0.3):
            pass
        with HostShell.open(second, lock_dir=h1.stack_dir, lock_timeout=0.5) as shell:
            assert shell.run("echo mine").stdout == "mine\n"
        with host_lock(first, h1.stack_dir, timeout=0.5):
            pass


def test_a_dropped_connection_releases_the_shell_lock(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    first = open_connection(h1)
    held = HostShell.open(first, lock_dir=h1.stack_dir)
    shell = held.__enter__()
    shell.run("true")
    first.client.get_transport().close()  # as if the deploying machine went away
    with connected(h1) as second:
        with HostShell.open(second, lock_dir=h1.stack_dir, lock_timeout=5) as again:
            assert again.run("echo free").stdout == "free\n"
    first.close()


def test_host_facts_resolve_home_and_gather_gpus_in_the_locked_shell(farm: SshdFarm, inventory: Inventory,
                                                                     gpu_fixtures: Path) -> None:
    h1 = inventory.select("h1")[0]
    server = farm.hosts[0]
    host = dataclasses.replace(h1, stack_dir="~/deploy dir")
    server.clear_log()
    with connected(host) as conn, host_facts(conn, host, lock=True) as found:
        assert found.root == f"{server.home}/deploy dir"
        assert [g.name for g in found.gpu.gpus] == ["NVIDIA GeForce RTX 3090"] * 2 and found.gpu.host == "h1"
        assert (server.home / "deploy dir" / ".mmstack" / "lock").exists()
        with pytest.raises(LockError):
            with connected(host) as other, host_lock(other, host.stack_dir, timeout=0.3):
                pass
    # One channel for the lock, HOME and the GPUs (the second is the refused host_lock).
    command, refused = server.commands()
    assert "flock -x" in command and '"$HOME"/' in command and command.endswith(" sh -s")
    assert "flock -x" in refused and "echo mmstack-locked" in refused


# -- deploy through it -----------------------------------------------------------------------
def test_check_mode_takes_no_lock_and_writes_nothing(farm: SshdFarm, stack: Path, inventory_path: Path,
                                                     inventory: Inventory, capsys: pytest.CaptureFixture) -> None:
    h1 = inventory.select("h1")[0]
    # Another run holds h1's lock for the whole check: a check must not wait for it.
    Path(h1.stack_dir, ".mmstack").mkdir(parents=True)
    with connected(h1) as conn, host_lock(conn, h1.stack_dir):
        doc = run_deploy(stack, inventory_path, capsys, check=True, hosts="h1,h2")
    assert doc["hosts"]["recap"]["h1"]["failed"] == 0 and doc["hosts"]["recap"]["h1"]["changed"] > 0
    assert sorted(p.name for p in Path(h1.stack_dir).iterdir()) == [".mmstack"]
    h2 = inventory.hosts["h2"]
    assert not Path(h2.stack_dir).exists(), "check mode created the stack directory (or its lock)"
    command = farm.hosts[1].commands()[-1]
    assert "flock" not in command and command.endswith("exec sh -s")


def test_a_held_lock_fails_that_host_only(stack: Path, inventory_path: Path, inventory: Inventory,
                                          capsys: pytest.CaptureFixture) -> None:
    h2 = inventory.select("h2")[0]
    with connected(h2) as conn, host_lock(conn, h2.stack_dir):
        c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack), "lock_timeout": 0.5}}))
        capsys.readouterr()
        with pytest.raises(Exit):
            deploy(c, inventory=str(inventory_path), no_start=True, json=True, hosts="h1,h2")
        out = json.loads(capsys.readouterr().out)
    assert out["hosts"]["recap"]["h2"]["failed"] == 1
    [failure] = [r for r in out["hosts"]["hosts"]["h2"]["results"] if r["status"] == "failed"]
    assert "another mmstack run" in failure["message"]
    assert out["hosts"]["recap"]["h1"]["changed"] > 0 and out["hosts"]["recap"]["h1"]["failed"] == 0


def test_deploy_to_a_home_relative_stack_dir(farm: SshdFarm, stack: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    server = farm.hosts[0]
    subdir = f"home-{tmp_path.name}"
    doc = farm.inventory_data()
    doc["groups"]["gpu_servers"]["hosts"] = {"h1": {**doc["groups"]["gpu_servers"]["hosts"]["h1"],
                                                    "stack_dir": f"~/{subdir}"}}
    path = tmp_path / "home.yml"
    path.write_text(yaml.safe_dump(doc))
    first = run_deploy(stack, path, capsys)
    assert first["hosts"]["recap"]["h1"]["changed"] > 0 and first["hosts"]["recap"]["h1"]["failed"] == 0
    root = server.home / subdir
    assert (root / "compose.yml").is_file() and (root / ".mmstack" / "lock").exists()
    assert not (Path.home() / subdir).exists()
    server.clear_log()
    again = run_deploy(stack, path, capsys)
    assert again["hosts"]["recap"]["h1"]["changed"] == 0
    assert len(server.commands()) == 1  # the shell: no `printf $HOME` channel of its own


def test_a_hand_edited_file_is_kept_on_the_host(farm: SshdFarm, stack: Path, inventory_path: Path,
                                                inventory: Inventory, capsys: pytest.CaptureFixture) -> None:
    run_deploy(stack, inventory_path, capsys, hosts="h1")
    root = Path(inventory.hosts["h1"].stack_dir)
    target = root / "compose.yml"
    generated = target.read_bytes()
    edited = generated + b"# tuned by hand\n"
    target.write_bytes(edited)
    doc = run_deploy(stack, inventory_path, capsys, hosts="h1")
    [row] = [r for r in doc["hosts"]["hosts"]["h1"]["results"] if r["item"] == "compose.yml"]
    assert row["status"] == "changed" and "edited by hand on the host" in row["message"]
    [kept] = (root / ".mmstack" / "backups").glob("compose.yml.*.hand-edited")
    assert kept.read_bytes() == edited and str(kept) in row["message"]
    assert target.read_bytes() == generated


def test_nothing_secret_is_sent_to_the_shell(farm: SshdFarm, stack: Path, inventory_path: Path,
                                             inventory: Inventory, shell_requests: list[str],
                                             capsys: pytest.CaptureFixture) -> None:
    from tests.remote.test_deploy import secret_values

    sent = shell_requests
    doc = run_deploy(stack, inventory_path, capsys)
    assert all(r["changed"] > 0 for r in doc["hosts"]["recap"].values())
    assert any("mv -f --" in c for c in sent) and any("sha256sum" in c for c in sent)
    values = secret_values(Path(inventory.hosts["h1"].stack_dir))
    assert values, "no secret values found to check"
    assert not [v for v in values for c in sent if v in c]
    # The content went over SFTP: one SFTP session per host, next to the shell.
    for server in farm.hosts:
        assert sum(c == "internal-sftp" for c in server.commands()[-2:]) == 1
