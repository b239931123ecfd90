"""End to end against the real engine: start-dev, status, secrets, stop/start, backup, wipe.

One stack (the development environment: real PostgreSQL, its postgres-init job and Redis, busybox
stand-ins for the rest; vLLM is left out there) is shared by
the tests of this module, which run in file order; the wipe tests come last.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.lifecycle.conftest import PROJECT_LABEL, LiveStack
from tests.lifecycle.stackconfig import ONE_SHOTS, development_services

pytestmark = [pytest.mark.docker, pytest.mark.slow]
DEV = development_services()
DEV_SERVICES = len(DEV)


def recap(doc: dict[str, Any]) -> dict[str, int]:
    return doc["recap"]


def test_start_dev_brings_the_stack_to_healthy(live_stack: LiveStack) -> None:
    code, doc = live_stack.inv_json("start-dev")
    assert code == 0, doc
    # Every service, and the start record (a file mmstack writes, reported as one).
    assert recap(doc)["changed"] == DEV_SERVICES + 1 and recap(doc)["failed"] == 0
    assert {r["item"]: r["status"] for r in doc["results"]}[".mmstack/last-start.json"] == "changed"

    code, status = live_stack.inv_json("status")
    assert code == 0, status
    # Here the document is the output itself; the per-host form (`status`, `hosts`) is --hosts'.
    assert (status["environment"], status["project"]) == ("development", live_stack.project)
    assert "status" not in status and "hosts" not in status, sorted(status)
    rows = {r["service"]: r for r in status["services"]}
    assert set(rows) == set(DEV) and "vllm" not in rows and ONE_SHOTS <= set(rows)
    assert all(r["state"] == "running" and r["health"] == "healthy"
               for s, r in rows.items() if s not in ONE_SHOTS), rows
    # The one-shots ran to completion: exited with 0, which is not a failure.
    assert all(rows[s]["state"] == "exited" and rows[s]["exit_code"] == 0 and not rows[s]["failed"]
               for s in ONE_SHOTS), rows
    assert rows["postgres"]["url"] == f"tcp://127.0.0.1:{5432 + live_stack.offset}"
    assert rows["openwebui"]["url"] == f"http://127.0.0.1:{3030 + live_stack.offset}"


def test_second_start_recreates_nothing(live_stack: LiveStack) -> None:
    before = {s: c.id for s, c in live_stack.containers().items()}
    record = (live_stack.root / ".mmstack" / "last-start.json").stat().st_mtime_ns
    code, doc = live_stack.inv_json("start-dev")
    assert code == 0, doc
    assert recap(doc)["changed"] == 0
    assert {s: c.id for s, c in live_stack.containers().items()} == before
    assert (live_stack.root / ".mmstack" / "last-start.json").stat().st_mtime_ns == record

    code, doc = live_stack.inv_json("start-dev", "--check")
    assert code == 0 and recap(doc)["changed"] == 0, doc


GUARD = r"""
# Loaded first by every Python of the run (PYTHONPATH): the engine must be reached only by the
# docker CLI and Compose, which `c.run` starts, never from inside mmstack's own process.
import socket, subprocess

_connect = socket.socket.connect


def connect(self, address):
    if isinstance(address, (str, bytes)):
        raise AssertionError(f"mmstack opened the engine's socket itself: {address!r}")
    return _connect(self, address)


socket.socket.connect = connect
_run = subprocess.run


def run(args, *a, **kw):
    words = args if isinstance(args, (list, tuple)) else [args]
    if any("docker" in str(w) or "compose" in str(w) for w in words):
        raise AssertionError(f"mmstack ran the engine's tools without its Context: {args!r}")
    return _run(args, *a, **kw)


