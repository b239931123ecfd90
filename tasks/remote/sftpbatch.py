"""Many small files over one SFTP session in two round trips, not three per file.

paramiko's file API waits for each answer: open, chmod, close are a round trip each, so a
first deploy of forty files waited on 120 answers per host (and, with many hosts, on as many
thread wake-ups in the client). SFTP lets a client send requests ahead (requests on one handle
are carried out in order), so `write_files` sends every OPEN at once, collects the handles,
then sends every file's FSETSTAT, WRITE(s) and CLOSE at once and collects the statuses.

Each file is still created exclusively (a temp name, ``O_EXCL``), with its permissions given
at creation (so it is never more open than ``mode``, whatever the server's umask) and set to
exactly ``mode`` before any byte is written. Where the paramiko in use lacks the request
internals this relies on, the files go one by one through its public API instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CHUNK = 32768  # paramiko's (and OpenSSH's) largest SFTP write


class _Answers:
    """Collects the answers to requests sent ahead (paramiko hands them to the request's
    "file object")."""

    def __init__(self) -> None:
        self.got: dict[int, tuple[int, Any]] = {}

    def _async_response(self, t: int, msg: Any, num: int) -> None:
        self.got[num] = (t, msg)


def _pipelined(sftp: Any) -> bool:
    return all(hasattr(sftp, name) for name in ("_async_request", "_read_response", "_adjust_cwd",
                                                "_convert_status"))


def write_files(sftp: Any, files: Sequence[tuple[str, bytes, int]]) -> None:
    """Create and write each ``(path, content, mode)`` (paths as SFTP sees them; none may exist).
    Raises ``IOError`` naming the first path that failed; files already created stay for the
    caller to remove (it knows every temp name)."""
    if not files:
        return
    if not _pipelined(sftp):
        from .sync import write_via_sftp

        for path, content, mode in files:
            write_via_sftp(sftp, path, content, mode)
        return
    from paramiko.sftp import (CMD_CLOSE, CMD_FSETSTAT, CMD_HANDLE, CMD_OPEN, CMD_STATUS, CMD_WRITE,
                               SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE, int64)
    from paramiko.sftp_attr import SFTPAttributes

    def attrs(mode: int) -> Any:
        a = SFTPAttributes()
        a.st_mode = mode
        return a

    answers = _Answers()

    def collect(nums: list[int]) -> None:
        while any(n not in answers.got for n in nums):
            sftp._read_response()  # one answer, handed to `answers`

    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL
    opens = [sftp._async_request(answers, CMD_OPEN, sftp._adjust_cwd(path), flags, attrs(mode))
             for path, _, mode in files]
    collect(opens)
    handles: list[bytes | None] = []
    failure: tuple[str, BaseException] | None = None
    for (path, _, _), num in zip(files, opens):
        t, msg = answers.got.pop(num)
        if t == CMD_HANDLE:
            handles.append(msg.get_binary())
            continue
        handles.append(None)
        if failure is None:
            failure = (path, _status_error(sftp, t, msg, CMD_STATUS) or IOError("the server gave no file handle"))
    sent: list[tuple[str, int]] = []
    for (path, content, mode), handle in zip(files, handles):
        if handle is None:
            continue
        if failure is None:  # after a failed open, only close what did open
            sent.append((path, sftp._async_request(answers, CMD_FSETSTAT, handle, attrs(mode))))
            for offset in range(0, len(content), CHUNK):
                sent.append((path, sftp._async_request(answers, CMD_WRITE, handle, int64(offset),
                                                       content[offset:offset + CHUNK])))
        sent.append((path, sftp._async_request(answers, CMD_CLOSE, handle)))
    collect([num for _, num in sent])
    for path, num in sent:
        t, msg = answers.got.pop(num)
        if failure is None:
            error = _status_error(sftp, t, msg, CMD_STATUS)
            if error is not None:
                failure = (path, error)
    if failure is not None:
        path, error = failure
        raise IOError(f"{path}: {error}") from error


def _status_error(sftp: Any, t: int, msg: Any, status: int) -> BaseException | None:
    """The error an SFTP answer carries (None for "OK")."""
    if t != status:
        return IOError(f"unexpected SFTP answer type {t}")
    try:
        sftp._convert_status(msg)
    except (IOError, EOFError) as exc:
        return exc
    return None
