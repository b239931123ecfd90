"""Real SSH: files converge on several hosts, idempotently, with secrets kept off the wire's
command lines; unreachable hosts and unknown host keys are reported, not fatal."""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from tasks.engine.files import MASK, DesiredFile
from tasks.engine.report import Reporter, Status
from tasks.remote.inventory import Host, Inventory, load_inventory
from tasks.remote.parallel import run_connected, run_on_hosts
from tasks.remote.sync import sync_job
from tests.support.sshd import SshdFarm

pytestmark = pytest.mark.ssh

SECRET = "pw-" + secrets.token_hex(12)
SECRET2 = "tok-" + secrets.token_hex(12)


def files_for(host: Host, secret: str = SECRET, compose: str = "services: {}\n") -> list[DesiredFile]:
    root = Path(host.stack_dir)
    return [
        DesiredFile(root / "compose.yml", f"# {host.name}\n{compose}".encode(), 0o644),
        DesiredFile(root / f"compose.{host.environment}.yml", b"services:\n  vllm: {}\n", 0o644),
        DesiredFile(root / "env" / "secrets" / f"{host.environment}.env",
                    f"DB_PASSWORD={secret}\nAPI_TOKEN={SECRET2}\n".encode(), 0o600,
                    mask_all_values=True, secret_values=(secret, SECRET2), dir_mode=0o700),
    ]


def sync(inv: Inventory, *, check: bool = False, diff: bool = False, reporter: Reporter | None = None,
         pattern: str = "all", limit: str | None = None, **kw):
    rep = reporter or Reporter(out=io.StringIO(), err=io.StringIO(), check=check, show_diff=diff)
    files = kw.pop("files", files_for)
    outcome = run_connected(inv.select(pattern, limit), sync_job(files, check=check, diff=diff),
                            forks=inv.forks, reporter=rep)
    outcome.print_recap(rep)
    return outcome, rep


def local_path(farm: SshdFarm, host: Host, rel: str) -> Path:
    return Path(host.stack_dir) / rel  # the fake remote root is on this machine


def snapshot(farm: SshdFarm) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for h in farm.hosts:
        for p in sorted(h.remote_root.rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_mtime_ns, stat.S_IMODE(st.st_mode), p.read_bytes() if p.is_file() else b"")
    return out


def test_deploy_converges_then_reports_no_change(farm: SshdFarm, inventory: Inventory) -> None:
    first, _ = sync(inventory)
    assert first.exit_code == 0
    assert [h.host for h in first.hosts] == ["h1", "h2", "h3"]
    for outcome in first.hosts:
        counts = outcome.counts()
        assert counts["changed"] == 3 and counts["failed"] == 0 and counts["unreachable"] == 0

    for host in inventory.select("all"):
        for want in files_for(host):
            path = Path(want.path)
            assert path.read_bytes() == want.content
            assert stat.S_IMODE(path.stat().st_mode) == want.mode
        secret_dir = Path(host.stack_dir) / "env" / "secrets"
        assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
        assert not list(Path(host.stack_dir).rglob("*.tmp")), "temp files left behind"

    second, rep = sync(inventory)
    assert second.exit_code == 0
    for outcome in second.hosts:
        assert outcome.counts()["changed"] == 0, outcome.results
        assert outcome.counts()["ok"] == 3
    recap = rep.out.getvalue()
    for name in ("h1", "h2", "h3"):
        assert any(line.startswith(name) and "changed=0" in line for line in recap.splitlines())


def test_second_run_sends_only_the_fact_command(farm: SshdFarm, inventory: Inventory) -> None:
    sync(inventory)
    for h in farm.hosts:
        h.clear_log()
    sync(inventory)
    for h in farm.hosts:
        commands = h.commands()
        assert len(commands) == 1, commands
        assert "sha256sum" in commands[0] and "stat -L -c" in commands[0]


