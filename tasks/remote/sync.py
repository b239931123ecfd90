"""Idempotent file upload to one host: facts in one command, a pure plan, atomic writes.

1. `facts_command` asks for every file's sha256 and mode (and each secret directory's mode)
   in ONE remote shell command; `parse_facts` turns its output into `RemoteFact`s (pure).
2. `plan_remote` compares a fact with a `DesiredFile` (pure): absent / content differs /
   mode differs / up to date.
3. `apply_remote` creates directories (``mkdir -p``, 0700 for secret directories), writes each
   changed file over SFTP to a temp name in the same directory with its mode set *before* any
   content is written (`sftpbatch.write_files`: every file's requests sent ahead), then renames
   every temp over its target with ``mv -f`` in one command.

A file whose content changed is fetched first: when its body no longer matches the checksum in
its own header it was edited by hand on the host, and (as locally) that copy is kept in the
host's ``.mmstack/backups/`` before it is replaced.

Secrets travel only as SFTP file content: no command line built here contains file content,
and no command is given an environment. ``--check`` stops after the plan; ``--diff`` fetches the
remote copy of a changed file over SFTP and shows a unified diff with secrets masked.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import secrets as _random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..engine.errors import RemoteError
from ..engine.files import DesiredFile, FileChange, FileFact, NoOp, is_hand_edited, unified_diff
from ..engine.layout import hand_edit_backup_dir
from ..engine.report import Result, Status
from ..stack.site import quote_path


@dataclass(frozen=True)
class RemoteFact:
    """A remote path as seen by `facts_command`.

    ``state``: ``file``, ``absent``, ``other`` (a directory or special file stands there) or
    ``unreadable``.
    """

    path: str
    state: str
    mode: int | None = None
    sha256: str | None = None

    @property
    def exists(self) -> bool:
        return self.state == "file"


@dataclass(frozen=True)
class RemoteChange:
    desired: DesiredFile
    fact: RemoteFact
    reasons: tuple[str, ...]

    @property
    def content_changed(self) -> bool:
        return not self.fact.exists or self.fact.sha256 != sha256_of(self.desired.content)


@dataclass(frozen=True)
class DirChange:
    path: str
    mode: int
    fact: RemoteFact
    reasons: tuple[str, ...]


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def remote_path(desired: DesiredFile) -> str:
    return str(PurePosixPath(desired.path))


def secret_dirs(desired: Sequence[DesiredFile]) -> dict[str, int]:
    """Directories whose mode is managed (``dir_mode`` set), with that mode."""
    out: dict[str, int] = {}
    for want in desired:
        if want.dir_mode is not None:
            out[posixpath.dirname(remote_path(want))] = want.dir_mode
    return out


# -- facts -------------------------------------------------------------------------------------
FACTS_SEPARATOR = "@@mmstack-sha256@@"
_SHA_LINE = re.compile(r"^\\?([0-9a-f]{64}) [ *](.*)$")


def shell_path(path: str) -> str:
    """Quote a remote path for the shell; a leading ``~/`` still means the login's home."""
    check_path(path)
    return quote_path(path)


def sftp_path(path: str) -> str:
    """The path as SFTP sees it (SFTP starts in the home directory and does not expand ``~``)."""
    check_path(path)
    return path[2:] if path.startswith("~/") else path


def check_path(path: str) -> None:
    if not path or any(ch in path for ch in "\n\r\\") or not (path.startswith("/") or path.startswith("~/")):
        raise RemoteError("remote paths must be absolute (or start with ~/) and hold no newline or "
                          "backslash", file=path, fix="fix stack_dir in the inventory")


def facts_command(paths: Sequence[str]) -> str:
    """One POSIX command for all paths: ``stat`` once, then ``sha256sum`` once (coreutils only,
    two processes whatever the number of files)."""
    args = " ".join(shell_path(p) for p in paths)
    return (f"stat -L -c '%a/%F/%n' -- {args} 2>/dev/null; echo {FACTS_SEPARATOR}; "
            f"sha256sum -- {args} 2>/dev/null; exit 0")


