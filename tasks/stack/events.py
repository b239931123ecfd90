"""Compose's progress events, one parser for real runs and dry runs, JSON and text alike.

Compose reports what it does to each resource on stderr: from 2.29 as JSON lines with
``--progress json`` (``{"id": "Container p-a-1", "status": "Started"}``, ``{"error": true,
"message": ...}``), and in every v2 release as plain text (`` DRY-RUN MODE -  Container p-a-1
Started``, ``Error response from daemon: ...``). Both become the same `Event`s, and errors
become `ComposeProblem`s, so a caller never reads Compose's human output with its own regex.

Pure: text in, events out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The first Compose release with `--progress json` (docker/compose#11478, in 2.29.0).
JSON_PROGRESS_SINCE = (2, 29)

RESOURCE_KINDS = {"container": "container", "network": "network", "volume": "volume",
                  "image": "image", "service": "service"}
_DRY_RUN_PREFIX = re.compile(r"^\s*DRY-RUN MODE -\s*")
_RESOURCE_LINE = re.compile(r"^\s*(Container|Network|Volume|Image|Service)\s+(\S+)\s+(\S.*?)\s*$")
# A pull of one service's image (`b Pulling`, `b Error`, `b Warning`), without a resource word.
_SERVICE_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s+(Pulling|Pulled|Error|Warning|Skipped|"
                           r"Interrupted)\b\s*(.*?)\s*$")
_ERROR_LINE = re.compile(r"^\s*(Error\b|error\b|Error response from daemon:|failed to |no such |"
                         r"service \S+ (?:is|has|depends)|dependency failed|invalid |yaml: |"
                         r"validating |unable to |cannot |Failed )")
# A container that Compose renames away before recreating it: `623ccb38705e_p-redis-1`.
_RENAMED = re.compile(r"^[0-9a-f]{12}_")
_FAILED_STATUSES = {"Error", "Failed"}


@dataclass(frozen=True)
class Event:
    kind: str  # container, network, volume, image, service
    name: str  # the resource's name (a container's without the rename prefix)
    status: str  # Creating, Created, Recreate, Started, Running, Removing, Error, ...
    text: str | None = None


@dataclass(frozen=True)
class ComposeProblem:
    """Something Compose reported as failed: for a resource (``subject``) or the run as a whole."""

    message: str
    subject: str | None = None


@dataclass(frozen=True)
class Progress:
    events: tuple[Event, ...]
    problems: tuple[ComposeProblem, ...]

    def actions_by_name(self) -> dict[str, set[str]]:
        """Container name -> the statuses Compose reported for it."""
        out: dict[str, set[str]] = {}
        for e in self.events:
            if e.kind == "container":
                out.setdefault(e.name, set()).add(e.status)
        return out


def supports_json_progress(version: str | None) -> bool:
    """Whether a Compose version (``2.40.3``, ``v2.29.0-desktop.1``) has ``--progress json``."""
    m = re.match(r"v?(\d+)\.(\d+)", (version or "").strip())
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= JSON_PROGRESS_SINCE


def parse_progress(text: str) -> Progress:
    """Every event and problem in Compose's stderr (JSON lines and text lines may mix)."""
    events: list[Event] = []
    problems: list[ComposeProblem] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            if isinstance(data, dict):
                _json_line(data, events, problems)
                continue
        _text_line(line, events, problems)
    return Progress(tuple(events), tuple(problems))


def _json_line(data: dict[str, Any], events: list[Event], problems: list[ComposeProblem]) -> None:
    if data.get("error") is True:
        problems.append(ComposeProblem(str(data.get("message") or "Compose failed")))
        return
    ident = str(data.get("id") or "")
    status = str(data.get("status") or "")
    text = data.get("text")
    word, _, name = ident.partition(" ")
    kind = RESOURCE_KINDS.get(word.lower())
    if kind is None:
        # `{"id": "b", "text": "Error", "status": "<why>"}`: a service's image pull.
        kind, name = "service", ident
        if status and text and str(text) in _FAILED_STATUSES | {"Pulling", "Pulled", "Warning", "Skipped"}:
            status, text = str(text), status
    name = _RENAMED.sub("", name.strip('"'))
    event = Event(kind, name, status or str(text or ""), str(text) if text not in (None, "") else None)
    events.append(event)
    if event.status in _FAILED_STATUSES:
        problems.append(ComposeProblem(event.text or f"{event.status}", subject=f"{kind} {name}"))


def _text_line(line: str, events: list[Event], problems: list[ComposeProblem]) -> None:
    line = _DRY_RUN_PREFIX.sub("", line)
    m = _RESOURCE_LINE.match(line)
    if m:
        kind = RESOURCE_KINDS[m.group(1).lower()]
        name = _RENAMED.sub("", m.group(2).strip('"'))
        status, _, rest = m.group(3).partition(" ")
        event = Event(kind, name, status, rest.strip() or None)
        events.append(event)
        if status in _FAILED_STATUSES:
            problems.append(ComposeProblem(event.text or status, subject=f"{kind} {name}"))
        return
    m = _SERVICE_LINE.match(line)
    if m:
        event = Event("service", m.group(1), m.group(2), m.group(3) or None)
        events.append(event)
        if event.status in _FAILED_STATUSES:
            problems.append(ComposeProblem(event.text or event.status, subject=f"service {event.name}"))
        return
    if _ERROR_LINE.match(line):
        problems.append(ComposeProblem(line))


def service_of(container: str, project: str, names: dict[str, str]) -> str:
    """The service a container name belongs to: a known container's, else Compose's
    ``<project>-<service>-<n>`` naming, else the name itself."""
    if container in names:
        return names[container]
    m = re.fullmatch(re.escape(project) + r"[-_](.+)[-_]\d+", container)
    return m.group(1) if m else container


def problem_lines(problems: Iterable[ComposeProblem], limit: int = 6,
                  images: dict[str, str] | None = None) -> list[str]:
    """Distinct problems, each on one line, for a failed item's message; a service's problem
    names its image (Compose's pull errors name only the registry)."""
    out: list[str] = []
    for p in problems:
        subject = p.subject
        if subject and subject.startswith("service ") and images and subject[8:] in images:
            subject = f"{subject} (image {images[subject[8:]]})"
        text = f"{subject}: {p.message}" if subject else p.message
        if text not in out:
            out.append(text)
    return out[:limit]
