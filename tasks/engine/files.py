"""Files as facts, plans and atomic writes.

The three steps every file-producing task follows:

1. ``read_fact(path)`` gathers what is on disk (content and mode), once.
2. ``plan_file(fact, desired)`` is pure: it returns a `FileChange` when the disk differs from
   what is desired, or a `NoOp` carrying the reason nothing needs doing.
3. ``apply_change(change)`` writes atomically (temp file in the same directory, fsync,
   rename) with the intended mode, so a reader never sees half a file.

Files that mmstack generates carry a checksum of their body in their header; a file whose
body no longer matches its own checksum was edited by hand, which is reported as such and
saved aside before it is overwritten, so a hand edit is never silently lost.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MmstackError
from .masking import MASK, mask_values

if TYPE_CHECKING:
    from .report import Reporter

CHECKSUM_RE = re.compile(rb"^(?:#|--) checksum: sha256:([0-9a-f]{64})$", re.MULTILINE)
# JSON has no comments: a generated JSON object carries its checksum as its first member, on a
# line of its own (see with_json_checksum).
JSON_CHECKSUM_RE = re.compile(rb'\A\{"mmstack_checksum": "sha256:([0-9a-f]{64})",$', re.MULTILINE)


@dataclass(frozen=True)
class FileFact:
    """What is on disk at ``path`` (``content`` is None when the file is absent)."""

    path: Path
    content: bytes | None
    mode: int | None

    @property
    def exists(self) -> bool:
        return self.content is not None


@dataclass(frozen=True)
class DesiredFile:
    """What a task wants at ``path``.

    ``secret_values`` are masked in any diff; ``mask_keys`` masks the value of those
    ``KEY=value`` lines on both sides of a diff (so a replaced secret, which is no longer among
    the current values, is hidden too); ``mask_all_values`` masks every ``KEY=value`` line.
    """

    path: Path
    content: bytes
    mode: int = 0o644
    label: str | None = None
    secret_values: tuple[str, ...] = ()
    mask_all_values: bool = False
    mask_keys: tuple[str, ...] = ()
    dir_mode: int | None = None

    @property
    def name(self) -> str:
        return self.label or str(self.path)


@dataclass(frozen=True)
class FileChange:
    desired: DesiredFile
    old: FileFact
    reasons: tuple[str, ...]
    hand_edited: bool = False

    @property
    def content_changed(self) -> bool:
        return self.old.content != self.desired.content


@dataclass(frozen=True)
class NoOp:
    desired: DesiredFile
    reason: str


def read_fact(path: Path) -> FileFact:
    """Read a file's content and permission bits; absent files give an empty fact."""
    try:
        with open(path, "rb") as fh:
            content = fh.read()
            mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
    except FileNotFoundError:
        return FileFact(path, None, None)
    except IsADirectoryError:
        raise MmstackError("a directory stands where a file belongs", file=str(path),
                           fix="move the directory away; mmstack never deletes what it did not write") from None
    except PermissionError:
        raise MmstackError("permission denied reading the file", file=str(path),
                           fix="run as the user that owns the stack directory") from None
    return FileFact(path, content, mode)