def parse_facts(paths: Sequence[str], stdout: str, home: str | None = None) -> dict[str, RemoteFact]:
    """Pure: the output of `facts_command` as one fact per path.

    A path that ``stat`` did not list is absent; a regular file without a checksum line could not
    be read. ``home`` maps ``~/`` paths to what the shell printed for them.
    """
    shown = {(home.rstrip("/") + "/" + p[2:] if home and p.startswith("~/") else p): p for p in paths}
    stat_part, _, sha_part = stdout.partition(FACTS_SEPARATOR)
    stats: dict[str, tuple[int, str]] = {}
    for line in stat_part.splitlines():
        parts = line.split("/", 2)
        if len(parts) == 3 and parts[0].isdigit():
            name = "/" + parts[2] if not parts[2].startswith("/") else parts[2]
            stats[shown.get(name, shown.get(parts[2], name))] = (int(parts[0], 8), parts[1])
    sums: dict[str, str] = {}
    for line in sha_part.splitlines():
        match = _SHA_LINE.match(line)
        if match:
            name = match.group(2)
            sums[shown.get(name, name)] = match.group(1)
    facts: dict[str, RemoteFact] = {}
    for path in paths:
        if path not in stats:
            facts[path] = RemoteFact(path, "absent")
            continue
        mode, kind = stats[path]
        if kind == "directory":
            facts[path] = RemoteFact(path, "dir", mode)
        elif not kind.startswith("regular"):
            facts[path] = RemoteFact(path, "other", mode)
        elif path in sums:
            facts[path] = RemoteFact(path, "file", mode, sums[path])
        else:
            facts[path] = RemoteFact(path, "unreadable", mode)
    return facts


def gather_facts(c: Any, desired: Sequence[DesiredFile]) -> dict[str, RemoteFact]:
    """Run `facts_command` once for all files and managed directories."""
    paths = [remote_path(d) for d in desired] + list(secret_dirs(desired))
    if not paths:
        return {}
    result = c.run(facts_command(paths), hide=True, warn=True, in_stream=False)
    if result.exited != 0:
        raise RemoteError(f"gathering file facts failed (exit {result.exited}): "
                          f"{(result.stderr or '').strip()[:200]}",
                          fix="check that the host has a POSIX shell, stat and sha256sum (coreutils)")
    home = None
    if any(p.startswith("~/") for p in paths):
        home = c.run("printf %s \"$HOME\"", hide=True, in_stream=False).stdout.strip()
    return parse_facts(paths, result.stdout, home)


# -- plan ----------------------------------------------------------------------------------------
def plan_remote(fact: RemoteFact, desired: DesiredFile) -> RemoteChange | NoOp:
    """Pure: what must happen for ``desired`` given the remote ``fact``."""
    if fact.state in ("other", "dir"):
        raise RemoteError("something other than a regular file stands where a file belongs",
                          file=fact.path, fix="move it away on the host; mmstack never deletes what it did not write")
    if fact.state == "unreadable":
        raise RemoteError("cannot read the file on the host", file=fact.path,
                          fix="check the SSH user's permissions on the stack directory")
    if not fact.exists:
        return RemoteChange(desired, fact, ("absent",))
    reasons: list[str] = []
    if fact.sha256 != sha256_of(desired.content):
        reasons.append("content differs")
    if fact.mode != desired.mode:
        reasons.append(f"mode {fact.mode or 0:04o} -> {desired.mode:04o}")
    if not reasons:
        return NoOp(desired, "up to date")
    return RemoteChange(desired, fact, tuple(reasons))


