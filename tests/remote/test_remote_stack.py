"""The remote stack tasks over real SSH, with fake `docker`, `docker-compose` and `mmstack`
commands on the hosts' PATH (test-local shims that record their argv): deploy's stack-up step
without Compose, remote-status, remote-wipe (label-only listing, refusal without --yes,
per-resource outcomes, --all) and remote-run (quoting, missing mmstack, nothing secret sent).

The real thing, with Docker, is test_remote_stack_e2e.py.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Exit

from tasks.cli.remote import deploy, remote_run, remote_status, remote_wipe
from tests.remote.test_deploy import secret_values
from tests.support.sshd import SshdFarm, SshHost
from tests.support.stackcopy import make_stack_copy, run_inv

pytestmark = [pytest.mark.ssh, pytest.mark.slow]
PROJECT_LABEL = "com.docker.compose.project"

FAKE_DOCKER = r"""#!/bin/sh
# Fake docker for mmstack tests: canned listings, recorded calls, removals that can fail.
D="{data}"
printf '%s\n' "$*" >> "$D/docker.calls"
case "$1 $2" in
  "ps -a") cat "$D/containers.tsv" 2>/dev/null; exit 0 ;;
  "network ls") cat "$D/networks.tsv" 2>/dev/null; exit 0 ;;
  "volume ls") cat "$D/volumes.tsv" 2>/dev/null; exit 0 ;;
  "stop "*) exit 0 ;;
  "logs "*) cat "$D/logs.txt" 2>/dev/null; exit 0 ;;
  "compose "*) echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
esac
case "$1" in rm) kind=container ;; network) kind=network ;; volume) kind=volume ;; *) exit 9 ;; esac
for a in "$@"; do last=$a; done
if grep -qx -- "$last" "$D/gone" 2>/dev/null; then
  echo "Error response from daemon: No such $kind: $last" >&2; exit 1; fi
if grep -qx -- "$last" "$D/stuck" 2>/dev/null; then
  echo "Error response from daemon: remove $last: $kind is in use" >&2; exit 1; fi
printf '%s\n' "$last" >> "$D/removed"
echo "$last"
"""

FAKE_COMPOSE = r"""#!/bin/sh
D="{data}"
printf '%s\n' "$*" >> "$D/compose.calls"
case " $* " in
  *" version "*) echo 2.40.3; exit 0 ;;
  *" ps "*) cat "$D/ps.json"; exit 0 ;;
  *" logs "*)
    cat "$D/logs.txt" 2>/dev/null
    case " $* " in *" --follow "*) echo "web-1  | following on {host}"; exec sleep 30 ;; esac
    exit 0 ;;
esac
exit 3
"""

FAKE_MMSTACK = r"""#!/bin/sh
# Fake mmstack: records its argv (NUL-separated), MMSTACK_DIR and cwd, then prints a recap.
D="{data}"
printf '%s\0' "$@" > "$D/argv-{host}"
printf '%s\n%s\n' "$MMSTACK_DIR" "$(pwd)" > "$D/where-{host}"
echo "TASK [fake]"
echo "secret-free output from {host}"
if [ "$1" = fail ]; then echo "it broke" >&2; exit 3; fi
echo "RECAP ok=1 changed=2 failed=0 skipped=0"
"""


class Shims:
    """Fake commands on chosen hosts' PATH, removed after the test."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.installed: list[Path] = []

    def install(self, host: SshHost, name: str, template: str) -> None:
        path = host.bin_dir / name
        path.write_text(template.replace("{data}", str(self.data)).replace("{host}", host.name))
        path.chmod(0o755)
        self.installed.append(path)

    def write(self, name: str, text: str) -> None:
        (self.data / name).write_text(text)

    def read(self, name: str) -> str:
        path = self.data / name
        return path.read_text() if path.exists() else ""


