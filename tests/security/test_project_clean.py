"""The project's own schema, env templates and freshly generated output pass clean.

The generated part runs only once the generator exists (`tasks/schema/generate.py`); until
then it is skipped with that reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.security.validate import scan_stack
from tests.security.helpers import make_run

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "tasks" / "schema" / "generate.py"


def _copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in ("schemas", "env-templates"):
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dest / part)
    return dest


def _describe(findings) -> str:
    return "\n".join(f"{f.rule_id} {f.file}:{f.line} {f.message}" for f in findings)


def test_schema_and_templates_are_clean(tmp_path: Path) -> None:
    stack = _copy_sources(tmp_path / "stack")
    result = scan_stack(stack)
    areas = result.areas()
    assert areas["schema"], "the repository has no schema to scan"
    assert areas["templates"], "the repository has no env templates to scan"
    assert result.findings == [], _describe(result.findings)


@pytest.mark.skipif(not GENERATOR.exists(),
                    reason="the compose generator (tasks/schema/generate.py) is not there yet")
def test_generated_output_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.schema.steps import generate_compose_step, render_env_step, validate_schema_step
    from tasks.secrets.api import setup_secrets_step

    # A plain store (no key in the environment) so its values are scanned too.
    monkeypatch.delenv("MMSTACK_SECRETS_KEY", raising=False)
    stack = _copy_sources(tmp_path / "stack")
    cap = make_run(stack)
    schema = validate_schema_step(cap.run)
    generate_compose_step(cap.run, schema)
    setup_secrets_step(cap.run, schema, None)
    render_env_step(cap.run, schema, None)
    assert not cap.run.reporter.failed_any, cap.text

    result = scan_stack(stack)
    areas = result.areas()
    for area in ("schema", "templates", "compose", "env", "secrets"):
        assert areas[area], f"nothing generated in {area}"
    assert any(t.path.name == "compose.production.yml" for t in areas["compose"])
    assert result.findings == [], _describe(result.findings)