def plan_dirs(facts: dict[str, RemoteFact], desired: Sequence[DesiredFile]) -> list[DirChange]:
    """Pure: managed (secret) directories that are missing or have the wrong mode."""
    out: list[DirChange] = []
    for path, mode in secret_dirs(desired).items():
        fact = facts.get(path, RemoteFact(path, "unreadable"))
        if fact.state == "absent":
            out.append(DirChange(path, mode, fact, ("absent",)))
        elif fact.state != "dir":
            raise RemoteError("a file stands where a directory belongs", file=path,
                              fix="move it away on the host")
        elif fact.mode != mode:
            out.append(DirChange(path, mode, fact, (f"mode {fact.mode or 0:04o} -> {mode:04o}",)))
    return out


def plan_all(facts: dict[str, RemoteFact], desired: Sequence[DesiredFile]
             ) -> tuple[list[RemoteChange | NoOp], list[DirChange]]:
    plans = [plan_remote(facts.get(remote_path(d), RemoteFact(remote_path(d), "unreadable")), d)
             for d in desired]
    return plans, plan_dirs(facts, desired)


# -- apply ---------------------------------------------------------------------------------------
def temp_name(final: str) -> str:
    head, tail = posixpath.split(final)
    return posixpath.join(head, f".{tail}.mmstack-{_random.token_hex(6)}.tmp")


def apply_remote(c: Any, changes: Sequence[RemoteChange], dirs: Sequence[DirChange] = ()) -> None:
    """Make the planned changes on the host (see the module docstring for the steps)."""
    if not changes and not dirs:
        return
    q = shell_path
    managed = {d.path: d.mode for d in dirs}
    for ch in changes:
        if ch.desired.dir_mode is not None:
            managed.setdefault(posixpath.dirname(remote_path(ch.desired)), ch.desired.dir_mode)
    plain = sorted({posixpath.dirname(remote_path(ch.desired)) for ch in changes
                    if not ch.fact.exists} - set(managed))
    steps = [f"mkdir -p -m {mode:o} -- {q(path)} && chmod {mode:o} -- {q(path)}"
             for path, mode in sorted(managed.items())]
    if plain:
        steps.append("mkdir -p -- " + " ".join(q(p) for p in plain))
    if steps:
        c.run(" && ".join(steps), hide=True, in_stream=False)

    renames: list[tuple[str, str]] = []
    chmods: list[RemoteChange] = []
    uploads: list[tuple[str, bytes, int]] = []
    for ch in changes:
        final = remote_path(ch.desired)
        if not ch.content_changed:
            chmods.append(ch)
            continue
        tmp = temp_name(final)
        renames.append((tmp, final))
        uploads.append((sftp_path(tmp), ch.desired.content, ch.desired.mode))
    try:
        if uploads:  # SFTP only when some content changed; every file's requests sent ahead
            from .sftpbatch import write_files

            write_files(c.sftp(), uploads)
        steps = [f"mv -f -- {q(tmp)} {q(final)}" for tmp, final in renames]
        steps += [f"chmod {ch.desired.mode:o} -- {q(remote_path(ch.desired))}" for ch in chmods]
        if steps:
            c.run(" && ".join(steps), hide=True, in_stream=False)
    except BaseException:
        if renames:
            c.run("rm -f -- " + " ".join(q(t) for t, _ in renames), hide=True, warn=True, in_stream=False)
        raise


def write_via_sftp(sftp: Any, path: str, content: bytes, mode: int) -> None:
    """Create ``path`` exclusively, chmod it, then write ``content`` (never readable early)."""
    with sftp.open(path, "wbx") as fh:
        fh.chmod(mode)
        fh.set_pipelined(True)
        fh.write(content)


def fetch_remote(c: Any, path: str) -> bytes:
    buf = io.BytesIO()
    c.get(sftp_path(path), local=buf)
    return buf.getvalue()


