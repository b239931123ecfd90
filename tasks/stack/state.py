"""What the last `inv start-*` used, so stop/status/logs/restart address exactly that set.

Stored as ``<stack>/.mmstack/last-start.json`` on the site that was started (this machine or a
host), read with `read_record` and written through `Site.put` (`record_desired`): atomically and
only when it changes, so a repeated start leaves the file (and its mtime) alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError
from ..engine.files import DesiredFile
from ..engine.layout import START_RECORD_FILE, STATE_DIR

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


def parse_record(text: str, where: str) -> StartRecord:
    """Pure: the record's JSON; unreadable -> a ConfigError naming ``where`` and the fix."""
    try:
        return StartRecord.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the last-start record is unreadable ({exc})", file=where,
                          fix="delete it and start the stack again with `inv start-<env>`") from None


def site_record_path(site: Any) -> str:
    return site.path(STATE_DIR, RECORD_FILE)


def read_record(site: Any) -> StartRecord | None:
    """The start record at ``site`` (a `stack.site.Site`); None when nothing was started there."""
    path = site_record_path(site)
    text = site.read(path)
    return None if text is None else parse_record(text, path if not site.remote else f"{site.name}:{path}")


def require_record(site: Any) -> StartRecord:
    record = read_record(site)
    if record is None:
        if site.remote:
            raise ConfigError(f"{site.name}: the stack has not been started on this host "
                              f"(no {site_record_path(site)})",
                              fix=f"deploy it first: inv deploy --hosts {site.name}")
        raise ConfigError("the stack has not been started from this directory yet",
                          fix="start it first: `inv start-dev` (or start-staging, start-prod, ...)")
    return record


def record_desired(site: Any, record: StartRecord) -> DesiredFile:
    """The record as a file for `Site.put`: 0600 in a 0700 ``.mmstack``, here and on hosts."""
    return DesiredFile(Path(site_record_path(site)), record.to_json().encode(), 0o600,
                       label=f"{STATE_DIR}/{RECORD_FILE}", dir_mode=0o700)
