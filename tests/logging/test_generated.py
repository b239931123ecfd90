"""What mmstack generates for the ELK stack, environment by environment (pure: no engine)."""

from __future__ import annotations

import yaml

from tasks.schema import logging as elk
from tasks.schema.envfiles import EnvRenderer
from tasks.schema.generate import Override


def overlay_service(compose_docs, env: str, service: str) -> dict:
    return compose_docs[f"compose.{env}.yml"]["services"][service]


def unwrap(value):
    return value.value if isinstance(value, Override) else value


def test_every_service_but_logstash_ships_its_log_where_logstash_runs(stack, compose_docs):
    for env in ("staging", "production", "elk"):
        running = stack.environment(env).services
        assert {"elasticsearch", "elasticsearch-setup", "kibana", "kibana-setup", "logstash"} <= set(running)
        for name in running:
            logging = unwrap(overlay_service(compose_docs, env, name).get("logging"))
            if name == "logstash":
                assert logging is None, "Logstash must not ship its own log to itself"
                continue
            assert logging["driver"] == "gelf", (env, name)
            assert logging["options"]["gelf-address"] == "udp://127.0.0.1:12201"
            assert logging["options"]["mode"] == "non-blocking"
    for env in ("development", "gpu"):
        for name in stack.environment(env).services:
            assert "logging" not in overlay_service(compose_docs, env, name), (env, name)


def test_gelf_address_follows_the_host_port_offset(stack):
    env = stack.environment("staging")
    specs = stack.resolved_services("staging")
    assert elk.log_shipping(env, specs, "redis", 1000)["options"]["gelf-address"] == "udp://127.0.0.1:13201"


def test_kibana_and_logstash_wait_for_the_setup_and_elasticsearch_is_checked_with_credentials(compose_docs):
    base = compose_docs["compose.yml"]["services"]
    assert base["kibana"]["depends_on"]["elasticsearch-setup"]["condition"] == "service_completed_successfully"
    assert base["logstash"]["depends_on"]["elasticsearch-setup"]["condition"] == "service_completed_successfully"
    assert base["elasticsearch-setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    assert base["kibana-setup"]["depends_on"]["kibana"]["condition"] == "service_healthy"
    for one_shot in ("elasticsearch-setup", "kibana-setup"):
        assert base[one_shot]["labels"]["org.mmstack.one-shot"] == "true"
        assert base[one_shot]["restart"] == "no"
    assert "curl -fsS -K -" in base["elasticsearch"]["healthcheck"]["test"][1]


def test_config_files_are_mounted_read_only_only_where_their_consumer_runs(compose_docs):
    grafana = overlay_service(compose_docs, "staging", "grafana")
    mounts = {m["target"]: m for m in unwrap(grafana["volumes"]) if m["type"] == "bind"}
    ds = mounts["/etc/grafana/provisioning/datasources/elasticsearch.yaml"]
    assert ds["read_only"] and ds["source"] == "./config/staging/grafana-datasource-elasticsearch.yaml"
    logstash = {m["target"]: m for m in unwrap(overlay_service(compose_docs, "elk", "logstash")["volumes"])}
    assert logstash["/usr/share/logstash/pipeline/logstash.conf"]["read_only"]
    assert logstash["/usr/share/logstash/mmstack/filter.rb"]["read_only"]


def test_grafana_datasource_is_valid_provisioning_and_reads_only(stack):
    doc = yaml.safe_load(elk.grafana_datasource())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "elasticsearch" and ds["access"] == "proxy" and ds["url"] == elk.ES_URL
    assert ds["basicAuthUser"] == elk.READER_USER
    assert ds["secureJsonData"]["basicAuthPassword"] == "$GRAFANA_ES_READER_PASSWORD"
    assert ds["jsonData"]["index"] == elk.INDEX_PATTERN and ds["jsonData"]["timeField"] == "@timestamp"


def test_env_files_use_each_consumers_level_names_and_reference_no_unread_variable(stack):
    secrets = {name: f"Val{i}ue{i}abcdefgh" for i, name in enumerate(stack.secret_declarations)}
    import copy
    import dataclasses

    renderer = EnvRenderer(stack)
    for level, want in (("warning", "warn"), ("debug", "debug")):
        # A Stack is never changed after loading (it memoizes environments): make another.
        data = copy.deepcopy(stack.data)
        data["environments"]["elk"]["settings"]["log_level"] = level
        files = {r.path: r.body for r in
                 EnvRenderer(dataclasses.replace(stack, data=data)).render_environment("elk", secrets, None)}
        assert f"LOG_LEVEL={want}\n" in files["env/elk/logstash.env"]
        assert f"logger.level={want}\n" in files["env/elk/elasticsearch.env"]
    files = {r.path: r.body for r in renderer.render_environment("elk", secrets, None)}
    kibana = files["env/elk/kibana.env"]
    # Kibana's image would put these on its command line: the passwords go by other names.
    assert "ELASTICSEARCH_PASSWORD" not in kibana and "KIBANA_SYSTEM_PASSWORD=" in kibana
    logstash = files["env/elk/logstash.env"]
    assert "ELASTIC_PASSWORD" not in logstash  # the writer's password only
    digests = dict(line.split("=", 1) for line in logstash.splitlines() if "=" in line)[elk.SECRET_DIGESTS_VAR]
    assert len(digests.split(",")) == len(set(secrets.values()))
    assert "GRAFANA_ES_READER_PASSWORD=" in files["env/elk/grafana.env"]
    yml = yaml.safe_load(elk.kibana_yml("warning"))
    assert yml["logging.root.level"] == "warn"
    assert yml["elasticsearch.password"] == "${KIBANA_SYSTEM_PASSWORD}"


def test_no_script_or_healthcheck_hands_curl_a_password_argument(compose_docs):
    """curl blanks a -u password in its argv once parsed, which would hide it from the /proc
    checks of the run tests: so no generated command may pass -u/--user at all."""
    import re

    texts = [elk.elasticsearch_setup_script("elk", "14d"), elk.kibana_setup_script("elk"),
             compose_docs["compose.yml"]["services"]["elasticsearch"]["healthcheck"]["test"][1]]
    for text in texts:
        assert not re.search(r"curl\b[^\n]*\s(-u|--user)\b", text)
        assert "curl" in text and "-K" in text


def test_a_config_file_requiring_an_unknown_service_is_a_schema_error(tmp_path):
    import pytest

    from tasks.engine.errors import MultiError
    from tasks.schema.load import load_stack
    from tests.support.stackcopy import make_stack_copy

    root = make_stack_copy(tmp_path / "stack")
    schema = root / "schemas" / "compose-schema.yaml"
    schema.write_text(schema.read_text().replace("requires: elasticsearch}", "requires: elasticsearc}"))
    with pytest.raises(MultiError) as info:
        load_stack(root)
    text = str(info.value) + " ".join(str(e.key_path) for e in info.value.errors)
    assert "requires unknown service 'elasticsearc'" in text
    assert "services.grafana.config_files[3].requires" in text
