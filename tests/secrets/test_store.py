"""The store: private modes, atomic plain files, Fernet at rest, clear errors without values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tasks.engine.errors import SecretsError
from tasks.secrets.store import KeyProvider, SecretStore, scrub, write_new_key_file
from tests.secrets.helpers import tree_bytes

VALUES = {"postgres_password": "Pw0rdPw0rdPw0rdPw0rdPw0rdPw0rd12", "litellm_master_key": "sk-AbCdEf0123456789"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keys(key: bytes | None = None, key_file: Path | None = None) -> KeyProvider:
    env = {"K": key.decode()} if key else {}
    return KeyProvider(env_var="K", key_file=key_file, environ=env)


def test_plain_store_round_trip_and_modes(tmp_path: Path) -> None:
    store = SecretStore.open(tmp_path / ".mmstack", keys())
    assert not store.encrypted and not store.exists("prod")
    assert store.load("prod") == {}
    store.save("prod", VALUES)
    assert store.load("prod") == VALUES
    assert mode(tmp_path / ".mmstack") == 0o700
    assert mode(store.dir) == 0o700
    assert mode(store.plain_path("prod")) == 0o600
    assert store.environments() == ["prod"]
    assert [p.name for p in store.dir.iterdir()] == ["prod.yaml"]  # no temp files left behind


def test_encrypted_round_trip_and_nothing_in_the_clear(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    store = SecretStore.open(tmp_path, keys(key))
    assert store.encrypted  # a fresh store with a key is encrypted from the first write
    store.save("prod", VALUES)
    assert not store.plain_path("prod").exists()
    assert mode(store.enc_path("prod")) == 0o600
    on_disk = tree_bytes(tmp_path)
    for value in VALUES.values():
        assert value.encode() not in on_disk
    again = SecretStore.open(tmp_path, keys(key))
    assert again.encrypted and again.load("prod") == VALUES


def test_wrong_key_is_a_clear_error_without_values(tmp_path: Path) -> None:
    SecretStore.open(tmp_path, keys(Fernet.generate_key())).save("prod", VALUES)
    store = SecretStore.open(tmp_path, keys(Fernet.generate_key()))
    with pytest.raises(SecretsError) as info:
        store.load("prod")
    text = str(info.value)
    assert "cannot decrypt" in text and "$K" in text and info.value.fix
    assert info.value.__cause__ is None and info.value.__suppress_context__
    for value in VALUES.values():
        assert value not in text


def test_missing_or_malformed_key(tmp_path: Path) -> None:
    SecretStore.open(tmp_path, keys(Fernet.generate_key())).save("prod", VALUES)
    with pytest.raises(SecretsError, match="no key was found"):
        SecretStore.open(tmp_path, keys()).load("prod")
    bad = KeyProvider(env_var="K", environ={"K": "not-a-key"})
    with pytest.raises(SecretsError, match="not a valid Fernet key") as info:
        SecretStore.open(tmp_path, bad).load("prod")
    assert "not-a-key" not in str(info.value)


def test_encrypted_store_never_falls_back_to_plain(tmp_path: Path) -> None:
    SecretStore.open(tmp_path, keys(Fernet.generate_key())).save("prod", VALUES)
    store = SecretStore.open(tmp_path, keys())  # the key is gone
    assert store.encrypted
    with pytest.raises(SecretsError):
        store.save("staging", VALUES)
    assert not store.plain_path("staging").exists() and not store.enc_path("staging").exists()


def test_a_new_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    # Converting the store (encrypt, re-key, decrypt) is tested through its steps in
    # test_steps.py, which is what `inv encrypt-secrets` / `decrypt-secrets` run.
    key_file = tmp_path / "keys" / "secrets.key"
    write_new_key_file(key_file)
    assert mode(key_file) == 0o600
    with pytest.raises(SecretsError, match="refusing to overwrite"):
        write_new_key_file(key_file)


def test_yaml_errors_report_the_line_but_not_its_content(tmp_path: Path) -> None:
    store = SecretStore.open(tmp_path, keys())
    store.save("prod", VALUES)
    path = store.plain_path("prod")
    path.write_text(path.read_text().replace("postgres_password:", "postgres_password: : [", 1))
    with pytest.raises(SecretsError) as info:
        store.load("prod")
    assert info.value.line and VALUES["postgres_password"] not in str(info.value)


def test_non_string_values_are_refused_by_name(tmp_path: Path) -> None:
    store = SecretStore.open(tmp_path, keys())
    store.save("prod", VALUES)
    path = store.plain_path("prod")
    path.write_text(path.read_text().replace(VALUES["postgres_password"], "123456789"))
    with pytest.raises(SecretsError) as info:
        store.load("prod")
    assert info.value.key_path == "secrets.postgres_password" and "123456789" not in str(info.value)


def test_loose_modes_are_reported_and_fixed(tmp_path: Path) -> None:
    store = SecretStore.open(tmp_path, keys())
    store.save("prod", VALUES)
    os.chmod(store.plain_path("prod"), 0o644)
    os.chmod(store.dir, 0o755)
    found = store.ensure_modes(apply=False)
    assert {(p.name, old) for p, old, _ in found} == {("secrets", 0o755), ("prod.yaml", 0o644)}
    assert mode(store.plain_path("prod")) == 0o644  # check mode touches nothing
    store.ensure_modes()
    assert mode(store.plain_path("prod")) == 0o600 and mode(store.dir) == 0o700
    assert store.ensure_modes() == []


def test_scrub(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"secret")
    assert scrub(path) and not path.exists()
    assert not scrub(path)


def test_the_store_is_git_ignored() -> None:
    import subprocess

    from tests.secrets.helpers import REPO

    paths = [".mmstack/secrets/production.yaml", ".mmstack/secrets/production.enc",
             ".mmstack/secrets/.encrypted"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == paths, "the secrets store must be ignored by git (.gitignore: .mmstack/)"
