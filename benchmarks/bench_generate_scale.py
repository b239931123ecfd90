"""Generation must stay linear: a synthetic schema of N services generates in under 2 seconds.

    .venv/bin/python benchmarks/bench_generate_scale.py [--services 500]

Builds a schema with N services (each with ports, a volume, a healthcheck and a dependency),
then times the whole `inv generate-compose` path in-process: load + validate + generate + dump.
Prints the time for N/4, N/2 and N services so non-linear growth is visible.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.schema.generate import compose_documents, dump_yaml  # noqa: E402
from tasks.schema.load import load_stack  # noqa: E402


def synthetic_schema(count: int) -> dict:
    base = yaml.safe_load((REPO / "schemas/compose-schema.yaml").read_text())
    services = {}
    for i in range(count):
        name = f"svc-{i:04d}"
        services[name] = {
            "image": f"example/{name}:1.0.{i}",
            "ports": [{"container": 8080, "host": 20000 + i}],
            "volumes": [{"source": "model-cache", "target": "/cache"}],
            "healthcheck": {"template": "http", "port": 8080, "path": "/health"},
            "depends_on": {f"svc-{i - 1:04d}": "healthy"} if i else {},
            "resources": {"memory": "256m", "cpus": 0.25},
        }
    base["services"] = services
    names = list(services)
    quarter = max(1, count // 4)
    base["stacks"] = {f"group{g}": {"services": names[g * quarter:(g + 1) * quarter]} for g in range(4)}
    base["stacks"]["group3"]["services"] = names[3 * quarter:]
    base["secrets"] = {}
    base["environments"] = {
        "development": {"stacks": ["group0", "group1"], "settings": {"bind_address": "127.0.0.1"}},
        "production": {"stacks": ["group0", "group1", "group2", "group3"],
                       "overrides": {"defaults": {"restart": "always"}}},
    }
    return base


def time_generate(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "schemas").mkdir()
        shutil.copytree(REPO / "env-templates", root / "env-templates")
        (root / "schemas/compose-schema.yaml").write_text(yaml.safe_dump(synthetic_schema(count), sort_keys=False))
        start = time.perf_counter()
        stack = load_stack(root)
        texts = [dump_yaml(doc) for doc in compose_documents(stack).values()]
        elapsed = time.perf_counter() - start
        assert sum(t.count("image:") for t in texts[:1]) == count
        return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=500)
    args = parser.parse_args()
    n = args.services
    results = [(k, time_generate(k)) for k in (n // 4, n // 2, n)]
    for k, t in results:
        print(f"{k:5d} services: {t:.3f} s ({t / k * 1000:.2f} ms/service)")
    growth = results[-1][1] / results[0][1]
    print(f"growth {results[0][0]}->{n} services: x{growth:.2f} (linear would be x{n / results[0][0]:.0f})")
    ok = results[-1][1] < 2.0
    print(f"{'PASS' if ok else 'FAIL'}: {n} services in {results[-1][1]:.3f} s (limit 2 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
