"""`run_security_step`, the step `inv setup` runs: one ok per area, one failed per finding at
or above fail_on, never raising, never printing a secret."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.security.step import run_security_step
from tests.security.helpers import SECRET_VALUES, make_run


def _stack(tmp_path: Path) -> Path:
    stack = tmp_path / "stack"
    (stack / "schemas").mkdir(parents=True)
    (stack / "schemas" / "compose-schema.yaml").write_text("version: 1\nsecrets:\n  db_password: {length: 32}\n")
    (stack / "env-templates").mkdir()
    (stack / "env-templates" / "db.env.j2").write_text("DB_PASSWORD={{ secrets.db_password }}\n")
    return stack


def test_clean_stack_reports_ok_per_area(tmp_path: Path) -> None:
    cap = make_run(_stack(tmp_path))
    run_security_step(cap.run)
    results = cap.run.reporter.results
    assert [(r.status.value, r.item) for r in results] == [("ok", "schema"), ("ok", "env templates")]
    assert not cap.run.reporter.failed_any
    assert "TASK [validate-security]" in cap.text


def test_findings_fail_without_raising(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    (stack / "env-templates" / "db.env.j2").write_text(
        "DB_PASSWORD={{ secrets.db_password }}\nADMIN_PASSWORD=Jq5Wn8Rt2Lx7\n")
    (stack / "compose.yml").write_text("services:\n  web:\n    image: nginx:latest\n")
    cap = make_run(stack)
    run_security_step(cap.run)  # must not raise
    rows = [(r.status.value, r.item) for r in cap.run.reporter.results]
    assert rows == [("ok", "schema"), ("failed", "env-templates/db.env.j2:2"), ("ok", "compose files")]
    assert cap.run.reporter.failed_any
    failed = cap.run.reporter.results[1]
    assert "MMS102" in failed.message and "fix:" in failed.message
    assert "below --fail-on high" in cap.run.reporter.results[2].message
    assert "Jq5Wn8Rt2Lx7" not in cap.text


def test_fail_on_from_config(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    (stack / "compose.yml").write_text("services:\n  web:\n    image: nginx:latest\n")
    cap = make_run(stack, fail_on="medium")
    run_security_step(cap.run)
    assert cap.run.reporter.failed_any


def test_json_mode_adds_findings_and_masks(corpus: Path) -> None:
    cap = make_run(corpus, json=True)
    run_security_step(cap.run, [corpus])
    try:
        cap.run.finish()
    except BaseException:  # finish exits non-zero when anything failed
        pass
    doc = json.loads(cap.out.getvalue())
    assert doc["security_findings"]
    assert doc["recap"]["failed"] >= 1
    for secret in SECRET_VALUES:
        assert secret not in cap.text


def test_setup_refuses_a_production_override_that_prepends_a_public_database_port(tmp_path: Path) -> None:
    # The scan judges the environment the generator resolves: a `$prepend` (like any list
    # operator) that publishes PostgreSQL on all interfaces stops `inv setup` before it writes.
    from tests.support.schemaedit import SCHEMA, line_of
    from tests.support.stackcopy import make_stack_copy, run_inv, snapshot

    stack = make_stack_copy(tmp_path / "stack")
    schema = stack / SCHEMA
    text = schema.read_text()
    anchor = "  production:\n"
    entry = "        postgres:\n          ports: {$prepend: [{container: 5432, host: 15432, host_ip: 0.0.0.0}]}\n"
    at = text.index("      services:\n", text.index(anchor)) + len("      services:\n")
    schema.write_text(text[:at] + entry + text[at:])
    before = snapshot(stack)
    proc = run_inv(stack, "setup")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = line_of(schema.read_text(), "postgres:\n          ports: {$prepend", anchor) + 1
    assert f"schemas/compose-schema.yaml:{line}" in proc.stdout
    assert "MMS304" in proc.stdout and "published on 0.0.0.0" in proc.stdout
    after = {p: v for p, v in snapshot(stack).items() if not p.startswith(".mmstack/")}
    assert after == {p: v for p, v in before.items() if not p.startswith(".mmstack/")}
