"""A memo of pure computations, keyed by the exact content of their inputs.

No-op runs are the common case (a second `inv setup`), and most of their time would go into
re-validating an unchanged schema and re-scanning unchanged files. Both are pure functions of
file content plus the code that checks it, so their results can be reused when neither
changed: the key is a SHA-256 over the inputs *and* the source of the modules doing the work,
so upgrading mmstack invalidates everything.

The cache lives in ``.mmstack/cache/`` (git-ignored, 0700), is written atomically and only when
something new was learned, never in check mode, and never holds a secret: only hashes of
inputs and non-secret results (findings carry no values).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from .files import atomic_write
from .layout import CACHE_DIR



def fingerprint(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """A hash of the source files of ``modules`` (the code whose results are cached)."""
    parts: list[bytes] = []
    for module in modules:
        path = getattr(module, "__file__", None)
        if path:
            parts.append(Path(path).read_bytes())
    return fingerprint(*parts)


class ContentCache:
    """A JSON file of ``key -> result`` for one kind of computation."""

    def __init__(self, state_dir: Path | None, name: str, code: str, *, writable: bool = True) -> None:
        self.path = state_dir / CACHE_DIR / f"{name}.json" if state_dir is not None else None
        self.code = code
        self.writable = writable and self.path is not None
        self._entries: dict[str, Any] = {}
        self._used: set[str] = set()
        self._dirty = False
        if self.path is not None:
            try:
                doc = json.loads(self.path.read_text())
                if doc.get("code") == code:
                    self._entries = dict(doc.get("entries") or {})
            except (OSError, ValueError, AttributeError):
                pass  # a missing or damaged cache is simply empty

    def get(self, key: str) -> Any | None:
        if key in self._entries:
            self._used.add(key)
            return self._entries[key]
        return None

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._used.add(key)
        self._dirty = True

    def save(self) -> None:
        """Write only what this run used (so stale entries age out), and only if it changed."""
        if not (self._dirty and self.writable and self.path is not None):
            return
        entries = {k: v for k, v in self._entries.items() if k in self._used}
        data = json.dumps({"code": self.code, "entries": entries}, sort_keys=True).encode()
        atomic_write(self.path, data, 0o600, dir_mode=0o700)
        self._dirty = False
