"""Facts about a site's engine and host, pyinfra-style: each is a shell command run through
`Site.sh` (here or on a host, the same command) and a pure parser of its output.

* containers: ``docker ps`` with a JSON template (no ``.Size``, which would make the engine
  measure every container), normalised to the engine API's list shape (``Labels`` a mapping,
  ``Names`` a list, ``Ports`` published-port entries) that `outcomes` and `preflight` read;
* listening sockets: ``ss -ltnuH`` (with the owning process where the user may see it), else a
  python3 reading of ``/proc/net``; neither: the port check is skipped with a note;
* a start's preflight: every fact above, the engine's runtimes, Compose (the probe of
  `composecmd`), the files that are missing and the project's volumes, in ONE command whose
  sections one parser splits.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import DockerError
from .engine import ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL, UNREACHABLE_FIX

LOG_TAIL = 20
# The labels that decide ownership are read exactly (`.Label`), not split out of the
# comma-joined `.Labels` string, whose values may contain commas.
_EXACT = (PROJECT_LABEL, SERVICE_LABEL, ONEOFF_LABEL)
CONTAINER_FORMAT = ("{" + ",".join([f'"{k}":{{{{json .{k}}}}}' for k in
                                    ("ID", "Names", "State", "Status", "Ports", "Labels")]
                                   + [f'"{i}":{{{{json (.Label "{k}")}}}}' for i, k in enumerate(_EXACT)])
                    + "}")
VOLUME_FORMAT = '{"Name":{{json .Name}},"Labels":{{json .Labels}}}'
RUNTIMES_FORMAT = "{{json .Runtimes}}"
SECTION = "@@mmstack-fact "   # a section marker line: ``@@mmstack-fact <name> <exit status>``
NO_LISTENERS = "@@mmstack-no-ss"

# Listening sockets without ss: /proc/net as ss's columns (netid state - - local peer).
_PROC_LISTENERS = r"""
import socket, struct
def addr(hexaddr, v6):
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if v6:
        raw = b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw))
        return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw), int(port, 16))
    return "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16))
for table in ("tcp", "tcp6", "udp", "udp6"):
    try:
        rows = open("/proc/net/" + table).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        c = row.split()
        if table.startswith("tcp") and c[3] != "0A":
            continue
        print(table[:3], "LISTEN", 0, 0, addr(c[1], table.endswith("6")), "*:*")
"""


# ----------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------

def containers_command(project: str | None = None, running_only: bool = False) -> str:
    flt = f" --filter {shlex.quote(f'label={PROJECT_LABEL}={project}')}" if project else ""
    every = "" if running_only else " -a"
    return f"docker ps{every} --no-trunc{flt} --format {shlex.quote(CONTAINER_FORMAT)}"


def parse_labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


_PORT = re.compile(r"^(?:(?P<ip>\[[^\]]*\]|[^\s\[\]]*?):(?P<pub>\d+(?:-\d+)?)->)?(?P<priv>\d+(?:-\d+)?)/(?P<proto>\w+)$")


def _span(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def parse_ports(text: str) -> list[dict[str, Any]]:
    """Pure: docker ps's ``Ports`` (``127.0.0.1:5432->5432/tcp, 6379/tcp``) as API entries."""
    out: list[dict[str, Any]] = []
    for item in (text or "").split(","):
        m = _PORT.match(item.strip())
        if not m:
            continue
        privs = _span(m["priv"])
        if m["pub"] is None:
            out += [{"PrivatePort": p, "Type": m["proto"]} for p in privs]
            continue
        pubs = _span(m["pub"])
        ip = (m["ip"] or "").strip("[]") or "0.0.0.0"
        for i, pub in enumerate(pubs):
            out.append({"IP": ip, "PublicPort": pub, "PrivatePort": privs[min(i, len(privs) - 1)],
                        "Type": m["proto"]})
    return out


def container_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """Pure: one line of `containers_command` in the engine API's list shape."""
    labels = parse_labels(str(raw.get("Labels") or ""))
    for i, key in enumerate(_EXACT):
        exact = raw.get(str(i))
        if exact:
            labels[key] = str(exact)
        else:
            labels.pop(key, None)
    names = [n for n in str(raw.get("Names") or "").split(",") if n]
    return {"ID": str(raw.get("ID", "")), "Id": str(raw.get("ID", "")), "Names": names,
            "State": str(raw.get("State", "")).lower(), "Status": str(raw.get("Status", "")),
            "Labels": labels, "Ports": parse_ports(str(raw.get("Ports") or ""))}


