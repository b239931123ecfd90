"""`inv setup` end to end in a temp copy of the repo: converge, then prove idempotence."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from tests.support.stackcopy import make_stack_copy, run_inv, snapshot


def test_setup_twice_second_run_changes_nothing(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    first = run_inv(stack, "setup")
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("RECAP ok=") and "failed=0" in last and "changed=0" not in last
    for step in ("validate-schema", "validate-security", "generate-compose", "setup-secrets", "render-env"):
        assert f"TASK [{step}]" in first.stdout
    before = snapshot(stack)
    time.sleep(0.02)  # a rewrite within the same timestamp tick would hide from mtime

    second = run_inv(stack, "setup")

    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1].startswith("RECAP ok=")
    assert "changed=0 failed=0" in second.stdout
    assert "changed:" not in second.stdout
    assert snapshot(stack) == before, "a no-op run must not touch any file (content, mode or mtime)"


def test_setup_layout_and_modes(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    assert run_inv(stack, "setup").returncode == 0
    for name in ("compose.yml", "compose.development.yml", "compose.staging.yml",
                 "compose.production.yml", "compose.gpu.yml", "compose.elk.yml"):
        assert stat.S_IMODE((stack / name).stat().st_mode) == 0o644
    for directory in (stack / "env", stack / "env" / "production", stack / ".mmstack",
                      stack / ".mmstack" / "secrets"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    env_files = list((stack / "env").rglob("*.env"))
    assert len(env_files) > 50
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in env_files)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (stack / ".mmstack" / "secrets").iterdir())


def test_check_mode_on_a_fresh_stack_writes_nothing(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    before = snapshot(stack)
    proc = run_inv(stack, "setup", "--check", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["check"] is True and doc["recap"]["changed"] > 100 and doc["recap"]["failed"] == 0
    assert snapshot(stack) == before
    assert not (stack / ".mmstack").exists() and not (stack / "env").exists()


def test_check_and_diff_after_a_schema_edit_show_only_that_change(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    assert run_inv(stack, "setup").returncode == 0
    schema = stack / "schemas" / "compose-schema.yaml"
    schema.write_text(schema.read_text().replace("image: prom/prometheus:v3.14.0", "image: prom/prometheus:v3.14.1"))
    before = snapshot(stack)
    proc = run_inv(stack, "setup", "--check", "--diff")
    assert proc.returncode == 0, proc.stderr
    changed = [l for l in proc.stdout.splitlines() if l.startswith("changed")]
    assert changed == ["changed (check): [compose.yml] content differs"]
    assert "-    image: prom/prometheus:v3.14.0" in proc.stdout
    assert "+    image: prom/prometheus:v3.14.1" in proc.stdout
    assert snapshot(stack) == before
