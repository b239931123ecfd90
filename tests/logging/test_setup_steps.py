"""The ELK one-shots' scripts, run for real (bash and curl) against Elasticsearch/Kibana stand-ins.

Debian ships no Elasticsearch or Kibana and no registry is reachable, so the stand-ins in
tests/support/elastic_standin.py check each call the way Elasticsearch 9.x and Kibana 9.x do
(auth, paths, content type, kbn-xsrf, reserved users, privilege names, template priorities).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tasks.schema import logging as elk
from tests.support.elastic_standin import INDEX_PRIVILEGES, StandIn


def run_script(body: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "setup.sh"
    script.write_text(body)
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(script)], env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def no_secret_in(proc: subprocess.CompletedProcess[str], secrets: dict[str, str]) -> None:
    for value in secrets.values():
        assert value not in proc.stdout + proc.stderr


def test_elasticsearch_setup_sets_users_roles_and_template_idempotently(tmp_path, es_secrets, curl_bin):
    script = elk.elasticsearch_setup_script("staging", "14d")
    with StandIn("elasticsearch", es_secrets["ELASTIC_PASSWORD"], watch=tuple(es_secrets.values())) as es:
        env = {**es_secrets, "MMSTACK_ES_URL": es.url}
        first = run_script(script, tmp_path, env)
        assert first.returncode == 0, first.stderr
        state = es.state
        assert state.users["kibana_system"]["password"] == es_secrets["KIBANA_SYSTEM_PASSWORD"]
        writer = state.users[elk.WRITER_USER]
        assert writer["password"] == es_secrets["LOGSTASH_WRITER_PASSWORD"]
        assert writer["roles"] == [elk.WRITER_ROLE]
        reader = state.users[elk.READER_USER]
        assert reader["password"] == es_secrets["GRAFANA_ES_READER_PASSWORD"]
        # Least privilege: the writer may only append to the stack's log data streams.
        (writer_indices,) = state.roles[elk.WRITER_ROLE]["indices"]
        assert writer_indices["names"] == ["logs-mmstack-*"]
        assert set(writer_indices["privileges"]) == {"create_doc", "auto_configure"}
        assert set(state.roles[elk.WRITER_ROLE]["cluster"]) == {"monitor"}
        (reader_indices,) = state.roles[elk.READER_ROLE]["indices"]
        assert set(reader_indices["privileges"]) <= {"read", "view_index_metadata"}
        template = state.templates[elk.INDEX_TEMPLATE]
        assert template["index_patterns"] == ["logs-mmstack-*"] and "data_stream" in template
        assert template["template"]["lifecycle"] == {"data_retention": "14d"}
        calls = list(state.requests)

        second = run_script(script, tmp_path, env)
        assert second.returncode == 0, second.stderr
        # The same calls again, all accepted, and the same end state.
        assert state.requests[len(calls):] == calls
        assert state.users[elk.WRITER_USER]["password"] == es_secrets["LOGSTASH_WRITER_PASSWORD"]
        assert all(status < 300 for _, _, status in state.requests)
        assert state.argv_leaks == []
    no_secret_in(first, es_secrets)
    no_secret_in(second, es_secrets)
    assert "kibana_system password: ok" in first.stdout


def test_elasticsearch_setup_fails_clearly_with_a_wrong_elastic_password(tmp_path, es_secrets, curl_bin):
    with StandIn("elasticsearch", "not-the-stored-one") as es:
        env = {**es_secrets, "MMSTACK_ES_URL": es.url}
        proc = run_script(elk.elasticsearch_setup_script("staging", "14d").replace("seq 1 100", "seq 1 2")
                          .replace("sleep 3", "sleep 0"), tmp_path, env)
    assert proc.returncode != 0
    assert "did not answer 200 (last: HTTP 401)" in proc.stderr
    assert es.state.users["kibana_system"]["password"] is None
    no_secret_in(proc, es_secrets)


def test_elasticsearch_setup_refuses_to_run_without_its_passwords(tmp_path, es_secrets, curl_bin):
    env = {k: v for k, v in es_secrets.items() if k != "LOGSTASH_WRITER_PASSWORD"}
    proc = run_script(elk.elasticsearch_setup_script("staging", "14d"), tmp_path, env)
    assert proc.returncode != 0
    assert "LOGSTASH_WRITER_PASSWORD: is not set" in proc.stderr


def test_the_standin_refuses_what_elasticsearch_refuses(tmp_path, es_secrets, curl_bin):
    """The stand-in is strict where the script could go wrong: shown with requests that are."""
    with StandIn("elasticsearch", es_secrets["ELASTIC_PASSWORD"]) as es:
        auth = tmp_path / "auth"
        auth.write_text(f'user = "elastic:{es_secrets["ELASTIC_PASSWORD"]}"\n')

        def code(method: str, path: str, body: str, ctype: str = "application/json") -> str:
            return subprocess.run([curl_bin, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-K", str(auth),
                                   "-X", method, "-H", f"Content-Type: {ctype}", "--data-binary", body,
                                   es.url + path], capture_output=True, text=True).stdout

        assert code("PUT", "/_security/user/kibana_system", '{"password":"abcdefgh"}') == "400"
        assert code("PUT", "/_security/role/x", '{"indices":[{"names":["a"],"privileges":["write2"]}]}') == "400"
        assert code("PUT", "/_security/role/x", '{"cluster":["monitor"]}', "application/x-www-form-urlencoded") == "406"
        assert code("PUT", "/_index_template/t", '{"index_patterns":["logs-mmstack-*"],"data_stream":{},"priority":100}') == "400"
        assert code("PUT", "/_security/user/new", '{"roles":[]}') == "400"
    assert "write2" not in INDEX_PRIVILEGES


def test_kibana_setup_creates_the_data_view_then_converges(tmp_path, es_secrets, curl_bin):
    script = elk.kibana_setup_script("production")
    with StandIn("kibana", es_secrets["ELASTIC_PASSWORD"], watch=(es_secrets["ELASTIC_PASSWORD"],)) as kb:
        env = {"ELASTIC_PASSWORD": es_secrets["ELASTIC_PASSWORD"], "MMSTACK_KIBANA_URL": kb.url}
        first = run_script(script, tmp_path, env)
        assert first.returncode == 0, first.stderr
        view = kb.state.data_views[elk.data_view_id("production")]
        assert view["title"] == "logs-mmstack-*" and view["timeFieldName"] == "@timestamp"
        assert kb.state.default_data_view == elk.data_view_id("production")
        second = run_script(script, tmp_path, env)
        assert second.returncode == 0, second.stderr
        assert list(kb.state.data_views) == [elk.data_view_id("production")]
        methods = [(m, p) for m, p, _ in kb.state.requests]
        # The second run found the view and updated it rather than creating another.
        assert ("POST", f"/api/data_views/data_view/{elk.data_view_id('production')}") in methods
        assert kb.state.argv_leaks == []
    no_secret_in(first, es_secrets)


def test_kibana_rejects_a_request_without_kbn_xsrf(tmp_path, es_secrets, curl_bin):
    with StandIn("kibana", es_secrets["ELASTIC_PASSWORD"]) as kb:
        proc = subprocess.run([curl_bin, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               "-u", f"elastic:{es_secrets['ELASTIC_PASSWORD']}", "-X", "POST",
                               "-H", "Content-Type: application/json", "--data-binary",
                               '{"data_view":{"title":"x"}}', kb.url + "/api/data_views/data_view"],
                              capture_output=True, text=True)
    assert proc.stdout == "400"


def test_the_argv_watch_sees_a_password_on_a_command_line(es_secrets):
    """The /proc check the tests above rely on does catch a client given the password as an
    argument. (curl itself blanks a -u password in its argv once parsed, which hides it from
    this check but not from `ps` while curl starts: mmstack never passes one.)"""
    import sys

    password = es_secrets["ELASTIC_PASSWORD"]
    client = ("import base64, sys, urllib.request; r = urllib.request.Request(sys.argv[1]); "
              "r.add_header('Authorization', 'Basic ' + base64.b64encode(('elastic:' + sys.argv[2]).encode()).decode()); "
              "urllib.request.urlopen(r)")
    with StandIn("elasticsearch", password, watch=(password,)) as es:
        subprocess.run([sys.executable, "-c", client, es.url + "/_security/_authenticate", password], check=True)
        assert es.state.argv_leaks, "a password in argv went unseen"
