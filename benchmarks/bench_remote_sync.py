"""Parallel remote deploys: 16 hosts must take under 3x the time of one host.

    .venv/bin/python benchmarks/bench_remote_sync.py [--hosts 16] [--rounds 3] [--forks N]

Starts real sshd servers on 127.0.0.2 ... (see tests/support/sshd.py), syncs a deploy-sized file
set (two compose files, two env files, one secret env file in a 0700 directory) once so it is in
place, then times syncing the *unchanged* files to 1 host and to N hosts (connect + one fact
command per host, nothing written). Prints the best of ``--rounds`` for each, the ratio, and the
per-host timing of the N-host run.

Then the whole command: `inv deploy --no-start` of a real stack (after `inv setup`) to one host
and to all N, with files already in place (GPU detection over SSH with the fake nvidia-smi,
planning, rendering, checksum comparison, recap), best of ``--rounds`` each. The stack copy is
byte-compiled and PYTHONDONTWRITEBYTECODE dropped, as installed code runs.
Exits 1 when either ratio is 3 or more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.engine.files import DesiredFile  # noqa: E402
from tasks.remote.inventory import Host, load_inventory  # noqa: E402
from tasks.remote.parallel import ParallelOutcome, run_connected  # noqa: E402
from tasks.remote.sync import sync_job  # noqa: E402
from tests.support.sshd import SshdFarm, missing_tools  # noqa: E402
from tests.support.stackcopy import make_stack_copy  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def deploy_seconds(stack: Path, inventory: Path, hosts: str) -> float:
    argv = [sys.executable, "-m", "invoke", "--search-root", str(stack), "deploy", "--no-start",
            "--inventory", str(inventory), "--hosts", hosts]
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=stack, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"deploy to {hosts} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def whole_command(base: Path, farm: SshdFarm, rounds: int) -> float:
    stack = make_stack_copy(base / "stack")
    subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(stack), "setup"], cwd=stack,
                   check=True, capture_output=True, env=ENV)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(stack / "tasks")], check=True, env=ENV)
    inventory = farm.inventory_file(base / "deploy-inventory.yml", stack_subdir="deployed",
                                    forks=len(farm.hosts))
    deploy_seconds(stack, inventory, "all")  # files in place on every host
    one = min(deploy_seconds(stack, inventory, farm.hosts[0].name) for _ in range(rounds))
    many = min(deploy_seconds(stack, inventory, "all") for _ in range(rounds))
    ratio = many / one
    print(f"\n`inv deploy --no-start`, files unchanged, best of {rounds}:")
    print(f"  1 host : {one:.3f}s")
    print(f"  {len(farm.hosts)} hosts: {many:.3f}s")
    print(f"  ratio  : {ratio:.2f}x  (must be < 3x)")
    return ratio


def files_for(host: Host) -> list[DesiredFile]:
    root = Path(host.stack_dir)
    compose = ("services:\n" + "".join(f"  svc{i}:\n    image: example/svc{i}:1.0\n" for i in range(40))).encode()
    return [
        DesiredFile(root / "compose.yml", compose, 0o644),
        DesiredFile(root / "compose.production.yml", compose[:2000], 0o644),
        DesiredFile(root / "env" / "vllm.env", b"MODEL=qwen\nTP=2\n" * 20, 0o644),
        DesiredFile(root / "env" / "webui.env", b"PORT=8080\n" * 20, 0o644),
        DesiredFile(root / "env" / "secrets" / "production.env", b"DB_PASSWORD=bench-secret\n", 0o600,
                    mask_all_values=True, dir_mode=0o700),
    ]


def timed(hosts: list[Host], forks: int) -> ParallelOutcome:
    outcome = run_connected(hosts, sync_job(files_for), forks=forks)
    if outcome.failed_any:
        for h in outcome.hosts:
            for r in h.results:
                if r.status.value in ("failed", "unreachable"):
                    print(f"  {h.host}: {r.status.value}: {r.message}", file=sys.stderr)
        raise SystemExit("benchmark run failed")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=None, help="default: one per host")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print("cannot run: missing " + ", ".join(missing), file=sys.stderr)
        return 2

    base = Path(tempfile.mkdtemp(prefix="mmstack-bench-ssh-"))
    farm = SshdFarm(base, count=args.hosts)
    try:
        t0 = time.perf_counter()
        farm.start()
        print(f"started {args.hosts} sshd servers in {time.perf_counter() - t0:.2f}s")
        inv = load_inventory(base, farm.inventory_file(base / "inventory.yml"))
        hosts = inv.select("all")
        forks = args.forks or len(hosts)
        first = timed(hosts, forks)  # put the files in place
        assert all(h.counts()["changed"] for h in first.hosts)

        best_one: ParallelOutcome | None = None
        best_all: ParallelOutcome | None = None
        for _ in range(args.rounds):
            one = timed(hosts[:1], 1)
            many = timed(hosts, forks)
            assert all(h.counts()["changed"] == 0 for h in one.hosts + many.hosts), "files were not unchanged"
            if best_one is None or one.seconds < best_one.seconds:
                best_one = one
            if best_all is None or many.seconds < best_all.seconds:
                best_all = many
        assert best_one is not None and best_all is not None
        ratio = best_all.seconds / best_one.seconds
        print(f"\nunchanged sync, {len(files_for(hosts[0]))} files per host, best of {args.rounds}:")
        print(f"  1 host : {best_one.seconds:.3f}s")
        print(f"  {len(hosts)} hosts: {best_all.seconds:.3f}s  (forks={forks})")
        print(f"  ratio  : {ratio:.2f}x  (must be < 3x)")
        print("\nper-host timing of the best multi-host run (start offset, duration):")
        for h in best_all.hosts:
            print(f"  {h.host:>4} {inv.hosts[h.host].address:<12} +{h.started:.3f}s  {h.seconds:.3f}s  "
                  f"ok={h.counts()['ok']} changed={h.counts()['changed']}")
        deploy_ratio = whole_command(base, farm, args.rounds)
        return 0 if ratio < 3 and deploy_ratio < 3 else 1
    finally:
        farm.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
