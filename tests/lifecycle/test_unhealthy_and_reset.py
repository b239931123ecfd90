"""An unhealthy service on the real engine, and `inv reset`, on the small monitoring stack.

The stack copy runs the `elk` environment (five stand-ins) with Kibana's stand-in told never to
serve its health endpoint, so its healthcheck fails after three quick tries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lifecycle.conftest import PROJECT_LABEL, LiveStack, pick_offset, remove_project
from tests.lifecycle.stackconfig import write_test_settings
from tests.support.stackcopy import make_stack_copy

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory, docker_client: Any,
               test_images: dict[str, str]) -> Iterator[LiveStack]:
    root = make_stack_copy(tmp_path_factory.mktemp("unhealthy") / "stack")
    token = uuid.uuid4().hex[:8]
    project = f"mmsuh{token}"
    settings = write_test_settings(root, project, pick_offset(root, int(token, 16)), test_images)
    doc = yaml.safe_load(settings.read_text())
    kibana = doc["overrides"]["services"]["kibana"]
    kibana["environment"]["STANDIN_UNHEALTHY"] = "1"
    kibana["healthcheck"] = {"retries": 3, "start_period": "0s"}
    settings.write_text(yaml.safe_dump(doc, sort_keys=False))
    stack = LiveStack(root, project, 0, docker_client)
    try:
        stack.inv_ok("setup", "--env", "elk")
        yield stack
    finally:
        remove_project(docker_client, project)


def test_failing_healthcheck_is_reported_with_its_log_and_fails_the_task(monitoring: LiveStack) -> None:
    # Kibana starts only after Elasticsearch is healthy and elasticsearch-setup has run: leave
    # that chain time on a loaded machine (an unhealthy Kibana still fails the task at once).
    proc = monitoring.inv("start-monitoring", "--timeout", "90")
    assert proc.returncode != 0
    failed = [l for l in proc.stdout.splitlines() if l.startswith("failed: [kibana]")]
    assert failed, proc.stdout
    assert "kibana | standin: serving http on port 5601" in proc.stdout

    code, doc = monitoring.inv_json("status")
    assert code != 0
    rows = {r["item"]: r for r in doc["results"]}
    assert rows["kibana"]["status"] == "failed" and "unhealthy" in rows["kibana"]["message"]
    assert any("serving http on port 5601" in line for line in rows["kibana"]["data"]["log_tail"])
    assert rows["elasticsearch"]["status"] == "ok"


def test_reset_starts_over_from_scratch(monitoring: LiveStack) -> None:
    store = monitoring.root / ".mmstack" / "secrets" / "elk.yaml"
    before = store.read_text()
    refused = monitoring.inv("reset")  # no terminal and no --yes: nothing happens
    assert refused.returncode != 0 and store.read_text() == before

    monitoring.inv_ok("reset", "--yes")

    flt = {"label": f"{PROJECT_LABEL}={monitoring.project}"}
    client = monitoring.client
    assert client.containers.list(all=True, filters=flt) == []
    assert client.volumes.list(filters=flt) == []
    after = store.read_text()
    assert after != before, "reset regenerates the secrets"
    assert (monitoring.root / "compose.yml").is_file()
    assert (monitoring.root / "env" / "elk" / "grafana.env").is_file()
    assert Path(monitoring.root / "mmstack.yaml").is_file(), "the user's settings are not generated output"


def test_an_image_that_cannot_be_pulled_fails_with_composes_reason(
        tmp_path: Path, docker_client: Any, test_images: dict[str, str]) -> None:
    # As on a machine that cannot reach the registry: the user must see the pull that failed,
    # and for which image, not only the services left without a container; check mode too.
    root = make_stack_copy(tmp_path / "stack")
    token = uuid.uuid4().hex[:8]
    project = f"mmspull{token}"
    settings = write_test_settings(root, project, pick_offset(root, int(token, 16)), test_images)
    doc = yaml.safe_load(settings.read_text())
    doc.setdefault("images", {})["logstash"] = "mmstack-test/not-built-anywhere:1"
    settings.write_text(yaml.safe_dump(doc, sort_keys=False))
    stack = LiveStack(root, project, 0, docker_client)
    try:
        stack.inv_ok("setup", "--env", "elk")
        check = stack.inv("start-monitoring", "--check")
        assert check.returncode == 2, check.stdout + check.stderr
        line = next(l for l in check.stdout.splitlines() if l.startswith("failed: [start elk]"))
        assert "dry run failed" in line
        assert "mmstack-test/not-built-anywhere" in check.stdout
        assert "would be created" not in check.stdout

        proc = stack.inv("start-monitoring", "--timeout", "30")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        reason = next(l for l in proc.stdout.splitlines() if l.startswith("failed: [start elk]"))
        assert "`docker compose up` failed (exit 1)" in reason
        assert "service logstash (image mmstack-test/not-built-anywhere:1):" in proc.stdout, proc.stdout
        assert "failed: [logstash] no container: `up` stopped before creating it" in proc.stdout
    finally:
        remove_project(docker_client, project)
