"""The real n8n (tests/realapps/n8n-app.sh, the release the schema pins) runs on what mmstack
generates, against a real PostgreSQL prepared the way the stack prepares it.

`inv setup --env production` in a stack copy writes the env files, postgres-init.sql, compose.yml
and prometheus.yml as users get them. PostgreSQL (mmstack-test/postgres:17) starts with
postgres.env; the postgres-init one-shot runs in the same image with its env file and the
generated SQL, on a network where the server is ``postgres``, as in the stack. Then ``n8n start``
runs with core.env + n8n.env (what Compose gives the container), changed in one way only: the
database address (``postgres:5432`` names a host on the Compose network) becomes the published
loopback port. HOME holds n8n's settings folder, as /home/node does in the image.
"""

from __future__ import annotations

import json
import os
import re
import secrets as pysecrets
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dockertest import labelled_resources, wait_healthy
from tests.support.litellm_proxy import free_port
from tests.support.httpjson import env_file
from tests.support.n8n_app import get, run_n8n
from tests.support.stackcopy import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ENV = "production"
N8N_PORT = 5678
BROWSER_ID = "mmstack-test-browser"


class Stack:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.env = {n: env_file(root / "env" / ENV / f"{n}.env")
                    for n in ("core", "n8n", "postgres", "postgres-init", "n8n-monitoring")}
        self.compose = yaml.safe_load((root / "compose.yml").read_text())
        self.prometheus = yaml.safe_load((root / "config" / ENV / "prometheus.yml").read_text())
        self.secret_values = [v for n in ("n8n", "postgres", "postgres-init", "n8n-monitoring")
                              for k, v in self.env[n].items()
                              if any(w in k for w in ("PASSWORD", "KEY", "SECRET")) and len(v) >= 8]


def published_port() -> int:
    """A free loopback port for n8n whose offset from 5678 keeps every host port of the schema
    valid (mmstack refuses an offset that moves one past 65535)."""
    import random
    import socket

    schema = yaml.safe_load((REPO / "schemas" / "compose-schema.yaml").read_text())
    highest = max(p.get("host") or 0 for spec in schema["services"].values() for p in spec.get("ports") or [])
    for _ in range(200):
        port = random.randint(20000, N8N_PORT + 65535 - highest)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port for n8n")


@pytest.fixture(scope="module")
def stack(set_up_stack: Callable[..., Path]) -> Stack:
    # n8n listens where the stack publishes it: the schema's host port plus this offset, so
    # `inv verify`'s n8n checks find it at the address they compute.
    port = published_port()
    return Stack(set_up_stack("n8n-app", ENV, settings={"host_port_offset": port - N8N_PORT}), port)


@pytest.fixture(scope="module")
def database(stack: Stack, docker_client: Any, test_images: dict[str, str]) -> Any:
    """PostgreSQL with n8n's role and database made by the generated postgres-init, published on
    a loopback port: yields (container, host port)."""
    with labelled_resources(docker_client, "mmstack-n8n") as res:
        net = docker_client.networks.create(f"mmstack-n8n-{res.suffix}", labels=res.labels)
        pg = docker_client.containers.create(
            test_images["postgres"], name=f"mmstack-n8n-pg-{res.suffix}", environment=stack.env["postgres"],
            labels=res.labels, ports={"5432/tcp": ("127.0.0.1", None)},
            healthcheck={"test": ["CMD-SHELL", "pg_isready -h 127.0.0.1"], "interval": 500_000_000,
                         "retries": 120})
        net.connect(pg, aliases=["postgres"])
        pg.start()
        wait_healthy(pg, timeout=120)
        spec = stack.compose["services"]["postgres-init"]
        sql = stack.root / "config" / ENV / "postgres-init.sql"
        init = docker_client.containers.run(
            test_images["postgres"], spec["command"], name=f"mmstack-n8n-init-{res.suffix}",
            environment=stack.env["postgres-init"], labels=res.labels, network=net.name, detach=True,
            volumes={str(sql): {"bind": "/mmstack/postgres-init.sql", "mode": "ro"}}, user="postgres")
        code = init.wait(timeout=120)["StatusCode"]
        assert code == 0, init.logs().decode(errors="replace")
        pg.reload()
        host_port = int(pg.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
        yield pg, host_port


def n8n_env(stack: Stack, db_port: int, **changes: str) -> dict[str, str]:
    env = {**stack.env["core"], **stack.env["n8n"]}
    assert (env["DB_POSTGRESDB_HOST"], env["DB_POSTGRESDB_PORT"]) == ("postgres", "5432")
    return {**env, "DB_POSTGRESDB_HOST": "127.0.0.1", "DB_POSTGRESDB_PORT": str(db_port), **changes}


def psql(pg: Any, sql: str, user: str, password: str, db: str) -> tuple[int, str]:
    """``sql`` as ``user`` over TCP (the role's password, as n8n connects), from inside the server."""
    code, out = pg.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-tAX", "-v", "ON_ERROR_STOP=1",
                             "-c", sql], environment={"PGPASSWORD": password})
    return code, out.decode(errors="replace").strip()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("n8n-home")


