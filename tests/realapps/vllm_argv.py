"""Parse a ``vllm/vllm-openai:v0.33.0`` container ``command:`` with vLLM's own serve parser.

Run by the python of the venv that tests/realapps/vllm-venv.sh builds (vLLM 0.33.0, CPU torch):

    echo '["Qwen/Qwen3-0.6B", "-tp", "2"]' | "$VLLM_PY" tests/realapps/vllm_argv.py

stdin: a JSON list of strings, the container ``command:``, i.e. what follows the image's
``ENTRYPOINT ["vllm", "serve"]``: the model is the first, positional, element.

What runs is what the image runs before it starts the engine: vLLM's ``vllm`` CLI parser with
the real ``ServeSubcommand`` (vllm/entrypoints/cli/main.py builds it the same way), parsing
``["serve", *command]`` (FlexibleArgumentParser moves ``--model X`` to the positional place,
reads ``--config``, accepts ``_`` for ``-``, expands ``--json-arg.key value``), then
``ServeSubcommand.validate`` (vllm.entrypoints.common.cli_args.validate_parsed_serve_args),
then ``ServeSubcommand.cmd``'s first step (the positional model wins over ``--model``) and
``AsyncEngineArgs.from_cli_args`` (the engine-args dataclass every startup path builds). The
checks that need the model's config.json or a GPU (``create_engine_config``: tensor-parallel
size against attention heads, memory, dtype support, ...) are beyond it.

stdout, exit 0: one JSON object, every parsed key (json-safe), with ``model`` resolved as the
image resolves it, ``api_key`` as a bool (set or not; never the keys), ``api_key_count``, and
``hf_token`` as null/false/true or "<redacted>".
Rejected (exit 2): vLLM's own message on stderr (argparse's ``vllm serve: error: ...``, or the
validator's exception as ``Type: message``), and on stdout
``{"rejected": true, "stage": "parse"|"validate"|"engine_args", "error": ...}``.
Harness failure (exit 3): bad stdin, vLLM not importable; traceback on stderr.

The import costs ~10 s, so two modes parse many commands in one process:
- batch: stdin ``{"commands": [[...], [...]]}``; stdout one JSON line per command,
  ``{"ok": true, "result": {...}}`` or ``{"ok": false, "rejected": true, "stage": ...,
  "error": ...}``; exit 0 unless the harness itself fails.
- ``--lines`` (what tests/support/vllm_parser.py keeps running): ``{"ready": true}`` once the
  parser is built, then for each line of stdin (one JSON command) one such line, flushed.

vLLM logs to stdout by default; this script points stdout at stderr while vLLM runs and writes
only its JSON to the real stdout. VLLM_TARGET_DEVICE=cpu is forced (0.33.0 builds config
defaults that probe the platform while it builds the parser), and so are HF_ENDPOINT (a closed
loopback port) and HF_HUB_OFFLINE=0 (see _prepare); everything else comes from the caller's
environment (tests/support/vllm_parser.py passes a clean one plus the container's variables).

Known differences from the CUDA image: ``--mm-processor-device`` offers the platform's device
type as a choice (``cuda`` in the image, absent here: vllm/engine/arg_utils.py:1567-1575); the
top-level usage line lists only ``{serve}``. Defaults read from VLLM_* variables follow ``env``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import math
import os
import sys
import traceback

EXIT_REJECTED = 2
EXIT_HARNESS = 3
_MAX_DEPTH = 12


def json_safe(value, depth: int = 0):
    """A JSON-serialisable rendering of a parsed value (configs become dicts, dtypes strings)."""
    if depth > _MAX_DEPTH:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, depth + 1)
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v, depth + 1) for v in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name, None), depth + 1)
                for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic BaseModel
    if callable(dump):
        try:
            return json_safe(dump(mode="json"), depth + 1)
        except Exception:
            pass
    return str(value)


class Rejected(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


def _is_command(value) -> bool:
    return isinstance(value, list) and all(isinstance(a, str) for a in value)


def build_parser():
    """The `vllm` CLI parser as vllm/entrypoints/cli/main.py:main builds it, `serve` only."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.common.startup import cli_env_setup
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers).set_defaults(dispatch_function=serve.cmd)
    return parser, serve


