"""The pure parts of remote sync: parsing the fact command's output and planning; the fact
command itself is run locally (it is plain POSIX shell + coreutils)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.engine.errors import RemoteError
from tasks.engine.files import DesiredFile, NoOp
from tasks.remote.sync import (
    RemoteChange,
    RemoteFact,
    facts_command,
    parse_facts,
    plan_dirs,
    plan_remote,
    shell_path,
)


def run_local(command: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True,
                          env=env).stdout


def test_fact_command_reports_files_dirs_and_absent_paths(tmp_path: Path) -> None:
    plain = tmp_path / "a file with spaces.yml"
    plain.write_bytes(b"hello\n")
    os.chmod(plain, 0o640)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir(mode=0o700)
    os.chmod(secret_dir, 0o700)
    paths = [str(plain), str(empty), str(tmp_path / "missing"), str(secret_dir), str(tmp_path / "it's")]
    facts = parse_facts(paths, run_local(facts_command(paths)))
    assert facts[str(plain)] == RemoteFact(str(plain), "file", 0o640, hashlib.sha256(b"hello\n").hexdigest())
    assert facts[str(empty)].sha256 == hashlib.sha256(b"").hexdigest()
    assert facts[str(tmp_path / "missing")].state == "absent"
    assert facts[str(secret_dir)] == RemoteFact(str(secret_dir), "dir", 0o700)
    assert facts[str(tmp_path / "it's")].state == "absent"


def test_home_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "compose.yml").write_text("x")
    paths = ["~/stack/compose.yml"]
    assert shell_path(paths[0]).startswith('"$HOME"/')
    out = run_local(facts_command(paths), env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert parse_facts(paths, out, str(tmp_path))[paths[0]].state == "file"


def test_paths_with_newlines_or_relative_are_refused() -> None:
    for bad in ("relative/x", "/a\nb", "/a\\b"):
        with pytest.raises(RemoteError):
            facts_command([bad])


def want(content: bytes = b"x", mode: int = 0o644, **kw) -> DesiredFile:
    return DesiredFile(Path("/srv/stack/compose.yml"), content, mode, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fact,expected", [
    (RemoteFact("/srv/stack/compose.yml", "absent"), ("absent",)),
    (RemoteFact("/srv/stack/compose.yml", "file", 0o644, sha(b"y")), ("content differs",)),
    (RemoteFact("/srv/stack/compose.yml", "file", 0o600, sha(b"x")), ("mode 0600 -> 0644",)),
    (RemoteFact("/srv/stack/compose.yml", "file", 0o666, sha(b"z")), ("content differs", "mode 0666 -> 0644")),
    (RemoteFact("/srv/stack/compose.yml", "file", 0o644, sha(b"x")), None),
])
def test_plan(fact: RemoteFact, expected: tuple[str, ...] | None) -> None:
    plan = plan_remote(fact, want())
    if expected is None:
        assert isinstance(plan, NoOp)
    else:
        assert isinstance(plan, RemoteChange) and plan.reasons == expected


def test_mode_only_change_does_not_upload() -> None:
    plan = plan_remote(RemoteFact("/p", "file", 0o600, sha(b"x")), want())
    assert isinstance(plan, RemoteChange) and not plan.content_changed


@pytest.mark.parametrize("state", ["dir", "other", "unreadable"])
def test_plan_refuses_what_it_must_not_touch(state: str) -> None:
    with pytest.raises(RemoteError):
        plan_remote(RemoteFact("/srv/stack/compose.yml", state), want())


def test_secret_dir_plan() -> None:
    files = [DesiredFile(Path("/s/env/secrets/p.env"), b"K=v", 0o600, dir_mode=0o700)]
    assert plan_dirs({"/s/env/secrets": RemoteFact("/s/env/secrets", "dir", 0o700)}, files) == []
    drift = plan_dirs({"/s/env/secrets": RemoteFact("/s/env/secrets", "dir", 0o755)}, files)
    assert drift[0].reasons == ("mode 0755 -> 0700",)
    assert plan_dirs({"/s/env/secrets": RemoteFact("/s/env/secrets", "absent")}, files)[0].reasons == ("absent",)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["absent", "file", "dir"]), st.integers(0, 0o777),
                          st.binary(max_size=8)), min_size=1, max_size=6))
def test_parse_roundtrip(entries: list[tuple[str, int, bytes]]) -> None:
    """parse_facts recovers exactly what a (simulated) stat/sha256sum would print."""
    paths = [f"/srv/s/f{i}" for i in range(len(entries))]
    stat_lines, sha_lines = [], []
    for path, (state, mode, data) in zip(paths, entries):
        if state == "file":
            stat_lines.append(f"{mode:o}/regular file/{path}")
            sha_lines.append(f"{sha(data)}  {path}")
        elif state == "dir":
            stat_lines.append(f"{mode:o}/directory/{path}")
    out = "\n".join(stat_lines) + "\n@@mmstack-sha256@@\n" + "\n".join(sha_lines) + "\n"
    facts = parse_facts(paths, out)
    for path, (state, mode, data) in zip(paths, entries):
        fact = facts[path]
        assert fact.state == state
        if state != "absent":
            assert fact.mode == mode
        if state == "file":
            assert fact.sha256 == sha(data)
