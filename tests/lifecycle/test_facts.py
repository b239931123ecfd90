"""The lifecycle's facts and plans over replayed real outputs: each fixture in fixtures/ is what
the real docker CLI and the pinned Compose printed for one named state (fixtures/capture_facts.py made
them), fed to the steps' parsers through Invoke's MockContext, as a host's Connection would."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invoke import MockContext, Result

from tasks.engine.errors import ConfigError
from tasks.engine.masking import masker
from tasks.engine.report import Status
from tasks.stack.control import restart_outcomes, restart_plan, stop_outcomes
from tasks.stack.facts import (Listener, log_tail, parse_containers, parse_listeners, parse_ports,
                               parse_preflight, project_services)
from tasks.stack.outcomes import not_ready, up_outcomes
from tasks.stack.preflight import PortNeed, gather_ports
from tasks.stack.site import Site
from tasks.stack.state import StartRecord, read_record
from tasks.stack.status import build_rows
from tasks.stack.compose import parse_ps

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROJECT = "mmslifefix"
SECRET = "s3cr3t-fixture-value"


def fixture(name: str) -> Result:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    return Result(stdout=doc["stdout"], exited=doc["exited"])


def host_site(**run: Result) -> Site:
    """A host's site whose commands answer with fixtures (keyed by what the command does)."""
    return Site(MockContext(run={re.compile(k, re.S): v for k, v in run.items()}), "/srv/stack", "h1", True)


def test_an_engine_that_does_not_answer_is_one_error_and_no_containers() -> None:
    facts = parse_preflight(fixture("preflight-engine-down").stdout)
    assert facts.engine_error and "nonexistent/docker.sock" in facts.engine_error
    assert facts.containers == [] and facts.runtimes == set()


def test_preflight_facts_of_a_fresh_machine() -> None:
    facts = parse_preflight(fixture("preflight-fresh").stdout)
    assert facts.engine_error is None and "runc" in facts.runtimes
    assert facts.missing_files == ["env/x.env"]          # compose.yml was there
    assert facts.listeners is not None and facts.volumes is None and facts.compose_probe is None
    assert not [c for c in facts.containers if c["Labels"].get("com.docker.compose.project") == PROJECT]


def test_preflight_facts_of_a_running_project_and_who_holds_its_port() -> None:
    facts = parse_preflight(fixture("preflight-up").stdout)
    mine = {c["Labels"]["com.docker.compose.service"]: c for c in facts.containers
            if c["Labels"].get("com.docker.compose.project") == PROJECT}
    assert set(mine) == {"web", "job"}
    assert mine["web"]["Ports"] == [{"IP": "127.0.0.1", "PublicPort": 28931, "PrivatePort": 8080, "Type": "tcp"}]
    assert mine["web"]["Names"] == [f"{PROJECT}-web-1"]
    assert facts.volumes == []   # asked for, and the project has no named volume
    assert any(s.port == 28931 for s in facts.listeners or [])
    running = [c for c in facts.containers if c["State"] == "running"]
    own = PortNeed("web", "127.0.0.1", 28931)
    other = PortNeed("openwebui", "127.0.0.1", 28931)
    assert gather_ports([own], running, PROJECT, facts.listeners or [])[own] is None
    held = gather_ports([other], running, "another", facts.listeners or [])[other]
    assert held == f"container {PROJECT}-web-1 (project {PROJECT}, service web)"
    # Another address on the same port is free.
    free = PortNeed("openwebui", "127.0.0.2", 28931)
    assert gather_ports([free], running, "another", facts.listeners or [])[free] is None


def test_listeners_name_the_process_and_none_means_unlisted() -> None:
    listeners = parse_listeners(fixture("listeners-up").stdout) or []
    assert any(s.port == 28931 and s.ip == "127.0.0.1" for s in listeners)
    assert parse_listeners("@@mmstack-no-ss\n") is None
    dual = Listener("tcp", "*", 80)
    assert dual.holds("127.0.0.1", 80, "tcp") and dual.holds("::1", 80, "tcp")
    v6 = Listener("tcp", "::", 80)
    assert not v6.holds("127.0.0.1", 80, "tcp") and v6.holds("::1", 80, "tcp")
    assert not Listener("udp", "0.0.0.0", 80).holds("127.0.0.1", 80, "tcp")


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:8000-8001->8000-8001/tcp", [("0.0.0.0", 8000, 8000), ("0.0.0.0", 8001, 8001)]),
    ("[::]:5432->5432/tcp, 6379/tcp", [("::", 5432, 5432), (None, None, 6379)]),
    (":::80->80/tcp", [("::", 80, 80)]),
    ("", []),
])
def test_ports_as_the_engine_lists_them(text: str, expected: list[tuple[Any, Any, int]]) -> None:
    got = [(p.get("IP"), p.get("PublicPort"), p["PrivatePort"]) for p in parse_ports(text)]
    assert got == expected


