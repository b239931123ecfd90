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
lookup runs once per session. Starting, waiting and stopping: tests/support/realapp.py.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.realapp import REALAPPS, AppSpec, AppURL, free_port, require_venv, run_app, venv_python

VENV_SCRIPT = REALAPPS / "litellm-venv.sh"

# LiteLLM fetches these from raw.githubusercontent.com at import or start unless told not to.
OFFLINE_ENV: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
}


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


LITELLM = AppSpec("litellm", VENV_SCRIPT, _alive,
                  float(os.environ.get("MMSTACK_LITELLM_START_TIMEOUT", "180")))


def litellm_python() -> Path | None:
    """The venv's python if tests/realapps/litellm-venv.sh has built it and it is current."""
    return venv_python(VENV_SCRIPT)


def require_litellm() -> Path:
    """The venv's python; else skip the test, or fail it when CI=true."""
    return require_venv(VENV_SCRIPT, "LiteLLM proxy")


@contextmanager
def run_litellm(config: Path, env: Mapping[str, str], port: int | None = None,
                extra_args: tuple[str, ...] = ()) -> Iterator[AppURL]:
    """Start the real proxy on 127.0.0.1 with ``config``; yield its base URL once
    ``GET /health/liveliness`` answers 200; stop its whole process group on exit."""
    python = require_litellm()
    port = port if port is not None else free_port()
    argv = [str(python.parent / "litellm"), "--config", str(Path(config).resolve()),
            "--port", str(port), "--host", "127.0.0.1", *extra_args]
    with run_app(LITELLM, python, argv, {**OFFLINE_ENV, **dict(env)}, port) as url:
        yield url
