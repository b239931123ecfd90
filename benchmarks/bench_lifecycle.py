"""On-demand benchmark of the stack lifecycle against the real engine (not part of the tests).

    .venv/bin/python benchmarks/bench_lifecycle.py [--rounds 5]

1. `inv start-dev` on an already-up development stack vs the bare equivalent
   `docker compose -f compose.yml -f compose.development.yml --profile development up -d --wait
   --remove-orphans`, run alternately; the ratio of medians must stay under 1.3.
2. `inv wipe --yes` on a 20-container project (the 15 development services plus 5 one-off
   stand-in containers of the same project), in seconds; must stay under 10 s.

Uses the local test images (tests/images), a temporary stack copy with a unique project name,
and tears everything down by project label. Both commands run as installed code runs: the stack
copy's Python is byte-compiled (`compileall`) and PYTHONDONTWRITEBYTECODE, which some CI images
set, is dropped, so `inv` is not charged for compiling its own source on every start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lifecycle.conftest import pick_offset, remove_project  # noqa: E402
from tests.lifecycle.stackconfig import ensure_stack_collection, write_test_settings  # noqa: E402
from tests.support.images import ensure_test_images  # noqa: E402
from tests.support.stackcopy import make_stack_copy, run_inv  # noqa: E402


ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "DOCKER_CLI_HINTS": "false"}


def timed(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import docker

    client = docker.from_env()
    images = ensure_test_images()
    project = f"mmsbench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = make_stack_copy(Path(tmp) / "stack")
        ensure_stack_collection(root)
        write_test_settings(root, project, pick_offset(root, int(uuid.uuid4().hex[:6], 16)), images)
        try:
            for step in (("setup", "--env", "development"), ("start-dev",)):
                proc = run_inv(root, *step)
                if proc.returncode:
                    print(proc.stdout, proc.stderr)
                    return 1
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "tasks")], check=True, env=ENV)
            inv = [sys.executable, "-m", "invoke", "--search-root", str(root), "start-dev"]
            from tasks.stack.composecmd import find_compose_command

            bare = [*find_compose_command(), "--project-directory", str(root), "-p", project,
                    "-f", "compose.yml", "-f", "compose.development.yml", "--profile", "development",
                    "up", "-d", "--wait", "--remove-orphans"]
            timed(bare, root)
            timed(inv, root)
            t_bare, t_inv = [], []
            for _ in range(args.rounds):
                t_bare.append(timed(bare, root))
                t_inv.append(timed(inv, root))
            mb, mi = statistics.median(t_bare), statistics.median(t_inv)
            print(f"start-dev on an up stack: bare compose {mb:.2f}s, inv {mi:.2f}s, ratio {mi / mb:.2f} "
                  f"(limit 1.30) {'OK' if mi / mb < 1.3 else 'OVER'}")

            image = next(c for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
                         if c.labels.get("com.docker.compose.service") == "litellm").image.id  # a stand-in
            for i in range(5):
                client.containers.run(image, detach=True, name=f"{project}-extra-{i}",
                                      labels={"com.docker.compose.project": project,
                                              "com.docker.compose.service": f"extra{i}"})
            n = len(client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}))
            t = time.perf_counter()
            proc = run_inv(root, "wipe", "--yes")
            dt = time.perf_counter() - t
            print(f"wipe --yes on {n} containers: {dt:.2f}s (limit 10s) "
                  f"{'OK' if dt < 10 and proc.returncode == 0 else 'OVER'}")
        finally:
            remove_project(client, project)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