# -- the whole step -------------------------------------------------------------------------------
def sync_files(c: Any, desired: Sequence[DesiredFile], *, check: bool = False, diff: bool = False,
               host: str | None = None, backup_dir: str | None = None) -> list[Result]:
    """Converge ``desired`` on the host behind ``c``; one `Result` per file (and per changed
    secret directory). Under ``check`` nothing is written. With ``backup_dir`` (the host's
    ``.mmstack/backups``), a file edited by hand there is copied into it before it is replaced."""
    facts = gather_facts(c, desired)
    plans, dirs = plan_all(facts, desired)
    results: list[Result] = []
    for d in dirs:
        if d.fact.state == "dir":  # an absent directory is reported with the files it will hold
            results.append(Result(f"{d.path}/", Status.CHANGED, f"directory {', '.join(d.reasons)}",
                                  host=host))
    changes = [p for p in plans if isinstance(p, RemoteChange)]
    old_content = {id(ch): fetch_remote(c, ch.fact.path) for ch in changes
                   if ch.fact.exists and ch.content_changed and (diff or backup_dir is not None)}
    hand_edited = {key for key, content in old_content.items() if is_hand_edited(content)}
    diffs = {id(ch): remote_diff(ch, old_content.get(id(ch))) for ch in changes} if diff else {}
    kept: dict[int, str] = {}
    if not check:
        if backup_dir is not None and hand_edited:
            kept = keep_hand_edited(c, [ch for ch in changes if id(ch) in hand_edited], backup_dir)
        apply_remote(c, changes, dirs)
    for plan in plans:
        if isinstance(plan, NoOp):
            results.append(Result(plan.desired.name, Status.OK, "", host=host))
            continue
        reasons = list(plan.reasons)
        if id(plan) in hand_edited:
            reasons[reasons.index("content differs")] = "edited by hand on the host since it was generated"
            if id(plan) in kept:
                reasons.append(f"the edited copy is kept in {kept[id(plan)]}")
            elif check and backup_dir is not None:
                reasons.append("the edited copy would be kept in .mmstack/backups/")
        results.append(Result(plan.desired.name, Status.CHANGED, ", ".join(reasons),
                              diff=diffs.get(id(plan)), host=host))
    return results


def keep_hand_edited(c: Any, changes: Sequence[RemoteChange], backup_dir: str) -> dict[int, str]:
    """Copy each hand-edited file into ``backup_dir`` on the host (0700; the copy keeps the
    file's own mode), in one command; returns change id -> where its copy went."""
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    q = shell_path
    kept: dict[int, str] = {}
    steps = [f"mkdir -p -m 700 -- {q(backup_dir)} && chmod 700 -- {q(backup_dir)}"]
    for ch in changes:
        target = posixpath.join(backup_dir, f"{posixpath.basename(ch.fact.path)}.{stamp}.hand-edited")
        steps.append(f"cp -p -- {q(ch.fact.path)} {q(target)}")
        kept[id(ch)] = target
    c.run(" && ".join(steps), hide=True, in_stream=False)
    return kept


def remote_diff(change: RemoteChange, old: bytes | None) -> str:
    """Unified diff of the host's copy (``old``, as fetched) against the desired content,
    secrets masked."""
    if change.fact.exists and not change.content_changed:
        old = change.desired.content
    fact = FileFact(Path(change.fact.path), old, change.fact.mode)
    text = unified_diff(FileChange(change.desired, fact, change.reasons))
    if not text:
        name = change.desired.name
        return f"--- {name} (on host)\n+++ {name} (desired)\n(only masked secret values differ)\n"
    return text


def sync_job(files_for: Callable[[Any], Sequence[DesiredFile]], *, check: bool = False,
             diff: bool = False) -> Callable[[Any, Any, Any], None]:
    """A per-host job for `parallel.run_connected`: sync ``files_for(host)`` to that host,
    keeping hand-edited copies in the host's ``.mmstack/backups``."""

    def job(conn: Any, host: Any, hr: Any) -> None:
        for result in sync_files(conn, files_for(host), check=check, diff=diff, host=host.name,
                                 backup_dir=hand_edit_backup_dir(host.stack_dir)):
            hr.add(result)

    return job
