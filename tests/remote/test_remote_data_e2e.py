"""backup, wipe and restore on a host, end to end: real SSH (a loopback sshd) and the real engine.

The host h1 reaches this machine's dockerd, so the project's resources are made directly on the
engine (a labelled data volume, a running container of the project using it), as a deploy would
leave them; the data steps then run through `--hosts h1`, the same code as on this host:

* `backup --hosts h1` stops the running container, archives the volume into h1's
  ``<stack_dir>/backups/<project>-<time>/`` with a manifest whose checksums match, and starts it
  again;
* `wipe --hosts h1 --yes --backup` backs the volume up again, then removes the project's
  resources by label, and a volume *named* like the project without its label, and another
  project's volume, survive;
* `restore --hosts h1 latest --yes` puts the data back from the newest backup (refused while
  the stack runs);
* `wipe --hosts h1 --yes --all` also deletes what deploy uploaded and nothing else there.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from invoke import Config, Context, Exit

from tasks.cli.stack import backup, restore, wipe
from tests.lifecycle.conftest import remove_project
from tests.lifecycle.stackconfig import write_test_settings
from tests.support.sshd import SshdFarm
from tests.support.stackcopy import make_stack_copy

pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]
PROJECT_LABEL = "com.docker.compose.project"


def run_json(capsys: pytest.CaptureFixture, func: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    code = 0
    try:
        func(*args, json=True, **kw)
    except Exit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out)
    except ValueError:
        raise AssertionError(f"not JSON (exit {code}):\n{captured.out}\n{captured.err}") from None


def results(doc: dict[str, Any], host: str = "h1") -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in doc["hosts"]["hosts"][host]["results"]}


def read_volume(client: Any, image: str, volume: str) -> str:
    out = client.containers.run(image, entrypoint=["sh", "-c", "cat /v/notes.txt"], remove=True,
                                volumes={volume: {"bind": "/v", "mode": "ro"}})
    return out.decode()


def test_backup_wipe_restore_and_wipe_all_on_a_host(
        farm: SshdFarm, inventory_path: Path, tmp_path: Path, docker_client: Any,
        test_images: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    token = uuid.uuid4().hex[:8]
    project, decoy = f"mmsdata{token}", f"mmsdatadecoy{token}"
    stack = make_stack_copy(tmp_path / "stack")
    write_test_settings(stack, project, 0, test_images)
    remote = farm.hosts[0].remote_root / f"srv-{tmp_path.name}" / "stack"
    image = test_images["standin"]
    volume, unlabelled = f"{project}_postgres-data", f"{project}_data"
    try:
        docker_client.volumes.create(volume, labels={PROJECT_LABEL: project,
                                                     "com.docker.compose.volume": "postgres-data"})
        docker_client.volumes.create(unlabelled)
        docker_client.volumes.create(f"{decoy}_data", labels={PROJECT_LABEL: decoy})
        docker_client.containers.run(image, entrypoint=["sh", "-c", "echo kept-on-h1 > /v/notes.txt"],
                                     remove=True, volumes={volume: {"bind": "/v", "mode": "rw"}})
        app = docker_client.containers.run(
            image, entrypoint=["sleep", "600"], detach=True, name=f"{project}-postgres-1",
            labels={PROJECT_LABEL: project, "com.docker.compose.service": "postgres"},
            volumes={volume: {"bind": "/v", "mode": "rw"}})
        c = Context(Config(overrides={"mmstack": {"stack_dir": str(stack)}}))
        inv = str(inventory_path)

        # backup --hosts: stopped for the copy, archived on the host, started again.
        code, doc = run_json(capsys, backup, c, hosts="h1", inventory=inv)
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        items = results(doc)
        assert items[f"{project}-postgres-1"]["message"] == "started again"
        (saved,) = sorted((remote / "backups").iterdir())
        assert doc["backup"] == {"h1": str(saved)}
        manifest = json.loads((saved / "manifest.json").read_text())
        (entry,) = manifest["volumes"]
        archive = saved / entry["archive"]
        assert entry["volume"] == volume and entry["compose_name"] == "postgres-data"
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == entry["sha256"]
        assert archive.stat().st_mode & 0o777 == 0o600 and saved.stat().st_mode & 0o777 == 0o700
        app.reload()
        assert app.status == "running"

        # restore over the running stack is refused, and changes nothing.
        code, doc = run_json(capsys, restore, c, "latest", hosts="h1", inventory=inv, yes=True)
        assert code == 2 and "refusing to restore over a running stack" in json.dumps(doc)

        # wipe --hosts --backup: backed up first, then the project's resources go, by label;
        # the lookalikes stay.
        code, doc = run_json(capsys, wipe, c, hosts="h1", inventory=inv, yes=True, backup=True)
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        assert results(doc)[f"volume {volume}"]["status"] == "changed"
        assert len(list((remote / "backups").iterdir())) == 2 and doc["backup"]["h1"] != str(saved)
        names = {v.name for v in docker_client.volumes.list()}
        assert volume not in names and unlabelled in names and f"{decoy}_data" in names

        # restore --hosts latest: the volume is back with its data and its labels.
        code, doc = run_json(capsys, restore, c, "latest", hosts="h1", inventory=inv, yes=True)
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        assert results(doc)[f"volume {volume}"]["message"] == "created and filled"
        assert docker_client.volumes.get(volume).attrs["Labels"][PROJECT_LABEL] == project
        assert read_volume(docker_client, image, volume) == "kept-on-h1\n"

        # wipe --hosts --all: what deploy uploaded goes too; anything else in stack_dir stays.
        (remote / "env" / "development").mkdir(parents=True)
        (remote / "env" / "development" / "postgres.env").write_text("POSTGRES_PASSWORD=x\n")
        (remote / "compose.yml").write_text("services: {}\n")
        (remote / "keep-me.txt").write_text("not ours\n")
        code, doc = run_json(capsys, wipe, c, hosts="h1", inventory=inv, yes=True, all=True)
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        items = results(doc)
        assert items["compose.yml"]["status"] == "changed" and items["env"]["status"] == "changed"
        assert not (remote / "compose.yml").exists() and not (remote / "env").exists()
        assert (remote / "keep-me.txt").exists() and (saved / "manifest.json").exists()
        assert unlabelled in {v.name for v in docker_client.volumes.list()}
        flt = {"label": f"{PROJECT_LABEL}={project}"}
        assert docker_client.volumes.list(filters=flt) == []
    finally:
        remove_project(docker_client, project)
        remove_project(docker_client, decoy)
        for name in (unlabelled,):
            try:
                docker_client.volumes.get(name).remove(force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
