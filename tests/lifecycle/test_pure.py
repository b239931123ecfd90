"""Pure parts of the lifecycle: status rows, preflight findings, dry-run parsing, port holders."""

from __future__ import annotations

import socket

import pytest

from tasks.stack.start import dry_run_actions
from tasks.stack.preflight import Facts, PortNeed, evaluate, gather_ports
from tasks.stack.state import StartRecord, read_record, record_desired
from tasks.stack.status import build_rows, table


def test_status_rows_flag_unhealthy_missing_and_exited() -> None:
    ps = [
        {"Service": "postgres", "State": "running", "Health": "healthy", "Name": "p-postgres-1",
         "Publishers": [{"URL": "127.0.0.1", "PublishedPort": 15432, "TargetPort": 5432, "Protocol": "tcp"}]},
        {"Service": "litellm", "State": "running", "Health": "unhealthy", "Name": "p-litellm-1",
         "Publishers": [{"URL": "0.0.0.0", "PublishedPort": 4000, "TargetPort": 4000, "Protocol": "tcp"}]},
        {"Service": "n8n", "State": "exited", "Health": "", "ExitCode": 3, "Name": "p-n8n-1"},
    ]
    rows = {r.service: r for r in build_rows(ps, ["postgres", "litellm", "n8n", "redis"],
                                             {"postgres": "tcp", "litellm": "http"})}
    assert rows["postgres"].url == "tcp://127.0.0.1:15432" and not rows["postgres"].failed
    assert rows["litellm"].failed and rows["litellm"].url == "http://localhost:4000"
    assert rows["n8n"].failed and "exit code 3" in rows["n8n"].summary
    assert rows["redis"].state == "missing" and rows["redis"].failed
    assert "SERVICE" in table(list(rows.values()))


def test_preflight_names_each_problem_with_a_fix() -> None:
    need = PortNeed("postgres", "127.0.0.1", 5432)
    facts = Facts(env="gpu", compose_error="Compose v2 was not found", missing_files=["env/gpu/core.env"],
                  secrets_present=False, gpu_services=["vllm"], runtimes={"runc"},
                  ports=[need], port_holders={need: "process postgres (pid 1)"})
    bad = {f.item: f for f in evaluate(facts) if not f.ok}
    assert set(bad) == {"compose", "files", "secrets", "gpu", "port 127.0.0.1:5432/tcp"}
    assert "inv setup --env gpu" in (bad["files"].fix or "")
    assert "nvidia" in bad["gpu"].message and "pid 1" in bad["port 127.0.0.1:5432/tcp"].message


def test_preflight_refuses_data_made_by_another_environment() -> None:
    facts = Facts(env="production", previous_env="development", reused_volumes=["mms_postgres-data"])
    bad = {f.item: f for f in evaluate(facts) if not f.ok}
    assert set(bad) == {"data"}
    assert "'development'" in bad["data"].message and "mms_postgres-data" in bad["data"].message
    assert "inv wipe" in (bad["data"].fix or "")
    # Same environment, or nothing reused (the monitoring stack after development): fine.
    for ok in (Facts(env="development", previous_env="development", reused_volumes=["v"]),
               Facts(env="elk", previous_env="development", reused_volumes=[])):
        assert all(f.ok for f in evaluate(ok))


def test_port_holder_is_named_and_own_service_is_fine() -> None:
    # The listening sockets come from the real `ss` (or the /proc fallback) through a Context,
    # as they would on a host: a port this process holds is named, with its pid.
    from invoke import Context

    from tasks.stack.facts import listeners_command, parse_listeners

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        listeners = parse_listeners(Context().run(listeners_command(), hide=True, in_stream=False).stdout)
        assert listeners is not None
        need = PortNeed("redis", "127.0.0.1", port)
        held = gather_ports([need], [], "proj", listeners)
        assert held[need] and ("process" in held[need] or "cannot see" in held[need])
        # The same port on another address is free; the wildcard is not.
        assert gather_ports([PortNeed("redis", "127.0.0.2", port)], [], "proj", listeners) == \
            {PortNeed("redis", "127.0.0.2", port): None}
        assert gather_ports([PortNeed("redis", "0.0.0.0", port)], [], "proj", listeners)[PortNeed("redis", "0.0.0.0", port)]
        mine = [{"Ports": [{"PublicPort": port, "Type": "tcp"}],
                 "Labels": {"com.docker.compose.project": "proj", "com.docker.compose.service": "redis"}}]
        assert gather_ports([need], mine, "proj", listeners)[need] is None
        other = [{"Ports": [{"PublicPort": port, "Type": "tcp"}], "Names": ["/x-redis-1"],
                  "Labels": {"com.docker.compose.project": "x", "com.docker.compose.service": "redis"}}]
        assert "container x-redis-1 (project x" in gather_ports([need], other, "proj", listeners)[need]
    finally:
        s.close()


def test_ports_unchecked_where_no_socket_lister_exists() -> None:
    need = PortNeed("redis", "127.0.0.1", 6379)
    findings = {f.item: f for f in evaluate(Facts(env="development", ports=[need], ports_checked=False,
                                                  where="gpu1"))}
    assert findings["ports"].ok and "not checked" in findings["ports"].message and "gpu1" in findings["ports"].message


