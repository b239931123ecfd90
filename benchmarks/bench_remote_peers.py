"""The same file push with mmstack, pyinfra and Ansible, side by side, to 1, 4 and 16 hosts.

    .venv/bin/python benchmarks/bench_remote_peers.py [--hosts 1,4,16] [--rounds 5]
        [--peer-rounds 3] [--ansible-rounds 1] [--peers-venv .venv-bench] [--json FILE]

The peers are benchmark-only dependencies, in a venv of their own (never mmstack's):

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r benchmarks/requirements-peers.txt

Without it (or without one of them) the benchmark runs what is there and says what it left out.

What is pushed: exactly the files `inv deploy --env production` uploads (compose.yml,
compose.production.yml, config/production/*, env/production/*.env), with their modes: 0644, and
0600 in 0700 directories for the env files. They are taken from a first mmstack deploy, so the
three tools write the same bytes. The hosts are real OpenSSH servers on 127.0.0.x with generated
keys and verified host keys (tests/support/sshd.py, as the remote tests use), all with the
dual-RTX-3090 fake nvidia-smi.

What is timed, per tool and host count, wall clock of the whole command as a user runs it:
- first run: into a stack directory that does not exist yet on any host;
- no-op: the same command again, nothing to change (each tool's own report is checked for it).

- mmstack: `inv deploy --no-start --json` (connects, detects GPUs over SSH, plans, renders,
  compares checksums, uploads what differs; it does more than the peers, which only copy);
- pyinfra: `pyinfra -y --parallel N inventory.py deploy.py` with `files.directory` and
  `files.put` (its usual SFTP push with a remote checksum per file);
- Ansible: `ansible-playbook` with `file` and `copy` over a loop, forks=N, pipelining on,
  the interpreter given (no discovery), no fact gathering; OpenSSH with ControlPersist (its
  default) in a private control directory.

Rounds are interleaved (each round runs every tool) so load from other processes on the
machine falls on all of them alike; the load average is printed before and after. Prints the
medians, then the ratios against issue 13's targets:

- mmstack, 16 hosts: no-op <= 1.5x one host, first run <= 2x;
- at 16 hosts: >= 5x faster than pyinfra, >= 50x faster than Ansible (no-op and first run);
- mmstack one-host no-op <= 0.6 s.

For mmstack it also prints the CPU each command used: its own (the process tree here) and the
sshd servers' (from /proc of each listener, which reaps every session), since the sixteen
"hosts" share this machine's cores with the client. ``--baseline DIR`` runs another mmstack
tree (e.g. ``git archive <commit> | tar -x -C DIR``) as tool ``baseline`` in the same rounds,
for a before/after under the same load.

Exits 1 when a target that was measured is missed (2 when nothing could run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.sshd import SshdFarm, missing_tools  # noqa: E402
from tests.support.stackcopy import make_stack_copy  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.pop("INVOKE_RUNTIME_CONFIG", None)
TARGETS = {"noop_scale": 1.5, "first_scale": 2.0, "vs_pyinfra": 5.0, "vs_ansible": 50.0,
           "one_host_noop_s": 0.6}

PYINFRA_DEPLOY = r'''
import json
from pyinfra import host
from pyinfra.operations import files

spec = json.load(open(host.data.push_spec))
root = host.data.stack_dir
files.directory(name="stack directory", path=root, mode="755")
for d in spec["dirs"]:
    files.directory(name=d["path"], path=root + "/" + d["path"], mode=d["mode"])
for f in spec["files"]:
    files.put(name=f["path"], src=spec["source"] + "/" + f["path"], dest=root + "/" + f["path"],
              mode=f["mode"])
'''

ANSIBLE_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars_files: [{spec}]
  tasks:
    - name: stack directory
      ansible.builtin.file: {{path: "{{{{ stack_dir }}}}", state: directory, mode: "0755"}}
    - name: directories
      ansible.builtin.file: {{path: "{{{{ stack_dir }}}}/{{{{ item.path }}}}", state: directory, mode: "{{{{ item.mode }}}}"}}
      loop: "{{{{ dirs }}}}"
    - name: files
      ansible.builtin.copy: {{src: "{{{{ source }}}}/{{{{ item.path }}}}", dest: "{{{{ stack_dir }}}}/{{{{ item.path }}}}", mode: "{{{{ item.mode }}}}"}}
      loop: "{{{{ files }}}}"
"""


