"""The fixture corpus: every planted file gives exactly its expected rule ids and lines, every
clean twin gives nothing, and together they cover every rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.security.rules import RULES
from tasks.security.validate import validate_security
from tests.security.helpers import CORPUS, EXPECTED, hints

ENTRIES = EXPECTED["files"]


def _expected(rel: str) -> list[tuple]:
    rows = ENTRIES[rel]["findings"]
    if (CORPUS / rel).is_dir():
        return sorted((r[0], r[1], r[2]) for r in rows)
    return sorted((r[0], rel, r[1]) for r in rows)


def _actual(findings) -> list[tuple]:
    return sorted((f.rule_id, f.file, f.line) for f in findings)


@pytest.mark.parametrize("rel", sorted(ENTRIES))
def test_entry_gives_exactly_its_findings(corpus: Path, rel: str) -> None:
    findings = validate_security(corpus, [corpus / rel], hints(corpus), include_defaults=False)
    assert _actual(findings) == _expected(rel)


def test_whole_corpus_is_the_sum_of_its_entries(corpus: Path) -> None:
    # Scanning everything at once (defaults included) finds nothing more, nothing less: the
    # rules do not depend on which other files are in the scan, except the merged compose view.
    findings = validate_security(corpus, [corpus], hints(corpus))
    expected = sorted(row for rel in ENTRIES for row in _expected(rel))
    assert _actual(findings) == expected


def test_corpus_shape() -> None:
    planted = {rel: spec for rel, spec in ENTRIES.items() if spec["findings"]}
    clean = [rel for rel, spec in ENTRIES.items() if not spec["findings"]]
    assert len(planted) >= 30
    assert len(clean) >= 30
    # One planted problem per file: one finding, of one rule.
    for rel, spec in planted.items():
        assert len(spec["findings"]) == 1, rel
    covered = {spec["findings"][0][0] for spec in planted.values()}
    assert covered == set(RULES), f"rules without a planted file: {set(RULES) - covered}"


def test_every_corpus_file_has_an_expectation() -> None:
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*")
             if p.is_file() and p.name != "expected.json"}
    covered = set()
    for rel in ENTRIES:
        path = CORPUS / rel
        assert path.exists(), f"expected.json names a missing file: {rel}"
        if path.is_dir():
            covered |= {p.relative_to(CORPUS).as_posix() for p in path.rglob("*") if p.is_file()}
        else:
            covered.add(rel)
    assert files == covered
