"""Every kind of schema mistake gives a clear error and a non-zero exit, writes nothing.

Each case edits the shipped schema in a temp copy of the stack (so line numbers are real),
runs `inv generate-compose` in a subprocess, and checks the error names the file, the line,
the key path and a fix, with no traceback and no file written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.schemaedit import SCHEMA, Case, assert_refused, line_of, mutate
from tests.support.stackcopy import make_stack_copy, run_inv


CASES = [
    Case("wrong-type", "  postgres:\n", "{container: 5432, host: 5432}", "{container: 5432, host: five}",
         "services.postgres.ports[0].host", "must be of integer type"),
    Case("unknown-key", "  redis:\n", "    description: Redis", "    imagee: redis:7\n    description: Redis",
         "services.redis.imagee", "unknown key"),
    Case("dangling-depends-on", "  litellm:\n", "      postgres-init: completed", "      postgres-inti: completed",
         "services.litellm.depends_on.postgres-inti", "depends on unknown service 'postgres-inti'"),
    Case("host-port-twice", "  qdrant:\n", "{container: 6333, host: 6333}", "{container: 6333, host: 5432}",
         "services.qdrant.ports[0]", "host port 5432/tcp is already used by 'postgres'"),
    Case("volume-not-declared", "  postgres:\n", "{source: postgres-data,", "{source: pgdata,",
         "services.postgres.volumes[0]", "volume 'pgdata' is not declared"),
    Case("network-not-declared", "  litellm:\n", "{$append: [frontend]}", "{$append: [frontnd]}",
         "services.litellm.networks", "network 'frontnd' is not declared"),
    Case("environment-unknown-service", "  staging:\n", "services: [prometheus, grafana,",
         "services: [prometheus, grafanna,", "environments.staging.services[1]", "unknown service 'grafanna'"),
    Case("environment-unknown-stack", "  development:\n", "stacks: [core, inference, multimodal, ui]",
         "stacks: [core, inference, multimodal, uii]", "environments.development.stacks[3]", "unknown stack 'uii'"),
    Case("yaml-syntax", "  minio:\n", "    description: MinIO", "   description: [MinIO",
         None, "invalid YAML"),
    Case("duplicate-key", "  redis:\n", "    description: Redis", "    image: redis:7.2.0\n    description: Redis",
         "services.redis.image", "duplicate key 'image'", line_of="    image: redis:7.2.0"),
    Case("unpinned-tag", "  redis:\n", "image: redis:8.0.2-bookworm", "image: redis:latest",
         "services.redis.image", "image tag 'latest' is not pinned"),
    Case("missing-image", "  prometheus:\n", "    image: prom/prometheus:v3.14.0\n", "",
         "services.prometheus.image", "required field", line_of="  prometheus:"),
    Case("unknown-healthcheck-template", "  postgres:\n", "{template: postgres}", "{template: postgress}",
         "services.postgres.healthcheck.template", "unknown healthcheck template 'postgress'"),
    Case("dependency-cycle", "  postgres:\n", "    healthcheck: {template: postgres}",
         "    healthcheck: {template: postgres}\n    depends_on: {litellm: started}",
         None, "dependency cycle"),
    Case("ambiguous-list-override", "  production:\n",
         "ports: {$replace: [{container: 8080, host: 3030, host_ip: 0.0.0.0}]}",
         "ports: [{container: 8080, host: 3030, host_ip: 0.0.0.0}]",
         "environments.production.overrides.services.openwebui.ports", "would silently replace the list"),
    Case("override-unknown-service", "  production:\n", "        openwebui:\n", "        openwebuii:\n",
         "environments.production.overrides.services.openwebuii", "override for unknown service"),
    Case("healthy-without-healthcheck", "  prometheus:\n", "healthcheck: {template: http-wget, port: 9090, path: /-/healthy}",
         "healthcheck: {disable: true}", "services.grafana.depends_on.prometheus", "has no healthcheck",
         line_of="      prometheus: healthy"),
    Case("missing-env-template", "  qdrant:\n", "env_template: qdrant", "env_template: qdrantt",
         "services.qdrant.env_template", "qdrantt.env.j2 does not exist"),
    Case("unsupported-version", "", "version: 1", "version: 2", "version", "unallowed value 2"),
    Case("secret-rule", "secrets:\n", "postgres_password: {length: 32}", "postgres_password: {length: 4}",
         "secrets.postgres_password.length", "min value is 8"),
    Case("environment-named-like-stack", "environments:\n", "  elk:\n", "  core:\n",
         "environments.core", "same name as a stack"),
]


def test_at_least_fifteen_kinds() -> None:
    assert len({c.name for c in CASES}) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_schema(case: Case, tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    mutated, err = assert_refused(stack, case)

    assert "schemas/compose-schema.yaml" in err
    if case.name != "yaml-syntax" and case.name != "dependency-cycle":
        needle = case.line_of or case.new.strip().splitlines()[0]
        line = line_of(mutated, needle, case.anchor)
        assert f"schemas/compose-schema.yaml:{line}:" in err, err


def test_yaml_syntax_error_names_theline_of(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    text = (stack / SCHEMA).read_text().replace("    description: MinIO", "   description: [MinIO", 1)
    (stack / SCHEMA).write_text(text)
    proc = run_inv(stack, "validate-schema")
    assert proc.returncode == 1
    bad = line_of(text, "   description: [MinIO")
    # PyYAML reports the line where it noticed the problem: the broken line or the next one.
    assert any(f"compose-schema.yaml:{n}:" in proc.stderr for n in (bad, bad + 1)), proc.stderr


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    stack = make_stack_copy(tmp_path / "stack")
    text = (stack / SCHEMA).read_text()
    text = mutate(text, CASES[1])
    text = text.replace("resources: {memory: 512m, cpus: 0.5}", "resources: {memory: 512m, cpus: half}", 1)
    (stack / SCHEMA).write_text(text)
    proc = run_inv(stack, "validate-schema", "--json")
    assert proc.returncode == 2
    import json

    doc = json.loads(proc.stdout)
    paths = {e["key_path"] for e in doc["errors"]}
    assert {"services.redis.resources.cpus", "services.redis.imagee"} <= paths
    assert all(e["file"] == "schemas/compose-schema.yaml" and e["line"] for e in doc["errors"])
