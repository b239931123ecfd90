"""The full remote deploy end to end: real SSH (a loopback sshd) and the real Docker engine.

One host (h1) whose ``stack_dir`` is a temp dir; the stack copy is configured like the lifecycle
e2e tests (local test images, a unique project, a free host-port range). ``inv setup`` runs
locally, then `deploy --hosts h1 --env development` brings the stack up *through SSH* (the
remote commands reach the same local dockerd), a second deploy reports changed=0,
`remote-status` (and `status --hosts`) agree, `logs --hosts` prefixes and masks, `stop --hosts`
and `restart --hosts` stop and bring it back, and `remote-wipe --yes` removes every resource of the project while a
decoy project survives. Everything of both projects is removed by label in a finalizer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context

from tasks.cli.remote import deploy, remote_status, remote_wipe
from tasks.cli.secrets import rotate_secrets
from tasks.cli.stack import logs, restart, status, stop
from tests.lifecycle.conftest import pick_offset, remove_project
from tests.lifecycle.stackconfig import ONE_SHOTS, development_services, write_test_settings
from tests.remote.test_deploy import secret_values
from tests.remote.test_remote_stack import call
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]
PROJECT_LABEL = "com.docker.compose.project"
DEV_SERVICES = len(development_services())


def labelled(client: Any, project: str) -> dict[str, list[str]]:
    flt = {"label": f"{PROJECT_LABEL}={project}"}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in client.networks.list(filters=flt)],
            "volumes": [v.name for v in client.volumes.list(filters=flt)]}


@pytest.fixture
def compose_on_h1(farm: SshdFarm, compose_bin: tuple[str, ...]) -> Iterator[None]:
    """Compose v2 on h1's PATH: a link to this machine's docker-compose when there is no
    `docker compose` plugin (removed afterwards, so other tests see a host without Compose)."""
    link = farm.hosts[0].bin_dir / "docker-compose"
    if len(compose_bin) == 1:
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.abspath(compose_bin[0]))
    try:
        yield
    finally:
        link.unlink(missing_ok=True)


def run_json(capsys: pytest.CaptureFixture, func: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    from invoke import Exit

    code = 0
    try:
        func(*args, json=True, **kw)
    except Exit as exc:
        code = exc.code
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out)
    except ValueError:
        raise AssertionError(f"not JSON (exit {code}):\n{captured.out}\n{captured.err}") from None


def test_remote_deploy_brings_the_stack_up_through_ssh(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, docker_client: Any,
        test_images: dict[str, str], compose_on_h1: None, capsys: pytest.CaptureFixture) -> None:
    token = uuid.uuid4().hex[:8]
    project, decoy = f"mmsrm{token}", f"mmsdecoy{token}"
    stack = make_stack_copy(tmp_path / "stack")
    offset = pick_offset(stack, int(token, 16) + 7000)
    write_test_settings(stack, project, offset, test_images)
    h1 = farm.hosts[0]
    remote = h1.remote_root / f"srv-{tmp_path.name}" / "stack"
    try:
        setup = run_inv(stack, "setup", "--env", "development")
        assert setup.returncode == 0, setup.stdout + setup.stderr
        docker_client.volumes.create(f"{decoy}_data", labels={PROJECT_LABEL: decoy})
        docker_client.containers.create(test_images["standin"], name=f"{decoy}-app-1",
                                        labels={PROJECT_LABEL: decoy})
        c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
        inv = str(inventory_path)
        h1.clear_log()

        # First deploy: files uploaded, start recorded, 15 services created and healthy.
        code, doc = run_json(capsys, deploy, c, hosts="h1", env="development", inventory=inv, timeout=150,
                             no_verify=True)
        host = doc["hosts"]["hosts"]["h1"]
        assert code == 0 and host["recap"]["failed"] == 0, json.dumps(host, indent=1)[:4000]
        created = [r for r in host["results"] if r["message"] == "created"]
        assert len(created) == DEV_SERVICES
        assert any(r["item"] == ".mmstack/last-start.json" and r["status"] == "changed" for r in host["results"])
        record = json.loads((remote / ".mmstack" / "last-start.json").read_text())
        assert record["files"] == ["compose.yml", "compose.development.yml"]
        assert record["profiles"] == ["development"] and record["project"] == project
        assert (remote / ".mmstack" / "last-start.json").stat().st_mode & 0o777 == 0o600
        running = {c.labels["com.docker.compose.service"]: c for c in
                   docker_client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})}
        assert len(running) == DEV_SERVICES - len(ONE_SHOTS)  # the one-shots ran and exited
        assert all(c.attrs["State"]["Health"]["Status"] == "healthy" for c in running.values())
        # Compose ran on the host, in its stack_dir, with the recorded file set.
        ups = [cmd for cmd in h1.commands() if " up " in f" {cmd} " and "--wait" in cmd]
        assert len(ups) == 1 and f"-p {project}" in ups[0]
        assert "-f compose.yml -f compose.development.yml --profile development" in ups[0]

        # Second deploy: nothing changes (files, record, containers).
        ids = {s: c.id for s, c in running.items()}
        code, doc = run_json(capsys, deploy, c, hosts="h1", env="development", inventory=inv, timeout=150,
                             no_verify=True)
        assert code == 0 and doc["hosts"]["recap"]["h1"]["changed"] == 0, doc["hosts"]["recap"]
        now = {c.labels["com.docker.compose.service"]: c.id for c in
               docker_client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})}
        assert now == ids

        # Check mode asks Compose's dry run: nothing would change either.
        code, doc = run_json(capsys, deploy, c, hosts="h1", env="development", inventory=inv, check=True)
        assert code == 0 and doc["hosts"]["recap"]["h1"]["changed"] == 0, doc["hosts"]["recap"]

        # remote-status agrees with the engine.
        code, doc = run_json(capsys, remote_status, c, hosts="h1", inventory=inv)
        assert code == 0, doc
        # On hosts: one document per host beside the recap, never this host's top-level form.
        assert set(doc["status"]) == {"h1"} and set(doc["hosts"]["hosts"]) == {"h1"}
        assert doc["status"]["h1"]["project"] == project and "services" not in doc, sorted(doc)
        rows = {r["service"]: r for r in doc["status"]["h1"]["services"]}
        assert set(rows) == set(ids) | ONE_SHOTS
        assert all(r["state"] == "running" and r["health"] == "healthy"
                   for s, r in rows.items() if s not in ONE_SHOTS)
        assert all(rows[s]["exit_code"] == 0 and not rows[s]["failed"] for s in ONE_SHOTS)
        assert rows["postgres"]["url"] == f"tcp://127.0.0.1:{5432 + offset}"

        # status --hosts is remote-status (the same document per host).
        code, again = run_json(capsys, status, c, hosts="h1", inventory=inv)
        assert code == 0 and again["status"] == doc["status"], again

        # logs --hosts: every line starts with its host, stored secrets are masked. A secret
        # is written to redis's own output (its PID 1's stdout: what `docker logs` reads).
        secret = sorted(secret_values(remote))[0]
        running["redis"].exec_run(["sh", "-c", f"echo leaked {secret} > /proc/1/fd/1"])
        assert call(logs, c, hosts="h1", inventory=inv, service=["redis"], tail=5) == 0
        out = capsys.readouterr().out
        lines = [line for line in out.splitlines() if "leaked" in line]
        assert lines and all(line.startswith("h1 | ") and "leaked ********" in line for line in lines), out
        assert secret not in out

        # stop --hosts, then restart --hosts: the same steps as here, on the host, locked.
        code, doc = run_json(capsys, stop, c, hosts="h1", inventory=inv)
        stopped = {r["item"]: (r["status"], r["message"]) for r in doc["hosts"]["hosts"]["h1"]["results"]}
        assert code == 0 and all(stopped[s] == ("changed", "stopped") for s in ids), stopped
        assert not docker_client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})
        code, doc = run_json(capsys, stop, c, hosts="h1", inventory=inv)
        assert code == 0 and doc["hosts"]["recap"]["h1"]["changed"] == 0, doc["hosts"]["recap"]
        code, doc = run_json(capsys, restart, c, hosts="h1", inventory=inv, timeout=150)
        host = doc["hosts"]["hosts"]["h1"]
        assert code == 0 and host["recap"]["failed"] == 0, json.dumps(host, indent=1)[:4000]
        assert {r["item"]: r["message"] for r in host["results"]}["postgres"] == "restarted"
        code, doc = run_json(capsys, status, c, hosts="h1", inventory=inv)
        assert code == 0 and not [r for r in doc["status"]["h1"]["services"] if r["failed"]], doc

        # rotate-secrets re-keys h1's running database before storing the new password; the
        # next deploy hands it to the services, and the whole stack is healthy with it.
        def pg_password() -> str:
            text = (remote / "env" / "development" / "postgres.env").read_text()
            return next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("POSTGRES_PASSWORD="))

        old_password = pg_password()
        code, doc = run_json(capsys, rotate_secrets, c, service="postgres", env="development", hosts="h1",
                             inventory=inv)
        rekeyed = {r["item"]: r for r in doc["hosts"]["hosts"]["h1"]["results"]}
        assert code == 0 and rekeyed["postgres (development)"]["status"] == "changed", json.dumps(doc)[:3000]
        code, doc = run_json(capsys, deploy, c, hosts="h1", env="development", inventory=inv, timeout=150,
                             no_verify=True)
        host = doc["hosts"]["hosts"]["h1"]
        assert code == 0 and host["recap"]["failed"] == 0, json.dumps(host, indent=1)[:4000]
        assert pg_password() != old_password
        code, doc = run_json(capsys, status, c, hosts="h1", inventory=inv)
        assert code == 0 and not [r for r in doc["status"]["h1"]["services"] if r["failed"]], doc
        pg = docker_client.containers.list(filters={"label": [f"{PROJECT_LABEL}={project}",
                                                              "com.docker.compose.service=postgres"]})[0]
        user = next(line.split("=", 1)[1] for line in (remote / "env" / "development" / "postgres.env")
                    .read_text().splitlines() if line.startswith("POSTGRES_USER="))
        for password, accepted in ((pg_password(), True), (old_password, False)):
            code, out = pg.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", "postgres", "-tAc", "SELECT 1"],
                                    environment={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
            assert (code == 0) is accepted, out

        # No secret value ever reached a command line or a command's environment.
        values = secret_values(remote) | {old_password}
        assert values
        logged = h1.log_text()
        assert not [v for v in values if v in logged]

        # remote-wipe --yes: everything of the project goes, by label; the decoy stays.
        code, doc = run_json(capsys, remote_wipe, c, hosts="h1", inventory=inv, yes=True)
        assert code == 0, doc
        assert labelled(docker_client, project) == {"containers": [], "networks": [], "volumes": []}
        left = labelled(docker_client, decoy)
        assert left["containers"] == [f"{decoy}-app-1"] and left["volumes"] == [f"{decoy}_data"]
        removed = [r for r in doc["hosts"]["hosts"]["h1"]["results"] if r["message"] == "removed"]
        assert len([r for r in removed if r["item"].startswith("container ")]) == DEV_SERVICES
        assert (remote / "compose.yml").exists()  # without --all the files stay
    finally:
        remove_project(docker_client, project)
        remove_project(docker_client, decoy)
