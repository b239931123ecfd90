"""What the rest of mmstack calls: load secrets for rendering, set them up, rotate, encrypt.

Every step reports one result per item (``secrets/<env>/<name>``, never a value), honours
``run.check`` (nothing written) and ``run.diff`` (values shown as ``********``). Callers hold
the stack lock (``with run.locked():``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError, MmstackError, MultiError, SecretsError
from ..engine.files import MASK
from ..engine.run import Run, config_value
from ..schema.model import Stack
from .consumers import DATA_KEYS, consumers_in, owned_secrets, rekey_note, secret_uses
from .generate import is_external, is_user_kind, rule_problems, validate_secret_value
from .plan import SecretChange, apply_to, changes, plan_secrets
from .store import DEFAULT_KEY_ENV, NEW_KEY_HINT, KeyProvider, SecretStore, write_new_key_file

SETUP_FIX = "run `inv setup-secrets`"


# ----------------------------------------------------------------------------------------------
# Extension points for the lifecycle code
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RekeyRequest:
    """Asks a hook to make a running service accept ``new`` instead of ``old``."""

    run: Run = field(repr=False)
    stack: Stack = field(repr=False)
    env: str
    name: str
    old: str = field(repr=False)
    new: str = field(repr=False)


RekeyHook = Callable[[RekeyRequest], None]
RunningProbe = Callable[[Run, Stack, str], "set[str] | None"]


@dataclass(frozen=True)
class Rekeying:
    """What the lifecycle code lends rotation, passed in by the caller (no global registry).

    ``hooks``: secret name -> hook run before the stored value changes (e.g. ALTER ROLE in a
    running PostgreSQL). A hook must be idempotent and must not print either value. If one fails,
    the hooks that already ran are called again with old/new swapped, and nothing is stored.
    ``running``: (run, stack, env) -> names of running services, or None when unknown.
    """

    hooks: Mapping[str, RekeyHook] = field(default_factory=dict)
    running: RunningProbe | None = None


NO_REKEYING = Rekeying()
# Values replaced during this process: still worth masking (an env file on disk may hold one
# until it is re-rendered, and a diff would show it on its "old" side).
_RETIRED: set[str] = set()


# ----------------------------------------------------------------------------------------------
# The store, as configured
# ----------------------------------------------------------------------------------------------

def key_provider(run: Run, stack: Stack, key_file: str | Path | None = None) -> KeyProvider:
    """The key source: ``key_file`` argument > ``mmstack.yaml secrets.*`` > Invoke config
    ``mmstack.secrets.*`` > ``$MMSTACK_SECRETS_KEY``. A relative key file is relative to the
    stack directory."""
    settings = (stack.settings or {}).get("secrets") or {}
    env_var = settings.get("key_env") or config_value(run.c, "secrets.key_env", DEFAULT_KEY_ENV)
    configured = key_file or settings.get("key_file") or config_value(run.c, "secrets.key_file")
    path = None
    if configured:
        path = Path(str(configured)).expanduser()
        if not path.is_absolute():
            path = stack.root / path
    return KeyProvider(env_var=str(env_var), key_file=path)


def open_store(run: Run, stack: Stack) -> SecretStore:
    return SecretStore.open(run.state_dir, key_provider(run, stack))


def _converge_modes(run: Run, store: SecretStore) -> None:
    """Report (and unless checking, fix) store files other users could read."""
    for path, old, new in store.ensure_modes(apply=not run.check):
        rel = f"{store.dir.parent.name}/{path.relative_to(store.dir.parent)}"
        run.reporter.changed(rel, f"mode {old:04o} -> {new:04o} (was readable by others: "
                                  "consider rotating what it held)" if old & 0o077 else
                             f"mode {old:04o} -> {new:04o}")


def _declarations(stack: Stack) -> dict[str, dict[str, Any]]:
    """The schema's secret rules, refusing any from which no safe value can be made."""
    declared = stack.secret_declarations
    errors = [SecretsError(problem, file=stack.schema_file,
                           line=stack.source.line_of(("secrets", name)),
                           key_path=f"secrets.{name}", fix="correct the rule in the schema")
              for name, rule in declared.items() for problem in rule_problems(rule)]
    if errors:
        raise MultiError(errors)
    return declared


def _environments(stack: Stack, environments: Iterable[str] | None) -> list[str]:
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
    _converge_modes(run, store)
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