def parse_containers(text: str) -> list[dict[str, Any]]:
    """Pure: every line of `containers_command`'s output (other lines ignored)."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(container_entry(json.loads(line)))
            except ValueError:
                continue
    return out


def service_containers(containers: list[dict[str, Any]], project: str) -> list[dict[str, Any]]:
    """The project's service containers (one-off `compose run` containers left out)."""
    return [c for c in containers if c["Labels"].get(PROJECT_LABEL) == project
            and c["Labels"].get(ONEOFF_LABEL, "False") != "True"]


def by_service(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pure: container entries keyed by their Compose service (the first of each)."""
    out: dict[str, dict[str, Any]] = {}
    for c in containers:
        labels = c.get("Labels") if isinstance(c.get("Labels"), dict) else {}
        out.setdefault(str(labels.get(SERVICE_LABEL) or c.get("Service") or ""), c)
    return out


def engine_unreachable(site: Any, detail: str) -> DockerError:
    return DockerError(f"the Docker engine is not reachable from {site.where()}: {detail}", fix=UNREACHABLE_FIX)


def engine_error(site: Any, result: Any) -> DockerError:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return engine_unreachable(site, text[-1] if text else f"exit {result.exited}")


def project_services(site: Any, project: str) -> dict[str, dict[str, Any]]:
    """Service -> its container, for ``project`` at ``site``."""
    result = site.sh(containers_command(project))
    if result.exited != 0:
        raise engine_error(site, result)
    return by_service(service_containers(parse_containers(result.stdout), project))


def log_tail(site: Any, container: str, mask: Callable[[str], str], lines: int = LOG_TAIL) -> list[str]:
    """The last lines of a container's output there, secrets masked."""
    result = site.sh(f"docker logs --tail {int(lines)} {shlex.quote(container)} 2>&1")
    return mask(result.stdout or "").rstrip("\n").splitlines()[-lines:]


# ----------------------------------------------------------------------------------------------
# Listening sockets
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    protocol: str      # tcp or udp
    ip: str            # "0.0.0.0", "::", "*" (both families) or an address
    port: int
    process: str = ""  # "name (pid N)" where the user may see it

    def holds(self, ip: str, port: int, protocol: str) -> bool:
        """Whether binding ``ip:port/protocol`` would collide with this socket."""
        if port != self.port or protocol != self.protocol:
            return False
        if self.ip == "*":
            return True
        v6 = ":" in ip
        if (":" in self.ip) != v6:
            return False
        wildcard = "::" if v6 else "0.0.0.0"
        return wildcard in (ip, self.ip) or self.ip == ip


def listeners_command() -> str:
    return ("if command -v ss >/dev/null 2>&1; then ss -ltnuHp 2>/dev/null || ss -ltnuH; "
            f"elif command -v python3 >/dev/null 2>&1; then python3 -c {shlex.quote(_PROC_LISTENERS)}; "
            f"else echo {NO_LISTENERS}; fi")


_PROC = re.compile(r'users:\(\("([^"]+)",pid=(\d+)')


def parse_listeners(text: str) -> list[Listener] | None:
    """Pure: ss's (or the /proc fallback's) lines; None when neither could run."""
    if NO_LISTENERS in (text or ""):
        return None
    out = []
    for line in (text or "").splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] not in ("tcp", "udp"):
            continue
        host, _, port = cols[4].rpartition(":")
        if not port.isdigit():
            continue
        host = host.strip("[]").split("%", 1)[0]
        m = _PROC.search(line)
        out.append(Listener(cols[0], host or "*", int(port), f"process {m[1]} (pid {m[2]})" if m else ""))
    return out


# ----------------------------------------------------------------------------------------------
# A start's preflight, in one command
# ----------------------------------------------------------------------------------------------

