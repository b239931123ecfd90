"""Secrets: `setup-secrets`, `rotate-secrets`, `set-secret`, `encrypt-secrets`, `decrypt-secrets`.

Thin tasks: parse arguments, then the secrets' steps (`secrets.*`) or, where env files are
re-rendered too, their chain (tasks/chains.py). Nothing heavy is imported at
module load (cryptography is imported only when a key is used), so `inv --list` stays fast.
No task takes a secret or a key as an argument: command lines end up in shell history and `ps`.
"""

from __future__ import annotations

from invoke import Collection, Context, task

from ..engine.run import Run, boundary
from ..engine.settings import defaults_for
from ..remote.selection import HOST_HELP


@task(help={
    "name": "the external secret to set (declared in the schema as {kind: external})",
    "env": "only this environment (default: all)",
    "render": "re-render the env files of the affected environments (default: yes)",
    "check": "change nothing; report what would be stored",
    "json": "print the results as JSON",
})
@boundary
def set_secret(c: Context, name: str, env: str | None = None, render: bool = True,
               check: bool = False, json: bool = False) -> None:
    """Store a secret only you have (a Hugging Face token), read from standard input."""
    from ..chains import set_secret_chain
    from ..schema.steps import validate_schema_step

    run = Run.start(c, check=check, json=json)
    value = _read_secret_value(name)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    set_secret_chain(run, stack, name, value, env, render=render)
    run.finish()


def _read_secret_value(name: str) -> str:
    """The value, from a prompt without echo on a terminal, else all of standard input."""
    import getpass
    import sys

    from ..engine.errors import ConfigError

    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (not echoed): ")
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise ConfigError(f"no value for {name} on standard input",
                          fix=f"`printf %s \"$TOKEN\" | inv set-secret --name {name}`, or run it on a terminal")
    return value


@task(help={
    "env": "only this environment (default: all)",
    "check": "change nothing; report what would be generated",
    "diff": "show what changes (values are always masked)",
    "json": "print the results as JSON",
})
@boundary
def setup_secrets(c: Context, env: str | None = None, check: bool = False, diff: bool = False,
                  json: bool = False) -> None:
    """Generate every secret the schema declares, once per environment; existing ones are kept."""
    from ..schema.steps import validate_schema_step
    from ..secrets.api import setup_secrets_step

    run = Run.start(c, check=check, diff=diff, json=json)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    with run.locked():
        setup_secrets_step(run, stack, [env] if env else None)
    run.finish()


ROTATION_HOSTS = ("re-key the running databases on these inventory hosts too (default: every "
                  "inventory host: each one running the environment shares its secrets)")


@task(iterable=["name"], help={
    "service": "rotate the secrets this service owns (not user names or data keys)",
    "env": "only this environment (default: all)",
    "name": "rotate this secret (repeatable)",
    "include_users": "with --service, also rotate its user names",
    "render": "re-render the env files of the affected environments (default: yes)",
    "check": "change nothing; report what would be rotated",
    "diff": "show what changes (values are always masked)",
    "json": "print the results as JSON",
    **HOST_HELP, "hosts": ROTATION_HOSTS,
})
@boundary
def rotate_secrets(c: Context, service: str | None = None, env: str | None = None,
                   name: list[str] | None = None, include_users: bool = False, render: bool = True,
                   check: bool = False, diff: bool = False, json: bool = False, hosts: str | None = None,
                   limit: str | None = None, inventory: str | None = None, forks: int | None = None) -> None:
    """Replace only the secrets asked for, re-keying each running PostgreSQL (here and on the
    inventory's hosts); say which services must be restarted or deployed."""
    from ..chains import rotate_secrets_chain
    from ..remote.hosttargets import rotation_hosts
    from ..schema.steps import validate_schema_step

    run = Run.start(c, check=check, diff=diff, json=json)
    stack = validate_schema_step(run)  # reads only: a run that fails it leaves nothing behind
    # The selection (and the inventory) is checked before anything changes or connects.
    targets = rotation_hosts(run, hosts, limit, inventory, forks)
    rotate_secrets_chain(run, stack, service=service, env=env, names=name or None,
                         include_users=include_users, render=render, hosts=targets)
    run.finish()


@task(help={
    "key_file": "encrypt with the key in this file (default: $MMSTACK_SECRETS_KEY or secrets.key_file)",
    "new_key": "create a new key in this file (0600; never overwrites) and encrypt with it",
    "check": "change nothing; report what would be encrypted",
    "json": "print the results as JSON",
})
@boundary
def encrypt_secrets(c: Context, key_file: str | None = None, new_key: str | None = None,
                    check: bool = False, json: bool = False) -> None:
    """Encrypt the secrets store at rest (Fernet); re-encrypts with a new key if given one."""
    from ..schema.load import load_stack
    from ..secrets.encryption import encrypt_secrets_step

    run = Run.start(c, check=check, json=json)
    with run.locked():
        encrypt_secrets_step(run, load_stack(run.stack), key_file=key_file, new_key=new_key)
    run.finish()


@task(help={
    "check": "change nothing; report what would be decrypted",
    "json": "print the results as JSON",
})
@boundary
def decrypt_secrets(c: Context, check: bool = False, json: bool = False) -> None:
    """Store the secrets in the clear again (files stay 0600 in a 0700 directory)."""
    from ..schema.load import load_stack
    from ..secrets.encryption import decrypt_secrets_step

    run = Run.start(c, check=check, json=json)
    with run.locked():
        decrypt_secrets_step(run, load_stack(run.stack))
    run.finish()


ns = Collection("secrets")
ns.add_task(setup_secrets, "setup-secrets")
ns.add_task(rotate_secrets, "rotate-secrets")
ns.add_task(set_secret, "set-secret")
ns.add_task(encrypt_secrets, "encrypt-secrets")
ns.add_task(decrypt_secrets, "decrypt-secrets")
ns.configure(defaults_for("secrets"))
