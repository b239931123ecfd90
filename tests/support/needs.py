"""When a test needs a tool, a venv or a fixture this machine lacks.

Off CI the test is skipped with the reason and the fix; with ``CI=true`` it fails instead, since
CI (.ci/run) installs everything the suite needs, and a skipped test there would pass unseen.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str, fix: str) -> NoReturn:
    """Skip (fail where CI=true) because ``reason``; ``fix`` says how to get what is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run this test ({fix})", pytrace=False)
    pytest.skip(f"{reason} ({fix})")
    raise AssertionError("unreachable")
