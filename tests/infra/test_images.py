"""The local test images honour their contracts, on the real Docker engine.

postgres: the official image's environment contract, password auth over TCP, data kept in the
volume across container recreation. redis: requirepass from REDIS_PASSWORD, never on a command
line. standin: an HTTP health endpoint on every port of STANDIN_PORTS.

Every container, network and volume carries a unique ``org.mmstack.test`` label and is removed
at the end of its test, failure or not. Passwords reach ``docker exec`` through its environment
(``PGPASSWORD``, ``REDISCLI_AUTH``), never through a command line.
"""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dockertest import Resources, labelled_resources, wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECOND = 1_000_000_000  # healthcheck durations are in nanoseconds


def healthcheck(test: list[str], interval: float = 0.5, retries: int = 60) -> dict:
    return {"test": test, "interval": int(interval * SECOND), "timeout": 5 * SECOND,
            "retries": retries, "start_period": 0}


@pytest.fixture
def res(docker_client) -> Iterator[Resources]:
    with labelled_resources(docker_client, prefix="mmstack-infra") as resources:
        yield resources


@pytest.fixture
def network(docker_client, res: Resources):
    return docker_client.networks.create(f"mmstack-infra-{res.suffix}", driver="bridge", labels=res.labels)


def exec_ok(container, cmd: list[str], env: dict[str, str] | None = None) -> str:
    code, out = container.exec_run(cmd, environment=env or {})
    text = out.decode(errors="replace")
    assert code == 0, f"{cmd} exited {code}: {text}"
    return text


def host_port(container, port: str) -> int:
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"][port][0]
    assert binding["HostIp"] == "127.0.0.1"
    return int(binding["HostPort"])


# --- postgres ----------------------------------------------------------------------------------

PG_USER, PG_PASSWORD, PG_DB = "mmstack", "pg-S3cret pass'word", "mmstack_app"