def body_checksum(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def with_checksum_header(header_lines: Iterable[str], body: bytes, comment: str = "#") -> bytes:
    """Prefix ``body`` with comment lines and a checksum line covering the body.

    ``comment`` is the file format's comment marker (``#`` for YAML, env files and shell,
    ``--`` for SQL).
    """
    head = "".join(f"{comment} {line}\n" if line else f"{comment}\n" for line in header_lines)
    return head.encode() + f"{comment} checksum: sha256:{body_checksum(body)}\n".encode() + body


def with_json_checksum(body: bytes) -> bytes:
    """A JSON object (``body`` as ``json.dumps(obj, indent=2)`` writes it) with its checksum.

    The checksum becomes the object's first member, on the first line, and covers the rest.
    """
    if not body.startswith(b"{\n") or body.strip() == b"{}":
        raise ValueError("with_json_checksum needs a non-empty JSON object written with indent")
    rest = body[2:]
    return b'{"mmstack_checksum": "sha256:' + body_checksum(rest).encode() + b'",\n' + rest


def is_hand_edited(content: bytes) -> bool:
    """True when a generated file's body no longer matches the checksum in its own header."""
    match = JSON_CHECKSUM_RE.search(content) or CHECKSUM_RE.search(content)
    if not match:
        return False
    return body_checksum(content[match.end() + 1 :]) != match.group(1).decode()


def plan_file(fact: FileFact, desired: DesiredFile) -> FileChange | NoOp:
    """Pure: compare what is on disk with what is desired."""
    if not fact.exists:
        return FileChange(desired, fact, ("absent",))
    reasons: list[str] = []
    hand_edited = False
    if fact.content != desired.content:
        assert fact.content is not None
        hand_edited = is_hand_edited(fact.content)
        reasons.append("edited by hand since it was generated" if hand_edited else "content differs")
    if fact.mode != desired.mode:
        reasons.append(f"mode {fact.mode:04o} -> {desired.mode:04o}")
    if not reasons:
        return NoOp(desired, "up to date")
    return FileChange(desired, fact, tuple(reasons), hand_edited)


_ASSIGNMENT = re.compile(r"(?m)^(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=)(.+)$")


def mask_text(text: str, desired: DesiredFile, changed: frozenset[str] = frozenset()) -> str:
    """Hide secret values in ``text`` (used for diffs and any other echo of file content).

    Keys in ``changed`` are masked as ``******** (changed)`` so a diff still shows that a
    secret line differs without showing either value.
    """
    if desired.mask_all_values or desired.mask_keys:
        keys = set(desired.mask_keys)

        def hide(m: re.Match[str]) -> str:
            if not desired.mask_all_values and m.group(2) not in keys:
                return m.group(0)
            return m.group(1) + MASK + (" (changed)" if m.group(2) in changed else "")

        text = _ASSIGNMENT.sub(hide, text)
    return mask_values(text, desired.secret_values)


def unified_diff(change: FileChange) -> str:
    """A unified diff of the change with secret values masked on both sides."""
    old = (change.old.content or b"").decode("utf-8", "replace")
    new = change.desired.content.decode("utf-8", "replace")
    before = {m.group(2): m.group(3) for m in _ASSIGNMENT.finditer(old)}
    after = {m.group(2): m.group(3) for m in _ASSIGNMENT.finditer(new)}
    changed = frozenset(k for k in after if k in before and before[k] != after[k])
    old, new = mask_text(old, change.desired), mask_text(new, change.desired, changed)
    name = change.desired.name
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{name} (on disk)" if change.old.exists else "/dev/null",
        tofile=f"{name} (desired)",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if not text and not change.content_changed:
        return f"--- {name}\n+++ {name}\n(mode only: {', '.join(change.reasons)})\n"
    return text


def atomic_write(path: Path, data: bytes, mode: int = 0o644, dir_mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temp file is created with ``mode`` already applied (never world-readable first), is
    fsync'ed, then renamed over the target; the directory is fsync'ed so the rename survives a
    crash.
    """
    path = Path(path)
    parent = path.parent
    if dir_mode is not None:
        parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
        os.chmod(parent, dir_mode)
    else:
        parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def apply_change(change: FileChange, backup_dir: Path | None = None) -> Path | None:
    """Perform a planned change; returns where a hand-edited original was saved, if anywhere."""
    saved: Path | None = None
    if change.hand_edited and backup_dir is not None and change.old.content is not None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        saved = backup_dir / f"{change.desired.path.name}.{stamp}.hand-edited"
        atomic_write(saved, change.old.content, change.old.mode or 0o600, dir_mode=0o700)
    if change.content_changed:
        atomic_write(change.desired.path, change.desired.content, change.desired.mode,
                     change.desired.dir_mode)
    else:
        os.chmod(change.desired.path, change.desired.mode)
    return saved


def converge_files(
    desired: Iterable[DesiredFile],
    reporter: "Reporter",
    *,
    check: bool,
    backup_dir: Path | None = None,
    describe: Callable[[DesiredFile], str] | None = None,
) -> int:
    """Gather facts, plan, and (unless ``check``) apply, reporting one result per file.

    Returns the number of files that changed (or would change under ``check``).
    """
    changed = 0
    for want in desired:
        plan = plan_file(read_fact(want.path), want)
        if isinstance(plan, NoOp):
            reporter.ok(want.name, describe(want) if describe else "")
            continue
        changed += 1
        message = ", ".join(plan.reasons)
        diff = unified_diff(plan) if reporter.show_diff else None
        if not check:
            saved = apply_change(plan, backup_dir)
            if saved is not None:
                message += f"; previous copy saved to {saved}"
            # Check again, as the converge loop promises: a write that did not take (another
            # writer, a filesystem that drops modes) is a failure, not a silent success.
            again = plan_file(read_fact(want.path), want)
            if not isinstance(again, NoOp):
                reporter.failed(want.name, f"still differs after writing: {', '.join(again.reasons)}")
                continue
        reporter.changed(want.name, message, diff=diff)
    return changed
