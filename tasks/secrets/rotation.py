"""`rotate-secrets`: new values for chosen secrets, with the running services re-keyed first.

Every step reports one result per item (``secrets/<env>/<name>``, never a value) and honours
``run.check``. Callers hold the stack lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine.errors import ConfigError, MmstackError, SecretsError
from ..engine.run import Run
from ..schema.model import Stack
from .api import SETUP_FIX, change_diff, converge_modes, environments_for, open_store, retire, secret_rules
from .consumers import DATA_KEYS, consumers_in, owned_secrets, rekey_note, secret_uses
from .generate import is_external, is_user_kind
from .plan import SecretChange, apply_to, changes, plan_secrets


# ----------------------------------------------------------------------------------------------
# What the lifecycle code lends rotation
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
    running PostgreSQL). A hook must be idempotent, must not print either value, and in check
    mode only checks (so ``--check`` predicts a refusal). If one fails, the hooks that already
    ran are called again with old/new swapped, and nothing is stored.
    ``running``: (run, stack, env) -> names of the services running here, or None when unknown.
    ``hosts``: env -> the inventory hosts that run it, which get the new values with `inv deploy`.
    """

    hooks: Mapping[str, RekeyHook] = field(default_factory=dict)
    running: RunningProbe | None = None
    hosts: Callable[[str], list[str]] | None = None


NO_REKEYING = Rekeying()


# ----------------------------------------------------------------------------------------------
# rotate-secrets
# ----------------------------------------------------------------------------------------------

@dataclass
class RotationResult:
    """What a rotation did; holds names and services, never values."""

    rotated: dict[str, list[str]] = field(default_factory=dict)   # env -> secret names
    restart: dict[str, list[str]] = field(default_factory=dict)   # env -> services to restart
    rekey: dict[str, str] = field(default_factory=dict)           # secret -> what else it takes
    hosts: dict[str, list[str]] = field(default_factory=dict)     # env -> hosts to deploy to
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
    envs = environments_for(stack, [env] if env else None)
    store = open_store(run, stack)
    converge_modes(run, store)
    rules = secret_rules(stack)
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

    _run_rekey_hooks(run, stack, plans, rekeying.hooks)   # in check mode they only check
    if not run.check:
        for e, (existing, todo, plan) in plans.items():
            retire(existing[c.name] for c in todo)
            store.save(e, apply_to(existing, plan, e))

    known: dict[str, bool] = {}
    for e, (_, todo, _) in plans.items():
        result.rotated[e] = [c.name for c in todo]
        result.restart[e], known[e] = _restart_list(run, stack, e, {c.name for c in todo}, rekeying.running)
        if todo and rekeying.hosts is not None and consumers_in(stack, e, {c.name for c in todo}):
            result.hosts[e] = rekeying.hosts(e)
        for c in todo:
            who = consumers_in(stack, e, {c.name})
            rep.changed(c.item, "rotated" + (f"; used by {', '.join(who)}" if who else ""),
                        diff=change_diff(c) if run.diff else None)
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
        hosts = result.hosts.get(env) or []
        if hosts and not check:
            lines.append(f"{env}: on {', '.join(hosts)} the services get the new values with "
                         f"`inv deploy --hosts {','.join(hosts)}`")
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