def test_mode_drift_is_fixed_without_uploading(farm: SshdFarm, inventory: Inventory) -> None:
    sync(inventory)
    h1 = inventory.hosts["h1"]
    secret_file = Path(h1.stack_dir) / "env" / "secrets" / "production.env"
    os.chmod(secret_file, 0o644)
    farm.hosts[0].clear_log()
    outcome, _ = sync(inventory)
    results = {r.item: r for r in outcome.by_host()["h1"].results}
    changed = results[str(secret_file)]
    assert changed.status is Status.CHANGED and "mode 0644 -> 0600" in changed.message
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    commands = farm.hosts[0].commands()
    assert not any(c == "internal-sftp" for c in commands), "mode drift must not upload content"
    assert outcome.by_host()["h2"].counts()["changed"] == 0


def test_check_changes_nothing_remotely(farm: SshdFarm, inventory: Inventory) -> None:
    before = snapshot(farm)
    outcome, rep = sync(inventory, check=True)
    assert outcome.exit_code == 0
    assert all(h.counts()["changed"] == 3 for h in outcome.hosts)
    assert snapshot(farm) == before
    assert "check mode" in rep.out.getvalue()

    sync(inventory)
    h2 = inventory.hosts["h2"]
    compose = Path(h2.stack_dir) / "compose.yml"
    compose.write_text("edited on the host\n")
    before = snapshot(farm)
    outcome, _ = sync(inventory, check=True)
    assert snapshot(farm) == before
    assert outcome.by_host()["h2"].counts()["changed"] == 1
    assert outcome.by_host()["h1"].counts()["changed"] == 0
    assert compose.read_text() == "edited on the host\n"


def test_unreachable_host_does_not_stop_the_others(farm: SshdFarm, inventory: Inventory, stop_host) -> None:
    stop_host("h2")
    outcome, rep = sync(inventory)
    by = outcome.by_host()
    assert by["h2"].status is Status.UNREACHABLE
    assert "cannot connect" in by["h2"].results[0].message
    assert by["h1"].status is Status.CHANGED and by["h3"].status is Status.CHANGED
    assert outcome.exit_code != 0
    doc = json.loads(json.dumps(outcome.to_dict()))
    assert doc["failed"] is True
    assert doc["recap"]["h2"]["unreachable"] == 1 and doc["recap"]["h1"]["changed"] == 3
    assert "h2" in rep.out.getvalue() and "unreachable=1" in rep.out.getvalue()
    assert not Path(inventory.hosts["h2"].stack_dir).exists()


def test_limit_restricts_hosts(farm: SshdFarm, inventory: Inventory) -> None:
    outcome, _ = sync(inventory, pattern="gpu_servers", limit="h1,h3")
    assert [h.host for h in outcome.hosts] == ["h1", "h3"]
    assert not Path(inventory.hosts["h2"].stack_dir).exists()


def test_command_failure_is_failed_not_unreachable(farm: SshdFarm, inventory: Inventory) -> None:
    def job(conn, host, hr):
        if host.name == "h3":
            conn.run("echo broken >&2; exit 3", hide=True)
        hr.ok("ran")

    outcome = run_connected(inventory.select("all"), job, forks=3)
    by = outcome.by_host()
    assert by["h3"].status is Status.FAILED and "exit 3" in by["h3"].results[0].message
    assert by["h1"].status is Status.OK and by["h2"].status is Status.OK
    assert outcome.exit_code == 2


