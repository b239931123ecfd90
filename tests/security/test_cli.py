"""`validate-security` through Invoke's Program (and once as a real process): exit codes,
--fail-on, --format, --output, and clean errors for bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Program

from tasks.cli.security import ns
from tests.security.helpers import SECRET_VALUES

REPO = Path(__file__).resolve().parents[2]


def run_cli(stack: Path, *args: str, capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setenv("MMSTACK_DIR", str(stack))
    monkeypatch.chdir(stack)
    program = Program(namespace=ns, name="mmstack", binary="mmstack")
    code = 0
    try:
        program.run(["mmstack", "validate-security", *args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def clean_stack(tmp_path: Path) -> Path:
    stack = tmp_path / "stack"
    (stack / "schemas").mkdir(parents=True)
    (stack / "schemas" / "compose-schema.yaml").write_text("version: 1\nsecrets:\n  db_password: {length: 32}\n")
    return stack


@pytest.fixture()
def medium_stack(clean_stack: Path) -> Path:
    # One medium finding (unpinned image), nothing above it.
    (clean_stack / "compose.yml").write_text("services:\n  web:\n    image: nginx:latest\n")
    return clean_stack


def test_clean_exits_zero(clean_stack: Path, capsys, monkeypatch) -> None:
    code, out, _ = run_cli(clean_stack, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0
    assert "no findings" in out


def test_findings_at_or_above_fail_on_exit_one(corpus: Path, capsys, monkeypatch) -> None:
    code, out, _ = run_cli(corpus, "--path", str(corpus), capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    assert "MMS201" in out
    for secret in SECRET_VALUES:
        assert secret not in out


@pytest.mark.parametrize("fail_on,code", [("critical", 0), ("high", 0), ("medium", 1),
                                          ("low", 1), ("info", 1), ("MEDIUM", 1)])
def test_fail_on_threshold(medium_stack: Path, fail_on: str, code: int, capsys, monkeypatch) -> None:
    got, out, _ = run_cli(medium_stack, "--fail-on", fail_on, capsys=capsys, monkeypatch=monkeypatch)
    assert got == code
    assert "MMS301" in out  # reported either way; only the exit code follows the threshold


def test_fail_on_from_config(medium_stack: Path, capsys, monkeypatch) -> None:
    (medium_stack / "invoke.yaml").write_text("mmstack:\n  security:\n    fail_on: medium\n")
    monkeypatch.setenv("INVOKE_RUNTIME_CONFIG", str(medium_stack / "invoke.yaml"))
    code, _, _ = run_cli(medium_stack, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1


def test_json_and_sarif_on_stdout(medium_stack: Path, capsys, monkeypatch) -> None:
    code, out, _ = run_cli(medium_stack, "--format", "json", capsys=capsys, monkeypatch=monkeypatch)
    doc = json.loads(out)
    assert code == 0 and doc["passed"] is True
    assert [f["rule_id"] for f in doc["findings"]] == ["MMS301"]
    code, out, _ = run_cli(medium_stack, "--format", "sarif", "--fail-on", "medium",
                           capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    assert json.loads(out)["runs"][0]["results"][0]["ruleId"] == "MMS301"


def test_output_file(medium_stack: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    target = tmp_path / "report.sarif"
    code, out, _ = run_cli(medium_stack, "--format", "sarif", "--output", str(target),
                           capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0
    assert json.loads(target.read_text())["version"] == "2.1.0"
    assert str(target) in out


@pytest.mark.parametrize("args,needle", [
    (("--fail-on", "severe"), "not a severity"),
    (("--format", "xml"), "not a format"),
    (("--path", "does/not/exist"), "no such file or directory"),
])
def test_bad_arguments_are_clean_errors(clean_stack: Path, args, needle, capsys, monkeypatch) -> None:
    code, out, err = run_cli(clean_stack, *args, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2
    assert needle in err and "Traceback" not in err + out


def test_real_process_exit_code(medium_stack: Path) -> None:
    script = ("import sys; from invoke import Program; from tasks.cli.security import ns; "
              "Program(namespace=ns, binary='mmstack').run(['mmstack', *sys.argv[1:]])")
    env = {**os.environ, "MMSTACK_DIR": str(medium_stack), "PYTHONPATH": str(REPO)}
    env.pop("INVOKE_RUNTIME_CONFIG", None)
    base = [sys.executable, "-c", script, "validate-security"]
    ok = subprocess.run(base, cwd=medium_stack, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(base + ["--fail-on", "medium"], cwd=medium_stack, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "MMS301" in bad.stdout


def test_collection_defaults() -> None:
    assert ns.configuration()["mmstack"]["security"]["fail_on"] == "high"
    assert "validate-security" in ns.task_names
