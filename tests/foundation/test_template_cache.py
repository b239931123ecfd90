"""Compiled templates are kept for the process: each is compiled once however many
environments or hosts are rendered, and a template whose file changed is compiled again, even
when the edit keeps its size and modification time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jinja2
import pytest

from tasks.schema.envfiles import EnvRenderer
from tasks.schema.load import load_stack

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    root = tmp_path / "stack"
    shutil.copytree(REPO / "schemas", root / "schemas")
    shutil.copytree(REPO / "env-templates", root / "env-templates")
    return root


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the templates Jinja2 compiles from now on (the real compiler still runs)."""
    seen: list[str] = []
    real = jinja2.Environment.compile

    def recording(self, source, name=None, filename=None, raw=False, defer_init=False):
        seen.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", recording)
    return seen


def secrets(stack) -> dict[str, str]:
    return {name: f"S{i}value{i}" for i, name in enumerate(stack.secret_declarations)}


def test_each_template_is_compiled_once_per_process(stack_dir: Path, compiles: list[str]) -> None:
    stack = load_stack(stack_dir)
    first = EnvRenderer(stack).render_environment("production", secrets(stack), None)
    compiled = len(compiles)
    assert compiled >= len(first), "every template (and the layout they extend) compiled"
    assert len(set(compiles)) == compiled
    for env in stack.environment_names:  # other environments, another renderer, a new load
        EnvRenderer(load_stack(stack_dir)).render_environment(env, secrets(stack), None)
    again = EnvRenderer(load_stack(stack_dir)).render_environment("production", secrets(stack), None)
    assert [r.body for r in again] == [r.body for r in first]
    used = {r.template for r in first}
    assert not [n for n in compiles[compiled:] if n and n.removesuffix(".env.j2") in used]


def test_an_edited_template_is_compiled_again_even_with_the_same_mtime(stack_dir: Path) -> None:
    stack = load_stack(stack_dir)
    template = stack_dir / "env-templates" / "redis.env.j2"

    def redis_env() -> str:
        files = EnvRenderer(stack).render_environment("production", secrets(stack), None)
        return next(r.body for r in files if r.path.endswith("/redis.env"))

    before = redis_env()
    stat = template.stat()
    text = template.read_text()
    edited = text.replace("REDIS_PASSWORD=", "REDIS_PASSWXRD=")  # same size
    assert len(edited) == len(text) and edited != text
    template.write_text(edited)
    os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = redis_env()
    assert "REDIS_PASSWXRD=" in after and "REDIS_PASSWXRD=" not in before
