"""Each consumer's own PostgreSQL database, on the real PostgreSQL image (Debian's 17.x).

postgres-init (psql in the same image, run by Compose at every start) creates one role and one
database per consumer from config/<env>/postgres-init.sql. These tests log in as the consumers,
with the credentials their env files carry, and try to reach each other's data.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.lifecycle.conftest import LiveStack

pytestmark = [pytest.mark.docker, pytest.mark.slow]
# Consumer -> the env file that carries its DATABASE_URL (n8n has its own variables).
URL_CONSUMERS = {"litellm": "litellm.env", "ai_agents": "ai-agents.env",
                 "memory_system": "memory-system.env", "user_management": "user-management.env",
                 "multimodal_worker": "multimodal-worker.env"}


def login(stack: LiveStack, user: str, password: str, db: str, sql: str) -> tuple[int, str]:
    """A password login over TCP as ``user`` (psql in the postgres container; password in the
    exec environment, never in argv)."""
    pg = stack.containers()["postgres"]
    code, out = pg.exec_run(["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1",
                             "-tAc", sql], environment={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"})
    return code, out.decode("utf-8", "replace").strip()


def credentials(stack: LiveStack, db: str) -> tuple[str, str, str]:
    """(user, password, database) as the consumer's env file gives them."""
    if db == "n8n":
        return (stack.env_value("n8n.env", "DB_POSTGRESDB_USER"),
                stack.env_value("n8n.env", "DB_POSTGRESDB_PASSWORD"),
                stack.env_value("n8n.env", "DB_POSTGRESDB_DATABASE"))
    url = urlsplit(stack.env_value(URL_CONSUMERS[db], "DATABASE_URL"))
    assert url.hostname == "postgres" and url.port == 5432
    return str(url.username), str(url.password), url.path.lstrip("/")


@pytest.fixture(scope="module")
def started(live_stack: LiveStack) -> LiveStack:
    live_stack.inv_ok("start-dev")
    return live_stack


def test_each_consumer_logs_in_to_its_own_database_only(started: LiveStack) -> None:
    names = ["n8n", *URL_CONSUMERS]
    for db in names:
        user, password, database = credentials(started, db)
        assert database == db and user == db
        code, out = login(started, user, password, database, "SELECT current_user || '@' || current_database()")
        assert code == 0 and out == f"{db}@{db}", out
        # Every other consumer's database, and the superuser's, refuse this role.
        for other in [n for n in names if n != db] + [started.project, "postgres"]:
            code, out = login(started, user, password, other, "SELECT 1")
            assert code != 0 and "permission denied for database" in out, (db, other, out)
        code, out = login(started, user, "wrong-password", database, "SELECT 1")
        assert code != 0 and "password authentication failed" in out


def test_litellm_cannot_touch_n8n_tables(started: LiveStack) -> None:
    n8n = credentials(started, "n8n")
    code, out = login(started, *n8n[:2], "n8n",
                      "CREATE TABLE IF NOT EXISTS workflow_entity (id int); INSERT INTO workflow_entity VALUES (1);"
                      "SELECT count(*) FROM workflow_entity")
    assert code == 0, out
    litellm = credentials(started, "litellm")
    # What LiteLLM's schema push can reach: its own database, where n8n's table does not exist.
    code, out = login(started, *litellm[:2], "litellm", "DROP TABLE workflow_entity")
    assert code != 0 and 'table "workflow_entity" does not exist' in out
    code, out = login(started, *litellm[:2], "litellm", "DROP DATABASE n8n")
    assert code != 0 and "must be owner of database n8n" in out
    code, out = login(started, *litellm[:2], "litellm", "CREATE TABLE litellm_ok (id int); DROP TABLE litellm_ok")
    assert code == 0, "LiteLLM owns its own database and may migrate it"
    code, out = login(started, *n8n[:2], "n8n", "SELECT count(*) FROM workflow_entity")
    assert code == 0 and int(out) >= 1


def test_a_volume_from_before_is_converged_not_reinitialised(started: LiveStack) -> None:
    """An older mmstack kept everything in the superuser's database and had no roles per
    consumer: the next start creates them and leaves the old data where it was."""
    code, out = started.psql("CREATE TABLE legacy (v text); INSERT INTO legacy VALUES ('kept')")
    assert code == 0, out
    for db in ["n8n", *URL_CONSUMERS]:
        for sql in (f'DROP DATABASE "{db}" WITH (FORCE)', f'DROP ROLE "{db}"'):
            code, out = started.psql(sql)
            assert code == 0, out
    started.inv_ok("start-dev")
    for db in ["n8n", *URL_CONSUMERS]:
        code, out = login(started, *credentials(started, db), "SELECT current_database()")
        assert code == 0 and out == db, out
    code, out = started.psql("SELECT v FROM legacy")
    assert code == 0 and out == "kept"


def test_rotating_a_consumer_password_reaches_the_database(started: LiveStack) -> None:
    old = credentials(started, "ai_agents")
    started.inv_ok("rotate-secrets", "--env", "development", "--name", "ai_agents_db_password")
    started.inv_ok("setup", "--env", "development")
    started.inv_ok("start-dev")
    new = credentials(started, "ai_agents")
    assert new[1] != old[1]
    code, out = login(started, *new, "SELECT 1")
    assert code == 0, out
    code, out = login(started, *old, "SELECT 1")
    assert code != 0 and "password authentication failed" in out
