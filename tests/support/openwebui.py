"""Run the real Open WebUI server (from the venv tests/realapps/openwebui-venv.sh builds) on loopback.

    from tests.support.openwebui import run_openwebui

    with run_openwebui(env, data_dir) as url:   # env: e.g. the generated openwebui.env's settings
        ...                                    # url == "http://127.0.0.1:PORT"; url.log() = its output

The server starts as the image starts it, less the shell around it: the image's backend/start.sh
ends in ``uvicorn open_webui.main:app --host "$HOST" --port "$PORT"`` (0.0.0.0 and 8080 unless
set); here it is ``open-webui serve --host 127.0.0.1 --port PORT``, the wheel's own entry point,
which runs the same app under uvicorn (it reads no PORT or HOST from the environment).
``--host`` only keeps it on loopback. Secrets travel in the environment only, never on the
command line.

The server's environment is ``env`` on top of a minimal base: PATH with the venv's bin first, a
private HOME and TMPDIR, LANG; USE_SLIM_DOCKER=true (the venv holds Open WebUI's slim set, see
the venv script); OFFLINE_MODE=true and HF_HUB_OFFLINE=1, so it looks nothing up on the Hugging
Face hub, checks for no new version and installs no plugin requirements; and STATIC_DIR, a
private folder, as Open WebUI copies its static assets there at each start (by default into the
venv, which other runs share). Nothing of the caller's environment leaks in, and nothing goes
off the machine. ``env`` may override any of these, but not DATA_DIR: that is always
``data_dir`` (the image's /app/backend/data volume), created if missing, so a second run with
the same ``data_dir`` is a restart. The working folder is a private one too (``open-webui
serve`` would write ./.webui_secret_key there when WEBUI_SECRET_KEY is unset).

Without the venv the test is skipped, or fails where ``CI=true`` (.ci/run builds it). The venv
lookup runs once per session.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.litellm_proxy import ProxyURL, _stop, free_port

REPO = Path(__file__).resolve().parents[2]
VENV_SCRIPT = REPO / "tests" / "realapps" / "openwebui-venv.sh"

BASE_ENV: dict[str, str] = {
    "USE_SLIM_DOCKER": "true",
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
}

START_TIMEOUT = float(os.environ.get("MMSTACK_OPENWEBUI_START_TIMEOUT", "180"))


class WebUIURL(ProxyURL):
    """Open WebUI's base URL (``http://127.0.0.1:PORT``), which also knows the server's log."""


@functools.cache
def openwebui_python() -> Path | None:
    """The venv's python if tests/realapps/openwebui-venv.sh has built it and it is current."""
    try:
        done = subprocess.run(["bash", str(VENV_SCRIPT), "--check"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def require_openwebui() -> Path:
    """The venv's python; else skip the test, or fail it when CI=true."""
    python = openwebui_python()
    if python is not None:
        return python
    reason = "the Open WebUI venv is not built"
    fix = f"run as root: bash {VENV_SCRIPT.relative_to(REPO)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the real-app tests ({fix})", pytrace=False)
    pytest.skip(f"{reason} ({fix})")
    raise AssertionError("unreachable")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200 and json.loads(resp.read()).get("status") is True
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return False


@contextmanager
def run_openwebui(env: Mapping[str, str], data_dir: Path, port: int | None = None,
                  start_timeout: float = START_TIMEOUT) -> Iterator[WebUIURL]:
    """Start the real Open WebUI on 127.0.0.1 with ``env``, its data in ``data_dir``; yield its
    base URL; stop it on exit.

    Waits until ``GET /health`` answers ``{"status": true}`` (Open WebUI has then run its
    migrations and start-up hook, which creates the admin from WEBUI_ADMIN_* when it has no
    user); raises AssertionError with the server's log if it exits or is not healthy within
    ``start_timeout`` seconds. On exit the whole process group is stopped, SIGTERM then SIGKILL.
    """
    python = require_openwebui()
    openwebui = python.parent / "open-webui"
    port = port if port is not None else free_port()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mmstack-openwebui-") as tmp:
        tmpdir = Path(tmp)
        home, static = tmpdir / "home", tmpdir / "static"
        home.mkdir()
        log_path = tmpdir / "openwebui.log"
        run_env = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmpdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "STATIC_DIR": str(static),
            **BASE_ENV,
            **dict(env),
            "DATA_DIR": str(data_dir),
        }
        argv = [str(openwebui), "serve", "--host", "127.0.0.1", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, env=run_env, cwd=tmpdir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = WebUIURL(url, log_path, proc)
        try:
            deadline = time.monotonic() + start_timeout
            while not _healthy(url):
                if proc.poll() is not None:
                    raise AssertionError(f"open-webui exited with {proc.returncode} before it was "
                                         f"healthy on {url}; log:\n{server.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"open-webui not healthy on {url}/health after "
                                         f"{start_timeout:.0f}s; log:\n{server.log()}")
                time.sleep(0.5)
            yield server
        finally:
            _stop(proc)
            try:
                server._kept = log_path.read_text(errors="replace")
            except OSError:
                pass