def test_no_secret_in_any_remote_command_or_output(farm: SshdFarm, inventory: Inventory) -> None:
    for h in farm.hosts:
        h.clear_log()
    out, err = io.StringIO(), io.StringIO()
    rep = Reporter(out=out, err=err, show_diff=True)
    sync(inventory, diff=True, reporter=rep)
    # drift the secret on one host so that --diff has to fetch and show it
    secret_file = Path(inventory.hosts["h1"].stack_dir) / "env" / "secrets" / "production.env"
    secret_file.write_text(f"DB_PASSWORD=old-{SECRET}\nAPI_TOKEN={SECRET2}\n")
    json_rep = Reporter(out=out, err=err, json_mode=True, show_diff=True)
    outcome, _ = sync(inventory, diff=True, reporter=json_rep)
    json_rep.recap({"hosts": outcome.to_dict()})
    changed = [r for r in outcome.by_host()["h1"].results if r.status is Status.CHANGED]
    diff = changed[0].diff or ""
    assert len(changed) == 1 and (MASK in diff or "masked" in diff)

    text = out.getvalue() + err.getvalue()
    assert SECRET not in text and SECRET2 not in text
    assert str(secret_file) in text
    for h in farm.hosts:
        records = h.records()
        assert records, f"{h.name} logged no command"
        assert any(cmd == "internal-sftp" for cmd, _ in records), "files must travel over SFTP"
        for cmd, env in records:
            assert SECRET not in cmd and SECRET2 not in cmd, cmd
            assert SECRET not in env and SECRET2 not in env
    assert secret_file.read_text() == f"DB_PASSWORD={SECRET}\nAPI_TOKEN={SECRET2}\n"


def test_unknown_host_key_is_refused_with_the_accepting_command(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(farm.hosts[0].known_hosts_line + "\n")  # only h1 is known
    text = inventory_path.read_text().replace(str(farm.known_hosts), str(known))
    inventory_path.write_text(text)
    inv = load_inventory(tmp_path, inventory_path)

    outcome, _ = sync(inv)
    by = outcome.by_host()
    assert by["h1"].status is Status.CHANGED
    h2 = farm.hosts[1]
    message = by["h2"].results[0].message
    assert by["h2"].status is Status.UNREACHABLE and "is unknown" in message
    fix = f"ssh-keyscan -p {h2.port} {h2.address} >> {known}"
    assert fix in message
    assert not Path(inv.hosts["h2"].stack_dir).exists()

    # the printed command really is the fix
    subprocess.run(fix, shell=True, check=True, capture_output=True, timeout=30)
    outcome, _ = sync(inv, limit="h2")
    assert outcome.by_host()["h2"].status is Status.CHANGED


def test_trust_host_key_accepts_unknown_key_with_a_warning(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path) -> None:
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    text = inventory_path.read_text().replace(str(farm.known_hosts), str(known))
    inventory_path.write_text(text + "\n")
    inv = load_inventory(tmp_path, inventory_path)
    trusted = {n: h for n, h in inv.hosts.items()}
    import dataclasses

    trusted["h1"] = dataclasses.replace(inv.hosts["h1"], trust_host_key=True)
    rep = Reporter(out=io.StringIO(), err=io.StringIO())
    outcome = run_connected([trusted["h1"], trusted["h2"]], sync_job(files_for), reporter=rep)
    assert outcome.by_host()["h1"].status is Status.CHANGED
    assert outcome.by_host()["h2"].status is Status.UNREACHABLE
    assert "trusting unknown host key" in rep.err.getvalue()
    assert known.read_text() == "", "a trusted key is never written to known_hosts"


def test_changed_host_key_is_refused(farm: SshdFarm, inventory_path: Path, tmp_path: Path) -> None:
    other = farm.hosts[1].known_hosts_line.split(" ", 1)[1]
    h1 = farm.hosts[0]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{h1.address}]:{h1.port} {other}\n")
    inventory_path.write_text(inventory_path.read_text().replace(str(farm.known_hosts), str(known)))
    inv = load_inventory(tmp_path, inventory_path)
    import dataclasses

    host = dataclasses.replace(inv.hosts["h1"], trust_host_key=True)  # never overrides a mismatch
    outcome = run_connected([host], sync_job(files_for))
    result = outcome.hosts[0].results[0]
    assert result.status is Status.UNREACHABLE and "CHANGED" in result.message


def test_wrong_key_is_unreachable(farm: SshdFarm, inventory: Inventory, tmp_path: Path) -> None:
    import dataclasses

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host = dataclasses.replace(inventory.hosts["h1"], key_file=str(key))
    outcome = run_connected([host], sync_job(files_for))
    result = outcome.hosts[0].results[0]
    assert result.status is Status.UNREACHABLE and "authentication failed" in result.message


