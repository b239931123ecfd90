"""`encrypt-secrets` / `decrypt-secrets`: the store encrypted with a key, or back in the clear.

Idempotent and per environment: one result each, ``ok`` when already as asked.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.errors import ConfigError, SecretsError
from ..engine.run import Run
from ..schema.model import Stack
from .api import converge_modes, key_provider, open_store
from .store import NEW_KEY_HINT, KeyProvider, SecretStore, write_new_key_file


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
    converge_modes(run, store)
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
    converge_modes(run, store)
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
