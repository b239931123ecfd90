"""Render `env-templates/*.env.j2` into the per-environment env files compose references.

Jinja2 runs with StrictUndefined: a template that names a variable (or a secret) that does not
exist is an error naming the template and its line, never an empty value in production.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import TemplateError
from .configfiles import databases, db_password_var, object_store_users, s3_var
from .generate import env_files_dir
from .model import TEMPLATES_DIR, Stack

CORE_TEMPLATE = "core"


@dataclass(frozen=True)
class RenderedEnv:
    """One env file to write: where, from which template, and its body."""

    path: str  # relative to the stack directory
    template: str
    body: str


def gpu_context(gpu_plan: dict[str, Any] | None) -> dict[str, Any]:
    """What templates see as ``gpu``: the saved plan's NCCL settings and the worker's GPUs.

    Only ``nccl_env`` reaches vLLM's environment (a plan saved by an older mmstack also carried
    device and engine variables that vLLM does not read, or misreads); without a plan, nothing.
    """
    if not gpu_plan:
        return {"env": {}, "args": [], "worker_devices": [], "cpu_only": False, "planned": False}
    return {
        "env": {k: str(v) for k, v in (gpu_plan.get("nccl_env") or {}).items()},
        "args": list(gpu_plan.get("vllm_args") or []),
        "worker_devices": list(gpu_plan.get("worker_device_ids") or []),
        "cpu_only": bool(gpu_plan.get("cpu_only")),
        "planned": True,
    }


def database_context(db: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    """What a template sees as ``db``: its own role, password and URL (host postgres:5432)."""
    password = secrets[db["password"]]
    return {"name": db["name"], "user": db["name"], "password": password, "host": "postgres",
            "port": "5432", "password_var": db_password_var(db["name"]),
            "url": f"postgresql://{db['name']}:{password}@postgres:5432/{db['name']}"}


def object_store_context(service: str, user: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """What a template sees as ``s3``: the application's own MinIO key and buckets."""
    return {"access_key": secrets[user["access_key"]], "secret_key": secrets[user["secret_key"]],
            "buckets": list(user["buckets"]), "endpoint": "http://minio:9000",
            "access_var": s3_var(service, "access_key"), "secret_var": s3_var(service, "secret_key")}


class EnvRenderer:
    """Compiles the templates once per process and renders every environment with them."""

    def __init__(self, stack: Stack, bytecode_dir: Path | None = None) -> None:
        import jinja2  # imported here: only tasks that render pay for it

        self.stack = stack
        self.dir = stack.root / TEMPLATES_DIR
        # Compiled templates are kept (keyed by template source) so no-op runs skip compiling.
        cache = None
        if bytecode_dir is not None:
            bytecode_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cache = jinja2.FileSystemBytecodeCache(str(bytecode_dir))
        self._jinja = jinja2.Environment(
            bytecode_cache=cache,
            loader=jinja2.FileSystemLoader(str(self.dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            trim_blocks=False,
        )
        from .logging import TEMPLATE_FILTERS

        self._jinja.filters.update(TEMPLATE_FILTERS)
        self._errors = (jinja2.TemplateError,)

    def render_environment(self, env: str, secrets: dict[str, str],
                           gpu_plan: dict[str, Any] | None) -> list[RenderedEnv]:
        environment = self.stack.environment(env)
        specs = self.stack.resolved_services(env)
        services_ctx = {
            name: {
                "host": name,
                "port": (spec.get("ports") or [{}])[0].get("container"),
            }
            for name, spec in specs.items()
        }
        dbs = {svc: database_context(db, secrets) for svc, db in databases(self.stack, env).items()}
        stores = {svc: object_store_context(svc, u, secrets)
                  for svc, u in object_store_users(self.stack, env).items()}
        base_ctx = {
            "project": self.stack.project,
            "env": env,
            "settings": _Settings(environment.settings),
            "services": services_ctx,
            "running": list(environment.services),
            "secrets": secrets,
            "gpu": gpu_context(gpu_plan),
            "model": self.stack.served_model(env),
            "databases": dbs,
            "object_stores": stores,
        }
        out = [RenderedEnv(f"{env_files_dir(env)}/core.env", CORE_TEMPLATE,
                           self._render(CORE_TEMPLATE, {**base_ctx, "service": None, "db": None, "s3": None}))]
        for name in environment.services:
            template = specs[name].get("env_template")
            if template:
                ctx = {**base_ctx, "service": name, "db": dbs.get(name), "s3": stores.get(name)}
                body = self._render(template, ctx)
                out.append(RenderedEnv(f"{env_files_dir(env)}/{name}.env", template, body))
        return out

    def _render(self, template: str, context: dict[str, Any]) -> str:
        file = f"{TEMPLATES_DIR}/{template}.env.j2"
        try:
            return self._jinja.get_template(f"{template}.env.j2").render(context)
        except self._errors as exc:
            line, where = _template_line(exc)
            message = getattr(exc, "message", None) or str(exc)
            if type(exc).__name__ == "UndefinedError":
                message = f"undefined variable: {message}"
                fix = "declare it (secrets go in the schema's secrets: block) or fix the name"
            else:
                fix = "check the Jinja2 syntax on that line"
            raise TemplateError(message, file=where or file, line=line, fix=fix) from None


class _Settings(dict):  # type: ignore[type-arg]
    """Environment settings where a missing key is an error with the key's name."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _template_line(exc: BaseException) -> tuple[int | None, str | None]:
    """Jinja rewrites tracebacks so template frames carry the template's file and line."""
    lineno = getattr(exc, "lineno", None)
    name = getattr(exc, "filename", None) or getattr(exc, "name", None)
    if lineno:
        return lineno, _short(name)
    tb = exc.__traceback__ or sys.exc_info()[2]
    found: tuple[int | None, str | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (tb.tb_lineno, _short(filename))
        tb = tb.tb_next
    return found


def _short(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    return f"{TEMPLATES_DIR}/{p.name}" if p.suffix == ".j2" else str(p)
