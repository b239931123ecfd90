"""What the last `inv start-*` used, so stop/status/logs/restart address exactly that set.

Stored as ``<stack>/.mmstack/last-start.json``; written atomically and only when it changes, so
a repeated start leaves the file (and its mtime) alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError
from ..engine.files import atomic_write
from ..engine.layout import START_RECORD_FILE

RECORD_FILE = START_RECORD_FILE


@dataclass(frozen=True)
class StartRecord:
    env: str
    files: tuple[str, ...]
    profiles: tuple[str, ...]
    project: str
    compose: tuple[str, ...] = field(default=())  # the Compose argv that was found to work

    def compose_args(self) -> list[str]:
        from ..schema.filesets import FileSet

        return FileSet(tuple(self.files), tuple(self.profiles)).args()

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in data.items()},
                          indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StartRecord":
        return cls(env=str(data["env"]), files=tuple(data["files"]), profiles=tuple(data["profiles"]),
                   project=str(data["project"]), compose=tuple(data.get("compose") or ()))


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_FILE


def load_record(state_dir: Path) -> StartRecord | None:
    path = record_path(state_dir)
    try:
        return StartRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the last-start record is unreadable ({exc})", file=str(path),
                          fix="delete it and start the stack again with `inv start-<env>`") from None


def save_record(state_dir: Path, record: StartRecord) -> bool:
    """Write the record if it differs from what is on disk; True when it was written."""
    path = record_path(state_dir)
    text = record.to_json()
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, OSError):
        pass
    atomic_write(path, text.encode(), 0o600, dir_mode=0o700)
    return True


def require_record(state_dir: Path) -> StartRecord:
    record = load_record(state_dir)
    if record is None:
        raise ConfigError("the stack has not been started from this directory yet",
                          fix="start it first: `inv start-dev` (or start-staging, start-prod, ...)")
    return record
