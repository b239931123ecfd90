"""Run a real application from a cached venv (tests/realapps/*-venv.sh) on loopback.

The one home of what every real-app harness shares: finding the venv (``--check`` never
builds), skipping or, where ``CI=true``, failing when it is missing, a free loopback port, a
private HOME and TMPDIR, starting the app in its own process group with only the environment it
is given, waiting until it answers, and stopping the whole group (SIGTERM, then SIGKILL) with
its log kept for the assertion messages.

    with run_app(AppSpec(...), argv, env) as url:   # url == "http://127.0.0.1:PORT"
        ...                                         # url.log(): its stdout and stderr

tests/support/litellm_proxy.py and tests/support/openwebui.py say how each app starts.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.needs import unavailable

REPO = Path(__file__).resolve().parents[2]
REALAPPS = REPO / "tests" / "realapps"


class AppURL(str):
    """An app's base URL (``http://127.0.0.1:PORT``), which also knows the app's log."""

    log_path: Path
    process: subprocess.Popen
    _kept: str | None

    def __new__(cls, url: str, log_path: Path, process: subprocess.Popen) -> "AppURL":
        obj = super().__new__(cls, url)
        obj.log_path = log_path
        obj.process = process
        obj._kept = None
        return obj

    def log(self, tail: int | None = 80) -> str:
        """The app's stdout+stderr (its last ``tail`` lines; None for all), also after exit."""
        text = self._kept
        if text is None:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError as exc:
                return f"(no log: {exc})"
        lines = text.splitlines()
        return "\n".join(lines if tail is None else lines[-tail:])


@dataclass(frozen=True)
class AppSpec:
    """One real app: its name in messages, the script that builds its venv, how it says it is
    up (``ready(url)``, polled), and how long it may take."""

    name: str
    venv_script: Path
    ready: Callable[[str], bool]
    start_timeout: float


@functools.cache
def venv_python(script: Path) -> Path | None:
    """The venv's python if ``script`` has built it and it is current (``--check`` never builds)."""
    try:
        done = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def require_venv(script: Path, what: str) -> Path:
    """The venv's python; else skip the test, or fail it when CI=true (.ci/run builds it)."""
    python = venv_python(script)
    if python is not None:
        return python
    unavailable(f"the {what} venv is not built", f"run as root: bash {script.relative_to(REPO)}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop ``proc``'s whole process group: SIGTERM, then SIGKILL, and any worker left over."""
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
def run_app(spec: AppSpec, python: Path, argv: Sequence[str], env: Mapping[str, str], port: int,
            private: Callable[[Path], Mapping[str, str]] = lambda tmp: {}) -> Iterator[AppURL]:
    """Start ``argv`` on 127.0.0.1:``port``; yield its base URL once ``spec.ready`` says so.

    The environment is a minimal base (PATH with the venv's bin first, a private HOME and
    TMPDIR, LANG, unbuffered Python), then ``private(tmpdir)`` (the app's own private folders),
    then ``env``; nothing of the caller's environment leaks in. Raises AssertionError with the
    app's log if it exits or is not ready within ``spec.start_timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix=f"mmstack-{spec.name}-") as tmp:
        tmpdir = Path(tmp)
        home = tmpdir / "home"
        home.mkdir()
        log_path = tmpdir / f"{spec.name}.log"
        run_env = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmpdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **private(tmpdir),
            **dict(env),
        }
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(list(argv), env=run_env, cwd=tmpdir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        app = AppURL(url, log_path, proc)
        try:
            deadline = time.monotonic() + spec.start_timeout
            while not spec.ready(url):
                if proc.poll() is not None:
                    raise AssertionError(f"{spec.name} exited with {proc.returncode} before it was "
                                         f"ready on {url}; log:\n{app.log()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{spec.name} not ready on {url} after "
                                         f"{spec.start_timeout:.0f}s; log:\n{app.log()}")
                time.sleep(0.5)
            yield app
        finally:
            stop_group(proc)
            try:
                app._kept = log_path.read_text(errors="replace")
            except OSError:
                pass
