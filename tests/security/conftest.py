from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.helpers import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus as a stack directory (built once; tests must not modify it)."""
    return build_corpus(tmp_path_factory.mktemp("security") / "stack")