@dataclass
class Sample:
    tool: str
    hosts: int
    kind: str  # "first" or "noop"
    seconds: float
    client_cpu: float = 0.0   # the command's own CPU seconds (its process tree, this machine)
    server_cpu: float = 0.0   # the sshd servers' CPU seconds for it, all hosts together


def sshd_cpu(hosts: list) -> float:
    """CPU seconds the hosts' sshd listeners and every session they reaped have used (from
    /proc/PID/stat: utime, stime, cutime, cstime); a session counts once it has ended."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for h in hosts:
        try:
            fields = Path(f"/proc/{h.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            continue
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


@dataclass
class Bench:
    base: Path
    farm: SshdFarm
    stack: Path
    source: Path
    spec: dict
    peers_bin: Path | None
    samples: list[Sample] = field(default_factory=list)
    baseline_stack: Path | None = None  # --baseline: mmstack from another tree, same rounds
    _cpu: tuple[float, float] = (0.0, 0.0)

    # -- inventories ------------------------------------------------------------------------
    def hosts(self, n: int) -> list:
        return self.farm.hosts[:n]

    def target(self, h, subdir: str) -> str:
        return str(h.remote_root / subdir)

    def mmstack_inventory(self, n: int, subdir: str) -> Path:
        doc = self.farm.inventory_data(stack_subdir=subdir, forks=n)
        hosts = doc["groups"]["gpu_servers"]["hosts"]
        doc["groups"]["gpu_servers"]["hosts"] = {k: hosts[k] for k in list(hosts)[:n]}
        path = self.base / f"inv-mmstack-{subdir}.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def pyinfra_inventory(self, n: int, subdir: str) -> Path:
        user = self.farm.inventory_data()["vars"]["user"]
        rows = [(h.name, {"ssh_hostname": h.address, "ssh_port": h.port, "ssh_user": user,
                          "ssh_key": str(self.farm.client_key),
                          "ssh_known_hosts_file": str(self.farm.known_hosts),
                          "ssh_strict_host_key_checking": "yes",
                          "stack_dir": self.target(h, subdir),
                          "push_spec": str(self.base / "push-spec.json")})
                for h in self.hosts(n)]
        path = self.base / f"inv-pyinfra-{subdir}.py"
        path.write_text(f"gpu_servers = {rows!r}\n")
        return path

    def ansible_inventory(self, n: int, subdir: str) -> Path:
        user = self.farm.inventory_data()["vars"]["user"]
        opts = (f"-o UserKnownHostsFile={self.farm.known_hosts} -o StrictHostKeyChecking=yes "
                "-o IdentitiesOnly=yes")
        hosts = {h.name: {"ansible_host": h.address, "ansible_port": h.port, "ansible_user": user,
                          "ansible_ssh_private_key_file": str(self.farm.client_key),
                          "ansible_ssh_common_args": opts,
                          "ansible_python_interpreter": "/usr/bin/python3",
                          "stack_dir": self.target(h, subdir)}
                 for h in self.hosts(n)}
        path = self.base / f"inv-ansible-{subdir}.yml"
        path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        return path

    # -- one timed command --------------------------------------------------------------------
    def timed(self, argv: list[str], env: dict[str, str], cwd: Path, n: int = 0) -> tuple[float, str]:
        hosts = self.hosts(n)
        before_client = _children_cpu()
        before_server = sshd_cpu(hosts)
        t = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t
        time.sleep(0.2)  # not timed: sshd reaps the ended sessions, so their CPU is counted
        self._cpu = (_children_cpu() - before_client, sshd_cpu(hosts) - before_server)
        if proc.returncode != 0:
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
        return elapsed, proc.stdout

    def mmstack(self, n: int, subdir: str, kind: str, stack: Path | None = None) -> float:
        inv = self.mmstack_inventory(n, subdir)
        stack = stack or self.stack
        argv = [sys.executable, "-m", "invoke", "--search-root", str(stack), "deploy",
                "--no-start", "--json", "--inventory", str(inv), "--forks", str(n)]
        seconds, out = self.timed(argv, ENV, stack, n)
        recap = json.loads(out)["hosts"]["recap"]
        changed = sum(r["changed"] for r in recap.values())
        if (kind == "noop") != (changed == 0):
            raise SystemExit(f"mmstack {kind} on {n} hosts reported changed={changed}")
        return seconds

    def baseline(self, n: int, subdir: str, kind: str) -> float:
        """mmstack as another tree has it (``--baseline``): before/after under the same load."""
        assert self.baseline_stack is not None
        return self.mmstack(n, subdir, kind, self.baseline_stack)

    def pyinfra(self, n: int, subdir: str, kind: str) -> float:
        assert self.peers_bin is not None
        inv = self.pyinfra_inventory(n, subdir)
        deploy = self.base / "pyinfra_deploy.py"
        argv = [str(self.peers_bin / "pyinfra"), "-y", "--parallel", str(n), str(inv), str(deploy)]
        seconds, out = self.timed(argv, {**ENV, "PYINFRA_PROGRESS": "off"}, self.base, n)
        if kind == "noop" and "Changed: 0" not in out.replace("\x1b[0m", "") and "No changes" not in out:
            # pyinfra's summary: per host "Success: N Changed: 0"; make sure nothing changed.
            if any(f"Changed: {i}" in out for i in range(1, 100)):
                raise SystemExit(f"pyinfra no-op on {n} hosts changed something:\n{out[-2000:]}")
        return seconds

    def ansible(self, n: int, subdir: str, kind: str) -> float:
        assert self.peers_bin is not None
        inv = self.ansible_inventory(n, subdir)
        play = self.base / "playbook.yml"
        cp = self.base / "ansible-cp"
        cp.mkdir(exist_ok=True)
        env = {**ENV, "ANSIBLE_PIPELINING": "1", "ANSIBLE_FORKS": str(n),
               "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
               "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_CONFIG": str(self.base / "none.cfg")}
        seconds, out = self.timed([str(self.peers_bin / "ansible-playbook"), "-i", str(inv), str(play)],
                                  env, self.base, n)
        changed = [int(part.split("=")[1]) for line in out.splitlines() if " : ok=" in line
                   for part in line.split() if part.startswith("changed=")]
        if len(changed) != n or (kind == "noop") != (sum(changed) == 0):
            raise SystemExit(f"ansible {kind} on {n} hosts: recap {changed}\n{out[-2000:]}")
        return seconds

    def check_pushed(self, n: int, subdir: str) -> None:
        """Every host holds the same bytes and modes as the source."""
        for h in self.hosts(n):
            root = Path(self.target(h, subdir))
            for f in self.spec["files"]:
                got = root / f["path"]
                want = self.source / f["path"]
                if got.read_bytes() != want.read_bytes() or f"{got.stat().st_mode & 0o777:o}" != f["mode"].lstrip("0"):
                    raise SystemExit(f"{h.name}:{got} differs from the source")

    def run_pair(self, tool: str, n: int, tag: str) -> None:
        subdir = f"push-{tool}-{n}-{tag}"
        fn = getattr(self, tool)
        first = fn(n, subdir, "first")
        first_cpu = self._cpu
        self.check_pushed(n, subdir)
        noop = fn(n, subdir, "noop")
        self.samples += [Sample(tool, n, "first", first, *first_cpu), Sample(tool, n, "noop", noop, *self._cpu)]
        print(f"  {tool:8} {n:>2} hosts  first {first:7.3f}s  no-op {noop:7.3f}s   "
              f"(CPU: own {first_cpu[0]:.2f}/{self._cpu[0]:.2f}s, sshd {first_cpu[1]:.2f}/{self._cpu[1]:.2f}s)",
              flush=True)

    def median(self, tool: str, n: int, kind: str, what: str = "seconds") -> float | None:
        values = [getattr(s, what) for s in self.samples if (s.tool, s.hosts, s.kind) == (tool, n, kind)]
        return statistics.median(values) if values else None


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def push_spec(host_root: Path, source: Path) -> dict:
    """The file set a first mmstack deploy left on a host: copied to ``source`` with modes."""
    files, dirs = [], set()
    for path in sorted(p for p in host_root.rglob("*") if p.is_file()):
        rel = path.relative_to(host_root)
        if rel.parts[0] == ".mmstack":
            continue
        dest = source / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        files.append({"path": rel.as_posix(), "mode": f"0{path.stat().st_mode & 0o777:o}"})
        for parent in list(rel.parents)[:-1]:
            dirs.add(parent.as_posix())
    return {"source": str(source), "files": files,
            "dirs": [{"path": d, "mode": f"0{(host_root / d).stat().st_mode & 0o777:o}"}
                     for d in sorted(dirs, key=lambda d: (d.count("/"), d))]}


def peers_available(venv: Path) -> dict[str, bool]:
    bin_dir = venv / "bin"
    return {"pyinfra": (bin_dir / "pyinfra").exists(), "ansible": (bin_dir / "ansible-playbook").exists()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(bench: Bench, counts: list[int], tools: list[str]) -> tuple[list[str], dict]:
    lines = ["", "medians (seconds), whole command, wall clock:",
             f"  {'tool':8} " + "".join(f"{f'{n} host(s)':>22}" for n in counts),
             f"  {'':8} " + "".join(f"{'first':>11}{'no-op':>11}" for _ in counts)]
    table: dict = {}
    for tool in tools:
        cells = ""
        for n in counts:
            first, noop = bench.median(tool, n, "first"), bench.median(tool, n, "noop")
            table.setdefault(tool, {})[n] = {"first": first, "noop": noop}
            cells += f"{first or float('nan'):11.3f}{noop or float('nan'):11.3f}"
        lines.append(f"  {tool:8} {cells}")
    big, one = max(counts), min(counts)
    lines += ["", "CPU seconds per command (medians): the command's own (this machine) / all sshd servers'",
              "(the hosts' side: key exchange, session processes, the fake nvidia-smi's sh and awk):"]
    for tool in [t for t in tools if t in ("mmstack", "baseline")]:
        cells = ""
        for n in counts:
            for kind in ("first", "noop"):
                own, server = bench.median(tool, n, kind, "client_cpu"), bench.median(tool, n, kind, "server_cpu")
                cells += f"  {n}h {kind}: {own or 0:.2f}/{server or 0:.2f}"
        lines.append(f"  {tool:8}{cells}")
        c1, c16 = bench.median(tool, one, "noop", "client_cpu"), bench.median(tool, big, "noop", "client_cpu")
        s1, s16 = bench.median(tool, one, "noop", "server_cpu"), bench.median(tool, big, "noop", "server_cpu")
        if c1 and c16 and s16 is not None and s1 is not None:
            lines.append(f"  {'':8}  no-op, {big} hosts / {one}: own CPU {c16 / c1:.2f}x; sshd CPU per host "
                         f"{1000 * s16 / big:.0f} ms ({1000 * s1 / one:.0f} ms at {one}); all CPU of the "
                         f"{big}-host no-op on {os.cpu_count()} cores >= {(c16 + s16) / (os.cpu_count() or 1):.2f}s")
    if "baseline" in tools:
        lines += ["", "baseline (--baseline), same rounds:"]
        for kind in ("noop", "first"):
            r = ratio(bench.median("baseline", big, kind), bench.median("baseline", one, kind))
            lines.append(f"  baseline {kind:5} {big} hosts / {one}: {r or float('nan'):.2f}   "
                         f"({bench.median('baseline', one, kind) or float('nan'):.3f}s -> "
                         f"{bench.median('baseline', big, kind) or float('nan'):.3f}s)")
    m = lambda tool, n, kind: bench.median(tool, n, kind)  # noqa: E731
    checks: list[tuple[str, float | None, float, bool, bool | None]] = []

    def check(label: str, value: float | None, target: float, *, at_most: bool) -> None:
        ok = None if value is None else (value <= target if at_most else value >= target)
        checks.append((label, value, target, at_most, ok))

    check(f"mmstack no-op, {big} hosts / {one}", ratio(m("mmstack", big, "noop"), m("mmstack", one, "noop")),
          TARGETS["noop_scale"], at_most=True)
    check(f"mmstack first run, {big} hosts / {one}", ratio(m("mmstack", big, "first"), m("mmstack", one, "first")),
          TARGETS["first_scale"], at_most=True)
    for peer, key in (("pyinfra", "vs_pyinfra"), ("ansible", "vs_ansible")):
        if peer in tools:
            for kind in ("noop", "first"):
                check(f"{peer} / mmstack, {big} hosts, {'no-op' if kind == 'noop' else 'first run'}",
                      ratio(m(peer, big, kind), m("mmstack", big, kind)), TARGETS[key], at_most=False)
    if one == 1:
        check("mmstack one-host no-op (s)", m("mmstack", 1, "noop"), TARGETS["one_host_noop_s"], at_most=True)
    lines += ["", "against issue 13's targets:"]
    for label, value, target, at_most, ok in checks:
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"  {label:48} {shown:>7}  (target {'<=' if at_most else '>='} {target:g})  "
                     f"{'n/a' if ok is None else 'PASS' if ok else 'MISS'}")
    return lines, {"medians": table, "checks": [
        {"check": label, "value": value, "target": target, "pass": ok}
        for label, value, target, _, ok in checks]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,4,16", help="host counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="mmstack rounds per host count")
    parser.add_argument("--peer-rounds", type=int, default=3, help="pyinfra rounds per host count")
    parser.add_argument("--ansible-rounds", type=int, default=1,
                        help="Ansible rounds per host count (about two minutes each at 16 hosts here)")
    parser.add_argument("--peers-venv", default=str(REPO / ".venv-bench"))
    parser.add_argument("--tools", default="mmstack,pyinfra,ansible")
    parser.add_argument("--json", help="also write the medians and checks to this file")
    parser.add_argument("--baseline", help="another mmstack tree (e.g. a clean checkout of the commit before a "
                                           "change), run as tool 'baseline' in the same interleaved rounds")
    args = parser.parse_args()
    counts = sorted({int(x) for x in args.hosts.split(",")})
    missing = missing_tools()
    if missing:
        print("cannot run: missing " + ", ".join(missing), file=sys.stderr)
        return 2
    venv = Path(args.peers_venv)
    have = peers_available(venv)
    tools = [t for t in args.tools.split(",") if t == "mmstack" or have.get(t)]
    if args.baseline:
        tools.insert(1, "baseline")
    for t in args.tools.split(","):
        if t != "mmstack" and not have.get(t):
            print(f"note: {t} not found in {venv} (see the docstring to install it); left out")
    rounds = {"mmstack": args.rounds, "baseline": args.rounds, "pyinfra": args.peer_rounds,
              "ansible": args.ansible_rounds}

    base = Path(tempfile.mkdtemp(prefix="mmstack-bench-peers-"))
    farm = SshdFarm(base / "farm", count=max(counts))
    try:
        farm.start()
        stack = make_stack_copy(base / "stack")
        subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(stack), "setup"],
                       cwd=stack, check=True, capture_output=True, env=ENV)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(stack / "tasks")], check=True, env=ENV)
        bench = Bench(base, farm, stack, base / "source", {}, venv / "bin" if any(have.values()) else None)
        if args.baseline:
            bench.baseline_stack = make_stack_copy(base / "baseline-stack", Path(args.baseline))
            # The same secrets, so both trees push the same bytes (checked like every push).
            shutil.copytree(stack / ".mmstack" / "secrets", bench.baseline_stack / ".mmstack" / "secrets")
            subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(bench.baseline_stack), "setup"],
                           cwd=bench.baseline_stack, check=True, capture_output=True, env=ENV)
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(bench.baseline_stack / "tasks")],
                           check=True, env=ENV)
        # The reference push: what mmstack deploys for production, then copied for the peers.
        bench.mmstack(1, "reference", "first")
        bench.spec = push_spec(Path(bench.target(farm.hosts[0], "reference")), bench.source)
        (base / "push-spec.json").write_text(json.dumps(bench.spec))
        (base / "pyinfra_deploy.py").write_text(PYINFRA_DEPLOY)
        (base / "playbook.yml").write_text(ANSIBLE_PLAYBOOK.format(spec=base / "push-spec.json"))
        (base / "none.cfg").write_text("[defaults]\n")
        print(f"{len(bench.spec['files'])} files per host ({sum((bench.source / f['path']).stat().st_size for f in bench.spec['files'])} bytes); "
              f"tools: {', '.join(tools)}; load average before: {load()} on {os.cpu_count()} CPUs")
        for r in range(max(rounds[t] for t in tools)):
            print(f"round {r + 1}:")
            for n in counts:
                for tool in tools:
                    if r < rounds[tool]:
                        bench.run_pair(tool, n, f"r{r}")
        lines, doc = report(bench, counts, tools)
        print("\n".join(lines))
        print(f"\nload average after: {load()}")
        doc["load_after"] = load()
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2))
        return 1 if any(c["pass"] is False for c in doc["checks"]) else 0
    finally:
        farm.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
