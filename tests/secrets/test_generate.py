"""Generated values meet every rule: safe everywhere, prefixed, sized, and valid for their rule."""

from __future__ import annotations

import random
import string
from urllib.parse import urlsplit

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.secrets.generate import (
    SAFE_CHARS,
    WELL_KNOWN_USERS,
    generate_secret,
    rule_problems,
    target_length,
    validate_secret_value,
)
from tests.secrets.helpers import REPO

FORBIDDEN = set("$\"'@:/[]# `\\%?&=+{};,<>|*!^()") | set(string.whitespace)
SAFE = "".join(sorted(SAFE_CHARS))

prefixes = st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=8)


@st.composite
def rules(draw: st.DrawFn) -> dict:
    """Any rule the schema's shape check accepts (see tasks/schema/rules.py SECRET)."""
    kind = draw(st.sampled_from([None, "password", "token", "username", "hex"]))
    rule: dict = {} if kind is None else {"kind": kind}
    prefix = draw(prefixes)
    if prefix:
        rule["prefix"] = prefix
    if kind == "hex":
        if draw(st.booleans()):
            rule["bytes"] = draw(st.integers(16, 256))
        return rule
    if draw(st.booleans()):
        rule["length"] = draw(st.integers(max(8, len(prefix) + 8), 512))
    if kind != "username" and draw(st.booleans()):
        chars = draw(st.lists(st.sampled_from(SAFE), min_size=10, max_size=len(SAFE), unique=True))
        rule["alphabet"] = "".join(chars)
    return rule


@settings(max_examples=400, deadline=None)
@given(rule=rules(), seed=st.integers(0, 2**32))
def test_generated_values_meet_their_rule(rule: dict, seed: int) -> None:
    assert rule_problems(rule) == []
    value = generate_secret(rule, rng=random.Random(seed))
    assert not (set(value) & FORBIDDEN)
    assert set(value) <= SAFE_CHARS
    assert value.startswith(rule.get("prefix", ""))
    assert len(value) == target_length(rule)
    if rule.get("kind") == "hex":
        assert len(value) - len(rule.get("prefix", "")) == 2 * rule.get("bytes", 32)
    if rule.get("kind") == "username":
        assert value not in WELL_KNOWN_USERS
        body = value[len(rule.get("prefix", "")):]
        assert set(body) <= set(string.ascii_lowercase + string.digits)
    if "alphabet" in rule:
        assert set(value[len(rule.get("prefix", "")):]) <= set(rule["alphabet"])
    assert validate_secret_value("x", rule, value) == []


@settings(max_examples=200, deadline=None)
@given(rule=rules())
def test_values_survive_urls_yaml_and_env_files(rule: dict) -> None:
    value = generate_secret(rule)  # the real CSPRNG
    url = f"postgresql://{value}:{value}@postgres:5432/db"
    parts = urlsplit(url)
    assert (parts.username, parts.password, parts.hostname) == (value, value, "postgres")
    assert yaml.safe_load(yaml.safe_dump({"k": value})) == {"k": value}
    assert yaml.safe_load(f"k: '{value}'") == {"k": value}
    assert "$" not in value  # Compose interpolation


@settings(max_examples=200, deadline=None)
@given(rule=rules(), junk=st.text(alphabet="$\"'@:/[]# `\\", min_size=1, max_size=3),
       seed=st.integers(0, 2**32))
def test_unsafe_characters_are_rejected_without_echoing_the_value(rule: dict, junk: str, seed: int) -> None:
    value = generate_secret(rule, rng=random.Random(seed)) + junk
    problems = validate_secret_value("the_secret", rule, value)
    assert problems
    assert all(p.startswith("the_secret:") for p in problems)
    assert value not in "\n".join(problems)


def test_shipped_schema_rules_meet_service_requirements() -> None:
    declared = yaml.safe_load((REPO / "schemas/compose-schema.yaml").read_text())["secrets"]
    values = {name: generate_secret(rule or {}) for name, rule in declared.items()
              if (rule or {}).get("kind") != "external"}
    for name, value in values.items():
        assert validate_secret_value(name, declared[name] or {}, value) == []
    assert values["litellm_master_key"].startswith("sk-")
    assert values["litellm_salt_key"].startswith("sk-")
    for key in ("jwt_secret", "n8n_encryption_key", "kibana_encryption_key"):
        assert len(bytes.fromhex(values[key])) == 32  # a 32-byte key where one is required
    assert len(values["kibana_encryption_key"]) >= 32  # Kibana: at least 32 characters
    assert len(values["minio_root_user"]) >= 3 and len(values["minio_root_password"]) >= 8  # MinIO
    assert len(values["elastic_password"]) >= 6  # Elasticsearch
    for app in ("multimodal_worker", "search_engine"):  # MinIO: access key >= 3, secret key >= 8
        assert len(values[f"{app}_s3_access_key"]) >= 3 and len(values[f"{app}_s3_secret_key"]) >= 8
    for user in ("postgres_user", "minio_root_user", "grafana_admin_user",
                 "multimodal_worker_s3_access_key", "search_engine_s3_access_key"):
        assert values[user] not in {"postgres", "minioadmin", "admin", "root"}
        assert values[user][0].isalpha()
    # n8n has had no basic auth since 1.0: nothing may generate credentials for it.
    assert not any(name.startswith("n8n_basic_auth") for name in declared)


def test_hand_set_values() -> None:
    pw = {"length": 32}
    assert validate_secret_value("p", pw, "a" * 31) == ["p: too short (needs at least 32 characters)"]
    assert validate_secret_value("p", pw, "a" * 40) == []
    assert validate_secret_value("k", {"prefix": "sk-", "length": 20}, "x" * 30) == ["k: must start with 'sk-'"]
    assert validate_secret_value("h", {"kind": "hex", "bytes": 32}, "ab" * 31)
    assert validate_secret_value("h", {"kind": "hex", "bytes": 32}, "AB" * 32)  # lowercase hex only
    # An explicitly chosen, well-known user name is the user's call, and is kept.
    assert validate_secret_value("u", {"kind": "username", "prefix": "mms_", "length": 14}, "postgres") == []
    assert validate_secret_value("u", {"kind": "username"}, "ab")
    assert validate_secret_value("n", {}, 12345) == ["n: the stored value is not a string (quote it in the store)"]


def test_unsatisfiable_rules_are_named() -> None:
    assert rule_problems({"alphabet": "aaaaaaaaaaaa"}) == ["alphabet needs at least 10 different characters"]
    assert rule_problems({"kind": "uuid"})
    assert rule_problems({"prefix": "a$"})

