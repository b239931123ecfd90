"""`EngineAPI` reaches engines its standard-library client cannot: a Docker context (read from
the CLI's own store) goes through the docker SDK, and answers the same calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks.engine.errors import DockerError
from tasks.stack.engine import EngineAPI, current_context

pytestmark = [pytest.mark.docker]


def _context(tmp_path: Path, name: str, socket_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    proc = subprocess.run(["docker", "context", "create", name, "--docker", f"host=unix://{socket_path}"],
                          env={**os.environ, "DOCKER_CONFIG": str(config)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    subprocess.run(["docker", "context", "use", name], env={**os.environ, "DOCKER_CONFIG": str(config)},
                   capture_output=True, check=True)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))


def test_a_docker_context_is_followed(docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The context reaches the engine through another path to its socket, so the default
    # socket is not what answers.
    alias = tmp_path / "engine.sock"
    alias.symlink_to("/var/run/docker.sock")
    _context(tmp_path, "mmstest", str(alias), monkeypatch)
    assert current_context() == "mmstest"
    api = EngineAPI()
    try:
        assert api.host == f"unix://{alias}"
        assert api.version()["ApiVersion"]
        ids = {c["Id"] for c in api.containers()}
        assert ids == {c.id for c in docker_client.containers.list(all=True)}
    finally:
        api.close()


def test_a_context_whose_engine_is_gone_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _context(tmp_path, "gone", str(tmp_path / "nothing.sock"), monkeypatch)
    with pytest.raises(DockerError) as info:
        EngineAPI().version()
    assert "not reachable" in str(info.value) and info.value.fix


def test_docker_host_overrides_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _context(tmp_path, "gone", str(tmp_path / "nothing.sock"), monkeypatch)
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert current_context() is None
    assert EngineAPI().version()["ApiVersion"]
