"""The local test images (built by ``tests/images/build.sh``), for tests and benchmarks.

    from tests.support.images import ensure_test_images
    refs = ensure_test_images()     # {"postgres": "mmstack-test/postgres:17", "redis": ..., "standin": ...}

Images are built once per machine and reused while their build inputs are unchanged (each carries
the label ``org.mmstack.test-image.hash``); the first build takes about a minute (debootstrap),
later calls a fraction of a second. Building needs root and a reachable Docker engine. See
``tests/images/README.md`` for the contract of each image.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
BUILD_SCRIPT = IMAGES_DIR / "build.sh"
HASH_LABEL = "org.mmstack.test-image.hash"

# Logical name -> image reference (what build.sh produces).
IMAGE_REFS: dict[str, str] = {
    "postgres": "mmstack-test/postgres:17",
    "redis": "mmstack-test/redis:8",
    "standin": "mmstack-test/standin:1",
    "prometheus": "mmstack-test/prometheus:1",
    "curl": "mmstack-test/curl:1",
}


class TestImageError(RuntimeError):
    """The test images could not be built."""

    __test__ = False  # not a test class, despite the name


@lru_cache(maxsize=1)
def ensure_test_images(timeout: float = 1200) -> dict[str, str]:
    """Build the test images if missing or stale and return ``{logical name: image ref}``."""
    try:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise TestImageError(f"{BUILD_SCRIPT} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise TestImageError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    refs = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    if refs != IMAGE_REFS:
        raise TestImageError(f"{BUILD_SCRIPT} printed {refs}, expected {IMAGE_REFS}")
    return dict(refs)
