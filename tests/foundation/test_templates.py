"""Env templates: StrictUndefined errors name the template and line; output is what runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.engine.errors import TemplateError
from tasks.gpu.planfile import GpuPlan
from tasks.schema.envfiles import EnvRenderer
from tasks.schema.generate import compose_documents
from tasks.schema.load import load_stack
from tests.support.stackcopy import make_stack_copy, run_inv


@pytest.fixture()
def stack_dir(tmp_path: Path) -> Path:
    return make_stack_copy(tmp_path / "stack")


def _secrets(stack) -> dict[str, str]:
    # As the store holds them after setup: every generated secret; external ones (hf_token) unset.
    return {name: f"S{i}value{i}" for i, name in enumerate(stack.secret_declarations)
            if stack.secret_declarations[name].get("kind") != "external"}


def _keys(body: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.splitlines() if line and not line.startswith("#"))


# What vllm.env may hold: vLLM takes the model, parallelism and memory from its command line.
VLLM_ENV_KEYS = {"MMSTACK_PROJECT", "MMSTACK_ENV", "VLLM_API_KEY", "VLLM_LOGGING_LEVEL",
                 "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"}
# Inert or harmful in the containers now that the cards are pinned by compose device_ids and
# vLLM reads its settings from flags: none may appear in any env file.
GONE = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "VLLM_MODEL", "VLLM_TENSOR_PARALLEL_SIZE",
        "VLLM_PIPELINE_PARALLEL_SIZE", "VLLM_GPU_MEMORY_UTILIZATION", "VLLM_MAX_MODEL_LEN",
        "VLLM_EXTRA_ARGS", "N8N_BASIC_AUTH")


def test_unknown_variable_names_template_and_line(stack_dir: Path) -> None:
    tpl = stack_dir / "env-templates" / "litellm.env.j2"
    lines = tpl.read_text().splitlines()
    lines.insert(4, "EXTRA={{ settings.no_such_setting }}")
    tpl.write_text("\n".join(lines) + "\n")
    stack = load_stack(stack_dir)
    with pytest.raises(TemplateError) as info:
        EnvRenderer(stack).render_environment("production", _secrets(stack), None)
    assert info.value.file == "env-templates/litellm.env.j2"
    assert info.value.line == 5
    assert "no_such_setting" in info.value.message


def test_unknown_secret_is_an_error_not_an_empty_value(stack_dir: Path) -> None:
    tpl = stack_dir / "env-templates" / "grafana.env.j2"
    tpl.write_text(tpl.read_text().replace("secrets.grafana_admin_password", "secrets.grafana_pasword"))
    stack = load_stack(stack_dir)
    with pytest.raises(TemplateError) as info:
        EnvRenderer(stack).render_environment("production", _secrets(stack), None)
    assert info.value.file == "env-templates/grafana.env.j2" and info.value.line == 4
    assert "grafana_pasword" in info.value.message


def test_syntax_error_names_template_and_line(stack_dir: Path) -> None:
    tpl = stack_dir / "env-templates" / "n8n.env.j2"
    text = tpl.read_text()
    assert "{{ db.name }}" in text
    broken = text.replace("{{ db.name }}", "{{ db.name ", 1)
    tpl.write_text(broken)
    line = broken[: broken.index("{{ db.name ")].count("\n") + 1
    stack = load_stack(stack_dir)
    with pytest.raises(TemplateError) as info:
        EnvRenderer(stack).render_environment("production", _secrets(stack), None)
    # Jinja reports the line where it noticed the problem: the broken line or the next.
    assert info.value.file == "env-templates/n8n.env.j2" and info.value.line in (line, line + 1)


def test_template_error_through_the_cli_is_clean(stack_dir: Path) -> None:
    tpl = stack_dir / "env-templates" / "core.env.j2"
    text = tpl.read_text()
    assert "TZ=UTC" in text
    tpl.write_text(text.replace("TZ=UTC", "TZ={{ timezon }}"))
    proc = run_inv(stack_dir, "render-env", "--check")
    assert proc.returncode == 1
    assert "env-templates/core.env.j2:" in proc.stderr and "timezon" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (stack_dir / "env").exists()


def _p2p_off_plan() -> dict:
    """Two PCIe cards without peer-to-peer, and a third for the worker (the planner's output form)."""
    return GpuPlan(cpu_only=False, vllm_gpus=[0, 1], vllm_device_ids=["GPU-a", "GPU-b"],
                   worker_gpus=[2], worker_device_ids=["GPU-c"], tensor_parallel=2,
                   memory_utilization=0.88, max_model_len=16384, link="PHB", p2p_enabled=False,
                   nccl_env={"NCCL_P2P_DISABLE": "1"}, vllm_args=["--disable-custom-all-reduce"],
                   model="qwen2.5-7b-instruct").to_dict()


def test_rendered_files_hold_the_secrets_and_gpu_plan(stack_dir: Path) -> None:
    stack = load_stack(stack_dir)
    secrets = _secrets(stack)
    plan = _p2p_off_plan()
    files = {r.path: r.body for r in EnvRenderer(stack).render_environment("gpu", secrets, plan)}
    assert f"POSTGRES_PASSWORD={secrets['postgres_password']}\n" in files["env/gpu/postgres.env"]
    # vLLM's env file: its API key, logging, no telemetry, and the plan's NCCL settings only.
    vllm = _keys(files["env/gpu/vllm.env"])
    assert set(vllm) == VLLM_ENV_KEYS | {"NCCL_P2P_DISABLE"}
    assert vllm["VLLM_API_KEY"] == secrets["vllm_api_key"] and vllm["NCCL_P2P_DISABLE"] == "1"
    assert vllm["VLLM_LOGGING_LEVEL"] == "INFO" and vllm["VLLM_NO_USAGE_STATS"] == vllm["DO_NOT_TRACK"] == "1"
    # The worker has a GPU of its own: it is told to use CUDA; compose pins which card.
    worker = _keys(files["env/gpu/multimodal-worker.env"])
    assert worker["WORKER_DEVICE"] == "cuda"
    for path, body in files.items():
        for name in GONE:
            assert name not in body, f"{path}: {name}"
    # The rest of the plan reaches vLLM as flags and the cards as device reservations.
    doc = compose_documents(stack, plan)["compose.gpu.yml"]["services"]
    command = doc["vllm"]["command"].value
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.88"
    assert command[command.index("--max-model-len") + 1] == "16384"
    assert command[-1] == "--disable-custom-all-reduce"
    reserved = {name: svc["deploy"].value["resources"]["reservations"]["devices"][0]["device_ids"]
                for name, svc in doc.items() if "deploy" in svc
                and "reservations" in svc["deploy"].value["resources"]}
    assert reserved == {"vllm": ["GPU-a", "GPU-b"], "multimodal-worker": ["GPU-c"]}
    assert set(files) == {"env/gpu/core.env"} | {f"env/gpu/{s}.env" for s in stack.environment("gpu").services
                                                 if s not in ()} - {"env/gpu/prometheus.env"}


def test_without_a_plan_vllm_env_still_names_no_engine_setting(stack_dir: Path) -> None:
    # Before `inv configure-gpu` there is no plan: vLLM runs with its command's single-GPU
    # defaults, and its env file must not carry variables vLLM does not read.
    stack = load_stack(stack_dir)
    secrets = _secrets(stack)
    files = {r.path: r.body for r in EnvRenderer(stack).render_environment("gpu", secrets, None)}
    assert set(_keys(files["env/gpu/vllm.env"])) == VLLM_ENV_KEYS
    assert _keys(files["env/gpu/multimodal-worker.env"])["WORKER_DEVICE"] == "cpu"
    for path, body in files.items():
        for name in GONE:
            assert name not in body, f"{path}: {name}"


def test_every_consumer_gets_its_own_database_and_object_store_key(stack_dir: Path) -> None:
    stack = load_stack(stack_dir)
    secrets = _secrets(stack)
    files = {r.path: _keys(r.body) for r in EnvRenderer(stack).render_environment("production", secrets, None)}
    own_db = {"litellm": "litellm", "multimodal-worker": "multimodal_worker", "ai-agents": "ai_agents",
              "memory-system": "memory_system", "user-management": "user_management"}
    for svc, db in own_db.items():
        pw = secrets[f"{db}_db_password"]
        assert files[f"env/production/{svc}.env"]["DATABASE_URL"] == f"postgresql://{db}:{pw}@postgres:5432/{db}", svc
    n8n = files["env/production/n8n.env"]
    assert (n8n["DB_POSTGRESDB_DATABASE"], n8n["DB_POSTGRESDB_USER"], n8n["DB_POSTGRESDB_PASSWORD"]) == \
        ("n8n", "n8n", secrets["n8n_db_password"])
    # postgres-init connects as the superuser and reads each role's password from its environment.
    init = files["env/production/postgres-init.env"]
    assert (init["PGHOST"], init["PGUSER"], init["PGPASSWORD"], init["PGDATABASE"]) == \
        ("postgres", secrets["postgres_user"], secrets["postgres_password"], "mmstack")
    assert {k: v for k, v in init.items() if k.startswith("MMSTACK_DB_PASSWORD_")} == {
        f"MMSTACK_DB_PASSWORD_{db.upper()}": secrets[f"{db}_db_password"] for db in [*own_db.values(), "n8n"]}
    # The superuser's password and MinIO's root credentials reach nothing but their own services.
    root_only = {"postgres_password": {"postgres", "postgres-init"},
                 "minio_root_password": {"minio", "minio-init"}}
    for secret, owners in root_only.items():
        holders = {path.rsplit("/", 1)[1].removesuffix(".env") for path, env in files.items()
                   if any(secrets[secret] in value for value in env.values())}
        assert holders == owners, secret
    for svc, prefix in (("multimodal-worker", "multimodal_worker"), ("search-engine", "search_engine")):
        env = files[f"env/production/{svc}.env"]
        assert env["S3_ACCESS_KEY"] == secrets[f"{prefix}_s3_access_key"]
        assert env["S3_SECRET_KEY"] == secrets[f"{prefix}_s3_secret_key"]
        assert env["S3_ENDPOINT"] == "http://minio:9000"
    assert files["env/production/multimodal-worker.env"]["S3_BUCKETS"] == "media"
    assert files["env/production/search-engine.env"]["S3_BUCKETS"] == "documents"
    # retrieval-proxy and search-engine keep no database.
    assert "DATABASE_URL" not in files["env/production/retrieval-proxy.env"]
    assert "DATABASE_URL" not in files["env/production/search-engine.env"]


def test_diff_masks_old_and_new_secret_values(stack_dir: Path, tmp_path: Path) -> None:
    from tasks.engine.files import atomic_write, plan_file, read_fact, unified_diff
    from tasks.schema.steps import env_desired

    stack = load_stack(stack_dir)
    old = _secrets(stack)
    for desired in env_desired(stack, "production", old, None):
        atomic_write(desired.path, desired.content, desired.mode, desired.dir_mode)
    new = {**old, "redis_password": "BrandNewRedisValue123"}
    shown = ""
    for desired in env_desired(stack, "production", new, None):
        plan = plan_file(read_fact(desired.path), desired)
        if hasattr(plan, "reasons"):
            shown += unified_diff(plan)
    assert "-REDIS_PASSWORD=********\n" in shown and "+REDIS_PASSWORD=******** (changed)\n" in shown
    assert "+REDIS_URL=******** (changed)\n" in shown
    assert old["redis_password"] not in shown and "BrandNewRedisValue123" not in shown
