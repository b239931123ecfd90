"""Pure parts of the remote stack tasks: Compose detection, the up/check rules, wipe listing and
outcome parsing, remote-run's command and recap parsing, the SSH executor's command line."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tasks.engine.errors import RemoteError
from tasks.engine.report import Status
from tasks.remote.stackops import (
    MISSING_MARK, WIPE_SEPARATOR, SshExecutor, dry_run_view,
    parse_wipe_listing, parse_wipe_outcomes, record_desired, remote_run_command, reported_changes,
    wipe_list_command, wipe_remove_command,
)
from tasks.stack.composecmd import parse_compose_probe
from tasks.stack.outcomes import check_outcomes, up_outcomes
from tasks.stack.state import StartRecord
from tasks.stack.wipe import WipePlan


@pytest.mark.parametrize("stdout, expected", [
    ("docker compose\t2.29.1\ndocker-compose\t2.40.3\n", ("docker", "compose")),
    ("docker compose\tv2.5.0\n", ("docker", "compose")),
    ("docker-compose\t1.29.2\n", None),                    # Compose v1 does not read these files
    ("docker-compose\t1.29.2\ndocker-compose\t2.40.3\n", ("docker-compose",)),
    ("", None),
    ("evil\t2.0\n", None),                                  # only the two known commands
])
def test_compose_probe(stdout: str, expected: tuple[str, ...] | None) -> None:
    assert parse_compose_probe(stdout) == expected


def test_up_outcomes_change_only_for_created_recreated_started() -> None:
    before = {"a": {"ID": "1", "State": "running"}, "b": {"ID": "2", "State": "running"},
              "c": {"ID": "3", "State": "exited"}, "orphan": {"ID": "9", "State": "running"}}
    after = {"a": {"ID": "1", "State": "running"}, "b": {"ID": "20", "State": "running"},
             "c": {"ID": "3", "State": "running"}, "d": {"ID": "4", "State": "running"}}
    got = {svc: (status, msg) for svc, status, msg in up_outcomes(before, after, ["a", "b", "c", "d", "e"])}
    assert got == {
        "a": (Status.OK, "running, up to date"),
        "b": (Status.CHANGED, "recreated (configuration changed)"),
        "c": (Status.CHANGED, "started"),
        "d": (Status.CHANGED, "created"),
        "e": (Status.FAILED, "no container after `up`"),
        "orphan": (Status.CHANGED, "removed (orphan of the project)"),
    }
    same = up_outcomes(after, after, ["a", "b", "c", "d"])
    assert all(status is Status.OK for _, status, _ in same)


def test_check_outcomes_from_dry_run_actions() -> None:
    from tasks.stack.lifecycle import dry_run_actions

    before = {"a": {"Name": "p-a-1", "State": "running"}, "b": {"Name": "p-b-1", "State": "exited"},
              "old": {"Name": "p-old-1", "State": "running"}}
    text = ("DRY-RUN MODE -  Container p-b-1  Starting\nDRY-RUN MODE -  Container p-old-1  Removing\n"
            "DRY-RUN MODE -  Container p-c-1  Creating\n")
    actions = dry_run_actions(text, "p", dry_run_view(before))
    got = {svc: (status, msg) for svc, status, msg in check_outcomes(actions, before, ["a", "b", "c"])}
    assert got["a"] == (Status.OK, "running, up to date")
    assert got["b"] == (Status.CHANGED, "would be started (now exited)")
    assert got["c"] == (Status.CHANGED, "would be created")
    assert got["old"] == (Status.CHANGED, "would be removed (orphan of the project)")


def test_wipe_listing_uses_the_label_filter_only() -> None:
    cmd = wipe_list_command("my proj")
    assert cmd.count("--filter 'label=com.docker.compose.project=my proj'") == 3
    assert "prune" not in cmd and "--filter name" not in cmd


def test_wipe_listing_parse_keeps_only_exact_project_labels() -> None:
    out = (f"c1\tp-db-1\trunning\tp\tdb\nc2\tpp-db-1\trunning\tpp\tdb\nc3\tp-x-1\texited\tp\t\n"
           f"{WIPE_SEPARATOR}\nn1\tp_default\tp\nn2\tother\tp2\n"
           f"{WIPE_SEPARATOR}\np_data\tp\nvx\t\n")
    plan = parse_wipe_listing("p", out)
    assert [r.id for r in plan.containers] == ["c1", "c3"]
    assert plan.containers[0].detail == "service db, running" and plan.containers[1].detail == "service ?, exited"
    assert [r.name for r in plan.networks] == ["p_default"]
    assert [r.name for r in plan.volumes] == ["p_data"]
    assert parse_wipe_listing("p", f"{WIPE_SEPARATOR}\n{WIPE_SEPARATOR}\n").empty
    with pytest.raises(RemoteError):
        parse_wipe_listing("p", "docker: command not found\n")


def test_wipe_outcomes_removed_gone_failed_and_silent() -> None:
    plan = parse_wipe_listing("p", f"c1\ta\trunning\tp\ts\nc2\tb\texited\tp\ts\n{WIPE_SEPARATOR}\n"
                                   f"n1\tp_default\tp\n{WIPE_SEPARATOR}\nv1\tp\n")
    stdout = ("removed\tcontainer\tc1\n"
              "failed\tcontainer\tc2\tError response from daemon: No such container: c2\n"
              "failed\tvolume\tv1\tError response from daemon: volume is in use\n"
              "removed\tcontainer\tzzz\n")  # not planned: ignored
    got = {o.resource.id: (o.status, o.message) for o in parse_wipe_outcomes(plan, stdout)}
    assert got["c1"] == ("removed", "")
    assert got["c2"] == ("gone", "already removed")
    assert got["v1"][0] == "failed" and "in use" in got["v1"][1]
    assert got["n1"] == ("failed", "no answer from the host")
    assert "zzz" not in got


def test_wipe_remove_command_runs_locally_and_reports_each(tmp_path: Path) -> None:
    """The generated shell really produces the lines `parse_wipe_outcomes` reads."""
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor a; do last=$a; done\ncase "$last" in gone*) '
                    'echo "Error: No such volume: $last" >&2; exit 1;; esac\necho "$last"\n')
    fake.chmod(0o755)
    plan = WipePlan("p")
    plan.volumes += parse_wipe_listing("p", f"{WIPE_SEPARATOR}\n{WIPE_SEPARATOR}\n"
                                            "v'1; rm -rf /\tp\ngone-v\tp\n").volumes
    proc = subprocess.run(["/bin/sh", "-c", wipe_remove_command(plan)], capture_output=True, text=True,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    got = {o.resource.id: o.status for o in parse_wipe_outcomes(plan, proc.stdout)}
    assert got == {"v'1; rm -rf /": "removed", "gone-v": "gone"}


def test_remote_run_command_quotes_and_checks_for_mmstack(tmp_path: Path) -> None:
    argv = ["status", "--json", "a b", "$(echo x)", "it's", ""]
    cmd = remote_run_command("/srv/my stack", argv)
    assert cmd.endswith("exec mmstack " + " ".join(shlex.quote(a) for a in argv))
    assert "MMSTACK_DIR='/srv/my stack'; export MMSTACK_DIR" in cmd
    proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True,
                          env={"PATH": str(tmp_path)})
    assert proc.returncode == 127 and MISSING_MARK in proc.stderr
    home = remote_run_command("~/stack", ["status"])
    assert 'cd -- "$HOME"/stack' in home
    with pytest.raises(RemoteError):
        remote_run_command("/srv", [])


@pytest.mark.parametrize("stdout, expected", [
    ("TASK [x]\nok: [a]\nRECAP ok=3 changed=2 failed=0 skipped=0\n", 2),
    ("RECAP (check mode, nothing changed) ok=1 changed=4 failed=0 skipped=0\n", 4),
    ('{"check": false, "recap": {"changed": 0, "ok": 3}}\n', 0),
    ("no recap here\n", None),
    ("{not json", None),
])
def test_reported_changes(stdout: str, expected: int | None) -> None:
    assert reported_changes(stdout) == expected


def test_ssh_executor_scrubs_compose_variables_and_quotes() -> None:
    class Conn:
        def __init__(self) -> None:
            self.commands: list[tuple[str, dict]] = []

        def run(self, command: str, **kw: object) -> object:
            self.commands.append((command, kw))
            return type("R", (), {"exited": 0, "stdout": "[]", "stderr": ""})()

    conn = Conn()
    ex = SshExecutor(conn, "~/my stack", timeout=42)
    proc = ex(["docker", "compose", "-p", "p q", "ps"])
    command, kw = conn.commands[0]
    assert command.startswith('cd -- "$HOME"/\'my stack\' && env -u COMPOSE_FILE -u COMPOSE_PROFILES')
    assert command.endswith("docker compose -p 'p q' ps")
    assert kw["timeout"] == 42 and "env" not in kw and proc.returncode == 0 and proc.stdout == "[]"


def test_start_record_file_is_private() -> None:
    want = record_desired("/srv/stack", StartRecord("development", ("compose.yml",), ("development",), "p",
                                                    ("docker", "compose")))
    assert str(want.path) == "/srv/stack/.mmstack/last-start.json"
    assert want.mode == 0o600 and want.dir_mode == 0o700 and want.name == ".mmstack/last-start.json"
    assert StartRecord.from_dict(__import__("json").loads(want.content)).compose == ("docker", "compose")
