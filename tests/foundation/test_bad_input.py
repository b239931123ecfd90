"""A corpus of bad input, one fixture per kind of mistake (fixtures/bad_input/*.yaml).

Each fixture makes one realistic mistake in a fresh copy of the stack: an edit of a shipped file
(the schema, a template) or a whole file (mmstack.yaml, an inventory), sometimes in another
encoding. The real `inv` then runs in a subprocess, and the test asserts what a user is promised:
exit 1, no traceback, the exact ``file:line`` (found in the edited text, so line numbers are
real) and key path, the message, a ``fix:`` line, and nothing created or changed anywhere in the
stack (no lock, no cache, no temp file). Inventory cases run `inv deploy` against a loopback
listener and assert that nothing connected to it.

Valid variants of the same files (CRLF, a BOM, anchors and merge keys, large comments) must give
byte-identical output.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.stackcopy import make_stack_copy, run_inv, snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "bad_input"
CASES = sorted(FIXTURES.glob("*.yaml"))


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert case["kind"] == path.stem, f"{path.name}: kind must match the file name"
    return case


@dataclass
class Listener:
    """A loopback TCP port that records every connection made to it (and says nothing)."""

    sock: socket.socket
    connections: int = 0

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    rec = Listener(sock)
    threading.Thread(target=rec.serve, daemon=True).start()
    yield rec
    sock.close()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


def expected_line(case: dict[str, Any], text: str) -> int | None:
    if "at_line" in case:
        return case["at_line"]
    needle = case.get("at") or case["new"].strip().splitlines()[0]
    start = text.index(case["anchor"]) if case.get("anchor") else 0
    return text[: text.index(needle, start)].count("\n") + 1 + int(case.get("at_offset", 0))


def apply_case(stack: Path, case: dict[str, Any], port: int) -> str:
    """Make the case's mistake in ``stack``; returns the text written (for line numbers)."""
    target = stack / case["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if case.get("make") == "symlink-loop":
        target.unlink()
        os.symlink(target.name, target)
        return ""
    if "content" in case:
        text = case["content"].replace("{port}", str(port))
    else:
        original = target.read_text(encoding="utf-8")
        start = original.index(case["anchor"]) if case.get("anchor") else 0
        at = original.index(case["old"], start)
        text = original[:at] + case["new"] + original[at + len(case["old"]):]
        assert text != original or case.get("encoding"), f"{case['kind']}: the edit changed nothing"
    target.write_bytes(text.encode(case.get("encoding", "utf-8")))
    return text


def test_corpus_has_at_least_forty_kinds() -> None:
    kinds = {load_case(p)["kind"] for p in CASES}
    assert len(kinds) >= 40
    areas = {load_case(p)["file"].split("/")[0] for p in CASES}
    assert {"schemas", "mmstack.yaml", "env-templates", "inventory"} <= areas


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input_is_refused_first(path: Path, tmp_path: Path, listener: Listener) -> None:
    case = load_case(path)
    stack = make_stack_copy(tmp_path / "stack")
    text = apply_case(stack, case, listener.port)
    inventory = case["file"].startswith("inventory/")
    before, paths_before = snapshot(stack), tree(stack)

    args = ("deploy", "--no-start") if inventory else ("generate-compose",)
    proc = run_inv(stack, *args)
    out = proc.stdout + proc.stderr

    assert proc.returncode == 1, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert case["message"] in proc.stderr, proc.stderr
    line = expected_line(case, text) if text else None
    where = f"{case['file']}:{line}:" if line else f"{case['file']}:"
    assert where in proc.stderr, f"expected {where}\n{proc.stderr}"
    if case.get("key_path"):
        assert f"{where} {case['key_path']}:" in proc.stderr, proc.stderr
    assert "\n  fix: " in proc.stderr, proc.stderr
    if case.get("fix"):
        assert case["fix"] in proc.stderr, proc.stderr
    # Nothing created or changed: no lock, no cache, no compose file, no temp file.
    assert tree(stack) == paths_before, tree(stack) ^ paths_before
    assert snapshot(stack) == before
    assert not (stack / ".mmstack").exists()
    if inventory:
        assert listener.connections == 0, "validation must come before the first connection"


def test_listener_sees_a_connection_when_the_inventory_is_valid(tmp_path: Path, listener: Listener) -> None:
    """The control for the inventory cases: a valid inventory does reach the listener, and the
    failed SSH handshake is one line per host with its fix, never a paramiko traceback."""
    stack = make_stack_copy(tmp_path / "stack")
    (stack / "inventory").mkdir()
    (stack / "inventory" / "hosts.yml").write_text(
        "vars: {user: deploy, trust_host_key: true, connect_timeout: 3}\nhosts:\n"
        f"  h1: {{address: 127.0.0.1, port: {listener.port}}}\n"
        f"  h2: {{address: 127.0.0.1, port: {listener.port}}}\n")
    proc = run_inv(stack, "remote-detect-gpu")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert listener.connections >= 2
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "paramiko" not in out.lower(), out
    for host in ("h1", "h2"):
        lines = [ln for ln in out.splitlines() if ln.startswith(f"unreachable: [{host}")]
        assert len(lines) == 1, out
        assert f"{host} (deploy@127.0.0.1:{listener.port})" in lines[0]


# ----------------------------------------------------------------------------------------------
# Valid variants: the same meaning written differently gives byte-identical output
# ----------------------------------------------------------------------------------------------

def _outputs(stack: Path) -> dict[str, bytes]:
    files = sorted(stack.glob("compose*.yml")) + sorted((stack / "config").rglob("*"))
    return {str(p.relative_to(stack)): p.read_bytes() for p in files if p.is_file()}


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _bom(text: str) -> str:
    return "\ufeff" + text


def _anchors(text: str) -> str:
    text = text.replace("  postgres-init:\n", "  postgres-init: &one-shot\n", 1)
    text = text.replace("    resources: {memory: 128m, cpus: 0.5}", "    resources: &small {memory: 128m, cpus: 0.5}", 1)
    start = text.index("  minio-init:\n")
    at = text.index("    resources: {memory: 128m, cpus: 0.5}", start)
    text = text[:at] + "    resources: {<<: *small}" + text[at + len("    resources: {memory: 128m, cpus: 0.5}"):]
    return text.replace("healthcheck: {template: redis}", "healthcheck: &redis-check {template: redis}", 1)


def _comments(text: str) -> str:
    block = "".join(f"# {'x' * 90} comment line {i}\n" for i in range(20000))
    return block + text.replace("version: 1\n", "version: 1   # " + "y" * 5000 + "\n", 1)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    stack = make_stack_copy(tmp_path_factory.mktemp("baseline") / "stack")
    proc = run_inv(stack, "generate-compose")
    assert proc.returncode == 0, proc.stderr
    return _outputs(stack)


@pytest.mark.parametrize("variant", [_crlf, _bom, _anchors, _comments, lambda t: _bom(_crlf(t))],
                         ids=["crlf", "bom", "anchors-and-merge-keys", "large-comments", "bom-and-crlf"])
def test_valid_variants_give_identical_output(variant: Any, baseline: dict[str, bytes], tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    schema = stack / "schemas" / "compose-schema.yaml"
    changed = variant(schema.read_text(encoding="utf-8"))
    schema.write_bytes(changed.encode("utf-8"))
    proc = run_inv(stack, "generate-compose")
    assert proc.returncode == 0, proc.stderr
    assert _outputs(stack) == baseline


def test_templates_in_crlf_with_bom_render_identically(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    proc = run_inv(stack, "setup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = {str(p.relative_to(stack)): p.read_bytes() for p in sorted((stack / "env").rglob("*.env"))}
    assert rendered
    for tpl in (stack / "env-templates").glob("*.j2"):
        tpl.write_bytes(_bom(_crlf(tpl.read_text(encoding="utf-8"))).encode("utf-8"))
    proc = run_inv(stack, "render-env")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=0" in proc.stdout + proc.stderr
    assert {str(p.relative_to(stack)): p.read_bytes() for p in sorted((stack / "env").rglob("*.env"))} == rendered


# ----------------------------------------------------------------------------------------------
# Temp files a killed run left behind
# ----------------------------------------------------------------------------------------------

def test_stale_temp_files_are_removed_by_the_next_run(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    assert run_inv(stack, "generate-compose").returncode == 0
    old = time.time() - 3600
    stale = [stack / ".compose.yml.k1ll3d_x.tmp", stack / "config" / "production" / ".litellm.yaml.abcd1234.tmp",
             stack / ".mmstack" / "cache" / ".preflight.json.zz99yy88.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
        os.utime(path, (old, old))
    fresh = stack / ".compose.gpu.yml.n0wn0w12.tmp"  # a write in flight right now: left alone
    fresh.write_bytes(b"in flight")
    unrelated = stack / "notes.tmp"
    unrelated.write_bytes(b"mine")
    os.utime(unrelated, (old, old))

    proc = run_inv(stack, "generate-compose")
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and unrelated.exists()


def test_invalid_schema_on_a_fresh_checkout_creates_no_lock(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    schema = stack / "schemas" / "compose-schema.yaml"
    schema.write_text(schema.read_text().replace("version: 1", "version: one", 1))
    for task in ("setup", "generate-compose", "render-env", "setup-secrets"):
        proc = run_inv(stack, task)
        assert proc.returncode == 1, proc.stderr
        assert not (stack / ".mmstack").exists(), task
    shutil.rmtree(stack)