def test_dry_run_parsing() -> None:
    text = (" DRY-RUN MODE -  Container p-redis-1  Recreate\n"
            " DRY-RUN MODE -  Container 623ccb38705e_p-redis-1  Started\n"
            " DRY-RUN MODE -  Container p-n8n-1  Starting\n"
            " DRY-RUN MODE -  Container p-postgres-1  Running\n")
    acts = dry_run_actions(text, "p", {"redis": {"Names": ["/p-redis-1"]}})
    assert "Recreate" in acts["redis"] and acts["n8n"] == {"Starting"} and acts["postgres"] == {"Running"}


def test_start_record_written_only_when_changed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from invoke import Context

    from tasks.engine.report import Reporter
    from tasks.stack.site import Site

    site = Site.here(Context(), tmp_path)
    rec = StartRecord("development", ("compose.yml", "compose.development.yml"), ("development",), "p")
    assert read_record(site) is None
    rep = Reporter(json_mode=True)
    assert site.put([record_desired(site, rec)], rep, check=False) == 1
    path = tmp_path / ".mmstack" / "last-start.json"
    mtime = path.stat().st_mtime_ns
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert site.put([record_desired(site, rec)], rep, check=False) == 0
    assert path.stat().st_mtime_ns == mtime
    assert read_record(site) == rec
    assert rec.compose_args() == ["-f", "compose.yml", "-f", "compose.development.yml", "--profile", "development"]


def test_inv_list_does_not_import_docker() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, '.'); import tasks.cli.stack; "
            "print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_not_ready_reads_engine_and_compose_entries() -> None:
    from tasks.stack.outcomes import not_ready

    engine = {"a": {"State": "running", "Status": "Up 3 seconds (healthy)"},
              "b": {"State": "running", "Status": "Up 3 seconds (health: starting)"},
              "c": {"State": "running", "Status": "Up 9 seconds (unhealthy)"},
              "d": {"State": "exited", "Status": "Exited (1) 2 seconds ago"},
              "e": {"State": "running", "Status": "Up 3 seconds"}}
    assert not_ready(engine, ["a", "b", "c", "d", "e", "f"]) == ["b", "c", "d", "f"]
    compose = {"a": {"State": "running", "Health": "healthy"}, "b": {"State": "running", "Health": "starting"},
               "c": {"State": "running", "Health": ""}}
    assert not_ready(compose, ["a", "b", "c"]) == ["b"]


@pytest.mark.parametrize("text, kind, name, status", [
    (" Container p-a-1  Stopping\n", "container", "p-a-1", "Stopping"),
    ("DRY-RUN MODE -  Network p_default  Creating\n", "network", "p_default", "Creating"),
    (" DRY-RUN MODE -  Container 0123456789ab_p-a-1  Started\n", "container", "p-a-1", "Started"),
    (" Volume \"p_data\"  Created\n", "volume", "p_data", "Created"),
    ('{"dry-run":true,"id":"Container p-a-1","status":"Recreate"}\n', "container", "p-a-1", "Recreate"),
    ('{"id":"Container 0123456789ab_p-a-1","status":"Started"}\n', "container", "p-a-1", "Started"),
    ('{"dry-run":true,"id":"b","text":"Pulling"}\n', "service", "b", "Pulling"),
])
def test_one_event_parser_for_text_and_json(text: str, kind: str, name: str, status: str) -> None:
    from tasks.stack.events import parse_progress

    events = parse_progress(text).events
    assert [(e.kind, e.name, e.status) for e in events] == [(kind, name, status)]


@pytest.mark.parametrize("text, subject, needle", [
    ('{"dry-run":true,"id":"b","text":"Error","status":"lookup registry-1.docker.io: no such host"}\n',
     "service b", "no such host"),
    ('{"error":true,"message":"failed to resolve reference \\"x/y:1\\""}\n', None, "x/y:1"),
    (" b Error pull access denied for x/y, repository does not exist\n", "service b", "pull access denied"),
    ("Error response from daemon: No such image: x/y:1\n", None, "No such image"),
    ("services.a.ports: invalid port 99999\n", None, None),
])
def test_problems_keep_composes_own_words(text: str, subject: str | None, needle: str | None) -> None:
    from tasks.stack.events import parse_progress

    problems = parse_progress(text).problems
    if needle is None:  # not a line the parser can place: the caller falls back to the tail
        assert problems == ()
        return
    assert len(problems) == 1 and problems[0].subject == subject and needle in problems[0].message


@pytest.mark.parametrize("version, expected", [
    ("2.40.3", True), ("v2.29.0", True), ("2.28.1", False), ("v2.5.0", False), ("3.0.0", True),
    ("", False), (None, False), ("garbage", False),
])
def test_json_progress_from_2_29(version: str | None, expected: bool) -> None:
    from tasks.stack.events import supports_json_progress

    assert supports_json_progress(version) is expected


@pytest.mark.parametrize("stderr, ready, failed", [
    ("container p-kibana-setup-1 exited (0)\n", True, False),    # a job that ran to success
    ("container p-kibana-setup-1 exited (0)\n", False, True),    # ...but something else is not up
    ("container p-api-1 exited (1)\n", True, True),
    ("dependency failed to start: container p-db-1 is unhealthy\n", True, True),
    ("", True, False),                                           # streamed: readiness decides
    ("", False, True),
])
def test_up_failed_when_composes_wait_reports_a_job_that_finished(stderr: str, ready: bool, failed: bool) -> None:
    import subprocess

    from tasks.stack.start import up_failed

    proc = subprocess.CompletedProcess(["up"], 1, "", stderr)
    assert up_failed(proc, ready) is failed
    assert up_failed(subprocess.CompletedProcess(["up"], 0, "", stderr), ready) is False
