"""vLLM 0.33.0's real ``vllm serve`` argument parser, for tests of the generated ``command:``.

    from tests.support.vllm_parser import VllmRejected, parse_vllm_command, parse_vllm_commands

    parsed = parse_vllm_command(["Qwen/Qwen3-0.6B", "--tensor-parallel-size", "2"])
    assert parsed["model"] == "Qwen/Qwen3-0.6B" and parsed["tensor_parallel_size"] == 2
    with pytest.raises(VllmRejected) as info:
        parse_vllm_command(["Qwen/Qwen3-0.6B", "--no-such-flag"])
    info.value.stage, info.value.error       # "parse", "usage: ...\\nvllm: error: unrecognized ..."

``argv`` is the container ``command:`` of ``vllm/vllm-openai:v0.33.0``, whose ENTRYPOINT is
``["vllm", "serve"]``: its first element is the model. The result holds every parsed key
(``api_key`` only as a bool, ``hf_token`` redacted); see tests/realapps/vllm_argv.py.

The parser runs in its own venv, built once per machine by tests/realapps/vllm-venv.sh
(``$MMSTACK_APP_CACHE``, default /var/cache/mmstack-apps; .ci/run builds it before the tests;
a cold build takes minutes). ``vllm_python()`` finds or builds it once per session; when that
fails the test is skipped, or fails when ``CI=true``. ``MMSTACK_VLLM_PYTHON`` points at a python
that has it already (skips the script). The parser process (one per distinct ``env``) starts once
per session (~10-15 s of imports) and then answers each command in a fraction of a second;
results are cached per session.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import selectors
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from tests.support.needs import unavailable

REALAPPS = Path(__file__).resolve().parents[1] / "realapps"
VENV_SCRIPT = REALAPPS / "vllm-venv.sh"
ARGV_SCRIPT = REALAPPS / "vllm_argv.py"
BUILD_TIMEOUT_S = 3600
PARSE_TIMEOUT_S = 300


class VllmParserError(RuntimeError):
    """The harness itself failed (not a rejection by vLLM): bad venv, crash, timeout."""


class VllmRejected(ValueError):
    """vLLM rejected the command. ``stage``: parse | validate | engine_args; ``error`` (also
    ``stderr``): vLLM's own message, e.g. argparse's ``usage: ...\nvllm serve: error: ...``."""

    def __init__(self, argv: Sequence[str], stage: str, error: str):
        super().__init__(f"vLLM 0.33.0 rejected {list(argv)!r} ({stage}): {error}")
        self.argv = list(argv)
        self.stage = stage
        self.error = error
        self.stderr = error


def _unavailable(reason: str) -> None:
    unavailable(reason, f"bash {VENV_SCRIPT.relative_to(REALAPPS.parents[1])}")


@lru_cache(maxsize=1)
def _locate() -> tuple[str | None, str]:
    """(python, "") or (None, why), once per session."""
    given = os.environ.get("MMSTACK_VLLM_PYTHON")
    if given:
        if os.access(given, os.X_OK):
            return given, ""
        return None, f"MMSTACK_VLLM_PYTHON={given} is not an executable"
    try:
        proc = subprocess.run(["bash", str(VENV_SCRIPT)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"vllm-venv.sh did not finish ({exc.__class__.__name__}: {exc})"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return None, f"vllm-venv.sh failed (exit {proc.returncode}):\n{tail}"
    return lines[-1], ""


def vllm_python() -> str:
    """The python of the vLLM 0.33.0 parser venv; skips (fails on CI) when it can't be had."""
    python, why = _locate()
    if python is None:
        _unavailable(f"vLLM 0.33.0 parser venv unavailable: {why}")
    return python


@lru_cache(maxsize=1)
def _home() -> str:
    return tempfile.mkdtemp(prefix="mmstack-vllm-parser-home-")


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """A clean environment (no VLLM_*/HF_* from the test run), plus the container's ``env``."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": _home(),
        "LANG": "C.UTF-8",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    base.update(env or {})
    return base


class _Worker:
    """One ``vllm_argv.py --lines`` process: the ~10 s import once, then ~0.1 s a command."""

    def __init__(self, python: str, env: dict[str, str]):
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen([python, str(ARGV_SCRIPT), "--lines"], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env)
        ready = self._read()
        if ready.get("ready") is not True:
            self.close()
            raise VllmParserError(f"vllm_argv.py did not start: {ready!r}\n{self.stderr_tail()}")

    def stderr_tail(self, size: int = 4000) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-size:]

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(PARSE_TIMEOUT_S):
                self.close()
                raise VllmParserError(f"vllm_argv.py gave no answer in {PARSE_TIMEOUT_S}s:\n"
                                      f"{self.stderr_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise VllmParserError(f"vllm_argv.py exited ({self.proc.returncode}):\n"
                                  f"{self.stderr_tail()}")
        return json.loads(line)

    def parse(self, argv: list[str]) -> dict:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(argv) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise VllmParserError(f"vllm_argv.py is gone ({exc}):\n{self.stderr_tail()}")
        entry = self._read()
        if "harness_error" in entry:
            raise VllmParserError(f"vllm_argv.py refused {argv!r}: {entry['harness_error']}")
        return entry

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


_workers: dict[tuple, _Worker] = {}


@atexit.register
def _close_workers() -> None:
    while _workers:
        _workers.popitem()[1].close()


def _parse(argv: list[str], env: Mapping[str, str] | None) -> dict:
    key = tuple(sorted((env or {}).items()))
    worker = _workers.get(key)
    if worker is None or worker.proc.poll() is not None:
        worker = _workers[key] = _Worker(vllm_python(), _environment(env))
    try:
        return worker.parse(argv)
    except VllmParserError:
        if worker.proc.poll() is not None:
            _workers.pop(key, None)
        raise


_cache: dict[tuple, dict] = {}


def _key(argv: Sequence[str], env: Mapping[str, str] | None) -> tuple:
    return tuple(argv), tuple(sorted((env or {}).items()))


def _outcome(argv: Sequence[str], entry: dict) -> dict:
    if entry["ok"]:
        return copy.deepcopy(entry["result"])
    raise VllmRejected(argv, entry["stage"], entry["error"])


def parse_vllm_commands(argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None = None
                        ) -> list[dict | VllmRejected]:
    """Parse many commands in one process: a parsed dict or a VllmRejected (returned, not
    raised) for each. ``env``: the container's environment variables (vLLM reads some defaults
    from VLLM_* variables)."""
    for argv in argvs:
        if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
            raise TypeError(f"a command is a list of strings, not {argv!r}")
    results: list[dict | VllmRejected] = []
    for argv in argvs:
        key = _key(argv, env)
        if key not in _cache:
            _cache[key] = _parse(list(argv), env)
        try:
            results.append(_outcome(argv, _cache[key]))
        except VllmRejected as exc:
            results.append(exc)
    return results


def parse_vllm_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> dict:
    """Parse one container ``command:`` as ``vllm serve`` 0.33.0 would; VllmRejected if it
    refuses it."""
    (result,) = parse_vllm_commands([argv], env)
    if isinstance(result, VllmRejected):
        raise result
    return result
