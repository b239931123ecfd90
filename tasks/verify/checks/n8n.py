"""n8n: it answers, it is ready, and what made it ready is its own PostgreSQL database.

n8n 2.x serves ``/healthz`` (the process is up) and ``/healthz/readiness`` (its database
connection is up and its migrations have run; 503 otherwise). Readiness alone cannot tell
PostgreSQL from SQLite: n8n falls back to SQLite in its user folder when DB_TYPE is missing or
invalid (an invalid value is only a warning), and is just as ready there. So the check also logs
in as n8n's role to n8n's database, the way n8n does, and reads n8n's ``migrations`` table: rows
there are n8n's own schema, written by that role.
"""

from __future__ import annotations

from typing import Any

from ...schema.configfiles import databases
from ..registry import check
from .common import fail, restart_fix, unreachable_fix

N8N_PORT = 5678
# The password on stdin, never on a command line; the address as n8n reaches PostgreSQL (over the
# network, where the image asks for a password).
PSQL_MIGRATIONS = ('IFS= read -r PGPASSWORD; export PGPASSWORD; export PGCONNECT_TIMEOUT=5; '
                   'exec psql -h "$1" -U "$2" -d "$3" -v ON_ERROR_STOP=1 -tAXc '
                   '"SELECT count(*) FROM migrations"')


@check("n8n", "ready", "n8n answers and reports itself ready (database connected, migrated)")
def n8n_ready(t: Any, p: Any) -> str:
    base = t.url("n8n", N8N_PORT)
    r = p.http("GET", base + "/healthz")
    if r.status != 200:
        fail("n8n does not answer", expected="HTTP 200 on /healthz", got=r.describe(), fix=unreachable_fix(t, "n8n"))
    r = p.http("GET", base + "/healthz/readiness")
    if r.status != 200:
        fail("n8n is up but not ready", expected="HTTP 200 on /healthz/readiness", got=r.describe(),
             fix="n8n is not connected to its database or has not finished its migrations: "
                 "`inv logs --service n8n` (a first start migrates for a minute or more)")
    return "/healthz and /healthz/readiness answer 200"


@check("n8n", "database", "n8n's schema is in its own PostgreSQL database", needs=("postgres",))
def n8n_database(t: Any, p: Any) -> str:
    db = databases(t.stack, t.env).get("n8n")
    if db is None:
        fail("n8n has no database in the schema", expected="services.n8n.database: {name, password}",
             got="none", fix="give services.n8n.database a name and a password secret")
    name = db["name"]  # postgres-init names the role after its database
    done = p.exec(t.container("postgres"), ["sh", "-c", PSQL_MIGRATIONS, "sh", "postgres", name, name],
                  stdin=t.secrets[db["password"]] + "\n")
    got = done.stdout.strip()
    if done.exited != 0 or not got.isdigit() or int(got) == 0:
        lines = done.output.splitlines()
        # psql's message is its ERROR/error line; LINE and caret lines follow it.
        why = next((ln.strip() for ln in lines if "error" in ln.lower()), lines[-1] if lines else f"exit {done.exited}")
        if 'relation "migrations" does not exist' in why:
            fix = (f"n8n did not migrate into PostgreSQL: DB_TYPE=postgresdb and DB_POSTGRESDB_* must be in "
                   f"env/{t.env}/n8n.env ({restart_fix(t, 'n8n')})")
        elif "password authentication failed" in why:
            fix = (f"the role's password is not the stored {db['password']}: `inv start --env {t.env}` runs "
                   f"postgres-init again, which sets it from the store")
        else:
            fix = "`inv logs --service n8n` and `inv logs --service postgres-init`"
        fail(f"n8n's tables are not in database {name}", expected=f"n8n's migrations recorded in {name}, "
             f"readable by role {name}", got=why if done.exited != 0 else f"{got or 'no'} migrations", fix=fix)
    return f"{got} migrations in database {name}"