def _diff(change: SecretChange) -> str:
    lines = []
    if change.replaces:
        lines.append(f"- {change.name}: {MASK}")
    lines.append(f"+ {change.name}: {MASK}")
    return "\n".join(lines) + "\n"


def setup_secrets_step(run: Run, stack: Stack, environments: list[str] | None = None) -> None:
    """Generate what is missing (or breaks its rule) and keep everything else, per environment."""
    rep = run.reporter
    rep.task("setup-secrets")
    envs = _environments(stack, environments)
    store = open_store(run, stack)
    _converge_modes(run, store)
    if not store.encrypted and store.keys.available():
        rep.info(f"note: the secrets store is not encrypted; `inv encrypt-secrets` encrypts it "
                 f"with the key from {store.keys.source}")
    declared = _declarations(stack)
    for env in envs:
        existing = store.load(env)
        plan = plan_secrets(declared, {env: existing}, [env])
        todo = changes(plan)
        if todo and not run.check:
            _RETIRED.update(existing[c.name] for c in todo if c.replaces)
            store.save(env, apply_to(existing, plan, env))
        for p in plan:
            if not isinstance(p, SecretChange):
                rep.ok(p.item, p.reason)
            elif not p.replaces:
                rep.changed(p.item, "generated", diff=_diff(p) if run.diff else None)
            else:
                restart = consumers_in(stack, env, {p.name})
                note = f"; restart: {', '.join(restart)}" if restart else ""
                rep.changed(p.item, f"regenerated: stored value {p.reason}{note}",
                            diff=_diff(p) if run.diff else None)


# ----------------------------------------------------------------------------------------------
# rotate-secrets
# ----------------------------------------------------------------------------------------------

@dataclass
class RotationResult:
    """What a rotation did; holds names and services, never values."""

    rotated: dict[str, list[str]] = field(default_factory=dict)   # env -> secret names
    restart: dict[str, list[str]] = field(default_factory=dict)   # env -> services to restart
    rekey: dict[str, str] = field(default_factory=dict)           # secret -> what else it takes
    skipped: dict[str, str] = field(default_factory=dict)         # secret -> why not rotated
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_for_rotation(stack: Stack, service: str | None, names: Iterable[str] | None,
                        include_users: bool = False) -> tuple[list[str], dict[str, str]]:
    """(secrets to rotate, secrets left alone with the reason) for ``--service`` / ``--name``.

    ``--service S`` picks the secrets S owns, except user names (renaming a database user breaks
    it; ``include_users`` opts in) and data-encryption keys (rotating those loses data: name them
    with ``--name``). ``--name`` picks exactly what it names.
    """
    declared = stack.secret_declarations
    names = [n for n in (names or []) if n]
    if not service and not names:
        raise ConfigError("say what to rotate: --service NAME, or --name SECRET (repeatable)",
                          fix=f"secrets: {', '.join(declared)}")
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ConfigError(f"unknown secret(s): {', '.join(unknown)}", key_path="secrets",
                          fix=f"use one of: {', '.join(declared)}")
    external = [n for n in names if is_external(declared[n])]
    if external:
        raise ConfigError(f"{', '.join(external)} is set by you, not generated: nothing to rotate",
                          key_path="secrets", fix="store the new value with `inv set-secret --name NAME`")
    chosen: list[str] = list(dict.fromkeys(names))
    skipped: dict[str, str] = {}
    if service:
        if service not in stack.service_names:
            raise ConfigError(f"unknown service {service!r}",
                              fix=f"use one of: {', '.join(stack.service_names)}")
        owned = owned_secrets(stack, service)
        if not owned:
            owners = sorted({u.owner for u in secret_uses(stack).values() if u.owner})
            raise ConfigError(f"service {service!r} owns no secrets",
                              fix=f"services that own secrets: {', '.join(owners)}; or use --name")
        for name in owned:
            if name in chosen:
                continue
            if is_external(declared[name]):
                skipped[name] = "set by you (external): store a new value with `inv set-secret`"
            elif is_user_kind(declared[name]) and not include_users:
                skipped[name] = "a user name (renaming it breaks existing data); pass --include-users"
            elif name in DATA_KEYS:
                skipped[name] = "encrypts stored data (a new key makes it unreadable); rotate it with --name"
            else:
                chosen.append(name)
    order = list(declared)
    return sorted(chosen, key=order.index), skipped