@pytest.fixture(scope="module")
def n8n(stack: Stack, database: Any, home: Path) -> Any:
    pg, db_port = database
    with run_n8n(n8n_env(stack, db_port), home, port=stack.port) as app:
        yield app


def test_inv_verifys_n8n_checks_fail_before_n8n_has_run(stack: Stack, database: Any) -> None:
    # First in the file: the module's n8n has not started yet. postgres-init made the role and the
    # empty database; nothing answers at n8n's published address.
    from tests.apps.verify_target import run_check

    pg, _ = database
    status, message = run_check(stack.root, ENV, "n8n", "ready", pg.name, stack.env["n8n"])
    assert status == "failed" and "n8n does not answer" in message and "inv logs --service n8n" in message, message
    status, message = run_check(stack.root, ENV, "n8n", "database", pg.name, stack.env["n8n"])
    assert status == "failed" and 'relation "migrations" does not exist' in message, message
    assert "DB_TYPE=postgresdb" in message
    wrong = {**stack.env["n8n"], "DB_POSTGRESDB_PASSWORD": "not-the-stored-one"}
    status, message = run_check(stack.root, ENV, "n8n", "database", pg.name, wrong)
    assert status == "failed" and "password authentication failed" in message and "postgres-init" in message, message


def test_n8n_migrates_into_its_own_database_as_its_own_role(stack: Stack, database: Any, n8n: Any) -> None:
    pg, _ = database
    env = stack.env["n8n"]
    user, password, db = env["DB_POSTGRESDB_USER"], env["DB_POSTGRESDB_PASSWORD"], env["DB_POSTGRESDB_DATABASE"]
    code, out = psql(pg, "SELECT count(*) FROM migrations", user, password, db)
    assert code == 0 and int(out) > 50, out
    code, out = psql(pg, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", user, password, db)
    assert code == 0 and out.split() == [user], out
    code, out = psql(pg, "SELECT count(*) FROM pg_tables WHERE tablename IN ('workflow_entity', 'credentials_entity', "
                         "'execution_entity', 'user')", user, password, db)
    assert out == "4", out
    # Not SQLite: n8n falls back to a database.sqlite in its folder when DB_TYPE does not parse.
    assert not (n8n.home / ".n8n" / "database.sqlite").exists()


def test_healthz_and_readiness_answer_and_the_generated_healthcheck_passes(stack: Stack, n8n: Any) -> None:
    assert get(n8n.url + "/healthz") == (200, '{"status":"ok"}')
    assert get(n8n.url + "/healthz/readiness") == (200, '{"status":"ok"}')
    # The compose healthcheck as generated, with busybox's wget (what the n8n image, Alpine, has).
    test = stack.compose["services"]["n8n"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and f"127.0.0.1:{N8N_PORT}/healthz/readiness" in test[1]
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert os.path.exists(busybox), "busybox-static is needed (.ci/run installs it)"
    bindir = n8n.home / "busybox-bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "wget").exists():
        (bindir / "wget").symlink_to(busybox)
    command = test[1].replace(f"127.0.0.1:{N8N_PORT}", f"127.0.0.1:{n8n.port}")
    done = subprocess.run([busybox, "sh", "-c", command], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    # ... and it fails where nothing answers (it is not a command that always passes).
    dead = test[1].replace(f"127.0.0.1:{N8N_PORT}", f"127.0.0.1:{free_port()}")
    assert subprocess.run([busybox, "sh", "-c", dead], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                          capture_output=True, timeout=30).returncode != 0


def test_metrics_are_served_where_prometheus_scrapes_them(stack: Stack, n8n: Any) -> None:
    (job,) = [j for j in stack.prometheus["scrape_configs"] if j["job_name"] == "n8n"]
    assert job["static_configs"][0]["targets"] == [f"n8n:{N8N_PORT}"]
    assert job.get("scheme", "http") == "http" and "authorization" not in job and "basic_auth" not in job
    status, body = get(n8n.url + job.get("metrics_path", "/metrics"))
    assert status == 200, body[:500]
    names = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    assert "n8n_version_info" in names and "n8n_process_cpu_user_seconds_total" in names, sorted(names)[:40]
    assert re.search(r'^n8n_version_info\{[^}]*version="v2\.41\.1"', body, re.M), body[:2000]
    # What the generated alert rules and dashboards ask of n8n's job must exist in its metrics.
    asked: set[str] = set()
    for path in (stack.root / "config" / ENV).iterdir():
        if path.name.startswith(("prometheus-rules", "grafana-dashboard")):
            asked |= set(re.findall(r"\bn8n_[a-z0-9_]+", path.read_text()))
    assert asked <= names, sorted(asked - names)
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package (.ci/run installs it): the exposition format parses
        done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
        assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr


def test_the_encryption_key_in_use_is_the_generated_one(stack: Stack, database: Any, n8n: Any, home: Path) -> None:
    key = stack.env["n8n"]["N8N_ENCRYPTION_KEY"]
    settings = home / ".n8n" / "config"
    assert json.loads(settings.read_text())["encryptionKey"] == key
    assert settings.stat().st_mode & 0o077 == 0, oct(settings.stat().st_mode)


def test_a_second_start_with_the_same_env_works_and_another_key_is_refused(stack: Stack, database: Any,
                                                                           n8n: Any, home: Path) -> None:
    _, db_port = database
    # A second n8n on the same folder and database, as after `inv restart` (the first keeps running).
    with run_n8n(n8n_env(stack, db_port), home) as again:
        assert get(again.url + "/healthz/readiness")[0] == 200
    other = pysecrets.token_hex(32)
    with pytest.raises(AssertionError, match="exited") as info:
        with run_n8n(n8n_env(stack, db_port, N8N_ENCRYPTION_KEY=other), home, timeout=180):
            pass
    assert "Mismatching encryption keys" in str(info.value), str(info.value)[-2000:]
    assert other not in str(info.value) and stack.env["n8n"]["N8N_ENCRYPTION_KEY"] not in str(info.value)


def test_no_secret_in_n8ns_log(stack: Stack, n8n: Any, home: Path) -> None:
    text = "\n".join(p.read_text(errors="replace") for p in home.glob("n8n-*.log"))
    assert text.strip(), "n8n wrote no log"
    leaked = [v[:4] + "..." for v in stack.secret_values if v in text]
    assert not leaked, leaked
    # n8n 2.x runs workflow code in its JS task runner, a child `node` it starts and must reach.
    assert 'Registered runner "JS Task Runner"' in text, text[-3000:]
    # @n8n/config drops a value it cannot parse with one of these warnings (and keeps the default).
    assert not re.search(r"Invalid (value|boolean value|number value|timestamp value) for", text), text[-3000:]
    # n8n lists deprecated settings at start (" - NAME -> why"); none may be one mmstack sets.
    # (It lists some for defaults that will change, such as N8N_RUNNERS_MODE=internal.)
    listed = set(re.findall(r"^ - ([A-Z][A-Z0-9_]+) -> ", text, re.M))
    assert listed, "n8n printed no deprecation list: the check below would prove nothing"
    assert not listed & set(stack.env["n8n"]), sorted(listed & set(stack.env["n8n"]))


def rest(app: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(app.url + path, data=data, method=method,
                                 headers={"content-type": "application/json", "browser-id": BROWSER_ID,
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, raw, hdrs = err.code, err.read(), err.headers
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def api_key(app: Any) -> str:
    """An owner (as the first visit to n8n's UI makes one) and an API key it creates, as the
    README tells the operator to do for n8n-monitoring."""
    password = "Mm" + pysecrets.token_hex(12) + "1"
    status, body, hdrs = rest(app, "POST", "/rest/owner/setup",
                              {"email": "owner@mmstack.local", "firstName": "Stack", "lastName": "Owner",
                               "password": password})
    assert status == 200, body
    cookie = "; ".join(c.split(";", 1)[0] for c in hdrs.get_all("set-cookie") or [])
    assert "n8n-auth=" in cookie, hdrs
    status, body, _ = rest(app, "GET", "/rest/api-keys/scopes", headers={"cookie": cookie})
    assert status == 200, body
    scopes = body["data"]
    status, body, _ = rest(app, "POST", "/rest/api-keys", {"label": "n8n-monitoring", "scopes": scopes,
                                                           "expiresAt": None}, headers={"cookie": cookie})
    assert status == 200, body
    return body["data"]["rawApiKey"]


def test_n8n_monitorings_address_and_the_public_api_it_reads(stack: Stack, n8n: Any) -> None:
    monitoring = stack.env["n8n-monitoring"]
    # N8N_URL names n8n on the network both are on, at the port n8n listens on (no path: the
    # public API is N8N_URL + /api/v1).
    assert monitoring["N8N_URL"] == f"http://n8n:{N8N_PORT}"
    shared = set(stack.compose["services"]["n8n"]["networks"]) & set(stack.compose["services"]["n8n-monitoring"]["networks"])
    assert shared, "n8n-monitoring cannot reach n8n"
    base = monitoring["N8N_URL"].replace(f"n8n:{N8N_PORT}", f"127.0.0.1:{n8n.port}")
    assert get(base + "/api/v1/executions")[0] == 401
    key = api_key(n8n)
    status, body = get(base + "/api/v1/executions?limit=10", headers={"X-N8N-API-KEY": key})
    assert status == 200, body
    assert json.loads(body)["data"] == []
    status, body = get(base + "/api/v1/workflows", headers={"X-N8N-API-KEY": key})
    assert status == 200 and "data" in json.loads(body), body
    assert get(base + "/api/v1/executions", headers={"X-N8N-API-KEY": key[:-2] + "xx"})[0] == 401


def test_inv_verifys_n8n_checks_pass_against_it(stack: Stack, database: Any, n8n: Any) -> None:
    from tests.apps.verify_target import run_check

    pg, _ = database
    for name in ("ready", "database"):
        status, message = run_check(stack.root, ENV, "n8n", name, pg.name, stack.env["n8n"])
        assert status == "ok", message
    assert "migrations in database n8n" in run_check(stack.root, ENV, "n8n", "database", pg.name,
                                                      stack.env["n8n"])[1]
