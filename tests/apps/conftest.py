"""What the n8n tests share: a stack copy set up as users get it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.n8n_app import require_n8n
from tests.support.stackcopy import make_stack_copy, run_inv

@pytest.fixture(scope="session")
def set_up_stack(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``set_up_stack(name, *envs, settings=None)``: a fresh stack copy (``settings`` as its
    mmstack.yaml) after `inv setup --env ENV` for each environment, in order. Only where the
    real n8n is installed (`require_n8n`: skipped without it, failed on CI): there is nothing
    to test the files against otherwise."""

    def make(name: str, *envs: str, settings: dict[str, Any] | None = None) -> Path:
        require_n8n()
        root = make_stack_copy(tmp_path_factory.mktemp(name) / "stack")
        if settings:
            (root / "mmstack.yaml").write_text(yaml.safe_dump(settings))
        for env in envs:
            proc = run_inv(root, "setup", "--env", env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return root

    return make