subprocess.run = run
"""


def test_the_lifecycle_reaches_the_engine_only_through_the_docker_cli(live_stack: LiveStack,
                                                                       tmp_path: Any) -> None:
    # A Docker context (DOCKER_HOST unset) whose endpoint is another path to the engine's
    # socket: the CLI follows it; mmstack itself opens no socket and spawns no docker or
    # Compose outside `c.run`. status, stop, start and status again all work so.
    import os
    import subprocess

    from tests.support.stackcopy import run_inv

    alias = tmp_path / "engine.sock"
    alias.symlink_to("/var/run/docker.sock")
    config = tmp_path / "docker-config"
    config.mkdir()
    denv = {**os.environ, "DOCKER_CONFIG": str(config)}
    denv.pop("DOCKER_HOST", None)
    for argv in (["docker", "context", "create", "mmsalias", "--docker", f"host=unix://{alias}"],
                 ["docker", "context", "use", "mmsalias"]):
        subprocess.run(argv, env=denv, check=True, capture_output=True)
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": "",
           "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")])}

    def inv(*args: str) -> tuple[int, dict[str, Any]]:
        proc = run_inv(live_stack.root, *args, "--json", env=env)
        assert "opened the engine's socket" not in proc.stderr and "without its Context" not in proc.stderr, proc.stderr
        return proc.returncode, __import__("json").loads(proc.stdout)

    code, doc = inv("status")
    assert code == 0 and len(doc["services"]) == DEV_SERVICES, doc
    code, doc = inv("stop")
    assert code == 0 and recap(doc)["changed"] == DEV_SERVICES - len(ONE_SHOTS), doc
    assert not [c for c in live_stack.containers().values() if c.status == "running"]
    code, doc = inv("start-dev", "--no-verify")
    assert code == 0 and recap(doc)["failed"] == 0, doc
    started = {r["item"]: r["message"] for r in doc["results"] if r["status"] == "changed"}
    assert started.get("postgres") == "started", started
    code, doc = inv("status")
    assert code == 0 and not [r for r in doc["services"] if r["failed"]], doc


def test_logs_here_are_composes_own_stream_masked(live_stack: LiveStack) -> None:
    from tests.remote.test_deploy import secret_values

    # A stored secret written to redis's own output (its PID 1's stdout: what `docker logs` reads).
    secret = sorted(secret_values(live_stack.root))[0]
    live_stack.containers()["redis"].exec_run(["sh", "-c", f"echo leaked {secret} > /proc/1/fd/1"])
    proc = live_stack.inv("logs", "--service", "redis", "--tail", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "leaked" in line]
    assert lines and all("leaked ********" in line for line in lines), proc.stdout
    assert secret not in proc.stdout + proc.stderr
    # Here the output is the log lines alone (no heading, no recap, no host prefix)...
    assert not [line for line in proc.stdout.splitlines()
                if line.startswith(("TASK [", "RECAP", "PLAY RECAP", "localhost | "))], proc.stdout
    # ...and Compose's exit status is the task's.
    proc = live_stack.inv("logs", "--service", "no-such-service")
    assert proc.returncode != 0 and "RECAP" not in proc.stdout, proc.stdout + proc.stderr


def test_postgres_password_from_the_store_logs_in(live_stack: LiveStack) -> None:
    code, out = live_stack.psql("CREATE TABLE IF NOT EXISTS notes (body text); "
                                "INSERT INTO notes VALUES ('kept'); SELECT count(*) FROM notes")
    assert code == 0, out
    code, out = live_stack.psql("SELECT 1", password="not-the-password")
    assert code != 0 and "password authentication failed" in out


def test_setup_again_and_restart_keep_the_password(live_stack: LiveStack) -> None:
    live_stack.inv_ok("setup", "--env", "development")
    live_stack.inv_ok("restart", "--service", "postgres")
    live_stack.inv_ok("start-dev")
    code, out = live_stack.psql("SELECT body FROM notes")
    assert code == 0 and "kept" in out, out


def test_rotating_the_postgres_password_rekeys_the_running_database(live_stack: LiveStack) -> None:
    old = live_stack.env_value("postgres.env", "POSTGRES_PASSWORD")
    proc = live_stack.inv_ok("rotate-secrets", "--service", "postgres", "--env", "development")
    new = live_stack.env_value("postgres.env", "POSTGRES_PASSWORD")
    assert new != old
    assert new not in proc.stdout + proc.stderr and old not in proc.stdout + proc.stderr
    code, out = live_stack.psql("SELECT body FROM notes")
    assert code == 0 and "kept" in out, out
    code, out = live_stack.psql("SELECT 1", password=old)
    assert code != 0
    # The consumers pick the new value up on the next start; the database keeps accepting it.
    live_stack.inv_ok("start-dev")
    code, out = live_stack.psql("SELECT body FROM notes")
    assert code == 0 and "kept" in out, out


def test_data_survives_stop_and_start(live_stack: LiveStack) -> None:
    live_stack.inv_ok("stop")
    assert all(c.status == "exited" for c in live_stack.containers().values())
    code, status = live_stack.inv_json("status")
    assert code != 0  # stopped services are not healthy
    # A stopped database cannot be re-keyed: rotation refuses and changes nothing.
    before = live_stack.env_value("postgres.env", "POSTGRES_PASSWORD")
    proc = live_stack.inv("rotate-secrets", "--service", "postgres", "--env", "development")
    assert proc.returncode != 0
    assert "postgres is not running" in proc.stderr and "nothing was rotated" in proc.stderr
    assert live_stack.env_value("postgres.env", "POSTGRES_PASSWORD") == before
    live_stack.inv_ok("start-dev")
    code, out = live_stack.psql("SELECT body FROM notes")
    assert code == 0 and out == "kept", out


def test_wipe_without_yes_deletes_nothing(live_stack: LiveStack) -> None:
    before = sorted(live_stack.containers())
    for answer in (None, "yes\n"):  # no terminal: refused even when "yes" is piped in
        proc = live_stack.inv("wipe", input=answer)
        assert proc.returncode != 0
        assert "--yes" in proc.stderr
    code, doc = live_stack.inv_json("wipe", "--dry-run")
    assert code == 0 and recap(doc)["changed"] >= DEV_SERVICES
    assert sorted(live_stack.containers()) == before
    assert all(c.status == ("exited" if s in ONE_SHOTS else "running")
               for s, c in live_stack.containers().items())


@pytest.fixture
def decoy(live_stack: LiveStack):  # type: ignore[no-untyped-def]
    """Another Compose project whose resource names contain postgres, redis and our project."""
    client = live_stack.client
    other = f"decoy{uuid.uuid4().hex[:6]}"
    labels = {PROJECT_LABEL: other}
    name = f"{live_stack.project}-postgres-redis-{other}"
    net = client.networks.create(f"{name}-net", labels=labels)
    vol = client.volumes.create(f"{name}-data", labels=labels)
    standin = live_stack.containers()["litellm"].image
    ctr = client.containers.create(standin.id, name=f"{name}-1", labels=labels,
                                   volumes={vol.name: {"bind": "/data", "mode": "rw"}},
                                   network=net.name)
    yield net, vol, ctr
    ctr.remove(force=True)
    net.remove()
    vol.remove(force=True)


def test_backup_wipe_restore_and_decoys(live_stack: LiveStack, decoy: Any) -> None:
    proc = live_stack.inv_ok("backup")
    archives = sorted((live_stack.root / "backups").iterdir())
    assert len(archives) == 1 and (archives[0] / "postgres-data.tar.gz").is_file(), proc.stdout
    # backup stops the stack for a consistent copy and starts it again
    live_stack.inv_ok("start-dev")

    code, doc = live_stack.inv_json("wipe", "--yes")
    assert code == 0, doc
    client = live_stack.client
    flt = {"label": f"{PROJECT_LABEL}={live_stack.project}"}
    assert client.containers.list(all=True, filters=flt) == []
    assert client.volumes.list(filters=flt) == []
    assert client.networks.list(filters=flt) == []
    # the decoy project is untouched
    net, vol, ctr = decoy
    ctr.reload()
    assert client.networks.get(net.id) and client.volumes.get(vol.name)
    # generated files and secrets are kept without --all
    assert (live_stack.root / "env" / "development" / "postgres.env").is_file()

    # the data is gone: a fresh start initialises an empty database
    live_stack.inv_ok("start-dev")
    code, out = live_stack.psql("SELECT to_regclass('notes') IS NULL")
    assert code == 0 and out == "t", out
    live_stack.inv_ok("stop")

    proc = live_stack.inv("restore", str(archives[0]), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    live_stack.inv_ok("start-dev")
    code, out = live_stack.psql("SELECT body FROM notes")
    assert code == 0 and out == "kept", out

    code, doc = live_stack.inv_json("wipe", "--yes")
    assert code == 0, doc
    ctr.reload()
    assert client.volumes.get(vol.name)
