"""Findings as a human table, JSON, or SARIF 2.1.0 (for code-scanning tools).

Findings carry masked values only, so every format is safe to print, store and upload. `rich`
is imported only when a table goes to a terminal, to keep `inv --list` fast.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from .rules import RULES, SEVERITIES, Finding, at_or_above

FORMATS = ("table", "json", "sarif")
TOOL_NAME = "mmstack-validate-security"
TOOL_VERSION = "0.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
                "info": "note"}
# GitHub code scanning ranks security alerts by this number (CVSS-like, as a string).
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0",
                      "info": "0.0"}


def location(f: Finding) -> str:
    return f"{f.file}:{f.line}" if f.line else f.file


def summary(findings: list[Finding], fail_on: str, files: int | None = None) -> str:
    scanned = f" in {files} file(s)" if files is not None else ""
    if not findings:
        return f"no findings{scanned}"
    counts = Counter(f.severity for f in findings)
    parts = " ".join(f"{s}={counts[s]}" for s in reversed(SEVERITIES) if counts[s])
    failing = len(at_or_above(findings, fail_on))
    return (f"{len(findings)} finding(s){scanned}: {parts}; {failing} at or above "
            f"--fail-on {fail_on}")


# -- table --------------------------------------------------------------------------------------

def plain_table(findings: list[Finding], fail_on: str, files: int | None = None) -> str:
    """Aligned columns, one finding per line and its fix below it (for pipes and files)."""
    lines: list[str] = []
    if findings:
        rows = [(f.severity, f.rule_id, location(f), f.message) for f in findings]
        widths = [max(len(h), *(len(r[i]) for r in rows))
                  for i, h in enumerate(("SEVERITY", "RULE", "LOCATION"))]
        header = ("SEVERITY", "RULE", "LOCATION", "MESSAGE")
        fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:<{widths[2]}}}  {{}}"
        lines.append(fmt.format(*header).rstrip())
        indent = " " * (widths[0] + widths[1] + widths[2] + 6)
        for f, row in zip(findings, rows):
            lines.append(fmt.format(*row))
            lines.append(f"{indent}fix: {f.fix}")
    lines.append(summary(findings, fail_on, files))
    return "\n".join(lines) + "\n"


def print_table(findings: list[Finding], fail_on: str, files: int | None = None,
                stream: TextIO | None = None) -> None:
    """A rich table on a terminal, the plain table otherwise."""
    from ..engine.console import STYLES, colour_enabled, console

    stream = stream or sys.stdout
    if not colour_enabled(stream) or not findings:
        stream.write(plain_table(findings, fail_on, files))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, header_style="bold")
    for col in ("Severity", "Rule", "Location", "Finding", "Fix"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(Text(f.severity, style=STYLES[f.severity]), f.rule_id, location(f),
                      f.message, f.fix)
    out = console(stream, colour=True)
    out.print(table)
    out.print(summary(findings, fail_on, files))


# -- JSON ---------------------------------------------------------------------------------------

def to_json(findings: list[Finding], fail_on: str, stack_dir: Path,
            files: int | None = None) -> str:
    failing = at_or_above(findings, fail_on)
    counts = Counter(f.severity for f in findings)
    doc: dict[str, Any] = {
        "tool": TOOL_NAME,
        "version": TOOL_VERSION,
        "stack_dir": str(stack_dir),
        "fail_on": fail_on,
        "passed": not failing,
        "summary": {"total": len(findings), "failing": len(failing), "files_scanned": files,
                    "by_severity": {s: counts[s] for s in SEVERITIES}},
        "findings": [f.to_dict() for f in findings],
    }
    return json.dumps(doc, indent=2) + "\n"


# -- SARIF 2.1.0 --------------------------------------------------------------------------------

def _artifact(file: str) -> dict[str, str]:
    if file.startswith("/"):
        return {"uri": Path(file).as_uri()}
    return {"uri": file, "uriBaseId": "%SRCROOT%"}


def _fingerprint(f: Finding) -> str:
    # Stable across runs and line moves of unrelated code: rule, file and masked message.
    return hashlib.sha256(f"{f.rule_id}|{f.file}|{f.message}".encode()).hexdigest()[:32]


def to_sarif(findings: list[Finding], stack_dir: Path) -> str:
    rule_ids = list(RULES)
    rules = [{
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.title},
        "help": {"text": f"Fix: {r.fix}", "markdown": f"**Fix:** {r.fix}"},
        "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
        "properties": {"tags": ["security"], "security-severity": _SECURITY_SEVERITY[r.severity],
                       "severity": r.severity},
    } for r in RULES.values()]
    results = []
    for f in findings:
        results.append({
            "ruleId": f.rule_id,
            "ruleIndex": rule_ids.index(f.rule_id),
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": _artifact(f.file),
                # SARIF regions start at line 1; a whole-file finding points at the top.
                "region": {"startLine": f.line or 1},
            }}],
            "partialFingerprints": {"mmstackFinding/v1": _fingerprint(f)},
            "properties": {"severity": f.severity},
        })
    root = Path(stack_dir).resolve().as_uri().rstrip("/") + "/"
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": TOOL_VERSION, "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": root}},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


def render(findings: list[Finding], fmt: str, fail_on: str, stack_dir: Path,
           files: int | None = None) -> str:
    """The report as text (the table in its plain form), for ``--output`` and tests."""
    if fmt == "json":
        return to_json(findings, fail_on, stack_dir, files)
    if fmt == "sarif":
        return to_sarif(findings, stack_dir)
    return plain_table(findings, fail_on, files)
