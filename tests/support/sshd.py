"""Real OpenSSH servers on loopback addresses, for remote tests and benchmarks.

    farm = SshdFarm(tmp_path, count=3)          # 127.0.0.2, 127.0.0.3, 127.0.0.4
    farm.start()
    inv = farm.inventory_file(tmp_path / "inv.yml", stack_subdir="stack")
    ...
    farm.hosts[1].stop(); farm.hosts[1].start()   # make a host unreachable, and back
    farm.hosts[0].commands()                      # every command that host's sshd ran
    farm.close()

Each host is one ``sshd -D -e -f <generated config>`` process listening only on its own
loopback address and a free high port, with its own ed25519 host key. One client key is
authorised on all of them (``AuthorizedKeysFile`` is a temp file), and ``known_hosts`` lists every
host key as ``[ADDR]:PORT ssh-ed25519 ...``.

``ForceCommand`` points at a per-host wrapper that appends the command (and the environment it
runs with) to ``commands.log`` and then runs it exactly as sshd would have (``/bin/sh -c``); an
``internal-sftp`` subsystem request is handed to the ``sftp-server`` binary, so SFTP works. The
wrapper puts the host's ``bin/`` first on PATH, where a fake ``nvidia-smi`` prints real outputs
from ``../shared/fixtures/gpu/`` (chosen per host with a GPU profile).

Everything a host "owns" lives under ``<base>/<address>/``; ``remote_root`` is the directory in
which tests put the host's stack directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES_GPU = REPO.parent / "shared" / "fixtures" / "gpu"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                          "/usr/lib/ssh/sftp-server", "/usr/libexec/sftp-server")
SSHD_EXTRA: list[str] | None = None  # extra sshd flags; probed once (see sshd_flags)
LOG_MARK = "@@mmstack-cmd@@"
ENV_MARK = "@@mmstack-env@@"
END_MARK = "@@mmstack-end@@"

# Fake nvidia-smi profiles: which fixture answers which invocation. ``query`` rows feed a
# synthesised ``--query-gpu`` answer (nvidia-smi has no real capture of that for these boards);
# the values are those printed in the profile's own fixture files.
GPU_PROFILES: dict[str, dict[str, object]] = {
    "2x3090": {
        "table": "smi-2x3090-nvlink-noprocs.txt",
        "topo": "topo-2x3090-nv4.txt",
        "nvlink": "nvlink-status-2x3090.txt",
        "query": [
            {"index": "0", "name": "NVIDIA GeForce RTX 3090",
             "uuid": "GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0", "pci.bus_id": "00000000:17:00.0",
             "memory.total": "24576 MiB", "memory.used": "23074 MiB", "memory.free": "1502 MiB",
             "driver_version": "610.43.02", "temperature.gpu": "28", "utilization.gpu": "0 %",
             "power.draw": "188.00 W", "power.limit": "350.00 W", "fan.speed": "32 %",
             "pstate": "P8", "persistence_mode": "Disabled", "display_active": "Disabled",
             "compute_cap": "8.6", "count": "2"},
            {"index": "1", "name": "NVIDIA GeForce RTX 3090",
             "uuid": "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0", "pci.bus_id": "00000000:65:00.0",
             "memory.total": "24576 MiB", "memory.used": "23106 MiB", "memory.free": "1470 MiB",
             "driver_version": "610.43.02", "temperature.gpu": "33", "utilization.gpu": "0 %",
             "power.draw": "25.00 W", "power.limit": "350.00 W", "fan.speed": "30 %",
             "pstate": "P8", "persistence_mode": "Disabled", "display_active": "Enabled",
             "compute_cap": "8.6", "count": "2"},
        ],
    },
    "2xa100-pcie": {
        "query_file": "query-csv-2xa100pcie.txt",
        "nvlink": "nvlink-status-2xa100pcie-nolink.txt",
    },
    "2xh100-pcie": {
        "topo": "topo-2xh100pcie-nv12-bridge.txt",
        "nvlink": "nvlink-status-2xh100pcie-bridge.txt",
    },
    "3xa6000": {
        "topo": "topo-3xa6000-nv4-pair-ansi.txt",
        "nvlink": "nvlink-status-3xa6000.txt",
    },
    "8xquadro": {
        "topo": "topo-8xquadrortx6000-pix-pxb-ansi.txt",
        "query_file": "query-csv-8xquadrortx6000.txt",
    },
}


class SshdUnavailable(RuntimeError):
    """openssh-server (or ssh-keygen) is not installed here."""


def find_sshd() -> str | None:
    """The sshd binary; ``$MMSTACK_TEST_SSHD`` overrides (a missing path means "not installed")."""
    override = os.environ.get("MMSTACK_TEST_SSHD")
    if override:
        return override if os.access(override, os.X_OK) else None
    for cand in SSHD_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("sshd")


def find_sftp_server() -> str | None:
    for cand in SFTP_SERVER_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None


def missing_tools() -> list[str]:
    """What is missing to run the farm (empty when everything is here)."""
    missing = []
    if not find_sshd():
        missing.append("sshd (Debian package openssh-server)")
    if not shutil.which("ssh-keygen"):
        missing.append("ssh-keygen (Debian package openssh-client)")
    if not find_sftp_server():
        missing.append("sftp-server (Debian package openssh-sftp-server)")
    return missing


def sshd_flags(sshd: str, config: Path) -> list[str]:
    """``-r`` (no re-exec per connection: less CPU per session, which matters when 16 servers
    share the test machine's cores) where this sshd accepts it."""
    global SSHD_EXTRA
    if SSHD_EXTRA is None:
        probe = subprocess.run([sshd, "-t", "-r", "-f", str(config)], capture_output=True)
        SSHD_EXTRA = ["-r"] if probe.returncode == 0 else []
    return SSHD_EXTRA


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return (path.with_name(path.name + ".pub")).read_text().strip()


@dataclass
class SshHost:
    """One loopback sshd and the fake remote machine behind it."""

    name: str
    address: str
    base: Path
    farm: "SshdFarm"
    port: int = 0
    host_pub: str = ""
    gpu_profile: str | None = "2x3090"
    proc: subprocess.Popen | None = None

    @property
    def dir(self) -> Path:
        return self.base / self.address

    @property
    def remote_root(self) -> Path:
        """Where this host's files live; put the stack directory under it."""
        return self.dir / "root"

    @property
    def home(self) -> Path:
        """The remote login's HOME (inside the fake remote root)."""
        return self.remote_root / "home"

    @property
    def bin_dir(self) -> Path:
        return self.dir / "bin"

    @property
    def command_log(self) -> Path:
        return self.dir / "commands.log"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def config_file(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def known_hosts_line(self) -> str:
        kind, data = self.host_pub.split()[:2]
        return f"[{self.address}]:{self.port} {kind} {data}"

    # -- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        for d in (self.dir, self.remote_root, self.home, self.bin_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            self.host_pub = keygen(self.host_key, f"mmstack-test-host-{self.name}")
            os.chmod(self.host_key, 0o600)
        if not self.port:
            self.port = free_port(self.address)
        self._write_wrapper()
        self.set_gpu_profile(self.gpu_profile)
        self._write_config()

    def _write_config(self) -> None:
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {self.host_key}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            f"AuthorizedKeysFile {self.farm.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "PermitUserEnvironment no",
            "PermitUserRC no",
            # A per-host HOME: the session shell reads this (empty) home's startup files rather
            # than the real user's (a heavy ~/.bashrc would dominate every command's time),
            # and "~/" paths land in the fake host.
            f"SetEnv HOME={self.home}",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 200:30:400",
            "MaxSessions 100",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            f"ForceCommand {self.dir / 'wrapper.sh'}",
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _write_wrapper(self) -> None:
        sftp = find_sftp_server() or "/usr/lib/openssh/sftp-server"
        wrapper = self.dir / "wrapper.sh"
        wrapper.write_text(f"""#!/bin/sh
# mmstack test harness: log the command and its environment, then run it as sshd would.
PATH="{self.bin_dir}:$PATH"; export PATH
MMSTACK_TEST_ROOT="{self.remote_root}"; export MMSTACK_TEST_ROOT
if [ "${{SSH_ORIGINAL_COMMAND+set}}" = set ]; then cmd=$SSH_ORIGINAL_COMMAND; else cmd="<login shell>"; fi
{{ printf '%s %s\\n%s\\n%s\\n' '{LOG_MARK}' "$$" "$cmd" '{ENV_MARK}'; export -p; printf '%s\\n' '{END_MARK}'; }} >> "{self.command_log}"
cd "$HOME" || exit 1
case "$cmd" in
  internal-sftp|sftp-server|*/sftp-server) exec "{sftp}" ;;
  "<login shell>") exec /bin/sh -l ;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
""")
        os.chmod(wrapper, 0o755)

    def set_gpu_profile(self, profile: str | None) -> None:
        """Install the fake nvidia-smi for ``profile`` (None: no nvidia-smi on PATH)."""
        self.gpu_profile = profile
        smi = self.bin_dir / "nvidia-smi"
        if profile is None:
            smi.unlink(missing_ok=True)
            return
        spec = GPU_PROFILES[profile]
        query_table = self.dir / "gpu-query.tsv"
        rows = spec.get("query")
        if isinstance(rows, list) and rows:
            fields = list(rows[0])
            query_table.write_text("\t".join(fields) + "\n" +
                                   "".join("\t".join(r[f] for f in fields) + "\n" for r in rows))
        else:
            query_table.unlink(missing_ok=True)

        def fixture(key: str) -> str:
            name = spec.get(key)
            return str(FIXTURES_GPU / name) if isinstance(name, str) else ""

        smi.write_text(FAKE_SMI.format(
            table=fixture("table"), topo=fixture("topo"), nvlink=fixture("nvlink"),
            query_file=fixture("query_file"), query_table=query_table,
            calls=self.dir / "nvidia-smi.calls",
        ))
        os.chmod(smi, 0o755)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until it answers with an SSH banner (new port on a bind race)."""
        if self.is_running:
            return
        sshd = find_sshd()
        if not sshd:
            raise SshdUnavailable("sshd is not installed")
        for attempt in range(5):
            log = open(self.sshd_log, "ab")
            self.proc = subprocess.Popen([sshd, "-D", "-e", *sshd_flags(sshd, self.config_file), "-f", str(self.config_file)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            log.close()
            if self._wait_banner(timeout):
                return
            self.stop()
            tail = self.sshd_log.read_text(errors="replace")[-800:]
            if "Address already in use" in tail or "Cannot bind" in tail:
                self.port = free_port(self.address)
                self._write_config()
                self.farm.write_known_hosts()
                continue
            raise RuntimeError(f"sshd on {self.address}:{self.port} did not start:\n{tail}")
        raise RuntimeError(f"sshd on {self.address} could not bind a port after 5 tries")

    def _wait_banner(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop sshd (the listener and every session it forked)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- what happened -----------------------------------------------------------------------
    def log_text(self) -> str:
        return self.command_log.read_text(errors="replace") if self.command_log.exists() else ""

    def records(self) -> list[tuple[str, str]]:
        """``(command, environment)`` of every command this server ran, in order."""
        out: list[tuple[str, str]] = []
        for chunk in self.log_text().split(LOG_MARK + " ")[1:]:
            body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
            cmd, _, rest = body.partition("\n" + ENV_MARK + "\n")
            env, _, _ = rest.partition(END_MARK)
            out.append((cmd, env))
        return out

    def commands(self) -> list[str]:
        return [cmd for cmd, _ in self.records()]

    def clear_log(self) -> None:
        self.command_log.unlink(missing_ok=True)


@dataclass
class SshdFarm:
    """Several `SshHost`s sharing one client key and one known_hosts file."""

    base: Path
    count: int = 3
    first_address: int = 2
    gpu_profile: str | None = "2x3090"
    hosts: list[SshHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.hosts = [
            SshHost(f"h{i + 1}", f"127.0.0.{self.first_address + i}", self.base, self,
                    gpu_profile=self.gpu_profile)
            for i in range(self.count)
        ]

    @property
    def client_key(self) -> Path:
        return self.base / "client_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.base / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    def start(self) -> "SshdFarm":
        missing = missing_tools()
        if missing:
            raise SshdUnavailable("missing: " + ", ".join(missing))
        if os.geteuid() == 0:
            # sshd refuses to start as root without its privilege separation directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.client_key.exists():
            pub = keygen(self.client_key, "mmstack-test-client")
            self.authorized_keys.write_text(pub + "\n")
            os.chmod(self.client_key, 0o600)
        for host in self.hosts:
            host.prepare()
        self.write_known_hosts()
        for host in self.hosts:
            host.start()
        return self

    def write_known_hosts(self) -> None:
        self.known_hosts.write_text("".join(h.known_hosts_line + "\n" for h in self.hosts if h.host_pub))

    def close(self) -> None:
        for host in self.hosts:
            host.stop()

    def inventory_data(self, stack_subdir: str = "stack", group: str = "gpu_servers",
                       forks: int | None = None, **host_vars: object) -> dict:
        """An inventory document pointing at every host of the farm."""
        hosts = {}
        for h in self.hosts:
            hosts[h.name] = {"address": h.address, "port": h.port,
                             "stack_dir": str(h.remote_root / stack_subdir), **host_vars}
        doc: dict = {
            "known_hosts_file": str(self.known_hosts),
            "vars": {"user": pwd.getpwuid(os.getuid()).pw_name, "key_file": str(self.client_key),
                     "connect_timeout": 5},
            "groups": {group: {"hosts": hosts}},
        }
        if forks is not None:
            doc["forks"] = forks
        return doc

    def inventory_file(self, path: Path, **kw: object) -> Path:
        path.write_text(yaml.safe_dump(self.inventory_data(**kw), sort_keys=False))
        return path

    def __enter__(self) -> "SshdFarm":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# The fake nvidia-smi: plain sh + awk, no Python, like the product's own remote commands.
FAKE_SMI = r"""#!/bin/sh
# Fake nvidia-smi for mmstack tests: prints real captured outputs (../shared/fixtures/gpu).
printf '%s\n' "$*" >> "{calls}"
fixture() {{
  if [ -n "$1" ] && [ -r "$1" ]; then cat "$1"; exit 0; fi
  echo "fake nvidia-smi: no fixture for: $ARGS" >&2; exit 9
}}
ARGS="$*"
query=""; format=""
for a in "$@"; do
  case "$a" in
    --query-gpu=*) query=${{a#--query-gpu=}} ;;
    --format=*) format=${{a#--format=}} ;;
  esac
done
case " $ARGS " in
  *" topo "*) fixture "{topo}" ;;
  *" nvlink "*) fixture "{nvlink}" ;;
esac
case "$ARGS" in
  *--query-compute-apps=*)  # no processes visible (as in the 2x3090 capture): header only
    apps=${{ARGS#*--query-compute-apps=}}; apps=${{apps%% *}}
    case "$ARGS" in *noheader*) ;; *) printf '%s\n' "$apps" | sed 's/,/, /g' ;; esac
    exit 0 ;;
esac
if [ -n "$query" ]; then
  if [ -r "{query_table}" ]; then
    awk -F '\t' -v q="$query" -v fmt="$format" '
      BEGIN {{ units["memory.total"] = "MiB"; units["memory.used"] = "MiB"; units["memory.free"] = "MiB";
        units["power.draw"] = "W"; units["power.limit"] = "W"; units["utilization.gpu"] = "%";
        units["fan.speed"] = "%" }}
      NR == 1 {{
        for (i = 1; i <= NF; i++) col[$i] = i
        n = split(q, want, ",")
        for (j = 1; j <= n; j++) {{ gsub(/ /, "", want[j]); if (!(want[j] in col)) {{
          printf "Field \"%s\" is not a valid field to query.\n\n", want[j]; exit 2 }} }}
        if (fmt !~ /noheader/) {{ line = ""
          for (j = 1; j <= n; j++) {{ u = units[want[j]]
            line = line (j > 1 ? ", " : "") want[j] ((u != "" && fmt !~ /nounits/) ? " [" u "]" : "") }}
          print line }}
        next }}
      {{ line = ""
        for (j = 1; j <= n; j++) {{ v = $(col[want[j]]); if (fmt ~ /nounits/) sub(/ (MiB|W|%|MHz)$/, "", v)
          line = line (j > 1 ? ", " : "") v }}
        print line }}
    ' "{query_table}"
    exit $?
  fi
  fixture "{query_file}"
fi
if [ -z "$ARGS" ]; then fixture "{table}"; fi
if [ "$ARGS" = "-L" ] || [ "$ARGS" = "--list-gpus" ]; then
  if [ -r "{nvlink}" ]; then grep '^GPU [0-9]' "{nvlink}"; exit 0; fi
fi
echo "fake nvidia-smi: unsupported arguments: $ARGS" >&2
exit 9
"""
