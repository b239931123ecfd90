"""Schema mistakes made on purpose: one edit of the shipped schema in a stack copy.

A case names the text to replace (the first ``old`` after ``anchor``), its replacement, and what
the error must say; the line it must point at is found in the edited text, so line numbers are
real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCHEMA = Path("schemas/compose-schema.yaml")


@dataclass(frozen=True)
class Case:
    name: str
    anchor: str  # the mutation applies to the first `old` after this text
    old: str
    new: str
    key_path: str | None
    message: str
    line_of: str | None = None  # text whose line the error must point at (default: `new`)


def mutate(text: str, case: Case) -> str:
    start = text.index(case.anchor) if case.anchor else 0
    at = text.index(case.old, start)
    return text[:at] + case.new + text[at + len(case.old):]


def line_of(text: str, needle: str, after: str = "") -> int:
    """1-based line of the first ``needle`` after ``after``."""
    start = text.index(after) if after else 0
    return text[: text.index(needle, start)].count("\n") + 1


def write_mutated(stack: Path, case: Case) -> str:
    """Apply ``case`` to the stack copy's schema; returns the edited text."""
    original = (stack / SCHEMA).read_text()
    mutated = mutate(original, case)
    assert mutated != original, f"{case.name}: the edit changed nothing"
    (stack / SCHEMA).write_text(mutated)
    return mutated


def assert_refused(stack: Path, case: Case, task: str = "generate-compose") -> tuple[str, str]:
    """Apply ``case`` to the stack copy and run ``inv TASK``: it must be refused cleanly (exit 1,
    no traceback, the case's message and key path in the error) with nothing written. Returns
    the edited schema text and the error output, for the line the case must point at."""
    from tests.support.stackcopy import run_inv

    mutated = write_mutated(stack, case)
    proc = run_inv(stack, task)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert case.message in proc.stderr, proc.stderr
    if case.key_path:
        assert case.key_path in proc.stderr, proc.stderr
    assert not list(stack.glob("compose*.yml")), "nothing may be written when the schema is invalid"
    assert not (stack / "config").exists(), "nothing may be written when the schema is invalid"
    return mutated, proc.stderr
