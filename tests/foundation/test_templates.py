"""Env templates: StrictUndefined errors name the template and line; output is what runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.engine.errors import TemplateError
from tasks.schema.envfiles import EnvRenderer
from tasks.schema.model import load_stack
from tests.support.stackcopy import make_stack_copy, run_inv


@pytest.fixture()
def stack_dir(tmp_path: Path) -> Path:
    return make_stack_copy(tmp_path / "stack")


def _secrets(stack) -> dict[str, str]:
    return {name: f"S{i}value{i}" for i, name in enumerate(stack.secret_declarations)}


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
    tpl.write_text(tpl.read_text().replace("{{ project }}", "{{ project ", 1))
    stack = load_stack(stack_dir)
    with pytest.raises(TemplateError) as info:
        EnvRenderer(stack).render_environment("production", _secrets(stack), None)
    # Jinja reports the line where it noticed the problem: the broken line or the next.
    assert info.value.file == "env-templates/n8n.env.j2" and info.value.line in (6, 7)


def test_template_error_through_the_cli_is_clean(stack_dir: Path) -> None:
    tpl = stack_dir / "env-templates" / "core.env.j2"
    tpl.write_text(tpl.read_text().replace("{{ project }}", "{{ projcet }}"))
    proc = run_inv(stack_dir, "render-env", "--check")
    assert proc.returncode == 1
    assert "env-templates/core.env.j2:" in proc.stderr and "projcet" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (stack_dir / "env").exists()


def test_rendered_files_hold_the_secrets_and_gpu_plan(stack_dir: Path) -> None:
    stack = load_stack(stack_dir)
    secrets = _secrets(stack)
    plan = {"vllm_env": {"VLLM_TENSOR_PARALLEL_SIZE": "2", "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"},
            "vllm_args": ["--disable-custom-all-reduce"], "worker_device_ids": ["GPU-c"]}
    files = {r.path: r.body for r in EnvRenderer(stack).render_environment("gpu", secrets, plan)}
    assert f"POSTGRES_PASSWORD={secrets['postgres_password']}\n" in files["env/gpu/postgres.env"]
    assert "VLLM_TENSOR_PARALLEL_SIZE=2\n" in files["env/gpu/vllm.env"]
    assert "VLLM_EXTRA_ARGS=--disable-custom-all-reduce\n" in files["env/gpu/vllm.env"]
    assert "CUDA_VISIBLE_DEVICES=GPU-c\nWORKER_DEVICE=cuda\n" in files["env/gpu/multimodal-worker.env"]
    assert set(files) == {"env/gpu/core.env"} | {f"env/gpu/{s}.env" for s in stack.environment("gpu").services
                                                 if s not in ()} - {"env/gpu/prometheus.env"}


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
