"""Run the real LiteLLM proxy (from the venv tests/realapps/litellm-venv.sh builds) on loopback.

    from tests.support.litellm_proxy import run_litellm

    with run_litellm(config_path, {"LITELLM_MASTER_KEY": key, "VLLM_API_KEY": vkey}) as url:
        ...                                  # url == "http://127.0.0.1:PORT"; url.log() = its output

The proxy starts the way the official image starts it: the image's ENTRYPOINT
(docker/prod_entrypoint.sh) is ``exec litellm "$@"`` with CMD ``--port 4000``, so a Compose
service runs ``litellm --config /app/config.yaml --port 4000``. Here it is
``litellm --config CONFIG --port PORT --host 127.0.0.1``: ``--host`` (default 0.0.0.0) only keeps
it on loopback. Secrets travel in the environment only, never on the command line.

The proxy's environment is ``env`` on top of a minimal base (PATH with the venv's bin first, a
private HOME and TMPDIR, LANG) and the switches that keep LiteLLM from fetching its model cost
map, Anthropic beta headers, blog posts, autorouter presets and policy templates from GitHub at
start (``LITELLM_LOCAL_*=True``): nothing of the caller's environment leaks in, and nothing goes
off the machine. ``env`` may override any of them.

Without the venv the test is skipped, or fails where ``CI=true`` (.ci/run builds it). The venv
lookup runs once per session.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_SCRIPT = REPO / "tests" / "realapps" / "litellm-venv.sh"

# LiteLLM fetches these from raw.githubusercontent.com at import or start unless told not to.
OFFLINE_ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
}

START_TIMEOUT = float(os.environ.get("MMSTACK_LITELLM_START_TIMEOUT", "180"))


class ProxyURL(str):
    """The proxy's base URL (``http://127.0.0.1:PORT``), which also knows the proxy's log."""

    log_path: Path
    process: subprocess.Popen
    _kept: str | None

    def __new__(cls, url: str, log_path: Path, process: subprocess.Popen) -> "ProxyURL":
        obj = super().__new__(cls, url)
        obj.log_path = log_path
        obj.process = process
        obj._kept = None
        return obj

    def log(self, tail: int | None = 80) -> str:
        """The proxy's stdout+stderr (its last ``tail`` lines; None for all), also after exit."""
        text = self._kept
        if text is None:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError as exc:
                return f"(no log: {exc})"
        lines = text.splitlines()
        return "\n".join(lines if tail is None else lines[-tail:])


@functools.cache
def litellm_python() -> Path | None:
    """The venv's python if tests/realapps/litellm-venv.sh has built it and it is current."""
    try:
        done = subprocess.run(["bash", str(VENV_SCRIPT), "--check"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def require_litellm() -> Path:
    """The venv's python; else skip the test, or fail it when CI=true."""
    python = litellm_python()
    if python is not None:
        return python
    reason = "the LiteLLM proxy venv is not built"
    fix = f"run as root: bash {VENV_SCRIPT.relative_to(REPO)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the real-app tests ({fix})", pytrace=False)
    pytest.skip(f"{reason} ({fix})")
    raise AssertionError("unreachable")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Workers left in the group after the leader exited.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def run_litellm(config: Path, env: Mapping[str, str], port: int | None = None,
                start_timeout: float = START_TIMEOUT,
                extra_args: tuple[str, ...] = ()) -> Iterator[ProxyURL]:
    """Start the real proxy on 127.0.0.1 with ``config``; yield its base URL; stop it on exit.

    Waits until ``GET /health/liveliness`` answers 200; raises AssertionError with the proxy's
    log if it exits or is not alive within ``start_timeout`` seconds. On exit the whole process
    group (the proxy and any workers) is stopped, SIGTERM then SIGKILL.
    """
    python = require_litellm()
    litellm = python.parent / "litellm"
    port = port if port is not None else free_port()
    with tempfile.TemporaryDirectory(prefix="mmstack-litellm-") as tmp:
        tmpdir = Path(tmp)
        home = tmpdir / "home"
        home.mkdir()
        log_path = tmpdir / "litellm.log"
        run_env = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmpdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **OFFLINE_ENV,
            **dict(env),
        }
        argv = [str(litellm), "--config", str(Path(config).resolve()), "--port", str(port),
                "--host", "127.0.0.1", *extra_args]
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, env=run_env, cwd=tmpdir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proxy = ProxyURL(url, log_path, proc)
        try:
            deadline = time.monotonic() + start_timeout
            while not _alive(url):
                if proc.poll() is not None:
                    raise AssertionError(f"litellm exited with {proc.returncode} before it was "
                                         f"alive on {url}; log:\n{proxy.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"litellm not alive on {url}/health/liveliness after "
                                         f"{start_timeout:.0f}s; log:\n{proxy.log()}")
                time.sleep(0.5)
            yield proxy
        finally:
            _stop(proc)
            try:
                proxy._kept = log_path.read_text(errors="replace")
            except OSError:
                pass
