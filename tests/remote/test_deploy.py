"""`deploy` (files step) end to end: a real stack copy, real sshd hosts, the task function.

These hosts have no Compose: the files are deployed with ``no_start=True`` (the stack-up step
is covered by test_remote_stack.py and, with Docker, test_remote_stack_e2e.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import Config, Context, Exit

from tasks.cli.remote import deploy
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


def secret_values(root: Path) -> set[str]:
    values = set()
    for env_file in root.rglob("*.env"):
        if env_file.stat().st_mode & 0o077 == 0:  # 0600: holds secrets
            for line in env_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                # generated secrets: long, mixed letters and digits (names and ports are not)
                if (sep and not line.startswith("#") and len(value) >= 16 and re.search(r"\d", value)
                        and re.search(r"[A-Za-z]", value) and "/" not in value and ":" not in value):
                    values.add(value)
    return values


def test_deploy_converges_and_keeps_secrets_off_command_lines(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    setup = run_inv(stack, "setup")
    assert setup.returncode == 0, setup.stderr
    c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
    for h in farm.hosts:
        h.clear_log()

    deploy(c, inventory=str(inventory_path), no_start=True)
    first = capsys.readouterr().out
    deploy(c, inventory=str(inventory_path), no_start=True)
    second = capsys.readouterr().out
    deploy(c, inventory=str(inventory_path), check=True, diff=True, no_start=True)
    checked = capsys.readouterr()

    for name in ("h1", "h2", "h3"):
        line_first = next(l for l in first.splitlines() if l.startswith(name + " :"))
        assert "changed=0" not in line_first and "failed=0" in line_first
        assert any(l.startswith(name + " :") and "changed=0" in l for l in second.splitlines())
        assert any(l.startswith(name + " :") and "changed=0" in l for l in checked.out.splitlines())

    remote_stack = Path(farm.hosts[0].remote_root) / f"srv-{tmp_path.name}" / "stack"
    env_dirs = [p for p in remote_stack.rglob("*") if p.is_dir() and any(p.glob("*.env"))]
    assert env_dirs and all(p.stat().st_mode & 0o777 == 0o700 for p in env_dirs)
    values = secret_values(remote_stack)
    assert values, "no secret values found to check"
    logged = "".join(h.log_text() for h in farm.hosts)
    output = first + second + checked.out + checked.err
    for value in values:
        assert value not in logged and value not in output


def test_deploy_exit_code_when_a_host_is_down(farm: SshdFarm, inventory_path: Path, tmp_path: Path,
                                              stop_host, capsys: pytest.CaptureFixture) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    assert run_inv(stack, "setup").returncode == 0
    c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
    stop_host("h3")
    with pytest.raises(Exit) as err:
        deploy(c, inventory=str(inventory_path), json=True, no_start=True)
    assert err.value.code == 2
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["hosts"]["recap"]["h3"]["unreachable"] == 1
    assert doc["hosts"]["recap"]["h1"]["changed"] > 0