def rotate_secrets_step(run: Run, stack: Stack, service: str | None = None, env: str | None = None,
                        names: list[str] | None = None, include_users: bool = False,
                        rekeying: Rekeying = NO_REKEYING) -> RotationResult:
    """Replace exactly the selected secrets in the selected environments; report who must restart."""
    rep = run.reporter
    rep.task("rotate-secrets")
    chosen, skipped = select_for_rotation(stack, service, names, include_users)
    envs = _environments(stack, [env] if env else None)
    store = open_store(run, stack)
    _converge_modes(run, store)
    rules = _declarations(stack)
    declared = {n: rules[n] for n in chosen}
    result = RotationResult(skipped=dict(skipped))

    plans: dict[str, tuple[dict[str, str], list[SecretChange], list[Any]]] = {}
    for e in envs:
        if not store.exists(e):
            rep.skipped(f"secrets/{e}", f"no secrets yet; {SETUP_FIX} first")
            continue
        existing = store.load(e)
        absent = [n for n in chosen if n not in existing]
        if absent:
            raise SecretsError(f"secrets not generated yet for environment {e!r}: {', '.join(absent)}",
                               file=store.label(e), fix=SETUP_FIX)
        plan = plan_secrets(declared, {e: existing}, [e], rotate=set(chosen))
        plans[e] = (existing, changes(plan), plan)

    if not run.check:
        _run_rekey_hooks(run, stack, plans, rekeying.hooks)
        for e, (existing, todo, plan) in plans.items():
            _RETIRED.update(existing[c.name] for c in todo)
            store.save(e, apply_to(existing, plan, e))

    known: dict[str, bool] = {}
    for e, (_, todo, _) in plans.items():
        result.rotated[e] = [c.name for c in todo]
        result.restart[e], known[e] = _restart_list(run, stack, e, {c.name for c in todo}, rekeying.running)
        for c in todo:
            who = consumers_in(stack, e, {c.name})
            rep.changed(c.item, "rotated" + (f"; used by {', '.join(who)}" if who else ""),
                        diff=_diff(c) if run.diff else None)
    for name, why in skipped.items():
        rep.skipped(f"secrets/*/{name}", why)
    for name in chosen:
        note = rekey_note(name)
        if note and name not in rekeying.hooks:
            result.rekey[name] = note

    result.message = _rotation_message(result, run.check, known)
    for line in result.message.splitlines():
        rep.info(line)
    for name, note in result.rekey.items():
        rep.warn(f"{name}: {note}")
    run.add_output("rotation", result.to_dict())
    return result


def _restart_list(run: Run, stack: Stack, env: str, names: set[str],
                  probe: RunningProbe | None) -> tuple[list[str], bool]:
    """The consumers to restart, and whether which of them run is actually known."""
    services = consumers_in(stack, env, names)
    if probe is not None:
        running = probe(run, stack, env)
        if running is not None:
            return [s for s in services if s in running], True
    return services, False


def _rotation_message(result: RotationResult, check: bool, known_by_env: dict[str, bool]) -> str:
    lines = []
    verb = "would rotate" if check else "rotated"
    for env, names in result.rotated.items():
        known = known_by_env.get(env, False)
        if not names:
            continue
        lines.append(f"{env}: {verb} {', '.join(names)}")
        services = result.restart.get(env) or []
        if services:
            qualifier = "" if known else " if running"
            lines.append(f"{env}: restart{qualifier}: {', '.join(services)}")
        else:
            lines.append(f"{env}: no {'running ' if known else ''}service of this environment "
                         "uses them; nothing to restart")
    return "\n".join(lines) or "nothing rotated"


def _run_rekey_hooks(run: Run, stack: Stack,
                     plans: dict[str, tuple[dict[str, str], list[SecretChange], list[Any]]],
                     hooks: Mapping[str, RekeyHook]) -> None:
    """Call every applicable hook before anything is stored; undo them all if one fails."""
    done: list[RekeyRequest] = []
    for env, (existing, todo, _) in plans.items():
        for change in todo:
            hook = hooks.get(change.name)
            if hook is None:
                continue
            req = RekeyRequest(run, stack, env, change.name, existing[change.name], change.value)
            try:
                hook(req)
            except Exception as exc:  # noqa: BLE001 - any failure must stop the rotation
                undo_failed = _undo(done, hooks)
                # Only typed mmstack errors are trusted to carry no value; others give their type.
                why = exc.message if isinstance(exc, MmstackError) else type(exc).__name__
                extra = (f"; undoing the re-key of {', '.join(undo_failed)} also failed: those "
                         "services may already use the new value, which was NOT stored") if undo_failed else ""
                raise SecretsError(
                    f"re-keying {change.name} in environment {env!r} failed ({why}); nothing was "
                    f"rotated{extra}",
                    fix="make sure the service is running and healthy, then rerun `inv rotate-secrets`",
                ) from None
            done.append(req)


