"""The tasks end to end through Invoke, in a subprocess: no secret value in any output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.secrets.store import KeyProvider, SecretStore
from tests.support.stackcopy import REPO, make_stack_copy, run_inv

KEY_ENV = "MMSTACK_SECRETS_KEY"
DRIVER = ("import sys; sys.path.insert(0, sys.argv[1]); from invoke import Program; "
          "from tasks.cli.secrets import ns; "
          "Program(namespace=ns, name='mmstack', binary='inv').run(['inv'] + sys.argv[2:])")


@pytest.fixture()
def stack(tmp_path: Path) -> Path:
    return make_stack_copy(tmp_path / "stack")


def inv(stack: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` with the secrets collection (the root namespace may not include it yet)."""
    full_env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "INVOKE_RUNTIME_CONFIG")}
    full_env.update({"MMSTACK_DIR": str(stack), **(env or {})})
    return subprocess.run([sys.executable, "-c", DRIVER, str(stack), *args], cwd=stack,
                          capture_output=True, text=True, env=full_env, timeout=300)


def stored(stack: Path, key_file: Path | None = None) -> set[str]:
    store = SecretStore.open(stack / ".mmstack", KeyProvider(env_var="NO_SUCH_VAR", key_file=key_file))
    return {v for env in store.environments() for v in store.load(env).values()}


def assert_clean(outputs: list[str], values: set[str]) -> None:
    text = "\n".join(outputs)
    assert values
    leaked = [v for v in values if v in text]
    assert not leaked, f"{len(leaked)} secret value(s) appeared in task output"


def test_secrets_tasks_end_to_end_never_print_a_value(stack: Path, tmp_path: Path) -> None:
    outputs: list[str] = []
    seen: set[str] = set()

    def step(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = inv(stack, *args, env=env)
        outputs.extend([proc.stdout, proc.stderr])
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    step("--debug", "setup-secrets", "--diff")
    seen |= stored(stack)
    proc = step("setup-secrets", "--json")
    doc = json.loads(proc.stdout)
    assert doc["recap"]["changed"] == 0 and doc["recap"]["ok"] > 0

    proc = step("--debug", "rotate-secrets", "--service", "postgres", "--env", "production", "--diff")
    # Whether the consumers run is asked of the Docker engine; with none reachable it is unknown.
    assert ("production: restart if running: postgres, litellm" in proc.stdout
            or "production: no running service of this environment uses them" in proc.stdout)
    seen |= stored(stack)
    env_dir = stack / "env" / "production"
    assert env_dir.is_dir() and stat.S_IMODE(env_dir.stat().st_mode) == 0o700
    for path in env_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any(v in (env_dir / "postgres.env").read_text() for v in stored(stack))

    proc = step("rotate-secrets", "--name", "redis_password", "--name", "qdrant_api_key", "--json")
    doc = json.loads(proc.stdout)
    assert set(doc["rotation"]["rotated"]["staging"]) == {"redis_password", "qdrant_api_key"}
    # Nothing of this stack runs: no restart needed (or, with no engine to ask, every consumer).
    restart = doc["rotation"]["restart"]["staging"]
    assert restart == [] or "redis" in restart
    assert any(r["item"] == "secrets/staging/redis_password" and "used by redis" in r["message"]
               for r in doc["results"])
    seen |= stored(stack)

    key_file = tmp_path / "keys" / "mmstack.key"
    step("encrypt-secrets", "--new-key", str(key_file))
    seen |= stored(stack, key_file)
    # Without the key configured, reading fails cleanly: no traceback, a fix, no value.
    proc = step("setup-secrets", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "fix:" in proc.stderr
    # With the key in the environment variable every task works again.
    key_env = {KEY_ENV: key_file.read_text().strip()}
    step("--debug", "setup-secrets", "--diff", env=key_env)
    proc = step("setup-secrets", "--env", "production", env={KEY_ENV: "A" * 43 + "="}, ok=False)
    assert "cannot decrypt" in proc.stderr and "Traceback" not in proc.stderr
    step("decrypt-secrets", env=key_env)
    seen |= stored(stack)
    assert_clean(outputs, seen)
    assert "A" * 43 not in "\n".join(outputs)


def test_listing_stays_light() -> None:
    code = ("import sys; sys.path.insert(0, %r); import tasks.cli.secrets;"
            "print(','.join(m for m in ('cryptography', 'yaml', 'jinja2') if m in sys.modules))") % str(REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "cryptography" not in proc.stdout


@pytest.mark.slow
def test_full_setup_output_holds_no_secret(stack: Path) -> None:
    """`inv setup` (validate, security, compose, secrets, env files) prints no value, even with
    --debug and --diff."""
    env = {k: "" for k in (KEY_ENV,)}
    first = run_inv(stack, "--debug", "setup", "--diff", env=env)
    again = run_inv(stack, "--debug", "setup", "--diff", env=env)
    outputs = [first.stdout, first.stderr, again.stdout, again.stderr]
    assert first.returncode == 0, first.stderr
    values = stored(stack)
    assert_clean(outputs, values)
    for path in (stack / "env").rglob("*.env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
