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
lookup runs once per session. Starting, waiting and stopping: tests/support/realapp.py.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.realapp import REALAPPS, AppSpec, AppURL, free_port, require_venv, run_app

VENV_SCRIPT = REALAPPS / "openwebui-venv.sh"

BASE_ENV: dict[str, str] = {
    "USE_SLIM_DOCKER": "true",
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200 and json.loads(resp.read()).get("status") is True
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return False


OPENWEBUI = AppSpec("open-webui", VENV_SCRIPT, _healthy,
                    float(os.environ.get("MMSTACK_OPENWEBUI_START_TIMEOUT", "180")))


def require_openwebui() -> Path:
    """The venv's python; else skip the test, or fail it when CI=true."""
    return require_venv(VENV_SCRIPT, "Open WebUI")


@contextmanager
def run_openwebui(env: Mapping[str, str], data_dir: Path, port: int | None = None) -> Iterator[AppURL]:
    """Start the real Open WebUI on 127.0.0.1 with ``env``, its data in ``data_dir``; yield its
    base URL; stop its whole process group on exit.

    Ready when ``GET /health`` answers ``{"status": true}`` (Open WebUI has then run its
    migrations and start-up hook, which creates the admin from WEBUI_ADMIN_* when it has no
    user).
    """
    python = require_openwebui()
    port = port if port is not None else free_port()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(python.parent / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with run_app(OPENWEBUI, python, argv, {**BASE_ENV, **dict(env), "DATA_DIR": str(data_dir)}, port,
                 private=lambda tmp: {"STATIC_DIR": str(tmp / "static")}) as url:
        yield url