@dataclass
class PreflightFacts:
    engine_error: str | None = None
    runtimes: set[str] = field(default_factory=set)
    containers: list[dict[str, Any]] = field(default_factory=list)  # every container, all states
    listeners: list[Listener] | None = None                         # None: could not be listed
    compose_probe: str | None = None                                 # None: not probed
    missing_files: list[str] = field(default_factory=list)
    volumes: list[dict[str, Any]] | None = None                      # None: not asked


def _section(name: str, command: str) -> str:
    # A subshell each: a section's own ``exit`` (the Compose probe ends with one) ends only it.
    return f"echo '{SECTION}{name}'; (\n{command}\n); echo \"{SECTION}end $?\""


def preflight_command(root: str, files: Sequence[str], *, compose_probe: str | None = None,
                      volumes_of: str | None = None, runtimes: bool = True) -> str:
    """Every preflight fact of a start, as one shell command (sections parsed by `parse_preflight`).

    ``compose_probe``: the probe script, when Compose must be found; ``volumes_of``: a project
    whose volumes are wanted (a start for another environment than the last one); ``runtimes``:
    the engine's runtimes are wanted (a GPU is given to a service; `docker info` is slow)."""
    from .site import quote_path

    checks = " ".join(shlex.quote(f) for f in files)
    parts = [
        _section("containers", containers_command() + " 2>&1"),
        _section("listeners", listeners_command()),
        _section("missing", f"if cd -- {quote_path(root)} 2>/dev/null; then for f in {checks} ''; do "
                            '[ -z "$f" ] || [ -f "$f" ] || printf "%s\\n" "$f"; done; '
                            f"else printf '%s\\n' {checks}; fi"),
    ]
    if runtimes:
        parts.insert(0, _section("runtimes", f"docker info --format {shlex.quote(RUNTIMES_FORMAT)} 2>&1"))
    if volumes_of is not None:
        flt = shlex.quote(f"label={PROJECT_LABEL}={volumes_of}")
        parts.append(_section("volumes", f"docker volume ls --filter {flt} --format {shlex.quote(VOLUME_FORMAT)}"))
    if compose_probe is not None:
        parts.append(_section("compose", compose_probe))
    return "; ".join(parts) + "; exit 0"


def split_sections(text: str) -> dict[str, tuple[str, int]]:
    """Pure: section name -> (its output, its exit status)."""
    out: dict[str, tuple[str, int]] = {}
    name, lines = None, []  # type: ignore[var-annotated]
    for line in (text or "").splitlines():
        if line.startswith(SECTION):
            word, _, rest = line[len(SECTION):].partition(" ")
            if word == "end" and name is not None:
                out[name] = ("\n".join(lines), int(rest) if rest.strip().isdigit() else 1)
                name = None
            else:
                name, lines = word, []
        elif name is not None:
            lines.append(line)
    return out


def _last_line(text: str, default: str) -> str:
    lines = [r.strip() for r in (text or "").splitlines() if r.strip()]
    return lines[-1] if lines else default


def parse_preflight(text: str) -> PreflightFacts:
    """Pure: `preflight_command`'s output as facts; a section that did not answer is an error
    (the engine's) or an empty fact."""
    sections = split_sections(text)
    facts = PreflightFacts()
    containers, code = sections.get("containers", ("", 1))
    if code == 0:
        facts.containers = parse_containers(containers)
    else:
        facts.engine_error = _last_line(containers, "`docker ps` gave no answer")
    if "runtimes" in sections and facts.engine_error is None:
        runtimes, code = sections["runtimes"]
        try:
            if code != 0:
                raise ValueError
            facts.runtimes = set((json.loads(runtimes.strip().splitlines()[-1]) or {}).keys())
        except (ValueError, IndexError, AttributeError):
            facts.engine_error = _last_line(runtimes, "`docker info` gave no answer")
    if "listeners" in sections:
        facts.listeners = parse_listeners(sections["listeners"][0])
    facts.missing_files = [f for f in sections.get("missing", ("", 0))[0].splitlines() if f]
    if "volumes" in sections:
        facts.volumes = [{"Name": v["Name"], "Labels": parse_labels(v.get("Labels") or "")}
                         for v in (json.loads(line) for line in sections["volumes"][0].splitlines()
                                   if line.startswith("{"))]
    if "compose" in sections:
        facts.compose_probe = sections["compose"][0]
    return facts
