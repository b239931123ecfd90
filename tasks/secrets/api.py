"""What the rest of mmstack calls to read secrets and set them up (rotation.py rotates them,
encryption.py encrypts the store).

Every step reports one result per item (``secrets/<env>/<name>``, never a value), honours
``run.check`` (nothing written) and ``run.diff`` (values shown as ``********``). Callers hold
the stack lock (``with run.locked():``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..engine.errors import MultiError, SecretsError
from ..engine.files import MASK
from ..engine.run import Run, config_value
from ..schema.model import Stack
from .consumers import consumers_in
from .generate import is_external, rule_problems, validate_secret_value
from .plan import SecretChange, apply_to, changes, plan_secrets
from .store import KeyProvider, SecretStore

SETUP_FIX = "run `inv setup-secrets`"


# Values replaced during this process: still worth masking (an env file on disk may hold one
# until it is re-rendered, and a diff would show it on its "old" side).
_RETIRED: set[str] = set()


def retire(values: Iterable[str]) -> None:
    """Remember replaced values for masking for the rest of this process."""
    _RETIRED.update(values)


# ----------------------------------------------------------------------------------------------
# The store, as configured
# ----------------------------------------------------------------------------------------------

def key_provider(run: Run, stack: Stack, key_file: str | Path | None = None) -> KeyProvider:
    """The key source: ``key_file`` argument > ``mmstack.yaml secrets.*`` > Invoke config
    ``mmstack.secrets.*`` > ``$MMSTACK_SECRETS_KEY``. A relative key file is relative to the
    stack directory."""
    settings = (stack.settings or {}).get("secrets") or {}
    env_var = settings.get("key_env") or config_value(run.c, "secrets.key_env")
    configured = key_file or settings.get("key_file") or config_value(run.c, "secrets.key_file")
    path = None
    if configured:
        path = Path(str(configured)).expanduser()
        if not path.is_absolute():
            path = stack.root / path
    return KeyProvider(env_var=str(env_var), key_file=path)


def open_store(run: Run, stack: Stack) -> SecretStore:
    return SecretStore.open(run.state_dir, key_provider(run, stack))


def converge_modes(run: Run, store: SecretStore) -> None:
    """Report (and unless checking, fix) store files other users could read."""
    for path, old, new in store.ensure_modes(apply=not run.check):
        rel = f"{store.dir.parent.name}/{path.relative_to(store.dir.parent)}"
        run.reporter.changed(rel, f"mode {old:04o} -> {new:04o} (was readable by others: "
                                  "consider rotating what it held)" if old & 0o077 else
                             f"mode {old:04o} -> {new:04o}")


def secret_rules(stack: Stack) -> dict[str, dict[str, Any]]:
    """The schema's secret rules, refusing any from which no safe value can be made."""
    declared = stack.secret_declarations
    errors = [SecretsError(problem, file=stack.schema_file,
                           line=stack.source.line_of(("secrets", name)),
                           key_path=f"secrets.{name}", fix="correct the rule in the schema")
              for name, rule in declared.items() for problem in rule_problems(rule)]
    if errors:
        raise MultiError(errors)
    return declared


def environments_for(stack: Stack, environments: Iterable[str] | None) -> list[str]:
    envs = list(environments) if environments else stack.environment_names
    for env in envs:
        stack.environment(env)  # a clear error for an unknown name
    return envs


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def load_environment_secrets(run: Run, stack: Stack, env: str) -> dict[str, str]:
    """Every declared secret of ``env``, decrypted in memory; a `SecretsError` (naming secrets,
    never values) when the store is missing, incomplete, undecryptable or hand-edited badly."""
    stack.environment(env)
    store = open_store(run, stack)
    converge_modes(run, store)
    if not store.exists(env):
        raise SecretsError(f"no secrets have been generated for environment {env!r}",
                           file=store.label(env), fix=SETUP_FIX)
    values = store.load(env)
    declared = stack.secret_declarations
    # An external secret (set by the user) may be absent: templates ask whether it is defined.
    missing = [n for n, rule in declared.items() if n not in values and not is_external(rule)]
    if missing:
        raise SecretsError(f"secrets not generated yet for environment {env!r}: {', '.join(missing)}",
                           file=store.label(env), fix=SETUP_FIX)
    problems = [p for n, rule in declared.items() if n in values
                for p in validate_secret_value(n, rule, values[n])]
    if problems:
        raise SecretsError("stored secrets break their rules: " + "; ".join(problems),
                           file=store.label(env),
                           fix=f"{SETUP_FIX} to regenerate them (then restart the services that use "
                               "them), or correct the values by hand")
    return {n: values[n] for n in declared if n in values}


def all_secret_values(run: Run, stack: Stack) -> set[str]:
    """Every stored value of every environment, plus those this process replaced (for masking
    the output of other tasks)."""
    store = open_store(run, stack)
    out: set[str] = set(_RETIRED)
    for env in store.environments():
        out.update(v for v in store.load(env).values() if v)
    return out


# ----------------------------------------------------------------------------------------------
# setup-secrets
# ----------------------------------------------------------------------------------------------

def change_diff(change: SecretChange) -> str:
    lines = []
    if change.replaces:
        lines.append(f"- {change.name}: {MASK}")
    lines.append(f"+ {change.name}: {MASK}")
    return "\n".join(lines) + "\n"


def setup_secrets_step(run: Run, stack: Stack, environments: list[str] | None = None) -> None:
    """Generate what is missing (or breaks its rule) and keep everything else, per environment."""
    rep = run.reporter
    rep.task("setup-secrets")
    envs = environments_for(stack, environments)
    store = open_store(run, stack)
    converge_modes(run, store)
    if not store.encrypted and store.keys.available():
        rep.info(f"note: the secrets store is not encrypted; `inv encrypt-secrets` encrypts it "
                 f"with the key from {store.keys.source}")
    declared = secret_rules(stack)
    for env in envs:
        existing = store.load(env)
        plan = plan_secrets(declared, {env: existing}, [env])
        todo = changes(plan)
        if todo and not run.check:
            retire(existing[c.name] for c in todo if c.replaces)
            store.save(env, apply_to(existing, plan, env))
        for p in plan:
            if not isinstance(p, SecretChange):
                rep.ok(p.item, p.reason)
            elif not p.replaces:
                rep.changed(p.item, "generated", diff=change_diff(p) if run.diff else None)
            else:
                restart = consumers_in(stack, env, {p.name})
                note = f"; restart: {', '.join(restart)}" if restart else ""
                rep.changed(p.item, f"regenerated: stored value {p.reason}{note}",
                            diff=change_diff(p) if run.diff else None)
