"""A stack copy set up as users get it (`inv setup`), shared by the monitoring tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.stackcopy import make_stack_copy, run_inv


@pytest.fixture(scope="session")
def set_up_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stack = make_stack_copy(tmp_path_factory.mktemp("monitoring") / "stack")
    proc = run_inv(stack, "setup")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return stack
