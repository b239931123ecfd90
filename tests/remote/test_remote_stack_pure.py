"""The remote stack tasks' parts that need no host: Compose detection, the up/check rules,
remote-run's command and recap parsing, the site executor's command line (the same here and on
hosts). (Wipe's listing and outcomes, one implementation for this host and hosts:
tests/lifecycle/test_data_facts.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tasks.engine.errors import RemoteError
from tasks.engine.report import Status
from tasks.remote.taskrun import MISSING_MARK, remote_run_command, reported_changes
from tasks.stack.site import Site, SiteExecutor
from tasks.stack.state import record_desired
from tasks.stack.composecmd import parse_compose_probe
from tasks.stack.outcomes import check_outcomes, up_outcomes
from tasks.stack.state import StartRecord


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
    from tasks.stack.start import dry_run_actions

    # Containers as the engine lists them (`facts.parse_containers`: ``Names`` a list), here and on hosts.
    before = {"a": {"Names": ["p-a-1"], "State": "running"}, "b": {"Names": ["p-b-1"], "State": "exited"},
              "old": {"Names": ["p-old-1"], "State": "running"}}
    text = ("DRY-RUN MODE -  Container p-b-1  Starting\nDRY-RUN MODE -  Container p-old-1  Removing\n"
            "DRY-RUN MODE -  Container p-c-1  Creating\n")
    actions = dry_run_actions(text, "p", before)
    got = {svc: (status, msg) for svc, status, msg in check_outcomes(actions, before, ["a", "b", "c"])}
    assert got["a"] == (Status.OK, "running, up to date")
    assert got["b"] == (Status.CHANGED, "would be started (now exited)")
    assert got["c"] == (Status.CHANGED, "would be created")
    assert got["old"] == (Status.CHANGED, "would be removed (orphan of the project)")


ECHO_ARGV = """#!/bin/sh
printf 'cwd=%s\\n' "$(pwd)"
printf 'dir=%s\\n' "$MMSTACK_DIR"
printf 'compose_file=%s\\n' "${COMPOSE_FILE-unset}"
for a; do printf 'arg=[%s]\\n' "$a"; done
"""


def _echo_tool(bin_dir: Path, name: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    tool.write_text(ECHO_ARGV)
    tool.chmod(0o755)


def test_remote_run_command_passes_every_argument_through_unchanged(tmp_path: Path) -> None:
    # Run by a real shell, as sshd would: each argument arrives as it was given (spaces, $( ),
    # quotes, empty), in the stack directory, with MMSTACK_DIR set.
    stack = tmp_path / "my stack"
    stack.mkdir()
    argv = ["status", "--json", "a b", "$(echo x)", "it's", ""]
    _echo_tool(tmp_path / "bin", "mmstack")
    proc = subprocess.run(["/bin/sh", "-c", remote_run_command(str(stack), argv)], capture_output=True,
                          text=True, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"cwd={stack}" and lines[1] == f"dir={stack}"
    assert [l[5:-1] for l in lines if l.startswith("arg=")] == argv
    missing = subprocess.run(["/bin/sh", "-c", remote_run_command(str(stack), ["status"])],
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode == 127 and MISSING_MARK in missing.stderr
    home = subprocess.run(["/bin/sh", "-c", remote_run_command("~/my stack", ["status"])], capture_output=True,
                          text=True, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert home.stdout.splitlines()[0] == f"cwd={stack}"
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


def test_site_executor_runs_compose_in_the_stack_without_compose_variables(tmp_path: Path) -> None:
    # The command the executor hands to the site's context, run by a real shell: in the stack
    # directory (a host's `~/...` resolved against its HOME), with no COMPOSE_* variable left to
    # override the recorded set, every argument intact.
    from types import SimpleNamespace

    from invoke import Config, Context

    (tmp_path / "my stack").mkdir()
    _echo_tool(tmp_path / "bin", "docker")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "COMPOSE_FILE": "evil.yml"}
    c = Context(Config(overrides={"run": {"env": env, "replace_env": True}}))
    ex = SiteExecutor(Site.on(c, SimpleNamespace(stack_dir="~/my stack", name="h1")), timeout=42)
    proc = ex(["docker", "compose", "-p", "p q", "ps"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"cwd={tmp_path / 'my stack'}" and "compose_file=unset" in lines
    assert [l[5:-1] for l in lines if l.startswith("arg=")] == ["compose", "-p", "p q", "ps"]


def test_start_record_file_is_private() -> None:
    want = record_desired(Site(None, "/srv/stack", "h1", True), StartRecord("development", ("compose.yml",), ("development",), "p",
                                                    ("docker", "compose")))
    assert str(want.path) == "/srv/stack/.mmstack/last-start.json"
    assert want.mode == 0o600 and want.dir_mode == 0o700 and want.name == ".mmstack/last-start.json"
    assert StartRecord.from_dict(__import__("json").loads(want.content)).compose == ("docker", "compose")
