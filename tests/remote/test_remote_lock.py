"""The host's stack lock over real SSH: exclusive between deploys, shared with local runs on the
host (the same .mmstack/lock), released when its channel closes or the connection drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.engine.errors import LockError
from tasks.engine.lock import stack_lock
from tasks.remote.hosts import connected
from tasks.remote.inventory import Inventory
from tasks.remote.lock import host_lock

pytestmark = pytest.mark.ssh


def test_one_holder_at_a_time(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    with connected(h1) as first, connected(h1) as second:
        with host_lock(first, h1.stack_dir):
            with pytest.raises(LockError) as info:
                with host_lock(second, h1.stack_dir, timeout=0.5):
                    pass
            assert "another mmstack run" in str(info.value)
        with host_lock(second, h1.stack_dir, timeout=2):  # released with the channel
            pass


def test_a_local_run_on_the_host_and_a_deploy_exclude_each_other(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    state = Path(h1.stack_dir) / ".mmstack"  # the loopback host's files are this machine's
    with connected(h1) as conn:
        with host_lock(conn, h1.stack_dir):
            with pytest.raises(LockError):
                with stack_lock(state, timeout=0.3):
                    pass
        with stack_lock(state, timeout=0.3):
            with pytest.raises(LockError):
                with host_lock(conn, h1.stack_dir, timeout=0.3):
                    pass


def test_a_dropped_connection_releases_the_lock(inventory: Inventory) -> None:
    h1 = inventory.select("h1")[0]
    from tasks.remote.hosts import open_connection

    first = open_connection(h1)
    lock = host_lock(first, h1.stack_dir)
    lock.__enter__()
    first.client.get_transport().close()  # as if the deploying machine went away
    with connected(h1) as second:
        with host_lock(second, h1.stack_dir, timeout=5):
            pass
