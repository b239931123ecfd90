"""rotate-secrets re-keys PostgreSQL on the hosts, end to end: real SSH (loopback sshd), the real
engine and the real PostgreSQL 17 image.

h1 runs the development environment as a deploy leaves it: a postgres container of the project
(started with the stored password, its data in the labelled ``postgres-data`` volume) and the
start record in h1's stack directory. h2 and h3 have nothing deployed. Then:

* `rotate-secrets --service postgres --check` reports what it would change on h1 and changes
  nothing;
* with h2 unreachable, the rotation is refused before any database or the store changes;
* with every host back, the password changes in h1's running database (a password login with
  the new value works, the old one is refused), the store and the local env files hold the new
  value, h2 and h3 report nothing to do, the recap covers every host, and no value is printed.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Exit

from tasks.cli.secrets import rotate_secrets
from tasks.stack.state import StartRecord
from tests.lifecycle.conftest import remove_project
from tests.lifecycle.stackconfig import write_test_settings
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]
PROJECT_LABEL = "com.docker.compose.project"


def env_value(stack: Path, key: str) -> str:
    for line in (stack / "env" / "development" / "postgres.env").read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)


def login(container: Any, user: str, password: str) -> tuple[int, str]:
    """A real password login over TCP (the image trusts only its Unix socket)."""
    code, out = container.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", "postgres", "-tAc", "SELECT 1"],
                                   environment={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
    return code, out.decode("utf-8", "replace").strip()


def wait_ready(container: Any, user: str, password: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code, out = login(container, user, password)
        if code == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"postgres did not accept logins: {out}\n{container.logs()[-2000:]!r}")
        time.sleep(1)


def rotate(capsys: pytest.CaptureFixture, c: Context, **kw: Any) -> tuple[int, dict[str, Any], str]:
    code, error = 0, ""
    try:
        rotate_secrets(c, service="postgres", env="development", json=True, **kw)
    except Exit as exc:
        code, error = int(exc.code or 0), str(exc.message or "")
    captured = capsys.readouterr()
    try:
        doc = json.loads(captured.out) if captured.out.strip() else {}
    except ValueError:
        raise AssertionError(f"not JSON (exit {code}):\n{captured.out}\n{captured.err}") from None
    return code, doc, captured.out + captured.err + error


def host_results(doc: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in doc["hosts"]["hosts"][host]["results"]}


def test_rotation_rekeys_the_database_on_the_hosts_or_changes_nothing(
        farm: SshdFarm, tmp_path: Path, docker_client: Any, test_images: dict[str, str],
        capsys: pytest.CaptureFixture) -> None:
    token = uuid.uuid4().hex[:8]
    project = f"mmsrekey{token}"
    stack = make_stack_copy(tmp_path / "stack")
    write_test_settings(stack, project, 0, test_images)
    proc = run_inv(stack, "setup", "--env", "development")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    user, old = env_value(stack, "POSTGRES_USER"), env_value(stack, "POSTGRES_PASSWORD")

    inventory = farm.inventory_file(tmp_path / "inventory.yml", stack_subdir=f"srv-{tmp_path.name}/stack",
                                    environment="development")
    h1_root = farm.hosts[0].remote_root / f"srv-{tmp_path.name}" / "stack"
    (h1_root / ".mmstack").mkdir(parents=True, mode=0o700)
    record = StartRecord(env="development", files=("compose.yml",), profiles=(), project=project)
    (h1_root / ".mmstack" / "last-start.json").write_text(record.to_json())
    volume = f"{project}_postgres-data"
    try:
        docker_client.volumes.create(volume, labels={PROJECT_LABEL: project,
                                                     "com.docker.compose.volume": "postgres-data"})
        pg = docker_client.containers.run(
            test_images["postgres"], detach=True, name=f"{project}-postgres-1",
            environment={"POSTGRES_USER": user, "POSTGRES_PASSWORD": old, "POSTGRES_DB": "postgres"},
            labels={PROJECT_LABEL: project, "com.docker.compose.service": "postgres"},
            volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
        wait_ready(pg, user, old)
        c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
        inv = str(inventory)

        # --check: says what it would do on h1, changes nothing anywhere.
        code, doc, text = rotate(capsys, c, inventory=inv, check=True)
        assert code == 0, text[-3000:]
        assert host_results(doc, "h1")["postgres (development)"]["message"] == \
            "would change the password in the running database"
        assert env_value(stack, "POSTGRES_PASSWORD") == old and login(pg, user, old)[0] == 0

        # One host that cannot be checked stops the rotation before anything changes.
        farm.hosts[1].stop()
        try:
            code, doc, text = rotate(capsys, c, inventory=inv)
        finally:
            farm.hosts[1].start()
        assert code != 0
        assert "could not be checked on h2" in text and "nothing was rotated" in text, text[-3000:]
        assert env_value(stack, "POSTGRES_PASSWORD") == old
        assert login(pg, user, old)[0] == 0

        # Every host reachable: h1's running database takes the new password, in step with the store.
        code, doc, text = rotate(capsys, c, inventory=inv)
        assert code == 0, text[-3000:]
        new = env_value(stack, "POSTGRES_PASSWORD")
        assert new != old
        assert new not in text and old not in text
        assert host_results(doc, "h1")["postgres (development)"] == {
            **host_results(doc, "h1")["postgres (development)"],
            "status": "changed", "message": "password changed in the running database"}
        for name in ("h2", "h3"):
            assert host_results(doc, name)["postgres (development)"]["message"] == "nothing deployed on this host"
        assert sorted(doc["hosts"]["hosts"]) == ["h1", "h2", "h3"]
        assert login(pg, user, new)[0] == 0
        code, out = login(pg, user, old)
        assert code != 0 and "password authentication failed" in out
        assert doc["rotation"]["hosts"] == {"development": ["h1", "h2", "h3"]}
        # The SQL reached psql on its standard input: no command h1's sshd ran holds the value.
        assert all(new not in cmd and old not in cmd for cmd in farm.hosts[0].commands())
    finally:
        remove_project(docker_client, project)
