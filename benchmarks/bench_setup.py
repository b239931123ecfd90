"""No-op `inv setup` versus a bare script that renders the same templates and compares them.

    .venv/bin/python benchmarks/bench_setup.py [--runs 10]

Both run in a fresh copy of the stack after one real `inv setup`, so everything is up to date:

- ``inv setup``: the whole chain (validate-schema, validate-security, generate-compose,
  setup-secrets, render-env), every item `ok`.
- the bare script (``bare_render.py`` below, run as its own process): load the schema and each
  environment's secrets with PyYAML, render every env template with Jinja2 for every
  environment, and compare the result with the file on disk. No validation, no reporting.

Prints the median of each, and the ratio (target: at most 2.5).

Both run as installed code runs: with bytecode caches (``compileall`` on the stack copy, and
PYTHONDONTWRITEBYTECODE removed from the environment, as some CI images set it), so neither
side is charged for compiling its own Python source on every start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.stackcopy import make_stack_copy  # noqa: E402

BARE = r'''
import base64, hashlib, hmac, json
import sys
from pathlib import Path
import jinja2
import yaml

root = Path(sys.argv[1])
loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
schema = yaml.load((root / "schemas/compose-schema.yaml").read_text(), Loader=loader)
jenv = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root / "env-templates")),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
# The two filters the templates use (Logstash/Kibana level names, the masking digests).
import hashlib
jenv.filters["log_level_for"] = lambda level, consumer: {"warning": "warn"}.get(level, level)
jenv.filters["secret_digests"] = lambda s: ",".join(sorted({hashlib.sha256(v.encode()).hexdigest()
                                                            for v in s.values() if v}))
differs = 0
for env_name, env in schema["environments"].items():
    secrets = yaml.load((root / f".mmstack/secrets/{env_name}.yaml").read_text(), Loader=loader)["secrets"]
    names = []
    for stack in env.get("stacks") or []:
        names += schema["stacks"][stack]["services"]
    names += env.get("services") or []
    if not env.get("gpu"):
        names = [n for n in names if not schema["services"][n].get("gpu_only")]
    svcs = schema["services"]
    dbs = {}
    for n in names:
        db = svcs[n].get("database")
        if db:
            pw = secrets[db["password"]]
            dbs[n] = {"name": db["name"], "user": db["name"], "password": pw,
                      "password_var": "MMSTACK_DB_PASSWORD_" + db["name"].upper(),
                      "url": f"postgresql://{db['name']}:{pw}@postgres:5432/{db['name']}"}
    stores = {}
    for n in names:
        if svcs[n].get("buckets"):
            var = "MMSTACK_S3_" + n.upper().replace("-", "_")
            keys = svcs[n]["object_store_key"]
            stores[n] = {"access_key": secrets[keys["access_key"]], "secret_key": secrets[keys["secret_key"]],
                         "buckets": svcs[n]["buckets"], "endpoint": "http://minio:9000",
                         "access_var": var + "_ACCESS_KEY", "secret_var": var + "_SECRET_KEY"}
    scrape = {}  # Prometheus's scrape credentials (tasks/schema/monitoring.py)
    for n in (names if "prometheus" in names else []):
        auth = (svcs[n].get("metrics") or {}).get("auth")
        if not auth:
            continue
        var = "MMSTACK_SCRAPE_" + n.upper().replace("-", "_") + "_TOKEN"
        if auth["type"] == "bearer":
            scrape[var] = secrets[auth["secret"]]
        else:
            b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
            head = b64(b'{"alg":"HS512","typ":"JWT"}')
            body = b64(json.dumps({"exp": 4102444800, "sub": secrets[auth["access_key"]], "iss": "prometheus"},
                                  separators=(",", ":")).encode())
            sig = hmac.new(secrets[auth["secret_key"]].encode(), f"{head}.{body}".encode(), hashlib.sha512)
            scrape[var] = f"{head}.{body}.{b64(sig.digest())}"
    model_key = env.get("model") or schema.get("default_model")
    ctx = {"project": schema["project"], "env": env_name, "settings": env.get("settings") or {},
           "secrets": secrets, "gpu": {"env": {}, "args": [], "worker_devices": []},
           "model": {"key": model_key, **schema["models"][model_key]} if model_key else None,
           "databases": dbs, "object_stores": stores, "scrape_credentials": scrape, "running": names,
           "services": {n: {"port": (s.get("ports") or [{}])[0].get("container")}
                        for n, s in svcs.items()}}
    jobs = [("core", "core.env", None)]
    jobs += [(svcs[n]["env_template"], f"{n}.env", n) for n in names if svcs[n].get("env_template")]
    for template, out, service in jobs:
        body = jenv.get_template(f"{template}.env.j2").render(
            {**ctx, "service": service, "db": dbs.get(service), "s3": stores.get(service)})
        on_disk = (root / "env" / env_name / out).read_text()
        if not on_disk.endswith(body):
            differs += 1
print(differs)
'''


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_time(argv: list[str], cwd: Path, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=ENV)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed: {proc.stderr}")
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--limit", type=float, default=2.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = make_stack_copy(Path(tmp) / "stack")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(stack / "tasks")], check=True, env=ENV)
        inv = [sys.executable, "-m", "invoke", "--search-root", str(stack)]
        subprocess.run([*inv, "setup"], cwd=stack, check=True, capture_output=True)
        check = subprocess.run([*inv, "setup"], cwd=stack, capture_output=True, text=True)
        assert "changed=0" in check.stdout, check.stdout[-500:]
        bare_file = Path(tmp) / "bare_render.py"
        bare_file.write_text(BARE)
        out = subprocess.run([sys.executable, str(bare_file), str(stack)], capture_output=True, text=True)
        assert out.stdout.strip() == "0", f"bare script disagrees with inv setup: {out.stdout} {out.stderr}"
        bare = median_time([sys.executable, str(bare_file), str(stack)], stack, args.runs)
        setup = median_time([*inv, "setup"], stack, args.runs)
    ratio = setup / bare
    print(f"bare render+compare : {bare * 1000:7.1f} ms (median of {args.runs})")
    print(f"inv setup (no-op)   : {setup * 1000:7.1f} ms (median of {args.runs})")
    print(f"ratio               : {ratio:.2f} (limit {args.limit})")
    print("PASS" if ratio <= args.limit else "FAIL")
    return 0 if ratio <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