def _undo(done: list[RekeyRequest], hooks: Mapping[str, RekeyHook]) -> list[str]:
    failed = []
    for req in reversed(done):
        try:
            hooks[req.name](RekeyRequest(req.run, req.stack, req.env, req.name, req.new, req.old))
        except Exception:  # noqa: BLE001 - report, keep undoing the rest
            failed.append(f"{req.name} ({req.env})")
    return failed


# ----------------------------------------------------------------------------------------------
# encrypt-secrets / decrypt-secrets
# ----------------------------------------------------------------------------------------------

def encrypt_secrets_step(run: Run, stack: Stack, key_file: str | None = None,
                         new_key: str | None = None) -> None:
    """Encrypt the store (or re-encrypt it with another key); idempotent."""
    rep = run.reporter
    rep.task("encrypt-secrets")
    if key_file and new_key:
        raise ConfigError("--key-file and --new-key exclude each other",
                          fix="--new-key FILE creates a key; --key-file FILE uses an existing one")
    current = key_provider(run, stack)
    store = SecretStore.open(run.state_dir, current)
    if new_key:
        path = _abs(stack, new_key)
        if not run.check:
            write_new_key_file(path)
        elif path.exists():
            raise SecretsError("refusing to overwrite an existing key file", file=str(path),
                               fix="pass it with --key-file to use it, or choose another path")
        rep.changed(str(path), "new key file (0600)")
        target = KeyProvider(env_var="", key_file=path)
    elif key_file:
        path = _abs(stack, key_file)
        if not path.exists():
            raise SecretsError("the key file does not exist", file=str(path),
                               fix=f"create one with {NEW_KEY_HINT}")
        target = KeyProvider(env_var="", key_file=path)
    else:
        target = current
        if not target.available():
            raise SecretsError(f"no encryption key: ${current.env_var} is not set"
                               + (f" and {current.key_file} does not exist" if current.key_file else ""),
                               fix=f"create one with {NEW_KEY_HINT}")
    _converge_modes(run, store)
    if run.check and new_key:
        # The key does not exist yet in check mode: everything would be (re-)encrypted.
        for env in store.environments():
            rep.changed(f"secrets/{env}", "would be encrypted with the new key")
        return
    for env in store.environments():
        values, current_ok = _read_for_encryption(store, target, env)
        clean = (current_ok and not store.plain_path(env).exists())
        if clean:
            rep.ok(f"secrets/{env}", "encrypted")
            continue
        was_plain = not store.enc_path(env).exists()
        if not run.check:
            SecretStore(store.dir, target, True).save(env, values)
        rep.changed(f"secrets/{env}", "encrypted; the plain file was scrubbed" if was_plain
                    else "re-encrypted with the new key")
    if not run.check:
        SecretStore(store.dir, target, True)._mark_encrypted()
    if target.source != current.source:
        rep.warn(f"the store is now encrypted with the key in {target.source}: set secrets.key_file "
                 f"in mmstack.yaml to that file (and unset ${current.env_var} if it holds another key), "
                 "or no task can read the secrets")


def _read_for_encryption(store: SecretStore, target: KeyProvider, env: str) -> tuple[dict[str, str], bool]:
    """(values, already encrypted with ``target``)."""
    if store.enc_path(env).exists():
        try:
            return SecretStore(store.dir, target, True).load(env), True
        except SecretsError:
            return store.load(env), False  # wrong key here too: that error is the one to show
    return store.load(env, allow_plain=True), False


def decrypt_secrets_step(run: Run, stack: Stack) -> None:
    """Write the store back in the clear (0600) and scrub the encrypted files."""
    rep = run.reporter
    rep.task("decrypt-secrets")
    store = open_store(run, stack)
    _converge_modes(run, store)
    for env in store.environments():
        if not store.enc_path(env).exists():
            rep.ok(f"secrets/{env}", "not encrypted")
            continue
        values = store.load(env)
        if not run.check:
            from .store import scrub

            SecretStore(store.dir, store.keys, False).save(env, values)
            scrub(store.enc_path(env))
        rep.changed(f"secrets/{env}", "decrypted (0600)")
    if not run.check:
        from .store import MARKER, scrub

        scrub(store.dir / MARKER)


def _abs(stack: Stack, path: str | Path) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else stack.root / p
