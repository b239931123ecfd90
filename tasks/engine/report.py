"""Ansible-style result reporting: one line per item, a recap line at the end.

Each task reports every item it looked at as ``ok`` (already as desired), ``changed`` (it was,
or under ``--check`` would be, changed), ``failed``, ``skipped`` (with the reason) or
``unreachable`` (remote hosts). Colour follows engine/console.py (a terminal, no NO_COLOR, no
TERM=dumb); output is plain text otherwise; with
``json_mode`` nothing but one JSON document is written to stdout at the end, so pipelines can
parse it.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TextIO

from .console import colour_enabled, paint


class Status(str, Enum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"


@dataclass
class Result:
    """What happened to one item (a file, a secret, a service, a host)."""

    item: str
    status: Status
    message: str = ""
    diff: str | None = None
    data: dict[str, Any] | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict: a deploy's JSON holds every result of
        # every host twice, and asdict's recursive deep copy was most of the cost.
        out = {"item": self.item, "status": self.status.value, "message": self.message,
               "diff": self.diff, "data": copy.deepcopy(self.data), "host": self.host}
        return {k: v for k, v in out.items() if v not in (None, "")}


@dataclass
class Reporter:
    """Collects results and prints them as they come.

    Diffs are printed only when ``show_diff`` is set; callers are responsible for masking
    secret values *before* a diff reaches the reporter (see `engine.files.unified_diff`).
    """

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    json_mode: bool = False
    show_diff: bool = False
    check: bool = False
    verbose: bool = False
    results: list[Result] = field(default_factory=list)
    colour: bool | None = None

    def __post_init__(self) -> None:
        if self.colour is None:
            self.colour = colour_enabled(self.out) and not self.json_mode

    # -- output helpers -------------------------------------------------------------------
    def _paint(self, text: str, status: Status) -> str:
        return paint(text, status.value, bool(self.colour))

    def _write(self, text: str) -> None:
        # In JSON mode stdout carries only the final document; human lines go to stderr
        # so that `--json` output stays parseable while progress is still visible.
        stream = self.err if self.json_mode else self.out
        stream.write(text + "\n")
        stream.flush()

    def task(self, name: str) -> None:
        """Print a task banner, like Ansible's ``TASK [name]``."""
        if not self.json_mode:
            self._write(f"TASK [{name}]{' (check mode)' if self.check else ''}")

    def info(self, text: str) -> None:
        """A human note that is not an item result (hidden in JSON mode unless verbose)."""
        if not self.json_mode or self.verbose:
            self._write(text)

    def warn(self, text: str) -> None:
        self.err.write(f"warning: {text}\n")
        self.err.flush()

    # -- results ----------------------------------------------------------------------------
    def add(self, result: Result) -> Result:
        self.results.append(result)
        label = result.status.value
        if self.check and result.status is Status.CHANGED:
            label = "changed (check)"
        where = f"{result.host}: " if result.host else ""
        line = f"{self._paint(label, result.status)}: [{where}{result.item}]"
        if result.message:
            line += f" {result.message}"
        if not self.json_mode:
            self._write(line)
            if self.show_diff and result.diff:
                self._write(result.diff.rstrip("\n"))
        return result

    def ok(self, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, Status.OK, message, **kw))

    def changed(self, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, Status.CHANGED, message, **kw))

    def failed(self, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, Status.FAILED, message, **kw))

    def skipped(self, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, Status.SKIPPED, message, **kw))

    def unreachable(self, item: str, message: str = "", **kw: Any) -> Result:
        return self.add(Result(item, Status.UNREACHABLE, message, **kw))

    # -- recap ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return count_statuses(self.results)

    @property
    def failed_any(self) -> bool:
        return any(r.status in (Status.FAILED, Status.UNREACHABLE) for r in self.results)

    def recap_line(self) -> str:
        c = self.counts()
        parts = [f"ok={c['ok']}", f"changed={c['changed']}", f"failed={c['failed']}",
                 f"skipped={c['skipped']}"]
        if c["unreachable"]:
            parts.append(f"unreachable={c['unreachable']}")
        prefix = "RECAP (check mode, nothing changed)" if self.check else "RECAP"
        return f"{prefix} " + " ".join(parts)

    def recap(self, extra: dict[str, Any] | None = None) -> None:
        """Print the recap line, or in JSON mode the whole run as one JSON document."""
        if self.json_mode:
            doc: dict[str, Any] = {
                "check": self.check,
                "recap": self.counts(),
                "results": [r.to_dict() for r in self.results],
            }
            if extra:
                doc.update(extra)
            self.out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            self.out.flush()
        else:
            self._write(self.recap_line())


def count_statuses(results: list[Result]) -> dict[str, int]:
    """How many results have each status (every status present, zeros included)."""
    counts = {s.value: 0 for s in Status}
    for r in results:
        counts[r.status.value] += 1
    return counts

