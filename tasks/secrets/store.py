"""The secrets store: one file per environment under ``<stack>/.mmstack/secrets/``.

Layout::

    .mmstack/                 0700 (git-ignored by the repository's .gitignore)
      secrets/                0700
        .encrypted            0600  marker: this store is encrypted, never write it in the clear
        production.yaml       0600  plain store: a YAML mapping of name -> value
        production.enc        0600  encrypted store: the same YAML, as one Fernet token

Decisions worth knowing:

* **Encrypted means encrypted forever** (until `inv decrypt-secrets`): once the marker or any
  ``.enc`` file exists, every save writes ``.enc``, and a save without a usable key is an error,
  never a fallback to plain text. A fresh store (no files yet) is created encrypted when a key
  is already configured, so the values are never on disk in the clear, not even once.
* **Loose modes are repaired, not refused**: a group/other-readable store file has already been
  exposed, and refusing to read it would only block the fix. `ensure_modes` tightens the
  directory to 0700 and files to 0600 and returns what it changed, for the caller to report as
  ``changed`` (and `validate-security` flags the exposure).
* **Plain files are scrubbed on encryption**: the plain file is overwritten with zeros and fsync'ed
  before it is unlinked. On copy-on-write or journaling filesystems that is best effort; treat
  a store that was ever plain as exposed to whoever could read the disk, and rotate.
* Nothing here ever puts a value in an exception: YAML errors report the line and the kind of
  problem only, because PyYAML's own message quotes the offending line.

The ``cryptography`` package is imported only when a key is actually used, so listing tasks
stays fast.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import SecretsError
from ..engine.files import atomic_write
from ..engine.layout import SECRETS_DIR
from ..engine.settings import default

MARKER = ".encrypted"
PLAIN_SUFFIX = ".yaml"
ENC_SUFFIX = ".enc"
DIR_MODE = 0o700
FILE_MODE = 0o600
FORMAT_VERSION = 1
DEFAULT_KEY_ENV = default("secrets.key_env")
NEW_KEY_HINT = "`inv encrypt-secrets --new-key ~/.config/mmstack/secrets.key`"


# ----------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyProvider:
    """Where the encryption key comes from: an environment variable first, then a key file.

    Nothing is read until a key is needed, and a key is never echoed: errors name the variable
    or the file it came from.
    """

    env_var: str = DEFAULT_KEY_ENV
    key_file: Path | None = None
    environ: Any = None  # a mapping; os.environ unless a test passes its own

    def _env(self) -> Any:
        return os.environ if self.environ is None else self.environ

    @property
    def source(self) -> str | None:
        """Human name of the key's source (``$VAR`` or the file), or None when none is set."""
        if self.env_var and self._env().get(self.env_var):
            return f"${self.env_var}"
        if self.key_file is not None and self.key_file.exists():
            return str(self.key_file)
        return None

    def available(self) -> bool:
        return self.source is not None

    def key(self) -> bytes:
        """The raw Fernet key (urlsafe base64 of 32 bytes); a clear error when there is none."""
        raw: str | None = None
        if self.env_var and self._env().get(self.env_var):
            raw = self._env()[self.env_var]
            where = f"${self.env_var}"
        elif self.key_file is not None and self.key_file.exists():
            where = str(self.key_file)
            try:
                raw = self.key_file.read_text(encoding="ascii", errors="strict")
            except (OSError, UnicodeDecodeError):
                raise SecretsError("cannot read the secrets key file", file=where,
                                   fix="make it readable by this user (mode 0600)") from None
        else:
            configured = f" or the key file {self.key_file}" if self.key_file else ""
            raise SecretsError(
                f"the secrets store is encrypted and no key was found in ${self.env_var}{configured}",
                fix=f"set secrets.key_file in mmstack.yaml to your key file, or export "
                    f"{self.env_var} from a file (never type the key on a command line)",
            )
        key = raw.strip().encode("ascii", "replace")
        if not _valid_fernet_key(key):
            raise SecretsError(f"the key in {where} is not a valid Fernet key",
                               fix=f"use the file written by {NEW_KEY_HINT}")
        return key


def _valid_fernet_key(key: bytes) -> bool:
    import base64
    import binascii

    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except (binascii.Error, ValueError):
        return False


def new_key() -> bytes:
    from cryptography.fernet import Fernet

    return Fernet.generate_key()


