from __future__ import annotations

from pathlib import Path

import pytest

from tests.secrets.helpers import copy_stack

KEY_ENV = "MMSTACK_TEST_SECRETS_KEY"


@pytest.fixture()
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Tests choose their key explicitly; a key in the developer's environment must not leak in.
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("MMSTACK_SECRETS_KEY", raising=False)
    return copy_stack(tmp_path / "stack")


@pytest.fixture(autouse=True)
def usual_umask():
    """Modes must come out right under the common umask 022 (not thanks to a strict one)."""
    import os

    old = os.umask(0o022)
    yield
    os.umask(old)
