"""JSON, SARIF and table output: shape, and that no secret value ever appears in any of them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tasks.security.output import plain_table, print_table, render, to_json, to_sarif
from tasks.security.rules import RULES, SEVERITIES
from tasks.security.validate import validate_security
from tests.security.helpers import SECRET_VALUES, hints


@pytest.fixture(scope="module")
def findings(corpus: Path):
    found = validate_security(corpus, [corpus], hints(corpus))
    assert found
    return found


def test_json_shape(corpus: Path, findings) -> None:
    doc = json.loads(to_json(findings, "high", corpus, files=10))
    assert doc["passed"] is False and doc["fail_on"] == "high"
    assert doc["summary"]["total"] == len(findings)
    assert set(doc["summary"]["by_severity"]) == set(SEVERITIES)
    assert sum(doc["summary"]["by_severity"].values()) == len(findings)
    for item in doc["findings"]:
        assert set(item) == {"rule_id", "title", "severity", "file", "line", "message", "fix"}
        assert item["rule_id"] in RULES and item["severity"] in SEVERITIES
        assert item["line"] is None or item["line"] >= 1
        assert item["fix"]
    clean = json.loads(to_json([], "high", corpus))
    assert clean["passed"] is True and clean["findings"] == []


def test_sarif_structure(corpus: Path, findings) -> None:
    doc = json.loads(to_sarif(findings, corpus))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    assert len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] and driver["version"]
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == list(RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
        float(rule["properties"]["security-severity"])
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file://")
    assert len(run["results"]) == len(findings)
    for result, f in zip(run["results"], findings):
        assert result["ruleId"] == f.rule_id
        assert rule_ids[result["ruleIndex"]] == f.rule_id
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        (loc,) = result["locations"]
        physical = loc["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert uri == f.file and not uri.startswith("/")  # relative to the stack directory
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert physical["region"]["startLine"] == (f.line or 1)
        assert result["partialFingerprints"]


def test_sarif_outside_stack_uses_file_uri(tmp_path: Path) -> None:
    stack, outside = tmp_path / "stack", tmp_path / "elsewhere"
    stack.mkdir()
    outside.mkdir()
    (outside / "app.yaml").write_text("image: nginx:latest\n")
    findings = validate_security(stack, [outside])
    (result,) = json.loads(to_sarif(findings, stack))["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        (outside / "app.yaml").resolve().as_uri()


def test_plain_table(findings) -> None:
    text = plain_table(findings, "high", files=3)
    lines = text.splitlines()
    assert lines[0].split() == ["SEVERITY", "RULE", "LOCATION", "MESSAGE"]
    assert sum(1 for line in lines if line.strip().startswith("fix: ")) == len(findings)
    assert lines[-1].startswith(f"{len(findings)} finding(s) in 3 file(s)")
    assert plain_table([], "high", files=3) == "no findings in 3 file(s)\n"


def test_rich_table_on_a_terminal(findings) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    print_table(findings, "high", 3, stream=out)
    text = out.getvalue()
    assert "MMS101" in text and "finding(s)" in text


def test_no_secret_value_in_any_output(corpus: Path, findings) -> None:
    outputs = [render(findings, fmt, "info", corpus, 5) for fmt in ("table", "json", "sarif")]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    print_table(findings, "info", 5, stream=tty)
    outputs.append(tty.getvalue())
    for text in outputs:
        for secret in SECRET_VALUES:
            assert secret not in text, f"secret value leaked into output: {secret[:2]}…"
