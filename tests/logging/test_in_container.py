"""The healthcheck and the setup one-shot run by the real Docker Engine in a container with bash
and curl (mmstack-test/curl:1, as the Elasticsearch image has them), against stand-ins on the
host's loopback (the container shares the host's network)."""

from __future__ import annotations

import time

import pytest

from tasks.schema import logging as elk
from tests.support.dockertest import labelled_resources, wait_healthy
from tests.support.elastic_standin import StandIn

pytestmark = pytest.mark.docker
SECOND = 1_000_000_000


def engine_healthcheck(compose_docs, url: str) -> dict:
    test = list(compose_docs["compose.yml"]["services"]["elasticsearch"]["healthcheck"]["test"])
    # Compose turns `$$` into `$` before the engine sees the test.
    test[1] = test[1].replace("$$", "$").replace("http://127.0.0.1:9200", url)
    return {"test": test, "interval": SECOND // 2, "timeout": 3 * SECOND, "retries": 3, "start_period": 0}


def wait_unhealthy(container, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "?")
        if status == "unhealthy":
            break
        time.sleep(0.25)
    return status


def test_engine_runs_the_healthcheck_healthy_with_the_env_password_only(docker_client, test_images,
                                                                       compose_docs, es_secrets):
    password = es_secrets["ELASTIC_PASSWORD"]
    with StandIn("elasticsearch", password, watch=(password,)) as es, labelled_resources(docker_client) as res:
        hc = engine_healthcheck(compose_docs, es.url)
        good = docker_client.containers.run(test_images["curl"], ["sleep", "120"], detach=True, labels=res.labels,
                                            network_mode="host", environment={"ELASTIC_PASSWORD": password},
                                            healthcheck=hc)
        bad = docker_client.containers.run(test_images["curl"], ["sleep", "120"], detach=True, labels=res.labels,
                                           network_mode="host", healthcheck=hc)
        wait_healthy(good, timeout=60)
        assert wait_unhealthy(bad) == "unhealthy"
        # What `docker inspect` shows names the variable, never its value.
        good.reload()
        assert password not in str(good.attrs["Config"]["Healthcheck"])
        assert "${ELASTIC_PASSWORD}" in good.attrs["Config"]["Healthcheck"]["Test"][1]
        assert es.state.argv_leaks == []
        assert ("GET", "/_cluster/health", 200) in es.state.requests
        assert ("GET", "/_cluster/health", 401) in es.state.requests


def test_setup_one_shot_runs_in_a_container_and_reruns(docker_client, test_images, es_secrets, tmp_path):
    script = tmp_path / "elasticsearch-setup.sh"
    script.write_text(elk.elasticsearch_setup_script("elk", "14d"))
    script.chmod(0o755)
    with StandIn("elasticsearch", es_secrets["ELASTIC_PASSWORD"], watch=tuple(es_secrets.values())) as es, \
            labelled_resources(docker_client) as res:
        for _ in range(2):
            container = docker_client.containers.run(
                test_images["curl"], ["/mmstack/elasticsearch-setup.sh"], entrypoint=["/bin/bash"], detach=True,
                labels=res.labels, network_mode="host",
                environment={**es_secrets, "MMSTACK_ES_URL": es.url},
                volumes={str(script): {"bind": "/mmstack/elasticsearch-setup.sh", "mode": "ro"}})
            result = container.wait(timeout=60)
            logs = container.logs().decode()
            assert result["StatusCode"] == 0, logs
            for value in es_secrets.values():
                assert value not in logs
        assert es.state.users[elk.WRITER_USER]["password"] == es_secrets["LOGSTASH_WRITER_PASSWORD"]
        assert es.state.users["kibana_system"]["password"] == es_secrets["KIBANA_SYSTEM_PASSWORD"]
        assert es.state.argv_leaks == []