def write_new_key_file(path: Path) -> None:
    """Create a fresh key file (0600, parent 0700); never overwrite an existing key."""
    path = Path(path)
    if path.exists():
        raise SecretsError("refusing to overwrite an existing key file", file=str(path),
                           fix="pass it with --key-file to use it, or choose another path for --new-key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.write(fd, new_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------

@dataclass
class SecretStore:
    """Per-environment secret files, plain or Fernet-encrypted (see the module docstring)."""

    dir: Path
    keys: KeyProvider
    encrypted: bool

    @classmethod
    def open(cls, state_dir: Path, key_provider: KeyProvider | None = None) -> "SecretStore":
        """Look at what is on disk (nothing is created or read yet) and decide the mode."""
        keys = key_provider or KeyProvider()
        directory = Path(state_dir) / SECRETS_DIR
        has_enc = directory.is_dir() and any(directory.glob(f"*{ENC_SUFFIX}"))
        has_plain = directory.is_dir() and any(directory.glob(f"*{PLAIN_SUFFIX}"))
        marker = (directory / MARKER).exists()
        encrypted = marker or has_enc or (not has_plain and keys.available())
        return cls(directory, keys, encrypted)

    # -- paths ----------------------------------------------------------------------------------
    def plain_path(self, env: str) -> Path:
        return self.dir / f"{env}{PLAIN_SUFFIX}"

    def enc_path(self, env: str) -> Path:
        return self.dir / f"{env}{ENC_SUFFIX}"

    def path(self, env: str) -> Path:
        return self.enc_path(env) if self.encrypted else self.plain_path(env)

    def label(self, env: str) -> str:
        """Path shown to users (relative to the stack directory)."""
        p = self.path(env)
        return f"{self.dir.parent.name}/{SECRETS_DIR}/{p.name}"

    def exists(self, env: str) -> bool:
        return self.enc_path(env).exists() or self.plain_path(env).exists()

    def environments(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        names = {p.name[: -len(s)] for s in (PLAIN_SUFFIX, ENC_SUFFIX) for p in self.dir.glob(f"*{s}")
                 if not p.name.startswith(".")}
        return sorted(names)

    # -- reading --------------------------------------------------------------------------------
    def load(self, env: str, *, allow_plain: bool = False) -> dict[str, str]:
        """The stored values of ``env`` (decrypted in memory only); {} when there is no file.

        ``allow_plain`` lets `convert` pick up a plain file left by an interrupted conversion.
        """
        enc, plain = self.enc_path(env), self.plain_path(env)
        if enc.exists():
            return _parse(self._decrypt(enc), enc)
        if plain.exists():
            if self.encrypted and not allow_plain:
                raise SecretsError(
                    "the store is encrypted but this environment's secrets are in the clear",
                    file=str(plain), fix="run `inv encrypt-secrets` to encrypt (and scrub) it")
            return _parse(_read(plain), plain)
        return {}

    def _fernet(self) -> Any:
        from cryptography.fernet import Fernet

        return Fernet(self.keys.key())

    def _decrypt(self, path: Path) -> bytes:
        from cryptography.fernet import InvalidToken

        fernet = self._fernet()
        try:
            return fernet.decrypt(_read(path).strip())
        except InvalidToken:
            raise SecretsError(
                f"cannot decrypt the secrets with the key from {self.keys.source}: wrong key, "
                "or the file was altered",
                file=str(path),
                fix="use the key this store was encrypted with (secrets.key_file in mmstack.yaml "
                    f"or ${self.keys.env_var}); restore the file from a backup if it was altered",
            ) from None

    # -- writing --------------------------------------------------------------------------------
    def save(self, env: str, values: dict[str, str]) -> None:
        """Write ``env``'s values atomically (0600 in a 0700 directory), encrypted if the store is."""
        body = _dump(env, values)
        # The state directory is private too (mkdir(parents=True) would leave it at the umask).
        self.dir.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if self.encrypted:
            # Encrypt before anything touches the disk: a missing key fails here, with nothing written.
            token = self._fernet().encrypt(body)
            atomic_write(self.enc_path(env), token + b"\n", FILE_MODE, dir_mode=DIR_MODE)
            self._mark_encrypted()
            scrub(self.plain_path(env))
        else:
            atomic_write(self.plain_path(env), body, FILE_MODE, dir_mode=DIR_MODE)

    def _mark_encrypted(self) -> None:
        marker = self.dir / MARKER
        if not marker.exists():
            atomic_write(marker, b"fernet\n", FILE_MODE, dir_mode=DIR_MODE)

    # -- modes ----------------------------------------------------------------------------------
    def loose_modes(self) -> list[tuple[Path, int, int]]:
        """(path, current mode, wanted mode) for the directory and every file that is too open."""
        out: list[tuple[Path, int, int]] = []
        if not self.dir.is_dir():
            return out
        mode = stat.S_IMODE(self.dir.stat().st_mode)
        if mode != DIR_MODE:
            out.append((self.dir, mode, DIR_MODE))
        for path in sorted(self.dir.iterdir()):
            if path.is_file():
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    out.append((path, mode, FILE_MODE))
        return out

    def ensure_modes(self, apply: bool = True) -> list[tuple[Path, int, int]]:
        """Tighten loose modes (unless ``apply`` is false); returns what was (or would be) fixed."""
        found = self.loose_modes()
        if apply:
            for path, _, wanted in found:
                os.chmod(path, wanted)
        return found


# ----------------------------------------------------------------------------------------------
# File format
# ----------------------------------------------------------------------------------------------

def _dump(env: str, values: dict[str, str]) -> bytes:
    import yaml

    head = (f"# mmstack secrets for environment {env!r}. Private: keep 0600, never commit.\n"
            "# Edit a value only with what `inv setup-secrets` accepts; delete a line to regenerate it.\n")
    doc = {"version": FORMAT_VERSION, "environment": env,
           "secrets": {k: str(values[k]) for k in sorted(values)}}
    return head.encode() + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()


def _parse(data: bytes, path: Path) -> dict[str, str]:
    import yaml

    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretsError("the secrets file is not UTF-8 text", file=str(path),
                           fix="restore it from a backup, or delete it and run `inv setup-secrets`") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SecretsError(f"the secrets file is not valid YAML ({problem})", file=str(path),
                           line=(mark.line + 1) if mark else None,
                           fix="fix that line (values need no quotes: they are letters, digits and -_.~)") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("secrets", {}), dict):
        raise SecretsError("the secrets file must be a mapping with a 'secrets:' mapping", file=str(path),
                           fix="restore it from a backup, or delete it and run `inv setup-secrets`")
    raw = doc.get("secrets") or {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise SecretsError("the stored value is not a string", file=str(path), key_path=f"secrets.{key}",
                               fix="quote the value, or delete the line so `inv setup-secrets` generates one")
        out[str(key)] = value
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise SecretsError("permission denied reading the secrets file", file=str(path),
                           fix="run as the user that owns the stack directory") from None


def scrub(path: Path) -> bool:
    """Overwrite ``path`` with zeros, fsync, then unlink it; False when it was not there."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    return True
