"""Unit tests of the building blocks: secret-like keys, weak values, ports, merging."""

from __future__ import annotations

import pytest

from tasks.security import patterns as P
from tasks.security.rules import mask
from tasks.security.exposure import parse_short_port, scan_compose_merged
from tasks.security.scan import scan_yaml
from tasks.security.yamllines import load_documents, merge


@pytest.mark.parametrize("key", [
    "password", "POSTGRES_PASSWORD", "db_passwd", "api_key", "apiKey", "OPENAI_API_KEY",
    "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "jwt_secret", "JWT", "N8N_ENCRYPTION_KEY",
    "XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY", "MINIO_ACCESS_KEY", "REDISCLI_AUTH",
    "HF_TOKEN", "aws_credentials", "clientSecret", "private_key",
])
def test_secret_keys(key: str) -> None:
    assert P.is_secret_key(key)


@pytest.mark.parametrize("key", [
    "POSTGRES_PASSWORD_FILE", "JWT_ALGORITHM", "JWT_EXPIRE_MINUTES", "length", "alphabet",
    "prefix", "key", "N8N_BASIC_AUTH_ACTIVE", "N8N_BASIC_AUTH_USER", "monkey", "token_ttl",
    "secret_length", "password_min", "DB_HOST", "keyboard", None, 5,
])
def test_not_secret_keys(key) -> None:
    assert not P.is_secret_key(key)


@pytest.mark.parametrize("value", [
    "postgres", "MinioAdmin", "admin", "changeme", "CHANGEME_IN_PRODUCTION", "password",
    "secret", "sk-litellm", "dummy-key", "your-secret-key-here", "<your key>", "xxxxxx",
    "change-me-please", "", "'changeme'", "sk-1234",
])
def test_weak_values(value: str) -> None:
    assert P.weak_reason(value)


@pytest.mark.parametrize("value", ["Zq8rT2vLx9wP", "sk-LpcdWT74oTylWIOueQoBCrbnkGcFFPDmFYcaold",
                                   "mms_q7k2m9x4", None, True])
def test_not_weak_values(value) -> None:
    assert P.weak_reason(value) is None


def test_mask_shows_two_characters_at_most() -> None:
    assert mask("Zq8rT2vLx9wP") == "'Zq…'"
    assert mask("abc") == "'…'"


@pytest.mark.parametrize("spec,expected", [
    ("5432", (None, None, [5432])),
    ("5432:5432", (None, "5432", [5432])),
    ("0.0.0.0:5432:5432", ("0.0.0.0", "5432", [5432])),
    ("127.0.0.1:6379:6379/tcp", ("127.0.0.1", "6379", [6379])),
    ("[::]:9200:9200", ("::", "9200", [9200])),
    ("[::1]:9200:9200", ("::1", "9200", [9200])),
    ("9000-9001:9000-9001", (None, "9000-9001", [9000, 9001])),
])
def test_parse_short_port(spec: str, expected) -> None:
    assert parse_short_port(spec) == expected


@pytest.mark.parametrize("image,tag", [
    ("nginx", "none"), ("nginx:latest", "latest"), ("ghcr.io/x/y:main", "main"),
    ("registry:5000/x", "none"), ("nginx:1.27.2", None), ("x@sha256:" + "a" * 64, None),
    ("x:${TAG}", None), ("x:${TAG:-latest}", "latest"),
])
def test_unpinned_tag(image: str, tag) -> None:
    assert P.unpinned_tag(image) == tag


def test_compose_merge_override_and_reset() -> None:
    base = load_documents("services:\n  a:\n    ports: ['127.0.0.1:5432:5432']\n    healthcheck: {test: [CMD, 'true']}\n", "base.yml")[0]
    over = load_documents("services:\n  a:\n    ports: !override ['5432:5432']\n    healthcheck: !reset null\n", "over.yml")[0]
    merged = merge(base["services"], over["services"])
    assert list(merged["a"]["ports"]) == ["5432:5432"]
    assert merged["a"]["ports"].loc(0) == ("over.yml", 3)
    assert "healthcheck" not in merged["a"]
    rows = sorted((f.rule_id, f.file, f.line) for f in scan_compose_merged(
        [("base.yml", "services:\n  a:\n    image: x:1\n    healthcheck: {test: [CMD, 'true']}\n"),
         ("over.yml", "services:\n  a:\n    healthcheck: !reset null\n    ports: ['6379:6379']\n")]))
    assert rows == [("MMS304", "over.yml", 4), ("MMS305", "base.yml", 2)]


def test_yaml_anchors_and_merge_keys() -> None:
    text = ("x-env: &env\n  DB_PASSWORD: Hq7Lz2Wr9Kt4\nservices:\n  a:\n    image: x:1\n"
            "    environment:\n      <<: *env\n")
    rows = sorted((f.rule_id, f.line) for f in scan_yaml(text, "c.yml"))
    # Reported where it is written (the anchor), once.
    assert rows == [("MMS101", 2)]


def test_parse_error_message_does_not_quote_the_line() -> None:
    (f,) = scan_yaml("a: [Hq7Lz2Wr9Kt4\n", "bad.yaml")
    assert f.rule_id == "MMS001" and "Hq7Lz2Wr9Kt4" not in f.message
