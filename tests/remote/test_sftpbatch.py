"""Many files over one SFTP session with every request sent ahead (`remote.sftpbatch`), over
real SSH: bytes and modes exact, several chunks, a failure named and nothing left open."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tasks.remote.hosts import connected
from tasks.remote.inventory import Inventory
from tasks.remote.sftpbatch import CHUNK, write_files

pytestmark = pytest.mark.ssh


def test_files_land_with_their_bytes_and_modes(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    root = Path(h1.stack_dir)
    root.mkdir(parents=True)
    big = os.urandom(CHUNK * 2 + 123)  # three WRITE requests
    files = [(str(root / "a.yml"), b"a: 1\n", 0o644), (str(root / "secret.env"), b"K=v\n", 0o600),
             (str(root / "run.sh"), b"#!/bin/sh\n", 0o755), (str(root / "big.bin"), big, 0o640),
             (str(root / "empty"), b"", 0o600)]
    with connected(h1) as conn:
        write_files(conn.sftp(), files)
    for path, content, mode in files:
        assert Path(path).read_bytes() == content
        assert stat.S_IMODE(Path(path).stat().st_mode) == mode


def test_a_failure_names_its_file_and_leaves_the_session_usable(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    root = Path(h1.stack_dir)
    root.mkdir(parents=True)
    (root / "exists").write_bytes(b"old")  # created exclusively: an existing name is refused
    with connected(h1) as conn:
        sftp = conn.sftp()
        with pytest.raises(IOError) as info:
            write_files(sftp, [(str(root / "new1"), b"1", 0o644), (str(root / "exists"), b"x", 0o644),
                               (str(root / "missing-dir" / "f"), b"y", 0o644)])
        assert str(root / "exists") in str(info.value)
        assert (root / "exists").read_bytes() == b"old"
        write_files(sftp, [(str(root / "after"), b"ok", 0o600)])  # every handle was closed
    assert (root / "after").read_bytes() == b"ok"


def test_without_the_request_internals_files_go_one_by_one(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    root = Path(h1.stack_dir)
    root.mkdir(parents=True)

    class PublicOnly:  # what a paramiko without `_async_request` would still offer
        def __init__(self, sftp):
            self.open = sftp.open

    with connected(h1) as conn:
        write_files(PublicOnly(conn.sftp()), [(str(root / "one"), b"1\n", 0o600), (str(root / "two"), b"2\n", 0o644)])
    assert (root / "one").read_bytes() == b"1\n" and stat.S_IMODE((root / "one").stat().st_mode) == 0o600
    assert (root / "two").read_bytes() == b"2\n" and stat.S_IMODE((root / "two").stat().st_mode) == 0o644
