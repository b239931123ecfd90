"""The inference path and the init jobs' config files, as pure functions; and the schema's checks.

* tasks/schema/inference.py: KV-cache size per token, vLLM's command line from a catalogue
  model and a GPU plan (made by the real planner from tests/gpu/plans fixtures).
* tasks/schema/configfiles.py: postgres-init.sql and minio-init.sh, which name the variables
  their secrets arrive in and never hold a value.
* tasks/schema/semantics.py: semantic errors for models, databases and object-store keys, checked
  like tests/foundation/test_malformed_schemas.py (exit 1, file:line, key path, nothing written).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tasks.gpu.facts import GpuFacts
from tasks.gpu.overrides import PlanOverrides
from tasks.gpu.plan import plan_gpus
from tasks.schema.logging import CONFIG_FILES
from tasks.schema.configfiles import (
    databases,
    db_password_var,
    minio_init_script,
    object_store_users,
    postgres_init_sql,
    render_configs,
    s3_var,
)
from tasks.schema.inference import kv_bytes_per_token, planner_inputs, vllm_command
from tasks.schema.load import load_stack
from tasks.schema.steps import desired_stack_files
from tests.support.schemaedit import Case, assert_refused, line_of
from tests.support.stackcopy import REPO, make_stack_copy
PLANS = REPO / "tests" / "gpu" / "plans"
GPU_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--gpu-memory-utilization")


@pytest.fixture(scope="module")
def stack():
    return load_stack(REPO)


@pytest.fixture(scope="module")
def qwen7b(stack) -> dict:
    return stack.served_model("gpu")


def _flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times: {args}"
    return args[args.index(name) + 1]


def _plan(fixture: str, model: dict, **extra) -> dict:
    """The real planner's saved form for ``fixture``'s GPUs and the catalogue ``model``."""
    case = json.loads((PLANS / f"{fixture}.json").read_text())
    overrides = {**(case.get("overrides") or {}), **planner_inputs(model), **extra}
    return plan_gpus(GpuFacts.from_dict(case["facts"]), overrides).to_dict()


# -- inference.py ------------------------------------------------------------------------------

def test_kv_bytes_per_token_of_qwen2_5_7b(qwen7b) -> None:
    assert qwen7b["key"] == "qwen2.5-7b-instruct"
    # 2 (K and V) x 28 layers x 4 KV heads x 128 head dim x 2 bytes (bf16)
    assert kv_bytes_per_token(qwen7b) == 2 * 28 * 4 * 128 * 2 == 57344
    # The planner's default was sized for this model.
    assert PlanOverrides().kv_bytes_per_token == 57344
    assert kv_bytes_per_token({**qwen7b, "kv_cache_dtype": "fp8"}) == 57344 // 2
    assert kv_bytes_per_token({**qwen7b, "kv_cache_dtype": "auto"}) == 57344
    assert kv_bytes_per_token({**qwen7b, "dtype": "float32"}) == 57344 * 2


def test_planner_inputs_come_from_the_catalogue(qwen7b) -> None:
    assert planner_inputs(qwen7b) == {"model": "qwen2.5-7b-instruct", "model_weights_gib": 14.2,
                                      "kv_bytes_per_token": 57344, "max_model_len_cap": 32768,
                                      "attention_heads": 28}


def test_vllm_command_on_an_nvlink_pair(qwen7b) -> None:
    plan = _plan("two-3090-nvlink", qwen7b)
    assert plan["tensor_parallel"] == 2 and plan["p2p_enabled"] and plan["model"] == "qwen2.5-7b-instruct"
    args = vllm_command(qwen7b, plan)
    # `vllm serve MODEL`: the Hugging Face id is the positional argument, first.
    assert args[0] == "Qwen/Qwen2.5-7B-Instruct" and not args[0].startswith("-")
    assert _flag(args, "--served-model-name") == "qwen2.5-7b-instruct"
    assert _flag(args, "--dtype") == "bfloat16"
    assert (_flag(args, "--host"), _flag(args, "--port")) == ("0.0.0.0", "8000")
    assert _flag(args, "--tensor-parallel-size") == "2"
    assert _flag(args, "--pipeline-parallel-size") == "1"
    assert _flag(args, "--gpu-memory-utilization") == f"{plan['memory_utilization']:.2f}"
    assert int(_flag(args, "--max-model-len")) == plan["max_model_len"] <= qwen7b["max_context"]
    assert "--disable-custom-all-reduce" not in args  # NVLink: the custom all-reduce is used
    # The API key reaches vLLM from its environment (VLLM_API_KEY), never its command line.
    assert "--api-key" not in args
    # The memory share is the plan's, not a default (here one the user asked for).
    plan = _plan("two-3090-nvlink", qwen7b, memory_utilization=0.8)
    assert plan["memory_utilization"] == 0.8
    assert _flag(vllm_command(qwen7b, plan), "--gpu-memory-utilization") == "0.80"


def test_vllm_command_follows_the_plan_parallelism_and_length(qwen7b) -> None:
    plan = _plan("eight-all-nv18-pp2", qwen7b)
    args = vllm_command(qwen7b, plan)
    assert (_flag(args, "--tensor-parallel-size"), _flag(args, "--pipeline-parallel-size")) == \
        (str(plan["tensor_parallel"]), "2")
    plan = _plan("shared-gpu-lower-utilization", qwen7b)
    assert plan["max_model_len"] < qwen7b["max_context"]
    args = vllm_command(qwen7b, plan)
    assert _flag(args, "--max-model-len") == str(plan["max_model_len"])
    assert _flag(args, "--gpu-memory-utilization") == f"{plan['memory_utilization']:.2f}" != "0.90"


def test_vllm_command_without_peer_to_peer_disables_the_custom_all_reduce(qwen7b) -> None:
    plan = _plan("two-3090-pcie-no-nvlink", qwen7b)
    assert not plan["p2p_enabled"] and plan["vllm_args"] == ["--disable-custom-all-reduce"]
    args = vllm_command(qwen7b, plan)
    assert _flag(args, "--tensor-parallel-size") == "2"
    assert args.count("--disable-custom-all-reduce") == 1


@given(planned=st.one_of(st.none(), st.integers(min_value=256, max_value=1 << 20)),
       context=st.integers(min_value=256, max_value=1 << 18))
def test_max_model_len_never_exceeds_the_model_context(planned, context) -> None:
    model = {"hf_id": "org/model", "served_name": "m", "dtype": "bfloat16", "max_context": context}
    plan = {"cpu_only": False, "vllm_device_ids": ["GPU-a"], "tensor_parallel": 1,
            "pipeline_parallel": 1, "memory_utilization": 0.9, "max_model_len": planned}
    length = int(_flag(vllm_command(model, plan), "--max-model-len"))
    assert length <= context
    assert length == (min(planned, context) if planned else context)


def test_vllm_command_without_a_plan_is_one_gpu_with_defaults(qwen7b) -> None:
    for plan in (None, _plan("cpu-only-no-driver", qwen7b)):
        args = vllm_command(qwen7b, plan)
        assert _flag(args, "--tensor-parallel-size") == "1" and _flag(args, "--pipeline-parallel-size") == "1"
        assert _flag(args, "--gpu-memory-utilization") == "0.90"
        assert _flag(args, "--max-model-len") == "32768"
        assert "--disable-custom-all-reduce" not in args


def test_vllm_command_on_the_cpu_omits_gpu_flags(qwen7b) -> None:
    plan = _plan("two-3090-pcie-no-nvlink", qwen7b)
    args = vllm_command(qwen7b, plan, device="cpu")
    assert args[0] == "Qwen/Qwen2.5-7B-Instruct"
    for flag in (*GPU_FLAGS, "--disable-custom-all-reduce"):
        assert flag not in args
    assert _flag(args, "--max-model-len") == "32768"
    assert _flag(args, "--served-model-name") == "qwen2.5-7b-instruct"


def test_vllm_command_passes_quantization_and_revision() -> None:
    model = {"hf_id": "Qwen/Qwen2.5-32B-Instruct-AWQ", "served_name": "q32", "dtype": "float16",
             "quantization": "awq_marlin", "kv_cache_dtype": "fp8", "revision": "abc123",
             "max_context": 32768}
    args = vllm_command(model, None)
    assert _flag(args, "--quantization") == "awq_marlin"
    assert _flag(args, "--kv-cache-dtype") == "fp8"
    assert _flag(args, "--revision") == "abc123"


# -- configfiles.py ----------------------------------------------------------------------------

def _secrets(stack) -> dict[str, str]:
    return {name: f"Sx{i}Secret{i}Value" for i, name in enumerate(stack.secret_declarations)}


def test_postgres_init_sql_converges_every_role_without_a_password_in_it(stack) -> None:
    dbs = databases(stack, "production")
    assert {db["name"] for db in dbs.values()} == {"litellm", "n8n", "multimodal_worker", "ai_agents",
                                                   "memory_system", "user_management"}
    sql = postgres_init_sql(stack.project, dbs)
    assert sql.splitlines()[2] == r"\set ON_ERROR_STOP on"
    for db in dbs.values():
        name, var = db["name"], db_password_var(db["name"])
        assert var == f"MMSTACK_DB_PASSWORD_{name.upper()}"
        # The password comes from the environment, and its absence stops the job.
        assert f"\\getenv pw_{name} {var}\n\\if :{{?pw_{name}}}\n\\else\n" in sql
        assert (f"SELECT 'CREATE ROLE \"{name}\"' WHERE NOT EXISTS "
                f"(SELECT FROM pg_roles WHERE rolname = '{name}')\\gexec") in sql
        alter = [l for l in sql.splitlines() if l.startswith(f'ALTER ROLE "{name}" ')]
        assert len(alter) == 1 and alter[0].endswith(f"PASSWORD :'pw_{name}';"), alter
        assert "NOSUPERUSER" in alter[0] and "NOCREATEROLE" in alter[0]
        assert (f"SELECT 'CREATE DATABASE \"{name}\" OWNER \"{name}\"' WHERE NOT EXISTS "
                f"(SELECT FROM pg_database WHERE datname = '{name}')\\gexec") in sql
        assert f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;' in sql
    # Each CREATE is guarded; no statement sets a password from a literal.
    assert sql.count("CREATE ROLE") == sql.count("FROM pg_roles WHERE rolname") == len(dbs)
    assert not re.search(r"PASSWORD\s+'", sql, re.IGNORECASE)
    assert not re.search(r"\b(ENCRYPTED\s+)?PASSWORD\s+(?!:')", sql)


def test_minio_init_script_reads_every_key_from_the_environment(stack) -> None:
    users = object_store_users(stack, "production")
    assert {svc: u["buckets"] for svc, u in users.items()} == {"multimodal-worker": ["media"],
                                                              "search-engine": ["documents"]}
    script = minio_init_script(users)
    assert script.startswith("#!/bin/sh\n") and "\nset -eu\n" in script
    for svc, u in users.items():
        access, secret = s3_var(svc, "access_key"), s3_var(svc, "secret_key")
        assert f'printf \'%s\\n%s\\n\' "${access}" "${secret}" | mc admin user add mms' in script
        for bucket in u["buckets"]:
            assert f"mc mb --ignore-existing mms/{bucket}" in script
        policy = re.search(rf"cat > /tmp/mmstack-{svc}\.json <<'EOF'\n(.*)\nEOF", script).group(1)
        resources = json.loads(policy)["Statement"][0]["Resource"]
        # An application's key reaches its own buckets only.
        assert resources == [r for b in u["buckets"] for r in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")]
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_minio_init_script_gives_mc_the_keys_on_stdin_only(stack, tmp_path: Path) -> None:
    # Run the script against a stand-in `mc` that records its arguments and standard input.
    users = object_store_users(stack, "production")
    script = minio_init_script(users).replace("/tmp/", f"{tmp_path}/")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "mc.log"
    (bin_dir / "mc").write_text(
        "#!/bin/sh\n"
        f'printf "ARGV %s\\n" "$*" >> {log}\n'
        f'case "$*" in "admin user add"*) while IFS= read -r l; do printf "STDIN %s\\n" "$l" >> {log}; done;; esac\n')
    (bin_dir / "mc").chmod(0o755)
    values = _secrets(stack)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for svc, u in users.items():
        env[s3_var(svc, "access_key")] = values[u["access_key"]]
        env[s3_var(svc, "secret_key")] = values[u["secret_key"]]
    proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    argv = "\n".join(l for l in lines if l.startswith("ARGV "))
    stdin = [l.removeprefix("STDIN ") for l in lines if l.startswith("STDIN ")]
    for svc, u in users.items():
        assert values[u["secret_key"]] not in argv, f"{svc}'s secret key on mc's command line"
    assert stdin == [values[u[k]] for _, u in sorted(users.items()) for k in ("access_key", "secret_key")]
    assert "ARGV mb --ignore-existing mms/media" in argv and "ARGV mb --ignore-existing mms/documents" in argv


def test_generated_config_files_hold_no_secret_value(stack, tmp_path: Path) -> None:
    values = _secrets(stack)
    plan = _plan("two-3090-pcie-no-nvlink", stack.served_model("production"))
    for env in stack.environment_names:
        files = desired_stack_files(REPO, env, plan, values, stack=stack)
        configs = {f.label: f for f in files if f.label.startswith("config/")}
        expected = {f"config/{env}/{n}" for n in ("litellm.yaml", "postgres-init.sql", "minio-init.sh")}
        monitoring = {f"config/{env}/{n}" for n in (
            "prometheus.yml", "prometheus-rules.yml", "prometheus-start.sh",
            "grafana-datasource-prometheus.yml", "grafana-dashboards.yml", "grafana-dashboard-inference.json")}
        logging = {f"config/{env}/{n}" for n in CONFIG_FILES}
        want = (set() if env == "elk" else expected) | \
            (monitoring | logging if env in ("staging", "production", "elk") else set())
        assert set(configs) == want, env
        for label, f in configs.items():
            text = f.content.decode()
            for name, value in values.items():
                assert value not in text, f"{label} holds {name}"
        if env == "elk":
            continue
        script = configs[f"config/{env}/minio-init.sh"]
        assert script.content.startswith(b"#!/bin/sh\n") and stat.S_IMODE(script.mode) == 0o755
        assert stat.S_IMODE(configs[f"config/{env}/postgres-init.sql"].mode) == 0o644


def test_litellm_config_routes_the_served_model_to_vllm_by_reference(stack) -> None:
    for env in ("development", "production"):
        rendered = {r.path: r.body for r in render_configs(stack, env)}
        doc = yaml.safe_load(rendered[f"config/{env}/litellm.yaml"])
        assert doc["model_list"] == [{
            "model_name": "qwen2.5-7b-instruct",
            "litellm_params": {"model": "hosted_vllm/qwen2.5-7b-instruct", "api_base": "http://vllm:8000/v1",
                               "api_key": "os.environ/VLLM_API_KEY"},
            "model_info": {"max_input_tokens": 32768, "hf_id": "Qwen/Qwen2.5-7B-Instruct"},
        }], env
        assert doc["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY",
                                           "database_url": "os.environ/DATABASE_URL"}


# -- semantic errors (semantics.py) ------------------------------------------------------------

CASES = [
    Case("database-shared", "  n8n:\n", "database: {name: n8n, password: n8n_db_password}",
         "database: {name: litellm, password: n8n_db_password}",
         "services.n8n.database.name", "database 'litellm' is already the database of 'litellm'"),
    Case("database-password-undeclared", "  n8n:\n", "database: {name: n8n, password: n8n_db_password}",
         "database: {name: n8n, password: n8n_db_pasword}",
         "services.n8n.database.password", "secret 'n8n_db_pasword' is not declared"),
    Case("object-store-key-undeclared", "  search-engine:\n", "secret_key: search_engine_s3_secret_key}",
         "secret_key: search_engine_s3_secret}",
         "services.search-engine.object_store_key.secret_key", "secret 'search_engine_s3_secret' is not declared",
         line_of="    object_store_key: {access_key: search_engine_s3_access_key"),
    Case("depends-on-gpu-only", "  litellm:\n", "      postgres-init: completed",
         "      postgres-init: completed\n      vllm: started",
         "services.litellm.depends_on.vllm", "'vllm' runs only where there is a GPU",
         line_of="      vllm: started"),
    Case("environment-unknown-model", "  gpu:\n", "    gpu: true\n", "    gpu: true\n    model: qwen9-000b\n",
         "environments.gpu.model", "unknown model 'qwen9-000b'"),
    Case("default-model-unknown", "", "default_model: qwen2.5-7b-instruct", "default_model: qwen2.5-7b",
         "default_model", "unknown model 'qwen2.5-7b'"),
    Case("kv-heads-do-not-divide", "  qwen2.5-7b-instruct:\n", "    kv_heads: 4\n", "    kv_heads: 5\n",
         "models.qwen2.5-7b-instruct.kv_heads", "28 attention heads cannot be grouped into 5 KV heads"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_semantic_error(case: Case, tmp_path: Path) -> None:
    stack_dir = make_stack_copy(tmp_path / "stack")
    mutated, err = assert_refused(stack_dir, case)

    needle = case.line_of or case.new.strip().splitlines()[-1].strip()
    line = line_of(mutated, needle, case.anchor)
    # One line names it all: file:line, the key path, what is wrong.
    assert f"schemas/compose-schema.yaml:{line}: {case.key_path}: {case.message}" in err, err