@pytest.fixture
def shims(farm: SshdFarm, tmp_path: Path) -> Iterator[Shims]:
    data = tmp_path / "shim-data"
    data.mkdir()
    s = Shims(data)
    try:
        yield s
    finally:
        for path in s.installed:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def configured_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack copy set up for development (compose files, secrets, env files)."""
    stack = make_stack_copy(tmp_path_factory.mktemp("remote-stack") / "stack")
    proc = run_inv(stack, "setup", "--env", "development")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return stack


def ctx(stack: Path) -> Context:
    return Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))


def call(func: Any, *args: Any, **kw: Any) -> int:
    try:
        func(*args, **kw)
    except Exit as exc:
        return int(exc.code or 0)
    return 0


def call_json(capsys: pytest.CaptureFixture, func: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any], str]:
    code = call(func, *args, json=True, **kw)
    out = capsys.readouterr()
    try:
        return code, json.loads(out.out), out.err
    except ValueError:
        raise AssertionError(f"not JSON (exit {code}):\n{out.out}\n{out.err}") from None


def results(doc: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in doc["hosts"]["hosts"][host]["results"]}


def stack_dir(farm: SshdFarm, tmp_path: Path, index: int = 0) -> Path:
    return farm.hosts[index].remote_root / f"srv-{tmp_path.name}" / "stack"


# ----------------------------------------------------------------------------------------------
# deploy: the stack-up step
# ----------------------------------------------------------------------------------------------

def test_deploy_without_compose_on_the_host_fails_naming_both_commands(
        farm: SshdFarm, inventory_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    shims.install(farm.hosts[0], "docker", FAKE_DOCKER)  # a docker without the compose plugin
    code, doc, _ = call_json(capsys, deploy, ctx(configured_stack), hosts="h1,h2", env="development",
                             inventory=str(inventory_path))
    assert code == 2
    for host in ("h1", "h2"):
        # The start's preflight on the host (the same one as `inv start-*` here) names both.
        up = results(doc, host)["preflight: compose"]
        assert up["status"] == "failed"
        assert "`docker compose`" in up["message"] and "`docker-compose`" in up["message"]
        assert host in up["message"] and "mmstack.remote.compose_command" in up["message"]
        assert results(doc, host)["compose.yml"]["status"] == "changed"  # the files went first
    assert "compose version" in shims.read("docker.calls")


def test_deploy_check_on_a_fresh_host_skips_the_stack_and_writes_nothing(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    shims.install(farm.hosts[0], "docker-compose", FAKE_COMPOSE)
    code, doc, _ = call_json(capsys, deploy, ctx(configured_stack), hosts="h1", env="development",
                             inventory=str(inventory_path), check=True)
    assert code == 0, doc
    got = results(doc, "h1")
    assert got["stack up"]["status"] == "skipped" and "check mode" in got["stack up"]["message"]
    assert got[".mmstack/last-start.json"]["status"] == "changed"
    assert not stack_dir(farm, tmp_path).exists()
    assert " up " not in shims.read("compose.calls")


def test_start_with_hosts_is_the_deploy_of_that_environment(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    from tasks.cli.stack import start_dev

    shims.install(farm.hosts[0], "docker-compose", FAKE_COMPOSE)
    code, doc, _ = call_json(capsys, start_dev, ctx(configured_stack), hosts="h1",
                             inventory=str(inventory_path), check=True)
    assert code == 0, doc
    got = results(doc, "h1")
    assert got["compose.development.yml"]["status"] == "changed" and "gpu" in got   # deploy's files, GPU facts
    assert got["stack up"]["status"] == "skipped" and not stack_dir(farm, tmp_path).exists()
    with pytest.raises(Exit) as refused:
        start_dev(ctx(configured_stack), hosts="h1", inventory=str(inventory_path), profile=["elk"])
    assert refused.value.code == 1 and "--profile" in str(refused.value)


def test_deploy_no_start_uploads_files_only(farm: SshdFarm, inventory_path: Path, tmp_path: Path,
                                            configured_stack: Path, capsys: pytest.CaptureFixture) -> None:
    code, doc, _ = call_json(capsys, deploy, ctx(configured_stack), hosts="h1", env="development",
                             inventory=str(inventory_path), no_start=True)
    assert code == 0
    assert results(doc, "h1")["stack up"] == {"item": "stack up", "status": "skipped",
                                              "message": "--no-start", "host": "h1"}
    assert (stack_dir(farm, tmp_path) / "compose.development.yml").is_file()
    assert not (stack_dir(farm, tmp_path) / ".mmstack" / "last-start.json").exists()


# ----------------------------------------------------------------------------------------------
# remote-status
# ----------------------------------------------------------------------------------------------

def write_record(root: Path, project: str = "mmstack") -> None:
    state = root / ".mmstack"
    state.mkdir(parents=True, exist_ok=True)
    (state / "last-start.json").write_text(json.dumps({
        "env": "development", "files": ["compose.yml", "compose.development.yml"],
        "profiles": ["development"], "project": project, "compose": ["docker-compose"]}))


def ps_lines(services: list[str], unhealthy: str) -> str:
    lines = []
    for i, svc in enumerate(services):
        lines.append(json.dumps({
            "ID": f"{i:064x}", "Name": f"mmstack-{svc}-1", "Service": svc, "State": "running",
            "Health": "unhealthy" if svc == unhealthy else "healthy", "ExitCode": 0,
            "Publishers": [{"URL": "127.0.0.1", "TargetPort": 8000, "PublishedPort": 18000 + i,
                            "Protocol": "tcp"}]}))
    return "\n".join(lines) + "\n"


def test_remote_status_rows_unhealthy_with_masked_log_tail_and_exit_code(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        stop_host, capsys: pytest.CaptureFixture) -> None:
    from tasks.schema.load import load_stack

    services = load_stack(configured_stack).environment("development").services
    secret = sorted(secret_values(configured_stack))[0]
    for h in farm.hosts[:2]:
        shims.install(h, "docker-compose", FAKE_COMPOSE)
        shims.install(h, "docker", FAKE_DOCKER)
    write_record(stack_dir(farm, tmp_path, 0))
    shims.write("ps.json", ps_lines(services, unhealthy="litellm"))
    shims.write("logs.txt", f"starting\nconnecting with password {secret}\nhealthcheck failed\n")
    stop_host("h3")

    code, doc, err = call_json(capsys, remote_status, ctx(configured_stack), inventory=str(inventory_path))
    assert code == 2
    rows = {r["service"]: r for r in doc["status"]["h1"]["services"]}
    assert list(rows) == services
    assert rows["postgres"]["url"] == "tcp://127.0.0.1:18000" and not rows["postgres"]["failed"]
    assert rows["litellm"]["failed"] and rows["litellm"]["health"] == "unhealthy"
    assert rows["litellm"]["log_tail"][-2:] == ["connecting with password ********", "healthcheck failed"]
    h1 = results(doc, "h1")
    assert h1["litellm"]["status"] == "failed" and h1["postgres"]["status"] == "ok"
    assert "not been started" in results(doc, "h2")["task"]["message"]
    assert "inv deploy --hosts h2" in results(doc, "h2")["task"]["message"]
    assert doc["hosts"]["recap"]["h3"]["unreachable"] == 1
    assert secret not in json.dumps(doc) and secret not in err
    # The recorded file set is the one Compose was asked about, in the host's stack_dir.
    ps_call = next(line for line in shims.read("compose.calls").splitlines() if " ps " in f" {line} ")
    assert ps_call.startswith(f"--project-directory {stack_dir(farm, tmp_path, 0)} -p mmstack "
                              "-f compose.yml -f compose.development.yml --profile development ps")


def test_remote_status_table_for_people(farm: SshdFarm, inventory_path: Path, tmp_path: Path,
                                        configured_stack: Path, shims: Shims,
                                        capsys: pytest.CaptureFixture) -> None:
    from tasks.schema.load import load_stack

    services = load_stack(configured_stack).environment("development").services
    shims.install(farm.hosts[0], "docker-compose", FAKE_COMPOSE)
    write_record(stack_dir(farm, tmp_path, 0))
    shims.write("ps.json", ps_lines(services, unhealthy=""))
    assert call(remote_status, ctx(configured_stack), hosts="h1", inventory=str(inventory_path)) == 0
    out = capsys.readouterr().out
    assert "h1: SERVICE" in out and "h1: postgres" in out and "tcp://127.0.0.1:18000" in out
    assert any(line.startswith("h1 :") and "failed=0" in line for line in out.splitlines())


# ----------------------------------------------------------------------------------------------
# remote-wipe
# ----------------------------------------------------------------------------------------------

def wipe_fixture(shims: Shims, project: str = "mmstack") -> None:
    rows = [
        ("c1" * 32, f"{project}-postgres-1", "running", project, "postgres"),
        ("c2" * 32, f"{project}-redis-1", "exited", project, "redis"),
        ("c3" * 32, f"{project}-old-1", "exited", project, "old"),
        # The engine filtered by label; a line of another project must still never be removed.
        ("d1" * 32, "decoy-app-1", "running", "decoy", "app"),
    ]
    shims.write("containers.tsv", "".join("\t".join(r) + "\n" for r in rows))
    shims.write("networks.tsv", f"{'n1' * 32}\t{project}_default\t{project}\n{'n2' * 32}\tdecoy_default\tdecoy\n")
    shims.write("volumes.tsv", f"{project}_pgdata\t{project}\n{project}_redis\t{project}\ndecoy_data\tdecoy\n")
    shims.write("gone", "c3" * 32 + "\n")          # removed by someone else meanwhile
    shims.write("stuck", f"{project}_redis\n")     # cannot be removed


def test_remote_wipe_refuses_without_yes_and_a_terminal(
        farm: SshdFarm, inventory_path: Path, configured_stack: Path, shims: Shims,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    shims.install(farm.hosts[0], "docker", FAKE_DOCKER)
    wipe_fixture(shims)
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # not a terminal
    with pytest.raises(Exit) as err:
        remote_wipe(ctx(configured_stack), hosts="h1", inventory=str(inventory_path))
    assert err.value.code == 1 and "refusing to wipe" in str(err.value.message)
    assert "--yes" in str(err.value.message)
    calls = shims.read("docker.calls")
    assert "ps -a" in calls and "rm" not in calls.replace("--format", "") and not shims.read("removed")
    out = capsys.readouterr().out
    assert "h1:     - mmstack-postgres-1" in out and "decoy" not in out


def test_remote_wipe_check_lists_by_label_and_removes_nothing(
        farm: SshdFarm, inventory_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    shims.install(farm.hosts[0], "docker", FAKE_DOCKER)
    wipe_fixture(shims)
    code, doc, _ = call_json(capsys, remote_wipe, ctx(configured_stack), hosts="h1",
                             inventory=str(inventory_path), dry_run=True)
    assert code == 0 and doc["check"] is True
    items = {k: v["status"] for k, v in results(doc, "h1").items()}
    assert items == {"container mmstack-old-1": "changed", "container mmstack-postgres-1": "changed",
                     "container mmstack-redis-1": "changed", "network mmstack_default": "changed",
                     "volume mmstack_pgdata": "changed", "volume mmstack_redis": "changed"}
    assert f"label={PROJECT_LABEL}=mmstack" in shims.read("docker.calls")
    assert "prune" not in shims.read("docker.calls") and not shims.read("removed")


def test_remote_wipe_yes_removes_each_resource_and_names_what_failed(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    for h in farm.hosts[:2]:
        shims.install(h, "docker", FAKE_DOCKER)
    wipe_fixture(shims)
    root = stack_dir(farm, tmp_path, 0)
    (root / "env" / "development").mkdir(parents=True)
    (root / "env" / "development" / "core.env").write_text("X=1\n")
    (root / "compose.yml").write_text("services: {}\n")
    (root / "keep-me.txt").write_text("not ours\n")
    write_record(root)

    code, doc, err = call_json(capsys, remote_wipe, ctx(configured_stack), hosts="h1,h2",
                               inventory=str(inventory_path), yes=True, all=True)
    assert code == 2
    h1 = {k: (v["status"], v.get("message", "")) for k, v in results(doc, "h1").items()}
    assert h1["container mmstack-postgres-1"] == ("changed", "removed")
    assert h1["container mmstack-old-1"] == ("ok", "already removed")
    assert h1["volume mmstack_redis"][0] == "failed" and "in use" in h1["volume mmstack_redis"][1]
    assert h1["compose.yml"] == ("changed", "deleted")
    assert h1["env"] == ("changed", "deleted")
    assert h1[".mmstack/last-start.json"] == ("changed", "deleted")
    removed = shims.read("removed").split()
    assert "decoy_data" not in removed and "d1" * 32 not in removed and "n2" * 32 not in removed
    assert sorted(removed).count("mmstack_pgdata") == 2  # h1 and h2 share the fake engine's data
    assert not (root / "env").exists() and not (root / ".mmstack" / "last-start.json").exists()
    assert (root / "keep-me.txt").exists()
    assert doc["not_removed"] == {"h1": ["volume mmstack_redis"], "h2": ["volume mmstack_redis"]}


# ----------------------------------------------------------------------------------------------
# remote-run
# ----------------------------------------------------------------------------------------------

TRICKY = ["status", "--json", "a b", "semi;colon", "$(touch {canary})", "it's", "back\\slash",
          "", "new\nline", "*"]


def test_remote_run_quotes_every_argument_and_sends_no_secret(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / f"pwned-{uuid.uuid4().hex[:6]}"
    argv = [a.replace("{canary}", str(canary)) for a in TRICKY]
    for i in (0, 1):
        shims.install(farm.hosts[i], "mmstack", FAKE_MMSTACK)
        stack_dir(farm, tmp_path, i).mkdir(parents=True)
    for h in farm.hosts:
        h.clear_log()
    task = " ".join(shlex.quote(a) for a in argv)

    code, doc, _ = call_json(capsys, remote_run, ctx(configured_stack), task=task,
                             inventory=str(inventory_path))
    assert code == 2  # h3 has no mmstack
    for i, name in enumerate(("h1", "h2")):
        assert (shims.data / f"argv-{name}").read_bytes().split(b"\0")[:-1] == [a.encode() for a in argv]
        where = (shims.data / f"where-{name}").read_text().splitlines()
        assert where == [str(stack_dir(farm, tmp_path, i))] * 2
        assert doc["outputs"][name]["exit"] == 0
        assert f"secret-free output from {name}" in doc["outputs"][name]["stdout"]
        r = results(doc, name)
        (only,) = r.values()
        assert only["status"] == "changed" and only["message"] == "exit 0, changed=2"
    assert not canary.exists()
    h3 = next(iter(results(doc, "h3").values()))
    assert h3["status"] == "failed" and "pip install mmstack" in h3["message"]
    # Nothing secret on any command line or in any command's environment.
    values = secret_values(configured_stack)
    for h in farm.hosts:
        for command, env in h.records():
            assert "\nexport MMSTACK_DIR=" not in "\n" + env  # set inside the command, not sent
            assert not [v for v in values if v in command or v in env]


def test_remote_run_streams_with_a_host_prefix_and_reports_failures(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path, shims: Shims,
        capsys: pytest.CaptureFixture) -> None:
    shims.install(farm.hosts[0], "mmstack", FAKE_MMSTACK)
    shims.install(farm.hosts[1], "mmstack", FAKE_MMSTACK)
    stack_dir(farm, tmp_path, 0).mkdir(parents=True)  # h2 has no stack directory yet
    code = call(remote_run, ctx(configured_stack), task="fail now", hosts="h1,h2",
                inventory=str(inventory_path))
    out = capsys.readouterr()
    assert code == 2
    assert "h1 | secret-free output from h1" in out.out and "h1 | it broke" in out.err
    assert "failed: [h1: mmstack fail now] exit 3" in out.out
    assert "failed: [h2: mmstack fail now] the stack directory" in out.out
    assert "does not exist" in out.out and "inv deploy" not in out.out.split("h2: mmstack")[0]
    with pytest.raises(Exit) as err:
        remote_run(ctx(configured_stack), task="  ", hosts="h1", inventory=str(inventory_path))
    assert err.value.code == 1


# ----------------------------------------------------------------------------------------------
# logs --hosts --follow
# ----------------------------------------------------------------------------------------------

def test_logs_follow_every_host_at_once_masked_and_prefixed_until_interrupted(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, configured_stack: Path,
        shims: Shims) -> None:
    import os
    import signal
    import subprocess
    import time

    secret = sorted(secret_values(configured_stack))[0]
    for i, h in enumerate(farm.hosts[:2]):
        shims.install(h, "docker-compose", FAKE_COMPOSE)
        write_record(stack_dir(farm, tmp_path, i))
    shims.write("logs.txt", f"web-1  | connecting with {secret}\n")
    env = {k: v for k, v in os.environ.items() if k != "INVOKE_RUNTIME_CONFIG"}
    # --forks 1 would serialise the hosts; following must not wait for the first to end.
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(configured_stack), "logs",
                             "--hosts", "h1,h2", "--inventory", str(inventory_path), "--follow", "--forks", "1"],
                            cwd=configured_stack, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline and not all(f"{h} | web-1  | following on {h}" in seen for h in ("h1", "h2")):
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = "\n".join(seen) + out
    assert "h1 | web-1  | following on h1" in text and "h2 | web-1  | following on h2" in text, text + err
    assert "h1 | web-1  | connecting with ********" in text and secret not in text + err
    assert proc.returncode == 0, text + err
    assert "stopped following" in out