def test_stop_outcomes_from_the_engines_before_and_after() -> None:
    before = project_services(host_site(**{"docker ps": fixture("containers-up")}), PROJECT)
    after = project_services(host_site(**{"docker ps": fixture("containers-stopped")}), PROJECT)
    assert {s: c["State"] for s, c in before.items()} == {"web": "running", "job": "exited"}
    got = {svc: (status, message) for svc, status, message in stop_outcomes(before, after)}
    assert got == {"web": ("changed", "stopped"), "job": ("ok", "already exited")}
    planned = {svc: status for svc, status, _ in stop_outcomes(before, None)}
    assert planned == {"web": "changed", "job": "ok"}
    # A second stop changes nothing.
    assert all(status == "ok" for _, status, _ in stop_outcomes(after, after))
    assert project_services(host_site(**{"docker ps": fixture("containers-none")}), PROJECT) == {}


def test_up_outcomes_and_readiness_on_engine_entries() -> None:
    stopped = project_services(host_site(**{"docker ps": fixture("containers-stopped")}), PROJECT)
    up = project_services(host_site(**{"docker ps": fixture("containers-up")}), PROJECT)
    got = {svc: (status, message) for svc, status, message in up_outcomes(stopped, up, ["web"])}
    assert got == {"web": (Status.CHANGED, "started")}
    gone = {svc: status for svc, status, _ in up_outcomes(stopped, {"web": up["web"]}, ["web"])}
    assert gone == {"web": Status.CHANGED, "job": Status.CHANGED}   # job: an orphan removed
    assert not_ready(up, ["web"]) == [] and not_ready(stopped, ["web"]) == ["web"]


def test_restart_plans_a_plain_restart_only_for_containers_left_in_place() -> None:
    up = project_services(host_site(**{"docker ps": fixture("containers-up")}), PROJECT)
    recreated = {**up, "web": {**up["web"], "ID": "new", "Id": "new"}}
    assert restart_plan(up, up, ["web", "job"]) == ["web", "job"]
    assert restart_plan(up, recreated, ["web", "job"]) == ["job"]
    failing = {"job": SimpleNamespace(summary="exited, exit code 3")}
    got = restart_outcomes(up, ["job"], ["web", "job", "new"], failing)
    assert got == [("web", "changed", "recreated (configuration changed)"),
                   ("job", "failed", "exited, exit code 3"), ("new", "changed", "created")]


def test_status_rows_and_a_masked_log_tail_from_composes_ps() -> None:
    rows = {r.service: r for r in build_rows(parse_ps(fixture("compose-ps-up").stdout), ["web", "job"],
                                             {"web": "http"})}
    assert rows["web"].url == "http://127.0.0.1:28931" and not rows["web"].failed
    assert rows["job"].failed and rows["job"].exit_code == 3
    site = host_site(**{"docker logs": fixture("logs-job")})
    tail = log_tail(site, rows["job"].container, masker([SECRET]))
    assert tail == ["standin: ignoring arguments: connect --password ********"]
    stopped = {r.service: r for r in build_rows(parse_ps(fixture("compose-ps-stopped").stdout), ["web", "job"], {})}
    assert stopped["web"].failed and stopped["web"].state == "exited"


def test_the_start_record_read_through_a_site() -> None:
    record = StartRecord("development", ("compose.yml",), ("development",), "p", ("docker", "compose"))
    assert read_record(host_site(**{"cat ": Result(stdout=record.to_json())})) == record
    assert read_record(host_site(**{"cat ": Result(stdout="", stderr="No such file", exited=1)})) is None
    with pytest.raises(ConfigError) as info:
        read_record(host_site(**{"cat ": Result(stdout="{not json")}))
    assert "h1:/srv/stack/.mmstack/last-start.json" in str(info.value.file)


def test_parse_containers_ignores_what_is_not_an_entry() -> None:
    text = fixture("containers-up").stdout + "WARNING: something\n{broken\n"
    assert {c["Labels"]["com.docker.compose.service"] for c in parse_containers(text)} == {"web", "job"}


def test_runtimes_are_asked_only_when_wanted_and_the_engine_judged_by_its_listing() -> None:
    from tasks.stack.facts import SECTION

    text = fixture("preflight-up").stdout
    start = text.index(f"{SECTION}runtimes")
    without = text[:start] + text[text.index(f"{SECTION}end", start):].split("\n", 1)[1]
    facts = parse_preflight(without)
    assert facts.engine_error is None and facts.runtimes == set() and facts.containers
    down = parse_preflight(fixture("preflight-engine-down").stdout)
    assert down.engine_error and "Cannot connect to the Docker daemon" in down.engine_error