def run_postgres(client, image: str, res: Resources, network, volume, env: dict[str, str], name: str):
    return client.containers.run(
        image, detach=True, name=f"{name}-{res.suffix}", labels=res.labels, environment=env,
        network=network.name, volumes={volume.name: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
        ports={"5432/tcp": ("127.0.0.1", None)},
        healthcheck=healthcheck(["CMD", "pg_isready", "-U", env.get("POSTGRES_USER", "postgres"),
                                 "-d", env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres"))]),
    )


def psql(container, sql: str, password: str, host: str = "127.0.0.1") -> tuple[int, str]:
    code, out = container.exec_run(
        ["psql", "-h", host, "-U", PG_USER, "-d", PG_DB, "-v", "ON_ERROR_STOP=1", "-XAtqc", sql],
        environment={"PGPASSWORD": password})
    return code, out.decode(errors="replace").strip()


def startup_auth_request(port: int, user: str, database: str) -> int:
    """Send a v3 StartupMessage to 127.0.0.1:port; return the authentication code asked for."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database))) + b"\0"
    body = struct.pack("!I", 196608) + params
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack("!I", len(body) + 4) + body)
        head = sock.recv(9)
    assert head[:1] == b"R", f"expected an authentication request, got {head!r}"
    return struct.unpack("!I", head[5:9])[0]


def test_postgres_password_login_and_data_survive_recreation(docker_client, test_images, res, network) -> None:
    volume = docker_client.volumes.create(f"mmstack-infra-pgdata-{res.suffix}", labels=res.labels)
    env = {"POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": PG_DB}
    first = run_postgres(docker_client, test_images["postgres"], res, network, volume, env, "pg1")
    wait_healthy(first)

    # Healthy means the real server is up: TCP login works at once, with the password.
    code, out = psql(first, "SELECT current_user, current_database()", PG_PASSWORD)
    assert (code, out) == (0, f"{PG_USER}|{PG_DB}")
    code, out = psql(first, "CREATE TABLE notes (id int PRIMARY KEY, body text);"
                            "INSERT INTO notes VALUES (1, 'kept across recreation')", PG_PASSWORD)
    assert code == 0, out

    # Wrong password (and no password) over TCP are refused, loopback included.
    code, out = psql(first, "SELECT 1", "not-the-password")
    assert code != 0 and "password authentication failed" in out
    code, out = psql(first, "SELECT 1", "")
    assert code != 0

    # Listening on 0.0.0.0: another container reaches it by name over the project network.
    client_out = docker_client.containers.run(
        test_images["postgres"], ["psql", "-h", first.name, "-U", PG_USER, "-d", PG_DB, "-XAtqc",
                                  "SELECT body FROM notes WHERE id = 1"],
        environment={"PGPASSWORD": PG_PASSWORD}, network=network.name, labels=res.labels,
        name=f"pgclient-{res.suffix}", remove=False)
    assert client_out.decode().strip() == "kept across recreation"

    # Published on 127.0.0.1 of the host: the server asks for SCRAM (10), not trust (0).
    assert startup_auth_request(host_port(first, "5432/tcp"), PG_USER, PG_DB) == 10

    # The data directory is the volume, as in the official image.
    mounts = {m["Destination"]: m for m in first.attrs["Mounts"]}
    assert mounts["/var/lib/postgresql/data"]["Name"] == volume.name

    # docker stop is a fast shutdown (SIGTERM becomes SIGINT), not a 10s kill.
    started = time.monotonic()
    first.stop(timeout=30)
    assert time.monotonic() - started < 10
    first.reload()
    assert first.attrs["State"]["ExitCode"] == 0
    first.remove()

    # Recreated on the same volume: the cluster is reused (a new password in the env is ignored).
    second = run_postgres(docker_client, test_images["postgres"], res, network, volume,
                          {**env, "POSTGRES_PASSWORD": "a-different-one"}, "pg2")
    wait_healthy(second)
    code, out = psql(second, "SELECT body FROM notes WHERE id = 1", PG_PASSWORD)
    assert (code, out) == (0, "kept across recreation")
    assert "initialising database cluster" not in second.logs().decode()
    code, out = psql(second, "SELECT 1", "a-different-one")
    assert code != 0 and "password authentication failed" in out


def test_postgres_password_file_and_defaults(docker_client, test_images, res, network, tmp_path: Path) -> None:
    secret = tmp_path / "pg-password"
    secret.write_text("from-a-file\n")
    secret.chmod(0o644)
    volume = docker_client.volumes.create(f"mmstack-infra-pgfile-{res.suffix}", labels=res.labels)
    container = docker_client.containers.run(
        test_images["postgres"], detach=True, name=f"pgfile-{res.suffix}", labels=res.labels,
        network=network.name, environment={"POSTGRES_PASSWORD_FILE": "/run/secrets/pg"},
        volumes={volume.name: {"bind": "/var/lib/postgresql/data", "mode": "rw"},
                 str(secret): {"bind": "/run/secrets/pg", "mode": "ro"}},
        healthcheck=healthcheck(["CMD", "pg_isready", "-U", "postgres"]))
    wait_healthy(container)
    # Default user and database are "postgres"; the password came from the file.
    code, out = container.exec_run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-XAtqc", "SELECT current_database()"],
                                   environment={"PGPASSWORD": "from-a-file"})
    assert (code, out.decode().strip()) == (0, "postgres")


def test_postgres_refuses_to_initialise_without_a_password(docker_client, test_images, res) -> None:
    container = docker_client.containers.run(
        test_images["postgres"], detach=True, name=f"pgnopw-{res.suffix}", labels=res.labels)
    result = container.wait(timeout=60)
    assert result["StatusCode"] != 0
    assert "superuser password is not specified" in container.logs().decode()


def test_initdb_scripts_run_once(docker_client, test_images, res, network, tmp_path: Path) -> None:
    initdir = tmp_path / "initdb.d"
    initdir.mkdir()
    (initdir / "01-schema.sql").write_text("CREATE TABLE seeded (n int); INSERT INTO seeded VALUES (42);\n")
    initdir.chmod(0o755)
    (initdir / "01-schema.sql").chmod(0o644)
    env = {"POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": PG_DB}
    container = docker_client.containers.run(
        test_images["postgres"], detach=True, name=f"pginit-{res.suffix}", labels=res.labels,
        network=network.name, environment=env,
        volumes={str(initdir): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"}},
        healthcheck=healthcheck(["CMD", "pg_isready", "-U", PG_USER, "-d", PG_DB]))
    wait_healthy(container)
    assert psql(container, "SELECT n FROM seeded", PG_PASSWORD) == (0, "42")


# --- redis -------------------------------------------------------------------------------------

REDIS_PASSWORD = 'r3dis "pass" \\ word'


def run_redis(client, image: str, res: Resources, network, volume, name: str):
    return client.containers.run(
        image, detach=True, name=f"{name}-{res.suffix}", labels=res.labels, network=network.name,
        environment={"REDIS_PASSWORD": REDIS_PASSWORD},
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        ports={"6379/tcp": ("127.0.0.1", None)},
        healthcheck=healthcheck(["CMD-SHELL", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG']))


def test_redis_requires_its_password_and_keeps_data(docker_client, test_images, res, network) -> None:
    volume = docker_client.volumes.create(f"mmstack-infra-redis-{res.suffix}", labels=res.labels)
    first = run_redis(docker_client, test_images["redis"], res, network, volume, "redis1")
    wait_healthy(first)
    auth = {"REDISCLI_AUTH": REDIS_PASSWORD}

    assert exec_ok(first, ["redis-cli", "SET", "greeting", "hello"], auth).strip() == "OK"
    assert exec_ok(first, ["redis-cli", "GET", "greeting"], auth).strip() == "hello"
    assert "NOAUTH" in exec_ok(first, ["redis-cli", "GET", "greeting"])
    assert "WRONGPASS" in exec_ok(first, ["redis-cli", "GET", "greeting"], {"REDISCLI_AUTH": "wrong"})

    # The password is in no process's command line.
    cmdline = exec_ok(first, ["cat", "/proc/1/cmdline"]).replace("\0", " ")
    assert "redis-server" in cmdline and "r3dis" not in cmdline

    # Reachable by name from another container, and on 127.0.0.1 of the host.
    out = docker_client.containers.run(
        test_images["redis"], ["redis-cli", "-h", first.name, "GET", "greeting"], environment=auth,
        network=network.name, labels=res.labels, name=f"redisclient-{res.suffix}", remove=False)
    assert out.decode().strip() == "hello"
    with socket.create_connection(("127.0.0.1", host_port(first, "6379/tcp")), timeout=10) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64).startswith(b"-NOAUTH")

    assert exec_ok(first, ["redis-cli", "SAVE"], auth).strip() == "OK"
    first.stop(timeout=30)
    first.remove()
    second = run_redis(docker_client, test_images["redis"], res, network, volume, "redis2")
    wait_healthy(second)
    assert exec_ok(second, ["redis-cli", "GET", "greeting"], auth).strip() == "hello"


# --- standin -----------------------------------------------------------------------------------

def test_standin_serves_health_on_every_port(docker_client, test_images, res, network) -> None:
    container = docker_client.containers.run(
        test_images["standin"], ["--model", "ignored", "--port", "8000"], detach=True,
        name=f"standin-{res.suffix}", labels=res.labels, network=network.name,
        environment={"STANDIN_PORTS": "8000 8001"}, ports={"8001/tcp": ("127.0.0.1", None)},
        healthcheck=healthcheck(["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8000/health"]))
    wait_healthy(container)
    for port in (8000, 8001):
        assert exec_ok(container, ["wget", "-q", "-O-", f"http://127.0.0.1:{port}/health"]).strip() == "ok"
        assert exec_ok(container, ["wget", "-q", "-O-", f"http://127.0.0.1:{port}/"]).strip() == "ok"
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port(container, '8001/tcp')}/health", timeout=10) as resp:
        assert resp.status == 200 and resp.read().strip() == b"ok"
    code, _ = container.exec_run(["wget", "-q", "-O-", "http://127.0.0.1:8000/nothing-here"])
    assert code != 0

    started = time.monotonic()
    container.stop(timeout=30)
    assert time.monotonic() - started < 5, "the stand-in must stop on SIGTERM, not be killed"


def test_standin_can_be_unhealthy(docker_client, test_images, res) -> None:
    container = docker_client.containers.run(
        test_images["standin"], detach=True, name=f"standin-sick-{res.suffix}", labels=res.labels,
        environment={"STANDIN_PORTS": "8000", "STANDIN_UNHEALTHY": "1"},
        healthcheck=healthcheck(["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8000/health"],
                                interval=0.2, retries=2))
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"]["Health"]["Status"]
        if status == "unhealthy":
            break
        time.sleep(0.2)
    assert status == "unhealthy"
    assert container.attrs["State"]["Status"] == "running"
