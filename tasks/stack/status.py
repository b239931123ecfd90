"""Pure: Compose's `ps` entries -> one status row per service of the started environment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HTTP_TEMPLATES = {"http", "http-wget", "http-python"}
BAD_STATES = {"exited", "dead", "restarting", "removing", "paused", "created", "missing"}
from ..schema.generate import ONE_SHOT_LABEL


def labels_of(entry: dict[str, Any]) -> dict[str, str]:
    """An entry's labels: `compose ps` gives "k=v,k=v", the engine API a mapping."""
    raw = entry.get("Labels") or {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    out = {}
    for part in str(raw).split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def completed(entry: dict[str, Any]) -> bool:
    """A one-shot container that ran to success (exit code 0)."""
    return (str(entry.get("State", "")).lower() == "exited"
            and labels_of(entry).get(ONE_SHOT_LABEL) == "true"
            and _exit_code(entry) == 0)


def _exit_code(entry: dict[str, Any]) -> int | None:
    if entry.get("ExitCode") is not None:
        return int(entry["ExitCode"])
    status = str(entry.get("Status") or "")
    if status.lower().startswith("exited ("):
        try:
            return int(status.split("(", 1)[1].split(")", 1)[0])
        except ValueError:
            return None
    return None


@dataclass
class Row:
    service: str
    state: str
    health: str
    url: str
    container: str = ""
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    one_shot: bool = False

    @property
    def completed(self) -> bool:
        """A one-shot that ran to success: exit code 0 is its healthy state."""
        return self.one_shot and self.state == "exited" and self.exit_code == 0

    @property
    def failed(self) -> bool:
        if self.completed:
            return False
        return self.health == "unhealthy" or self.state in BAD_STATES

    @property
    def summary(self) -> str:
        if self.completed:
            return "completed (one-shot, exit code 0)"
        text = self.state + (f" ({self.health})" if self.health else "")
        if self.state == "exited" and self.exit_code is not None:
            text += f", exit code {self.exit_code}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed"] = self.failed
        return out


def url_of(publishers: list[dict[str, Any]] | None, scheme: str) -> str:
    urls = []
    seen = set()
    for p in publishers or []:
        port = p.get("PublishedPort") or 0
        if not port:
            continue
        host = p.get("URL") or "127.0.0.1"
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        if ":" in host:
            host = f"[{host}]"
        proto = scheme if p.get("Protocol", "tcp") == "tcp" else p.get("Protocol")
        url = f"{proto}://{host}:{port}"
        if url not in seen:
            seen.add(url)
            urls.append(url)
    return " ".join(urls)


def schemes(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """http for services with an HTTP healthcheck, tcp for the rest (databases, caches)."""
    out = {}
    for name, spec in specs.items():
        test = " ".join(((spec.get("healthcheck") or {}).get("test")) or [])
        out[name] = "http" if "http://" in test else "tcp"
    return out


def build_rows(ps: list[dict[str, Any]], expected: list[str], scheme_of: dict[str, str]) -> list[Row]:
    """One row per expected service (``missing`` when it has no container), then any extra
    containers of the project (orphans), in that order."""
    by_service: dict[str, dict[str, Any]] = {}
    for entry in ps:
        by_service.setdefault(entry.get("Service", ""), entry)
    rows = []
    for svc in list(expected) + sorted(s for s in by_service if s not in expected):
        entry = by_service.get(svc)
        if entry is None:
            rows.append(Row(svc, "missing", "", ""))
            continue
        state = str(entry.get("State", "")).lower()
        rows.append(Row(
            service=svc,
            state=state,
            health=str(entry.get("Health", "") or ""),
            url=url_of(entry.get("Publishers"), scheme_of.get(svc, "tcp")) if state == "running" else "",
            container=str(entry.get("Name", "")),
            exit_code=_exit_code(entry) if state == "exited" else None,
            one_shot=labels_of(entry).get(ONE_SHOT_LABEL) == "true",
        ))
    return rows


def table(rows: list[Row]) -> str:
    headers = ("SERVICE", "STATE", "HEALTH", "URL")
    data = [(r.service, r.state, r.health or "-", r.url or "-") for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for d in data:
        lines.append("  ".join(v.ljust(w) for v, w in zip(d, widths)).rstrip())
    return "\n".join(lines)
