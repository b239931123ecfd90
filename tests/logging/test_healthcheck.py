"""Elasticsearch's generated healthcheck, run for real (sh and curl) against a stand-in that
demands basic auth: it passes with the password from the container's environment, fails without
it, and the password is never on a command line."""

from __future__ import annotations

import os
import subprocess

from tests.support.elastic_standin import StandIn


def healthcheck_shell(compose_docs, service: str, url: str) -> str:
    test = compose_docs["compose.yml"]["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    # What Compose hands the engine: `$$` is its escape for a literal `$`.
    return test[1].replace("$$", "$").replace("http://127.0.0.1:9200", url)


def run(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", cmd], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=30)


def test_elasticsearch_healthcheck_signs_in_without_a_password_in_argv(compose_docs, es_secrets, curl_bin):
    password = es_secrets["ELASTIC_PASSWORD"]
    with StandIn("elasticsearch", password, watch=(password,)) as es:
        cmd = healthcheck_shell(compose_docs, "elasticsearch", es.url)
        assert password not in cmd and "${ELASTIC_PASSWORD}" in cmd
        ok = run(cmd, {"ELASTIC_PASSWORD": password})
        assert ok.returncode == 0, ok.stderr
        assert es.state.requests[-1] == ("GET", "/_cluster/health", 200)
        assert es.state.argv_leaks == []

        wrong = run(cmd, {"ELASTIC_PASSWORD": "wrong-password"})
        assert wrong.returncode != 0
        missing = run(cmd, {})
        assert missing.returncode != 0
        assert [s for _, _, s in es.state.requests[-2:]] == [401, 401]
    assert password not in ok.stdout + ok.stderr


def test_the_old_healthcheck_without_credentials_is_refused(compose_docs, es_secrets, curl_bin):
    """What issue 9 saw: an unauthenticated curl gets 401 and the container never turns healthy."""
    with StandIn("elasticsearch", es_secrets["ELASTIC_PASSWORD"]) as es:
        proc = run(f"curl -fsS {es.url}/_cluster/health >/dev/null", {})
    assert proc.returncode != 0


def test_kibana_healthcheck_waits_until_kibana_serves(compose_docs, curl_bin):
    with StandIn("kibana", "unused") as kb:
        test = compose_docs["compose.yml"]["services"]["kibana"]["healthcheck"]["test"][1]
        cmd = test.replace("$$", "$").replace("http://127.0.0.1:5601", kb.url)
        kb.state.ready = False
        assert run(cmd, {}).returncode != 0  # 503: not ready yet
        kb.state.ready = True
        assert run(cmd, {}).returncode == 0  # 401 to an anonymous request: it serves
        assert [s for _, _, s in kb.state.requests] == [503, 401]
