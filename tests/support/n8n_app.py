"""Run the real n8n (the install tests/realapps/n8n-app.sh caches) as a process on loopback.

    from tests.support.n8n_app import require_n8n, run_n8n

    with run_n8n(env, home) as n8n:      # env: the variables of the generated env files
        n8n.url                         # "http://127.0.0.1:PORT"; n8n.log() = its output so far

n8n starts as the official image starts it: the image's entrypoint runs ``n8n`` (which is
``n8n start``) as user node with HOME=/home/node, NODE_ENV=production and
N8N_RELEASE_TYPE=stable, and n8n keeps its settings in $HOME/.n8n (the stack's n8n-data volume).
Here HOME is ``home`` (a directory of the test), so the settings file lands in ``home/.n8n``.
The environment is ``env`` on top of that minimal base: nothing of the caller's leaks in. Only
N8N_PORT, N8N_LISTEN_ADDRESS and N8N_RUNNERS_BROKER_PORT are added, to put it (and its task
broker) on free loopback ports.

Without the install the test is skipped, or fails where ``CI=true`` (.ci/run builds it).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.litellm_proxy import free_port

REPO = Path(__file__).resolve().parents[2]
APP_SCRIPT = REPO / "tests" / "realapps" / "n8n-app.sh"
# A first start migrates an empty database (about 150 migrations) on 2 shared cores.
START_TIMEOUT = float(os.environ.get("MMSTACK_N8N_START_TIMEOUT", "420"))
# What the official image sets (docker/images/n8n/Dockerfile) and n8n reads.
IMAGE_ENV = {"NODE_ENV": "production", "N8N_RELEASE_TYPE": "stable"}


@functools.cache
def n8n_dir() -> Path | None:
    """The cached install (``bin/n8n``, ``node/``, ``app/node_modules``) if built and current."""
    try:
        done = subprocess.run(["bash", str(APP_SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and (path / "bin" / "n8n").is_file() else None


def require_n8n() -> Path:
    """The install's directory; else skip the test, or fail it when CI=true."""
    path = n8n_dir()
    if path is not None:
        return path
    reason = "the n8n install is not built"
    fix = f"run as root: bash {APP_SCRIPT.relative_to(REPO)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the real-app tests ({fix})", pytrace=False)
    pytest.skip(f"{reason} ({fix})")
    raise AssertionError("unreachable")


def installed_version(root: Path) -> str:
    return json.loads((root / "app" / "node_modules" / "n8n" / "package.json").read_text())["version"]


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


@dataclass
class N8n:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    home: Path

    def log(self, tail: int | None = 80) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(lines if tail is None else lines[-tail:])


def n8n_environment(env: Mapping[str, str], home: Path, port: int) -> dict[str, str]:
    # The install's node first: n8n spawns its JS task runner as `node` from PATH (the image has
    # node 24 in /usr/local/bin), and this host's own node is older.
    node_bin = require_n8n() / "node" / "bin"
    base = {"PATH": f"{node_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "TMPDIR": str(home / "tmp"), **IMAGE_ENV}
    # The task broker (n8n's internal runner connects to it) listens on 127.0.0.1:5679 by default:
    # alone in the container there, but two n8n processes on one host need two ports.
    return {**base, **env, "N8N_PORT": str(port), "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_RUNNERS_BROKER_PORT": str(free_port())}


@contextmanager
def run_n8n(env: Mapping[str, str], home: Path, *, port: int | None = None, ready: bool = True,
            timeout: float = START_TIMEOUT) -> Iterator[N8n]:
    """Start ``n8n start`` on ``port`` (default: a free one); with ``ready``, wait for
    /healthz/readiness (else only for /healthz)."""
    root = require_n8n()
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    port = port or free_port()
    log_path = home / f"n8n-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(root / "bin" / "n8n"), "start"], cwd=home, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=n8n_environment(env, home, port),
                                start_new_session=True)
    app = N8n(f"http://127.0.0.1:{port}", port, proc, log_path, home)
    try:
        path = "/healthz/readiness" if ready else "/healthz"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"n8n exited with {proc.returncode}:\n{app.log()}")
            if get(app.url + path, timeout=3)[0] == 200:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"n8n did not answer 200 on {path} within {timeout:.0f}s:\n{app.log()}")
            time.sleep(1)
        yield app
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to n8n's process group (n8n and its task runner), then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
