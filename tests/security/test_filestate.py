"""Secret files: mode (readable by group/others) and git tracking, the git check's tolerance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.security import gitcheck
from tasks.security.validate import validate_security
from tests.security.helpers import git

STRONG = "REDIS_PASSWORD=Rk4Vz8Pq2Wn6Lt0Hc3Mb7Xd1Fj5Gs9Ya\n"
STORE = "version: 1\nenvironment: production\nsecrets:\n  redis_password: Rk4Vz8Pq2Wn6Lt0Hc3Mb7Xd1Fj5Gs9Ya\n"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _stack(tmp_path: Path) -> Path:
    stack = tmp_path / "stack"
    env_dir = stack / "env" / "production"
    env_dir.mkdir(parents=True)
    (env_dir / "redis.env").write_text(STRONG)
    (env_dir / "redis.env").chmod(0o600)
    store = stack / ".mmstack" / "secrets"
    store.mkdir(parents=True)
    (stack / ".mmstack").chmod(0o700)
    store.chmod(0o700)
    (store / "production.yaml").write_text(STORE)
    (store / "production.yaml").chmod(0o600)
    (store / "production.enc").write_bytes(b"gAAAAAB-opaque-token\n")
    (store / "production.enc").chmod(0o600)
    return stack


def _rows(findings) -> list[tuple[str, str, int | None]]:
    return sorted((f.rule_id, f.file, f.line) for f in findings)


def test_tight_modes_are_clean(tmp_path: Path) -> None:
    assert validate_security(_stack(tmp_path)) == []


@pytest.mark.parametrize("rel", ["env/production/redis.env", ".mmstack/secrets/production.yaml",
                                 ".mmstack/secrets/production.enc"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_secret_file_readable_by_others(tmp_path: Path, rel: str, mode: int) -> None:
    stack = _stack(tmp_path)
    (stack / rel).chmod(mode)
    assert _rows(validate_security(stack)) == [("MMS306", rel, None)]


def test_secrets_directory_mode(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    (stack / ".mmstack" / "secrets").chmod(0o755)
    assert _rows(validate_security(stack)) == [("MMS306", ".mmstack/secrets", None)]


def test_hand_written_env_without_secrets_may_be_0644(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "app.env").write_text("LOG_LEVEL=info\nPORT=8080\n")
    (stack / "app.env").chmod(0o644)
    assert validate_security(stack, [stack / "app.env"]) == []


@needs_git
def test_tracked_secret_files(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    git(stack, "init", "-q")
    git(stack, "add", "-f", "env/production/redis.env", ".mmstack/secrets/production.enc")
    rows = _rows(validate_security(stack))
    assert rows == [("MMS307", ".mmstack/secrets/production.enc", None),
                    ("MMS307", "env/production/redis.env", None)]
    # Committed or only staged, the answer is the same; ignored files are not tracked.
    git(stack, "commit", "-q", "-m", "oops")
    assert _rows(validate_security(stack)) == rows
    assert validate_security(stack, check_git=False) == []


@needs_git
def test_gitcheck(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sub dir").mkdir(parents=True)
    git(repo, "init", "-q")
    tracked, untracked, odd = repo / "sub dir" / "a.env", repo / "b.env", repo / "[x]*.env"
    for p in (tracked, untracked, odd):
        p.write_text("X=1\n")
    git(repo, "add", "sub dir/a.env")
    assert gitcheck.is_tracked(tracked) is True
    assert gitcheck.is_tracked(untracked) is False
    assert gitcheck.is_tracked(odd) is False  # a glob-like name is matched literally
    assert gitcheck.tracked_among([tracked, untracked, odd]) == {tracked.resolve()}


def test_gitcheck_outside_a_repository(tmp_path: Path) -> None:
    lone = tmp_path / "lone.env"
    lone.write_text("X=1\n")
    assert gitcheck.is_tracked(lone) is False
    assert gitcheck.tracked_among([lone]) == set()
    assert gitcheck.tracked_among([]) == set()


def test_gitcheck_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gitcheck.shutil, "which", lambda name: None)
    lone = tmp_path / "lone.env"
    lone.write_text("X=1\n")
    assert gitcheck.is_tracked(lone) is False
    assert gitcheck.tracked_among([lone]) == set()


def test_backups_of_hand_edited_files_are_secret_files(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    backups = stack / ".mmstack" / "backups"
    backups.mkdir(mode=0o700)
    saved = backups / "redis.env.20240101T000000.hand-edited"
    saved.write_text(STRONG)
    saved.chmod(0o600)
    assert validate_security(stack) == []
    saved.chmod(0o644)
    assert _rows(validate_security(stack)) == [
        ("MMS306", ".mmstack/backups/redis.env.20240101T000000.hand-edited", None)]
