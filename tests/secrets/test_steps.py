"""setup-secrets, rotate-secrets and encrypt-secrets as steps: idempotence, scope, masking."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tasks.engine.errors import ConfigError, SecretsError
from tasks.engine.report import Status
from tasks.secrets import api, encryption, rotation
from tasks.secrets.consumers import owned_secrets, secret_uses
from tasks.secrets.plan import SecretChange, SecretNoOp, plan_secrets
from tasks.secrets.store import KeyProvider, SecretStore
from tasks.secrets.generate import is_external
from tests.secrets.conftest import KEY_ENV
from tests.secrets.helpers import make_run, stack_of, tree_bytes


def store_of(stack_dir: Path) -> SecretStore:
    return SecretStore.open(stack_dir / ".mmstack", KeyProvider(env_var=KEY_ENV))


def all_values(stack_dir: Path) -> dict[str, dict[str, str]]:
    store = store_of(stack_dir)
    return {env: store.load(env) for env in store.environments()}


def setup(stack_dir: Path, **kw: object):
    cap = make_run(stack_dir, **kw)  # type: ignore[arg-type]
    api.setup_secrets_step(cap.run, stack_of(stack_dir))
    return cap


def assert_no_values(text: str, values: dict[str, dict[str, str]]) -> None:
    for env_values in values.values():
        for name, value in env_values.items():
            assert value not in text, f"{name} leaked"


# -- setup ---------------------------------------------------------------------------------------

def generated_names(stack) -> set[str]:
    """What setup-secrets makes: every declared secret but the external ones (set by the user)."""
    return {n for n, rule in stack.secret_declarations.items() if not is_external(rule)}


def test_first_run_generates_everything_per_environment(stack_dir: Path) -> None:
    stack = stack_of(stack_dir)
    cap = setup(stack_dir)
    values = all_values(stack_dir)
    assert sorted(values) == sorted(stack.environment_names)
    external = set(stack.secret_declarations) - generated_names(stack)
    assert external == {"hf_token"}
    for env in stack.environment_names:
        assert set(values[env]) == generated_names(stack)
    assert values["production"]["postgres_password"] != values["staging"]["postgres_password"]
    results = cap.run.reporter.results
    changed = [r for r in results if r.status is Status.CHANGED]
    assert len(changed) == len(stack.environment_names) * len(generated_names(stack))
    assert {r.item.rsplit("/", 1)[1] for r in results if r.status is Status.OK} == external
    assert "ok: [secrets/production/hf_token] not set (external: `inv set-secret` stores it)" in cap.text
    assert "changed: [secrets/production/postgres_password] generated" in cap.text
    assert_no_values(cap.text, values)


def test_second_run_changes_nothing(stack_dir: Path) -> None:
    setup(stack_dir)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (stack_dir / ".mmstack/secrets").iterdir()}
    cap = setup(stack_dir)
    assert {r.status for r in cap.run.reporter.results} == {Status.OK}
    assert all(r.message == "kept" for r in cap.run.reporter.results if not r.item.endswith("/hf_token"))
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (stack_dir / ".mmstack/secrets").iterdir()}
    assert before == after


def test_modes(stack_dir: Path) -> None:
    setup(stack_dir)
    state = stack_dir / ".mmstack"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "secrets").stat().st_mode) == 0o700
    for path in (state / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_check_mode_writes_nothing(stack_dir: Path) -> None:
    cap = setup(stack_dir, check=True)
    assert not (stack_dir / ".mmstack" / "secrets").exists()
    assert "changed (check): [secrets/production/jwt_secret] generated" in cap.text


def test_diff_is_masked(stack_dir: Path) -> None:
    cap = setup(stack_dir, diff=True)
    assert "+ postgres_password: ********" in cap.text
    assert_no_values(cap.text, all_values(stack_dir))


def test_a_new_declaration_is_generated_and_the_rest_kept(stack_dir: Path) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    schema = stack_dir / "schemas/compose-schema.yaml"
    schema.write_text(schema.read_text().replace(
        "secrets:\n", "secrets:\n  extra_token: {kind: token, prefix: \"tk_\", length: 30}\n", 1))
    cap = setup(stack_dir)
    after = all_values(stack_dir)
    for env in before:
        assert after[env]["extra_token"].startswith("tk_")
        assert {k: v for k, v in after[env].items() if k != "extra_token"} == before[env]
    changed = [r.item for r in cap.run.reporter.results if r.status is Status.CHANGED]
    assert all(item.endswith("/extra_token") for item in changed) and len(changed) == len(before)


def test_hand_edited_unsafe_value_is_regenerated_and_refused_when_loading(stack_dir: Path) -> None:
    setup(stack_dir)
    store = store_of(stack_dir)
    values = store.load("production")
    bad = "has$dollar@and:colon/slash#hash-and-long-enough-1234"
    store.save("production", {**values, "redis_password": bad})
    cap = make_run(stack_dir)
    with pytest.raises(SecretsError) as info:
        api.load_environment_secrets(cap.run, stack_of(stack_dir), "production")
    assert "redis_password" in str(info.value) and bad not in str(info.value)
    assert "setup-secrets" in (info.value.fix or "")
    cap = setup(stack_dir)
    changed = [r for r in cap.run.reporter.results if r.status is Status.CHANGED]
    assert [r.item for r in changed] == ["secrets/production/redis_password"]
    assert "does not meet rule" in changed[0].message and "restart: redis" in changed[0].message
    assert bad not in cap.text
    fixed = store_of(stack_dir).load("production")
    assert fixed["redis_password"] != bad and {k: v for k, v in fixed.items() if k != "redis_password"} == \
        {k: v for k, v in values.items() if k != "redis_password"}
    # The replaced value is still masked by other tasks in this process.
    assert bad in api.all_secret_values(cap.run, stack_of(stack_dir))


def test_load_environment_secrets(stack_dir: Path) -> None:
    cap = make_run(stack_dir)
    stack = stack_of(stack_dir)
    with pytest.raises(SecretsError, match="no secrets have been generated") as info:
        api.load_environment_secrets(cap.run, stack, "production")
    assert info.value.fix == "run `inv setup-secrets`"
    setup(stack_dir)
    got = api.load_environment_secrets(cap.run, stack, "production")
    assert got == {k: store_of(stack_dir).load("production")[k] for k in generated_names(stack)}


def test_loose_store_modes_are_fixed_and_reported(stack_dir: Path) -> None:
    setup(stack_dir)
    path = stack_dir / ".mmstack/secrets/production.yaml"
    os.chmod(path, 0o644)
    cap = setup(stack_dir, check=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    cap = setup(stack_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "changed: [.mmstack/secrets/production.yaml] mode 0644 -> 0600" in cap.text


def test_json_mode(stack_dir: Path) -> None:
    cap = make_run(stack_dir, json=True)
    api.setup_secrets_step(cap.run, stack_of(stack_dir))
    cap.run.reporter.recap()
    doc = json.loads(cap.out.getvalue())
    assert doc["recap"]["changed"] > 0
    assert_no_values(cap.out.getvalue() + cap.err.getvalue(), all_values(stack_dir))


# -- planning (pure) ---------------------------------------------------------------------------

def test_plan_is_pure_and_never_shows_values() -> None:
    decl = {"a": {"length": 16}, "b": {"kind": "hex", "bytes": 16}}
    existing = {"e": {"a": "A" * 16}}
    plan = plan_secrets(decl, existing, ["e"], generator=lambda rule: "Z" * 20)
    assert plan == [SecretNoOp("e", "a"), SecretChange("e", "b", "Z" * 20, "absent")]
    assert "ZZZZ" not in repr(plan)
    rotated = plan_secrets(decl, existing, ["e"], rotate={"a"}, generator=lambda rule: "Q" * 16)
    assert isinstance(rotated[0], SecretChange) and rotated[0].reason == "rotation requested"


# -- rotation --------------------------------------------------------------------------------

def test_rotating_one_secret_leaves_everything_else_identical(stack_dir: Path) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    cap = make_run(stack_dir)
    result = rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), env="staging", names=["redis_password"])
    after = all_values(stack_dir)
    assert after["staging"]["redis_password"] != before["staging"]["redis_password"]
    after["staging"]["redis_password"] = before["staging"]["redis_password"]
    assert after == before
    assert result.rotated == {"staging": ["redis_password"]}
    assert result.restart["staging"][0] == "redis"
    assert set(result.restart["staging"]) >= {"redis", "multimodal-worker", "user-management"}
    assert "staging: restart if running: redis," in cap.text
    assert_no_values(cap.text, before)
    assert_no_values(cap.text, all_values(stack_dir))


def test_rotate_by_service(stack_dir: Path) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    cap = make_run(stack_dir, diff=True)
    result = rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), service="postgres")
    after = all_values(stack_dir)
    for env in before:
        assert after[env]["postgres_password"] != before[env]["postgres_password"]
        assert after[env]["postgres_user"] == before[env]["postgres_user"]  # users only when asked
        assert {k: v for k, v in after[env].items() if k != "postgres_password"} == \
            {k: v for k, v in before[env].items() if k != "postgres_password"}
    assert "postgres_user" in result.skipped
    assert "postgres_password" in result.rekey  # ALTER ROLE needed: said plainly
    assert "ALTER ROLE" in cap.err.getvalue()
    assert "- postgres_password: ********\n+ postgres_password: ********" in cap.text
    # Only the superuser's own clients present it: every application has a role of its own.
    assert result.restart["production"] == ["postgres", "postgres-init"]
    assert_no_values(cap.text, before)
    assert_no_values(cap.text, after)


def test_rotate_include_users_and_data_keys_only_by_name(stack_dir: Path) -> None:
    setup(stack_dir)
    cap = make_run(stack_dir)
    result = rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), service="grafana", env="production")
    assert result.rotated["production"] == ["grafana_admin_password"]
    assert "grafana_admin_user" in result.skipped
    result = rotation.rotate_secrets_step(make_run(stack_dir).run, stack_of(stack_dir), service="grafana",
                                     env="production", include_users=True)
    assert result.rotated["production"] == ["grafana_admin_user", "grafana_admin_password"]
    result = rotation.rotate_secrets_step(make_run(stack_dir).run, stack_of(stack_dir), service="n8n",
                                     env="production", include_users=True)
    assert result.rotated["production"] == ["n8n_db_password"]
    assert "n8n_encryption_key" in result.skipped
    # n8n's role password is set by postgres-init, which must run again with it.
    assert result.restart["production"] == ["postgres-init", "n8n"]
    result = rotation.rotate_secrets_step(make_run(stack_dir).run, stack_of(stack_dir), env="production",
                                     names=["n8n_encryption_key"])
    assert result.rotated["production"] == ["n8n_encryption_key"]
    assert "n8n_encryption_key" in result.rekey


def test_rotate_check_mode_changes_nothing(stack_dir: Path) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    cap = make_run(stack_dir, check=True)
    result = rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), service="litellm")
    assert all_values(stack_dir) == before
    assert result.rotated["production"] == ["litellm_master_key", "litellm_db_password"]
    assert "litellm_salt_key" in result.skipped
    assert "would rotate" in cap.text


def test_rotate_argument_errors(stack_dir: Path) -> None:
    setup(stack_dir)
    stack = stack_of(stack_dir)
    with pytest.raises(ConfigError, match="say what to rotate"):
        rotation.rotate_secrets_step(make_run(stack_dir).run, stack)
    with pytest.raises(ConfigError, match="unknown secret"):
        rotation.rotate_secrets_step(make_run(stack_dir).run, stack, names=["nope"])
    with pytest.raises(ConfigError, match="unknown service"):
        rotation.rotate_secrets_step(make_run(stack_dir).run, stack, service="nope")
    with pytest.raises(ConfigError, match="owns no secrets"):
        rotation.rotate_secrets_step(make_run(stack_dir).run, stack, service="prometheus")


def test_failed_rekey_hook_changes_nothing(stack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    calls: list[tuple[str, str, bool]] = []

    def ok_hook(req: rotation.RekeyRequest) -> None:
        calls.append((req.env, req.name, req.new == before[req.env][req.name]))

    def failing_hook(req: rotation.RekeyRequest) -> None:
        raise RuntimeError(f"psql failed for {req.new}")  # a careless hook puts the value in its error

    hooks = rotation.Rekeying(hooks={"postgres_user": ok_hook, "postgres_password": failing_hook})
    cap = make_run(stack_dir)
    with pytest.raises(SecretsError) as info:
        rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), service="postgres", env="production",
                                include_users=True, rekeying=hooks)
    text = str(info.value)
    assert "re-keying postgres_password" in text and "nothing was rotated" in text
    assert "RuntimeError" in text and "psql failed" not in text
    assert all_values(stack_dir) == before
    # The hook that had run was undone (called again with the old value as the new one).
    assert calls == [("production", "postgres_user", False), ("production", "postgres_user", True)]


def test_successful_rekey_hook_runs_before_the_store_changes(stack_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    setup(stack_dir)
    before = all_values(stack_dir)
    seen: list[bool] = []

    def hook(req: rotation.RekeyRequest) -> None:
        seen.append(store_of(stack_dir).load(req.env)[req.name] == req.old)
        assert req.old != req.new and req.old not in repr(req) and req.new not in repr(req)

    result = rotation.rotate_secrets_step(make_run(stack_dir).run, stack_of(stack_dir), service="postgres",
                                     env="production", rekeying=rotation.Rekeying(hooks={"postgres_password": hook}))
    assert seen == [True]
    assert "postgres_password" not in result.rekey  # the hook re-keyed it
    assert all_values(stack_dir)["production"]["postgres_password"] != before["production"]["postgres_password"]


def test_running_probe_narrows_the_restart_list(stack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(stack_dir)
    probe = rotation.Rekeying(running=lambda run, stack, env: {"redis", "litellm"})
    cap = make_run(stack_dir)
    result = rotation.rotate_secrets_step(cap.run, stack_of(stack_dir), env="production", names=["redis_password"],
                                     rekeying=probe)
    assert result.restart == {"production": ["redis"]}
    assert "production: restart: redis" in cap.text


# -- consumers -------------------------------------------------------------------------------

def test_consumers_and_owners_follow_the_templates(stack_dir: Path) -> None:
    uses = secret_uses(stack_of(stack_dir))
    assert uses["postgres_password"].owner == "postgres"
    # The superuser's password reaches PostgreSQL and the job that creates the roles, nothing else.
    assert uses["postgres_password"].consumers == ("postgres", "postgres-init")
    # Each role's password reaches its service and postgres-init; each MinIO key, its service
    # and minio-init; the MinIO root credentials, MinIO, minio-init and Prometheus (which signs
    # its metrics token with them) only.
    for svc in ("litellm", "n8n", "multimodal-worker", "ai-agents", "memory-system", "user-management"):
        use = uses[f"{svc.replace('-', '_')}_db_password"]
        assert (use.owner, set(use.consumers)) == (svc, {svc, "postgres-init"}), use.name
    for svc in ("multimodal-worker", "search-engine"):
        for which in ("access_key", "secret_key"):
            use = uses[f"{svc.replace('-', '_')}_s3_{which}"]
            assert (use.owner, set(use.consumers)) == (svc, {svc, "minio-init"}), use.name
    for name in ("minio_root_user", "minio_root_password"):
        assert uses[name].consumers == ("minio", "minio-init", "prometheus")
    assert owned_secrets(stack_of(stack_dir), "postgres-init") == []
    assert owned_secrets(stack_of(stack_dir), "minio-init") == []
    assert uses["jwt_secret"].owner == "user-management" and uses["jwt_secret"].consumers == ("user-management",)
    assert uses["elastic_password"].owner == "elasticsearch"
    # The superuser's password: Elasticsearch and the setup one-shots only, not Kibana or Logstash.
    assert set(uses["elastic_password"].consumers) == {"elasticsearch", "elasticsearch-setup", "kibana-setup"}
    for name, client in (("elasticsearch_kibana_password", "kibana"), ("elasticsearch_logstash_password", "logstash"),
                         ("elasticsearch_grafana_password", "grafana")):
        assert (uses[name].owner, set(uses[name].consumers)) == ("elasticsearch", {"elasticsearch-setup", client})
    assert uses["n8n_monitoring_secret_key"].owner == "n8n-monitoring"
    assert uses["litellm_master_key"].owner == "litellm"
    assert "openwebui" in uses["litellm_master_key"].consumers
    assert owned_secrets(stack_of(stack_dir), "minio") == ["minio_root_user", "minio_root_password"]
    for use in uses.values():
        assert use.consumers, f"{use.name} is declared but no template uses it"


def test_a_secret_in_core_env_reaches_every_service(stack_dir: Path) -> None:
    core = stack_dir / "env-templates/core.env.j2"
    core.write_text(core.read_text().replace("TZ=UTC", "TZ=UTC\nSHARED={{ secrets.redis_password }}"))
    uses = secret_uses(stack_of(stack_dir))
    assert set(uses["redis_password"].consumers) == set(stack_of(stack_dir).service_names)


# -- encryption through the steps ------------------------------------------------------------

def test_encrypt_then_setup_and_render_never_write_in_the_clear(stack_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    setup(stack_dir)
    values = all_values(stack_dir)
    key_file = tmp_path / "keys/secrets.key"
    cap = make_run(stack_dir)
    encryption.encrypt_secrets_step(cap.run, stack_of(stack_dir), new_key=str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "encrypted; the plain file was scrubbed" in cap.text
    blob = tree_bytes(stack_dir / ".mmstack")
    for env_values in values.values():
        for value in env_values.values():
            assert value.encode() not in blob
    # Idempotent with the same key; a new declaration is written encrypted, too.
    cap = make_run(stack_dir, key_file=str(key_file))
    encryption.encrypt_secrets_step(cap.run, stack_of(stack_dir))
    assert {r.status for r in cap.run.reporter.results} == {Status.OK}
    cap = make_run(stack_dir, key_file=str(key_file))
    api.setup_secrets_step(cap.run, stack_of(stack_dir))
    assert {r.status for r in cap.run.reporter.results} == {Status.OK}
    loaded = api.load_environment_secrets(cap.run, stack_of(stack_dir), "production")
    assert loaded["postgres_password"] == values["production"]["postgres_password"]
    assert not list((stack_dir / ".mmstack/secrets").glob("*.yaml"))
    # The wrong key (from the environment variable, which wins over the file) is a clear error.
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(SecretsError, match="cannot decrypt"):
        api.load_environment_secrets(make_run(stack_dir, key_file=str(key_file)).run, stack_of(stack_dir),
                                     "production")
    monkeypatch.delenv(KEY_ENV)
    # Decrypt restores plain files with the same values.
    encryption.decrypt_secrets_step(make_run(stack_dir, key_file=str(key_file)).run, stack_of(stack_dir))
    assert all_values(stack_dir) == values
    assert not list((stack_dir / ".mmstack/secrets").glob("*.enc"))


def test_encrypt_without_a_key_is_a_clear_error(stack_dir: Path) -> None:
    setup(stack_dir)
    with pytest.raises(SecretsError, match="no encryption key") as info:
        encryption.encrypt_secrets_step(make_run(stack_dir).run, stack_of(stack_dir))
    assert "--new-key" in (info.value.fix or "")


def test_rekey_to_a_new_key(stack_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, old.decode())
    setup(stack_dir)  # created encrypted: a key was configured before the first write
    assert not list((stack_dir / ".mmstack/secrets").glob("*.yaml"))
    values = {env: store_of(stack_dir).load(env) for env in store_of(stack_dir).environments()}
    new_file = tmp_path / "new.key"
    cap = make_run(stack_dir)
    encryption.encrypt_secrets_step(cap.run, stack_of(stack_dir), new_key=str(new_file))
    assert "re-encrypted with the new key" in cap.text
    monkeypatch.delenv(KEY_ENV)
    store = SecretStore.open(stack_dir / ".mmstack", KeyProvider(env_var=KEY_ENV, key_file=new_file))
    assert {env: store.load(env) for env in store.environments()} == values


def test_regenerating_compose_files_never_touches_secrets(stack_dir: Path) -> None:
    from tasks.schema.steps import generate_compose_step

    setup(stack_dir)
    secrets_dir = stack_dir / ".mmstack/secrets"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in secrets_dir.iterdir()}
    cap = make_run(stack_dir)
    generate_compose_step(cap.run, stack_of(stack_dir))
    assert (stack_dir / "compose.yml").exists()
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in secrets_dir.iterdir()} == before


def test_a_rule_no_safe_value_can_meet_is_a_schema_error(stack_dir: Path) -> None:
    from tasks.engine.errors import MultiError

    schema = stack_dir / "schemas/compose-schema.yaml"
    schema.write_text(schema.read_text().replace(
        "secrets:\n", "secrets:\n  weak: {alphabet: \"aaaaaaaaaaaa\"}\n", 1))
    with pytest.raises(MultiError) as info:
        setup(stack_dir)
    err = info.value.errors[0]
    assert err.key_path == "secrets.weak" and err.line and "10 different characters" in err.message
    assert not (stack_dir / ".mmstack/secrets").exists()
