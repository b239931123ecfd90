"""The generated Prometheus configuration: checked by the real promtool, scraping exactly what runs.

`inv setup` on a copy of the shipped stack writes config/<env>/prometheus.yml, the alert rules and
the start script, and env/<env>/prometheus.env. promtool is Debian's (the `prometheus` package,
2.42 on bookworm; the pinned image is 3.14: see the README); with CI=true a missing promtool fails.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.schema.load import load_stack
from tests.support.litellm_proxy import litellm_python
from tests.support.needs import unavailable
from tests.support.stackcopy import run_inv

ENVS_WITH_PROMETHEUS = ("staging", "production", "elk")


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        unavailable("promtool is missing", "apt-get install prometheus")
    return found


def env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#") and "=" in line)


def scrape_jobs(stack: Path, env: str) -> dict[str, dict]:
    doc = yaml.safe_load((stack / "config" / env / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in doc["scrape_configs"]}


@pytest.mark.parametrize("env", ENVS_WITH_PROMETHEUS)
def test_promtool_accepts_the_config_and_the_rules(set_up_stack: Path, env: str) -> None:
    tool = promtool()
    cfg = set_up_stack / "config" / env
    # --syntax-only: the rule file and credential files named inside are container paths (the
    # end-to-end test checks them in full inside the Prometheus container).
    proc = subprocess.run([tool, "check", "config", "--syntax-only", str(cfg / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([tool, "check", "rules", str(cfg / "prometheus-rules.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path, set_up_stack: Path) -> None:
    """The check above can fail: the same file with a broken expression is refused."""
    tool = promtool()
    doc = yaml.safe_load((set_up_stack / "config" / "staging" / "prometheus-rules.yml").read_text())
    doc["groups"][0]["rules"][0]["expr"] = "up == == 0"
    bad = tmp_path / "rules.yml"
    bad.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([tool, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


@pytest.mark.parametrize("env", ENVS_WITH_PROMETHEUS)
def test_exactly_the_running_services_with_metrics_are_scraped(set_up_stack: Path, env: str) -> None:
    stack = load_stack(set_up_stack)
    running = stack.environment(env).services
    specs = stack.resolved_services(env)
    want = {svc: specs[svc]["metrics"] for svc in running if specs[svc].get("metrics")}
    jobs = scrape_jobs(set_up_stack, env)
    assert set(jobs) == set(want)
    for svc, metrics in want.items():
        job = jobs[svc]
        assert job["static_configs"][0]["targets"] == [f"{svc}:{metrics['port']}"]
        assert job["metrics_path"] == metrics.get("path", "/metrics")
    # Nothing the environment does not run is a target.
    for svc in set(stack.service_names) - set(running):
        assert svc not in jobs


def test_vllm_and_the_gpus_are_scraped_only_where_they_run(set_up_stack: Path) -> None:
    for env in ("staging", "production"):
        jobs = scrape_jobs(set_up_stack, env)
        assert jobs["vllm"]["static_configs"][0]["targets"] == ["vllm:8000"]
        assert "authorization" not in jobs["vllm"], "vLLM's /metrics needs no key"
        assert "dcgm-exporter" in jobs and "node-exporter" in jobs
    elk = scrape_jobs(set_up_stack, "elk")
    assert "vllm" not in elk and "dcgm-exporter" not in elk, "elk reserves no GPU"
    assert {"prometheus", "grafana", "node-exporter"} <= set(elk)
    for env in ("development", "gpu"):
        assert not (set_up_stack / "config" / env / "prometheus.yml").exists(), "no Prometheus there"
    rules = yaml.safe_load((set_up_stack / "config" / "elk" / "prometheus-rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert "VLLMNotServing" not in alerts and "GPUMemoryExhausted" not in alerts
    assert {"TargetDown", "DiskNearlyFull"} <= alerts


def test_the_alerts_that_matter_are_there_where_vllm_and_the_gpus_run(set_up_stack: Path) -> None:
    rules = yaml.safe_load((set_up_stack / "config" / "production" / "prometheus-rules.yml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"TargetDown", "VLLMNotServing", "GPUMemoryExhausted", "DiskNearlyFull"} <= set(by_name)
    assert 'up{job="vllm"}' in by_name["VLLMNotServing"]["expr"]
    assert "DCGM_FI_DEV_FB_USED" in by_name["GPUMemoryExhausted"]["expr"]
    assert "node_filesystem_avail_bytes" in by_name["DiskNearlyFull"]["expr"]


def test_credentials_stay_out_of_world_readable_files(set_up_stack: Path) -> None:
    secrets_dir = set_up_stack / ".mmstack" / "secrets"
    env = "production"
    jobs = scrape_jobs(set_up_stack, env)
    creds = env_values(set_up_stack / "env" / env / "prometheus.env")
    values = {v for k, v in creds.items() if k.startswith("MMSTACK_SCRAPE_")}
    assert len(values) == 3  # Qdrant's key, MinIO's token, LiteLLM's master key
    for job in ("qdrant", "minio", "litellm"):
        auth = jobs[job]["authorization"]
        assert set(auth) == {"type", "credentials_file"} and auth["type"] == "Bearer"
    for path in (set_up_stack / "config" / env).iterdir():
        text = path.read_text()
        assert not any(v in text for v in values), f"{path.name} holds a scrape credential"
    st = (set_up_stack / "env" / env / "prometheus.env").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert secrets_dir.exists()


def test_qdrant_is_scraped_with_its_read_only_key_not_the_admin_key(set_up_stack: Path) -> None:
    qdrant = env_values(set_up_stack / "env" / "production" / "qdrant.env")
    prom = env_values(set_up_stack / "env" / "production" / "prometheus.env")
    assert prom["MMSTACK_SCRAPE_QDRANT_TOKEN"] == qdrant["QDRANT__SERVICE__READ_ONLY_API_KEY"]
    assert prom["MMSTACK_SCRAPE_QDRANT_TOKEN"] != qdrant["QDRANT__SERVICE__API_KEY"]


def test_minio_token_is_a_jwt_minio_accepts(set_up_stack: Path) -> None:
    """Decoded by PyJWT (LiteLLM's venv), not by mmstack's own code: HS512 over the root access
    key (``sub``), signed with the root secret, as MinIO's metricsRequestAuthenticate checks."""
    python = litellm_python()
    if python is None:
        unavailable("the LiteLLM venv (PyJWT) is missing", "bash tests/realapps/litellm-venv.sh")
    minio = env_values(set_up_stack / "env" / "production" / "minio.env")
    token = env_values(set_up_stack / "env" / "production" / "prometheus.env")["MMSTACK_SCRAPE_MINIO_TOKEN"]
    code = ("import jwt, json, sys; t, k = sys.stdin.read().split('\\n'); "
            "print(json.dumps(jwt.decode(t, k, algorithms=['HS512'])))")
    proc = subprocess.run([str(python), "-c", code], input=f"{token}\n{minio['MINIO_ROOT_PASSWORD']}",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    claims = yaml.safe_load(proc.stdout)
    assert claims["sub"] == minio["MINIO_ROOT_USER"] and claims["exp"] > 4_000_000_000
    wrong = subprocess.run([str(python), "-c", code], input=f"{token}\nnot-the-secret",
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "Signature" in wrong.stderr


def test_rotating_qdrants_key_names_prometheus_among_those_to_restart(set_up_stack: Path) -> None:
    from tasks.secrets.consumers import secret_uses

    uses = secret_uses(load_stack(set_up_stack))
    assert "prometheus" in uses["qdrant_read_only_api_key"].consumers
    assert "prometheus" not in uses["qdrant_api_key"].consumers
    assert "prometheus" in uses["minio_root_password"].consumers
    assert uses["qdrant_read_only_api_key"].owner == "qdrant"


def test_second_run_changes_nothing_and_a_hand_edit_is_reported(set_up_stack: Path) -> None:
    again = run_inv(set_up_stack, "generate-compose")
    assert again.returncode == 0, again.stderr
    assert "changed=0" in again.stdout
    rules = set_up_stack / "config" / "staging" / "prometheus-rules.yml"
    original = rules.read_bytes()
    try:
        rules.write_bytes(original.replace(b"for: 5m", b"for: 50m", 1))
        check = run_inv(set_up_stack, "generate-compose", "--check", "--diff")
        assert check.returncode == 0, check.stderr
        out = check.stdout + check.stderr
        assert "prometheus-rules.yml" in out and "edited by hand" in out
        assert rules.read_bytes() != original, "--check wrote nothing"
    finally:
        fixed = run_inv(set_up_stack, "generate-compose")
        assert fixed.returncode == 0
    assert rules.read_bytes() == original
    assert stat.S_IMODE((set_up_stack / "config" / "staging" / "prometheus-start.sh").stat().st_mode) == 0o755


def test_a_diff_of_prometheus_env_file_masks_the_derived_minio_token(set_up_stack: Path) -> None:
    path = set_up_stack / "env" / "production" / "prometheus.env"
    original = path.read_bytes()
    token = env_values(path)["MMSTACK_SCRAPE_MINIO_TOKEN"]
    try:
        path.write_bytes(original.replace(token.encode(), b"edited", 1))
        proc = run_inv(set_up_stack, "render-env", "--env", "production", "--check", "--diff")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout + proc.stderr
        assert "prometheus.env" in out and "MMSTACK_SCRAPE_MINIO_TOKEN=" in out
        assert token not in out and token.split(".")[2] not in out
    finally:
        path.write_bytes(original)
