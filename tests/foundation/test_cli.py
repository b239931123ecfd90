"""The task tree as users drive it: `inv` in a stack, the `mmstack` command, pipelines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.engine.lock import stack_lock
from tests.support.needs import unavailable
from tests.support.stackcopy import REPO, make_stack_copy, run_inv, snapshot

HEAVY = ("docker", "fabric", "paramiko", "pynvml", "cryptography", "rich")


@pytest.fixture()
def stack(tmp_path: Path) -> Path:
    return make_stack_copy(tmp_path / "stack")


def test_list_shows_every_task_with_help(stack: Path) -> None:
    proc = run_inv(stack, "--list")
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines()[2:] if l.strip()]
    names = [l.split()[0] for l in lines if not l.startswith(" " * 6)]
    for expected in ("setup", "validate-schema", "generate-compose", "render-env"):
        assert expected in names
    for line in lines:
        if not line.startswith(" " * 6):
            assert len(line.split(None, 1)) == 2, f"task without help: {line!r}"


def test_listing_tasks_imports_nothing_heavy() -> None:
    code = ("import sys; sys.path.insert(0, %r); import runpy; runpy.run_path(%r);"
            "print(','.join(m for m in %r if m in sys.modules))") % (str(REPO), str(REPO / "tasks.py"), HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported at load time: {proc.stdout.strip()}"


def test_chained_tasks_and_plain_output(stack: Path) -> None:
    proc = run_inv(stack, "validate-schema", "generate-compose")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("RECAP") == 2
    assert "\x1b[" not in proc.stdout, "no colour codes when stdout is not a terminal"
    assert (stack / "compose.yml").exists()


def test_json_output_is_one_parseable_document(stack: Path) -> None:
    proc = run_inv(stack, "generate-compose", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    changed = {r["item"] for r in doc["results"] if r["status"] == "changed"}
    # Six compose files, and the config files of the environments whose services mount them
    # (elk runs none of LiteLLM, PostgreSQL or MinIO; development and gpu no ELK stack).
    configs = {f"config/{env}/{name}" for env in ("development", "staging", "production", "gpu")
               for name in ("litellm.yaml", "postgres-init.sql", "minio-init.sh")}
    # Prometheus's and Grafana's, where they run (staging, production, elk).
    configs |= {f"config/{env}/{name}" for env in ("staging", "production", "elk")
                for name in ("prometheus.yml", "prometheus-rules.yml", "prometheus-start.sh",
                             "grafana-datasource-prometheus.yml", "grafana-dashboards.yml",
                             "grafana-dashboard-inference.json")}
    configs |= {f"config/{env}/{name}" for env in ("staging", "production", "elk")
                for name in ("elasticsearch-setup.sh", "kibana-setup.sh", "kibana.yml", "logstash-pipeline.conf",
                             "logstash-filter.rb", "grafana-datasource-elasticsearch.yaml")}
    assert changed == {"compose.yml", *(f"compose.{e}.yml" for e in ("development", "staging", "production", "gpu", "elk"))} | configs
    assert doc["recap"]["changed"] == len(changed) and doc["recap"]["failed"] == 0


def test_check_mode_writes_nothing_and_says_what_would_change(stack: Path) -> None:
    before = snapshot(stack)
    proc = run_inv(stack, "generate-compose", "--check", "--diff")
    assert proc.returncode == 0, proc.stderr
    assert "changed (check): [compose.yml] absent" in proc.stdout
    assert "+++ compose.yml (desired)" in proc.stdout
    assert "changed (check): [config/production/postgres-init.sql] absent" in proc.stdout
    # Six compose files, three config files for each of the four environments that mount them,
    # and six of Prometheus and Grafana and six ELK files for each of the three that run them.
    assert "RECAP (check mode, nothing changed) ok=1 changed=54 " in proc.stdout
    assert snapshot(stack) == before
    assert not (stack / ".mmstack").exists()


def test_second_generate_changes_nothing(stack: Path) -> None:
    assert run_inv(stack, "generate-compose").returncode == 0
    before = snapshot(stack)
    time.sleep(0.01)
    proc = run_inv(stack, "generate-compose")
    assert "changed=0" in proc.stdout
    assert snapshot(stack) == before


def test_hand_edit_is_detected_shown_and_kept_aside(stack: Path) -> None:
    assert run_inv(stack, "generate-compose").returncode == 0
    path = stack / "compose.production.yml"
    edited = path.read_text().replace("restart: always", "restart: on-failure", 1)
    path.write_text(edited)
    proc = run_inv(stack, "generate-compose", "--check", "--diff")
    assert "edited by hand since it was generated" in proc.stdout
    assert "-    restart: on-failure" in proc.stdout and "+    restart: always" in proc.stdout
    assert path.read_text() == edited, "--check must not undo the edit"
    proc = run_inv(stack, "generate-compose")
    assert "previous copy saved to" in proc.stdout
    saved = list((stack / ".mmstack" / "backups").glob("compose.production.yml.*.hand-edited"))
    assert len(saved) == 1 and saved[0].read_text() == edited


def test_concurrent_run_waits_then_fails_clearly(stack: Path) -> None:
    with stack_lock(stack / ".mmstack"):
        proc = run_inv(stack, "generate-compose", env={"INVOKE_MMSTACK_LOCK_TIMEOUT": "0.3"})
    assert proc.returncode == 1
    assert "another mmstack run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (stack / "compose.yml").exists()


def test_completion_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "invoke", "--print-completion-script", "bash"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "complete -F" in proc.stdout


def test_console_command_runs_against_a_stack_directory_outside_the_repo(tmp_path: Path) -> None:
    exe = shutil.which("mmstack", path=str(Path(sys.executable).parent))
    if exe is None:
        unavailable("the package is not installed in this interpreter", "pip install -e .")
    stack = tmp_path / "elsewhere"
    stack.mkdir()
    shutil.copytree(REPO / "schemas", stack / "schemas")
    shutil.copytree(REPO / "env-templates", stack / "env-templates")
    env = {**os.environ, "MMSTACK_DIR": str(stack)}
    proc = subprocess.run([exe, "generate-compose"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (stack / "compose.yml").exists() and not (tmp_path / "compose.yml").exists()
    proc = subprocess.run([exe, "--list"], capture_output=True, text=True, env=env)
    assert "generate-compose" in proc.stdout
    proc = subprocess.run([exe, "--print-completion-script", "bash"], capture_output=True, text=True, env=env)
    assert "mmstack" in proc.stdout


def test_init_makes_an_empty_directory_a_stack_and_keeps_user_edits(tmp_path: Path) -> None:
    exe = shutil.which("mmstack", path=str(Path(sys.executable).parent))
    if exe is None:
        unavailable("the package is not installed in this interpreter", "pip install -e .")
    stack = tmp_path / "new-stack"
    stack.mkdir()
    env = {**os.environ, "MMSTACK_DIR": str(stack)}

    def mmstack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path)

    first = mmstack("init")
    assert first.returncode == 0, first.stderr
    assert (stack / "schemas" / "compose-schema.yaml").read_bytes() == (REPO / "schemas" / "compose-schema.yaml").read_bytes()
    assert len(list((stack / "env-templates").glob("*.env.j2"))) == len(list((REPO / "env-templates").glob("*.env.j2")))
    assert (stack / "inventory" / "sample.yml").exists() and ".mmstack/" in (stack / ".gitignore").read_text()
    assert "changed=0" in mmstack("init").stdout
    schema = stack / "schemas" / "compose-schema.yaml"
    schema.write_text(schema.read_text().replace("project: mmstack", "project: mine"))
    kept = mmstack("init")
    assert "kept: differs from the shipped version" in kept.stdout and "project: mine" in schema.read_text()
    assert mmstack("setup").returncode == 0
    assert "\nname: mine\n" in (stack / "compose.yml").read_text()