def parse_command(parser, serve, command: list[str]) -> dict:
    """Parse one container command as the image would; a json-safe dict, or Rejected."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.logger import configure_logging_from_args

    captured = io.StringIO()  # argparse prints its usage + error (or --help) to stderr
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(["serve", *command])
    except SystemExit as exc:
        if exc.code in (0, None):
            raise Rejected("parse", "the command asks for --help/--version: vllm serve would "
                                    "print it and exit without serving") from None
        raise Rejected("parse", captured.getvalue().strip() or f"exit {exc.code}") from None
    except Exception as exc:  # FlexibleArgumentParser's own ValueErrors, --config file errors
        raise Rejected("parse", f"{type(exc).__name__}: {exc}") from None

    try:
        configure_logging_from_args(args)  # main() does this before validate
        serve.validate(args)
    except Exception as exc:
        raise Rejected("validate", f"{type(exc).__name__}: {exc}") from None

    # ServeSubcommand.cmd, first lines: the positional model takes precedence over --model.
    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    try:
        AsyncEngineArgs.from_cli_args(args)
    except Exception as exc:
        raise Rejected("engine_args", f"{type(exc).__name__}: {exc}") from None

    parsed = dict(vars(args))
    parsed.pop("dispatch_function", None)
    api_keys = [k for k in (parsed.pop("api_key", None) or []) if k]
    hf_token = parsed.pop("hf_token", None)
    result = {k: json_safe(v) for k, v in sorted(parsed.items())}
    result["api_key"] = bool(api_keys)
    result["api_key_count"] = len(api_keys)
    result["hf_token"] = "<redacted>" if isinstance(hf_token, str) else hf_token
    return result


def _entry(parser, serve, command) -> dict:
    try:
        return {"ok": True, "result": parse_command(parser, serve, command)}
    except Rejected as exc:
        print(exc.message, file=sys.stderr)
        return {"ok": False, "rejected": True, "stage": exc.stage, "error": exc.message}


def _emit(out, obj) -> None:
    json.dump(obj, out, sort_keys=True)
    out.write("\n")
    out.flush()


def _prepare():
    os.environ["VLLM_TARGET_DEVICE"] = "cpu"
    # No hub traffic, ever: any lookup goes to a closed loopback port and fails at once.
    # HF_HUB_OFFLINE is forced off: with it on, EngineArgs.__post_init__ swaps the model id for
    # its local snapshot path (vllm/engine/arg_utils.py:933-947), which exists in the
    # container's cache, not here.
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    try:
        return build_parser()
    except Exception:
        traceback.print_exc()
        print("vllm_argv: vLLM's CLI did not build (run me with the vllm-venv.sh python)",
              file=sys.stderr)
        return None


def serve_lines(out) -> int:
    """--lines: {"ready": true}, then one result line per JSON command line on stdin."""
    built = _prepare()
    if built is None:
        return EXIT_HARNESS
    _emit(out, {"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
        except ValueError as exc:
            command, problem = None, f"not JSON: {exc}"
        else:
            problem = "" if _is_command(command) else "not a JSON list of strings"
        if problem:
            _emit(out, {"ok": False, "harness_error": problem})
            continue
        _emit(out, _entry(*built, command))
    return 0


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM's logger (VLLM_LOGGING_STREAM) and argparse help go to stderr
    if sys.argv[1:] == ["--lines"]:
        return serve_lines(out)

    try:
        request = json.load(sys.stdin)
    except ValueError as exc:
        print(f"vllm_argv: stdin is not JSON: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    batch = isinstance(request, dict)
    commands = request.get("commands") if batch else [request]
    if not isinstance(commands, list) or not all(_is_command(c) for c in commands):
        print('vllm_argv: stdin must be a JSON list of strings, or {"commands": [[...], ...]}',
              file=sys.stderr)
        return EXIT_HARNESS
    built = _prepare()
    if built is None:
        return EXIT_HARNESS

    code = 0
    for command in commands:
        entry = _entry(*built, command)
        if batch:
            _emit(out, entry)
        elif entry["ok"]:
            _emit(out, entry["result"])
        else:
            code = EXIT_REJECTED
            _emit(out, {k: entry[k] for k in ("rejected", "stage", "error")})
    return 0 if batch else code


if __name__ == "__main__":
    sys.exit(main())