def test_gpu_facts_over_ssh(farm: SshdFarm, inventory: Inventory, gpu_fixtures: Path) -> None:
    farm.hosts[2].set_gpu_profile("8xquadro")
    from tasks.gpu.smi import gather_via_smi

    seen: dict[str, object] = {}

    def job(conn, host, hr):
        seen[host.name] = gather_via_smi(conn)
        hr.ok("gpu facts")

    outcome = run_connected(inventory.select("all"), job, forks=3)
    assert outcome.exit_code == 0
    h1, h3 = seen["h1"], seen["h3"]
    assert [g.name for g in h1.gpus] == ["NVIDIA GeForce RTX 3090"] * 2
    assert h1.nvlink_peers(0) == {1: 4}
    assert len(h3.gpus) == 8 and all("Quadro RTX 6000" in g.name for g in h3.gpus)
    assert h3.nvlink_pairs() == []
    assert all("nvidia-smi" in " ".join(h.commands()) for h in farm.hosts)


def test_parallel_runner_survives_exceptions_without_ssh() -> None:
    hosts = [Host(name=f"x{i}", address="127.0.0.1") for i in range(4)]

    def job(host, hr):
        if host.name == "x2":
            raise RuntimeError("boom")
        hr.changed("thing")

    outcome = run_on_hosts(hosts, job, forks=2)
    assert [h.host for h in outcome.hosts] == ["x0", "x1", "x2", "x3"]
    assert outcome.by_host()["x2"].status is Status.FAILED
    assert outcome.by_host()["x3"].status is Status.CHANGED
    assert outcome.exit_code == 2
    assert all(r.host == h.host for h in outcome.hosts for r in h.results)


def test_a_file_edited_by_hand_on_a_host_is_kept_before_it_is_replaced(farm: SshdFarm, inventory: Inventory) -> None:
    # As locally: a generated file whose body no longer matches its own checksum was edited
    # by hand; the host's copy goes to the host's .mmstack/backups (0700) before the rewrite.
    from tasks.engine.files import with_checksum_header

    def generated(host: Host) -> list[DesiredFile]:
        body = with_checksum_header(["generated by mmstack"], b"services:\n  api: {}\n")
        return [DesiredFile(Path(host.stack_dir) / "compose.yml", body, 0o644)]

    outcome, _ = sync(inventory, pattern="h1", files=generated)
    h1 = next(h for h in inventory.select("h1"))
    target = Path(h1.stack_dir) / "compose.yml"
    edited = target.read_bytes() + b"  debug: {}\n"
    target.write_bytes(edited)

    def row_of(outcome):  # type: ignore[no-untyped-def]
        return next(r for r in outcome.by_host()["h1"].results if r.item.endswith("compose.yml"))

    checked, _ = sync(inventory, pattern="h1", files=generated, check=True)
    row = row_of(checked)
    assert "edited by hand on the host" in row.message and target.read_bytes() == edited

    outcome, _ = sync(inventory, pattern="h1", files=generated)
    row = row_of(outcome)
    assert row.status is Status.CHANGED and "edited by hand on the host" in row.message
    backups = Path(h1.stack_dir) / ".mmstack" / "backups"
    kept = list(backups.glob("compose.yml.*.hand-edited"))
    assert len(kept) == 1 and kept[0].read_bytes() == edited and str(kept[0]) in row.message
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert target.read_bytes() == generated(h1)[0].content

    # An ordinary change (the generated content moved on) is no hand edit: nothing kept.
    target.write_bytes(with_checksum_header(["generated by mmstack"], b"services: {}\n"))
    outcome, _ = sync(inventory, pattern="h1", files=generated)
    row = row_of(outcome)
    assert row.message == "content differs" and len(list(backups.glob("*.hand-edited"))) == 1
