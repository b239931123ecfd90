"""Render `env-templates/*.env.j2` into the per-environment env files compose references.

Jinja2 runs sandboxed (`ImmutableSandboxedEnvironment`, no globals) with StrictUndefined: a
template sees only the documented context, cannot reach Python objects (``lipsum.__globals__``),
files or the environment, and a template that names a variable (or a secret) that does not exist,
recurses, mixes types or is not UTF-8 is an error naming the template and its line, never an
empty value in production.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import TemplateError
from .configfiles import databases, db_password_var, object_store_users, s3_var
from .generate import env_files_dir
from .monitoring import scrape_credentials
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


_JINJA: dict[tuple[str, str | None], Any] = {}
_JINJA_LOCK = threading.Lock()


def jinja_environment(templates_dir: Path, bytecode_dir: Path | None = None) -> Any:
    """The process's one Jinja2 environment for ``templates_dir``: it keeps every compiled
    template, so a run that renders many environments or hosts compiles each template once.
    A template whose file content changed is compiled again (checked by content, not mtime: an
    edit within one timestamp tick still counts). Safe to share between threads."""
    import jinja2  # imported here: only tasks that render pay for it

    if bytecode_dir is not None:
        bytecode_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = (str(templates_dir), None if bytecode_dir is None else str(bytecode_dir))
    with _JINJA_LOCK:
        env = _JINJA.get(key)
        if env is None:
            # Compiled templates are also kept on disk (keyed by template source) when asked,
            # so no-op runs in new processes skip compiling.
            # Code compiled for the sandbox only: Jinja's cache key has the source, not the
            # environment, so templates compiled by an older, unsandboxed mmstack never load here.
            cache = (jinja2.FileSystemBytecodeCache(str(bytecode_dir), pattern="__mmstack_sandboxed_%s.cache")
                     if bytecode_dir else None)
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = _JINJA[key] = ImmutableSandboxedEnvironment(
                bytecode_cache=cache,
                loader=_Utf8Loader(str(templates_dir)),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                autoescape=False,
                trim_blocks=False,
            )
            # Only the documented context: range, dict, lipsum, cycler, joiner and namespace are
            # Jinja's defaults, and none is part of what templates are promised.
            env.globals.clear()
            from .logging import TEMPLATE_FILTERS

            env.filters.update(TEMPLATE_FILTERS)
        return env


class EnvRenderer:
    """Renders every environment's env files with the process's compiled templates."""

    def __init__(self, stack: Stack, bytecode_dir: Path | None = None) -> None:
        import jinja2

        self.stack = stack
        self.dir = stack.root / TEMPLATES_DIR
        self._jinja = jinja_environment(self.dir, bytecode_dir)
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
            # Prometheus's scrape credentials (monitoring.py): env variable -> value.
            "scrape_credentials": scrape_credentials(self.stack, env, secrets, specs),
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
        except TemplateError:
            raise
        except self._errors as exc:
            line, where = _template_line(exc)
            message = getattr(exc, "message", None) or str(exc)
            kind = type(exc).__name__
            if kind == "UndefinedError":
                message = f"undefined variable: {message}"
                fix = "declare it (secrets go in the schema's secrets: block) or fix the name"
            elif kind == "SecurityError":
                message = f"not allowed in a template: {message}"
                fix = "templates see only project, env, service, settings, services, secrets, gpu, model, db, s3, databases and object_stores"
            elif kind == "TemplateNotFound":
                message = f"template not found: {message}"
                fix = f"create it in {TEMPLATES_DIR}/ or correct the name"
            else:
                fix = "check the Jinja2 syntax on that line"
                opened = _unclosed_block(self._jinja, exc, message)
                if opened is not None:
                    tag, opened_line = opened
                    message = (f"{{% {tag} %}} opened on this line is never closed (Jinja noticed on "
                               f"line {line}: {message})")
                    fix = f"close it with {{% end{tag} %}} where the {tag} block ends"
                    line = opened_line
            raise TemplateError(message, file=where or file, line=line, fix=fix) from None
        except RecursionError as exc:
            line, where = _template_line(exc)
            raise TemplateError("the template recurses without end (a macro that calls itself, or an "
                                "extends/include loop)", file=where or file, line=line,
                                fix="give the recursion a condition that stops it, or break the loop") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            # Jinja keeps the template's file and line in the traceback of any error it raises.
            line, where = _template_line(exc)
            raise TemplateError(f"{type(exc).__name__}: {exc}", file=where or file, line=line,
                                fix="check the types of the values on that line (e.g. a number added to a "
                                    "string: convert with |string or |int)") from None


_BLOCK_TAGS = ("if", "for", "block", "macro", "call", "filter", "with", "raw", "autoescape", "trans")


def _unclosed_block(env: Any, exc: BaseException, message: str) -> tuple[str, int] | None:
    """For "the innermost block that needs to be closed is 'if'" (or an unexpected end of the
    template): the tag and the line where that block opened, found by lexing the source."""
    import re

    match = re.search(r"innermost block that needs to be closed is '(\w+)'", message) or \
        re.search(r"looking for the following tags: 'end(\w+)'", message)
    source = getattr(exc, "source", None)
    if not match or not source:
        return None
    wanted = match.group(1)
    open_blocks: list[tuple[str, int]] = []
    expect_name = False
    try:
        for lineno, kind, value in env.lex(source):
            if kind == "block_begin":
                expect_name = True
                continue
            if kind == "whitespace":
                continue
            if expect_name and kind == "name":
                if value in _BLOCK_TAGS:
                    open_blocks.append((value, lineno))
                elif value.startswith("end") and open_blocks and open_blocks[-1][0] == value[3:]:
                    open_blocks.pop()
            expect_name = False
    except Exception:  # noqa: BLE001 - the source is already known to be broken
        pass
    for tag, lineno in reversed(open_blocks):
        if tag == wanted:
            return tag, lineno
    return None


def _utf8_loader_class() -> Any:
    import jinja2

    class Utf8Loader(jinja2.FileSystemLoader):
        """Templates in UTF-8 (a BOM is dropped); anything else is an error with the line."""

        def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
            from .yamlsrc import decode_text

            path = Path(self.searchpath[0]) / template
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise jinja2.TemplateNotFound(template) from None
            except OSError as exc:
                raise TemplateError(f"cannot read the template: {exc.strerror or exc}",
                                    file=f"{TEMPLATES_DIR}/{template}",
                                    fix="check that it is a readable regular file") from None
            text = decode_text(data, f"{TEMPLATES_DIR}/{template}", TemplateError)

            def uptodate() -> bool:
                # By content, not mtime: an edit within one timestamp tick still counts.
                try:
                    return path.read_bytes() == data
                except OSError:
                    return False

            return text, str(path), uptodate

    return Utf8Loader


def _Utf8Loader(directory: str) -> Any:
    return _utf8_loader_class()(directory)


class _Settings(dict):  # type: ignore[type-arg]
    """Environment settings where a missing key is an error with the key's name."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _template_line(exc: BaseException) -> tuple[int | None, str | None]:
    """Jinja rewrites tracebacks so template frames carry the template's file and line: the
    innermost such frame, or for a recursion the line that repeats most (the innermost frame
    is wherever the stack happened to run out)."""
    lineno = getattr(exc, "lineno", None)
    name = getattr(exc, "filename", None) or getattr(exc, "name", None)
    if lineno:
        return lineno, _short(name)
    tb = exc.__traceback__ or sys.exc_info()[2]
    frames: list[tuple[int | None, str | None]] = []
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            frames.append((tb.tb_lineno, filename))
        tb = tb.tb_next
    if not frames:
        return None, None
    if isinstance(exc, RecursionError):
        from collections import Counter

        counts = Counter(reversed(frames))  # ties: the innermost first
        top = max(counts.values())
        # Every line of the loop repeats about as often (one more for where it started).
        tied = [f for f, n in counts.items() if n >= top - 1]
        # A template that names itself on the line (an include or extends of itself) is the loop.
        line, name = next((f for f in tied if _names_itself(f)), tied[0])
        return line, _short(name)
    return frames[-1][0], _short(frames[-1][1])


def _names_itself(frame: tuple[int | None, str | None]) -> bool:
    line, name = frame
    if not line or not name:
        return False
    try:
        text = Path(name).read_text(encoding="utf-8-sig").splitlines()[line - 1]
    except (OSError, UnicodeError, IndexError):
        return False
    return Path(name).name in text


def _short(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    return f"{TEMPLATES_DIR}/{p.name}" if p.suffix == ".j2" else str(p)
