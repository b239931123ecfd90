"""Which services use which secret, which service owns it, and what a rotation takes.

Consumers are derived from the templates, so they never drift from what is rendered: a service
consumes a secret when its own env template (``env_template: NAME`` -> ``env-templates/NAME.env.j2``),
any template it extends or includes, or ``core.env.j2`` (which every service receives) refers to
``secrets.NAME``.

Ownership (what ``rotate-secrets --service S`` rotates) is the service that *checks* the secret,
not every client that presents it: LiteLLM presents the PostgreSQL password but does not own it.
The schema has no owner field, so ownership is derived, in this order:

1. the secret's name starts with the service's name (``-`` read as ``_``), longest match wins:
   ``n8n_monitoring_secret_key`` -> n8n-monitoring, ``postgres_password`` -> postgres;
2. exactly one service consumes it (``jwt_secret`` -> user-management);
3. one consumer's name starts with the secret's first word (``elastic_password`` -> elasticsearch).

One-shots that only set a secret up (postgres-init, elasticsearch-setup) never own it by rules 2
and 3: they present it once, the service they configure checks it.

A secret matching none of these has no owner and is rotated by name only (``--name``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..schema.model import TEMPLATES_DIR, Stack

CORE_TEMPLATE = "core"
_SECRET_REF = re.compile(r"""\bsecrets(?:\.([a-z][a-z0-9_]*)|\[\s*['"]([a-z][a-z0-9_]*)['"]\s*\])""")
# Templates that receive every consumer's database or object-store credentials (the init jobs).
_ALL_DATABASES = re.compile(r"\bdatabases\b")
_ALL_OBJECT_STORES = re.compile(r"\bobject_stores\b")
# Prometheus's template: every secret a metrics endpoint needs (services.*.metrics.auth).
_ALL_SCRAPE_CREDENTIALS = re.compile(r"\bscrape_credentials\b")
_TEMPLATE_REF = re.compile(r"""\{%-?\s*(?:extends|include|import|from)\s+['"]([^'"]+)['"]""")

# What it takes, beyond a restart of every consumer, for a new value to work. Services read these
# only when their data directory is first initialised, or use them to encrypt stored data.
REKEY_NOTES: dict[str, str] = {
    "postgres_user": "PostgreSQL creates its user only on first start: rename the role in the "
                     "running database (ALTER ROLE ... RENAME TO) before restarting",
    "postgres_password": "PostgreSQL reads the password only on first start: the password must be "
                         "changed in the running database (ALTER ROLE ... PASSWORD), then restart the clients",
    "grafana_admin_user": "Grafana applies the admin user only on first start: change it in Grafana too",
    "grafana_admin_password": "Grafana applies the admin password only on first start: reset it "
                              "with `grafana-cli admin reset-admin-password` in the running container",
    "elastic_password": "Elasticsearch sets the elastic password only on first start: change it "
                        "with the security API (POST /_security/user/elastic/_password) first",
    **{name: "elasticsearch-setup sets the new password at the next start: run `inv start-<env>` "
               "(a restart of the client alone does not re-run elasticsearch-setup)"
       for name in ("elasticsearch_kibana_password", "elasticsearch_logstash_password",
                    "elasticsearch_grafana_password")},
    "n8n_encryption_key": "n8n encrypts stored credentials with this key: they cannot be decrypted "
                          "after a rotation unless they are exported and re-imported",
    "litellm_salt_key": "LiteLLM encrypts stored model credentials with this key: re-add them after a rotation",
    "kibana_encryption_key": "Kibana encrypts saved objects with this key: existing encrypted "
                             "saved objects become unreadable",
}
# Rotating these loses data encrypted with them, so `--service` never picks them up; only an
# explicit `--name` does.
DATA_KEYS = frozenset({"n8n_encryption_key", "litellm_salt_key", "kibana_encryption_key"})


@dataclass(frozen=True)
class SecretUse:
    """Who uses one secret."""

    name: str
    consumers: tuple[str, ...]  # services, schema order
    owner: str | None


def template_secrets(templates_dir: Path) -> dict[str, set[str]]:
    """Template name (without ``.env.j2``) -> secrets it refers to, directly or via templates it
    extends/includes."""
    direct: dict[str, set[str]] = {}
    refs: dict[str, set[str]] = {}
    for path in sorted(Path(templates_dir).glob("*.env.j2")):
        name = path.name[: -len(".env.j2")]
        text = path.read_text(encoding="utf-8")
        direct[name] = {a or b for a, b in _SECRET_REF.findall(text)}
        refs[name] = {r[: -len(".env.j2")] if r.endswith(".env.j2") else r
                      for r in _TEMPLATE_REF.findall(text)}
    out: dict[str, set[str]] = {}
    for name in direct:
        seen: set[str] = set()
        todo = [name]
        found: set[str] = set()
        while todo:
            cur = todo.pop()
            if cur in seen or cur not in direct:
                continue
            seen.add(cur)
            found |= direct[cur]
            todo.extend(refs[cur])
        out[name] = found
    return out


def service_secrets(stack: Stack, *, own_only: bool = False) -> dict[str, set[str]]:
    """Service -> secrets it receives (its template's, plus core.env's unless ``own_only``).

    A service's own database password and object-store key (``database:``,
    ``object_store_key:``) reach its template as ``db`` and ``s3``; the init jobs whose
    templates read ``databases`` or ``object_stores`` receive all of them.
    """
    by_template = template_secrets(stack.root / TEMPLATES_DIR)
    core = set() if own_only else by_template.get(CORE_TEMPLATE, set())
    from ..schema.monitoring import auth_secrets

    db_secrets, store_secrets, scrape_secrets = set(), set(), set()
    for spec in stack.data["services"].values():
        scrape_secrets.update(auth_secrets(((spec or {}).get("metrics") or {}).get("auth")))
        if (spec or {}).get("database"):
            db_secrets.add(spec["database"]["password"])
        store_secrets.update(((spec or {}).get("object_store_key") or {}).values())
    out: dict[str, set[str]] = {}
    for name, spec in stack.data["services"].items():
        spec = spec or {}
        tpl = spec.get("env_template")
        found = set(core) | (by_template.get(tpl, set()) if tpl else set())
        if spec.get("database"):
            found.add(spec["database"]["password"])
        found.update((spec.get("object_store_key") or {}).values())
        if tpl:
            text = _template_text(stack.root / TEMPLATES_DIR, tpl)
            if _ALL_DATABASES.search(text):
                found |= db_secrets
            if _ALL_OBJECT_STORES.search(text):
                found |= store_secrets
            if _ALL_SCRAPE_CREDENTIALS.search(text):
                found |= scrape_secrets
        out[name] = found
    return out


def _template_text(templates_dir: Path, name: str) -> str:
    try:
        return (Path(templates_dir) / f"{name}.env.j2").read_text(encoding="utf-8")
    except OSError:
        return ""


def secret_uses(stack: Stack) -> dict[str, SecretUse]:
    """Every declared secret with its consumers and owner."""
    per_service = service_secrets(stack)
    services = list(stack.data["services"])
    out: dict[str, SecretUse] = {}
    for secret in stack.secret_declarations:
        consumers = tuple(s for s in services if secret in per_service.get(s, set()))
        checking = tuple(c for c in consumers if c not in stack.one_shot_services) or consumers
        out[secret] = SecretUse(secret, consumers, _owner(secret, services, checking))
    return out


def _owner(secret: str, services: list[str], consumers: tuple[str, ...]) -> str | None:
    by_prefix = [s for s in services if secret.startswith(s.replace("-", "_") + "_")]
    if by_prefix:
        return max(by_prefix, key=len)
    if len(consumers) == 1:
        return consumers[0]
    first = secret.split("_", 1)[0]
    matches = [s for s in consumers if s.replace("-", "_").startswith(first)]
    return matches[0] if len(matches) == 1 else None


def owned_secrets(stack: Stack, service: str) -> list[str]:
    """Secrets ``service`` owns, in declaration order."""
    return [name for name, use in secret_uses(stack).items() if use.owner == service]


def consumers_in(stack: Stack, env: str, secrets: set[str]) -> list[str]:
    """Services of environment ``env`` that receive any of ``secrets`` (schema order)."""
    running = set(stack.environment(env).services)
    uses = secret_uses(stack)
    wanted: set[str] = set()
    for name in secrets:
        if name in uses:
            wanted.update(uses[name].consumers)
    return [s for s in stack.data["services"] if s in wanted and s in running]


def rekey_note(name: str) -> str | None:
    if name.endswith("_db_password"):
        # A consumer's role password is set by postgres-init, which runs only with a start.
        return ("postgres-init sets the new password at the next start: run `inv start-<env>` "
                "(a restart of the consumer alone does not re-run postgres-init)")
    return REKEY_NOTES.get(name)

