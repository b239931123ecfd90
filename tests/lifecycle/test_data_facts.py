"""The data steps' facts (wipe, backup, restore, re-key) without an engine: the pure parsers
read outputs captured from the real docker CLI (fixtures/, written by fixtures/capture_data.py), and
the steps run over a `Site` whose Context is Invoke's `MockContext` answering with them.

The real engine end to end is test_lifecycle_e2e.py (here) and
tests/remote/test_remote_data_e2e.py (over SSH)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invoke import MockContext, Result

from tasks.engine.errors import DockerError
from tasks.engine.report import Reporter, Status
from tasks.stack import backup, resources, wipe
from tasks.stack.site import Site

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def mock_site(*outputs: str | Result, remote: bool = False) -> Site:
    """A site whose commands answer ``outputs`` in order (whatever the commands are)."""
    answers = [o if isinstance(o, Result) else Result(stdout=o) for o in outputs]
    return Site(MockContext(run=answers), "/srv/stack", "h1" if remote else "localhost", remote)


def reporter() -> Reporter:
    return Reporter(json_mode=True)


def by_item(rep: Reporter) -> dict[str, tuple[Status, str]]:
    return {r.item: (r.status, r.message) for r in rep.results}


# -- listing --------------------------------------------------------------------------------

def test_listing_of_an_empty_project_plans_nothing() -> None:
    doc = fixture("wipe/listing-empty.json")
    assert wipe.WipePlan.from_listing(doc["project"], resources.parse_listing(doc["project"], doc["stdout"])).empty


def test_listing_of_a_stack_plans_its_labelled_resources_only() -> None:
    doc = fixture("wipe/listing-stack.json")
    project = doc["project"]
    found = resources.parse_listing(project, doc["stdout"])
    states = {c.name: (c.state, c.service) for c in found.containers}
    assert states == {f"{project}-postgres-1": ("running", "postgres"), f"{project}-init-1": ("exited", "init"),
                      f"{project}-redis-1": ("created", "redis"), f"{project}-orphan-1": ("created", "")}
    assert [n.name for n in found.networks] == [f"{project}_default"]
    # The decoy project's volume and the unlabelled volume named like the project are not ours.
    assert [(v.name, v.compose_name) for v in found.volumes] == [
        (f"{project}_postgres-data", "postgres-data"), (f"{project}_redis-data", "redis-data")]
    plan = wipe.WipePlan.from_listing(project, found)
    assert len(plan.resources) == 7
    assert "service ?, created" in plan.describe()  # the orphan has no service label


def test_a_line_of_another_project_is_never_planned() -> None:
    """The engine filters by label; each line's label is checked again (a lookalike project)."""
    doc = fixture("wipe/listing-stack.json")
    project = doc["project"]
    tampered = doc["stdout"].replace(f"\t{project}\t", f"\t{project}x\t", 1)
    kept = resources.parse_listing(project, tampered)
    assert len(kept.containers) + len(kept.networks) + len(kept.volumes) == 6
    with pytest.raises(DockerError):
        resources.parse_listing(project, "docker: command not found\n")


def test_containers_and_volumes_of_one_service() -> None:
    doc = fixture("backup/containers-postgres.json")
    (pg,) = resources.parse_containers(doc["project"], doc["stdout"])
    assert pg.service == "postgres" and pg.running and pg.image
    doc = fixture("backup/volumes-postgres-data.json")
    assert [v.compose_name for v in resources.parse_volumes(doc["project"], doc["stdout"])] == ["postgres-data"]


# -- removal --------------------------------------------------------------------------------

def test_outcomes_of_a_removal_with_a_volume_in_use() -> None:
    doc = fixture("wipe/outcomes-mixed.json")
    project = doc["project"]
    plan = wipe.WipePlan.from_listing(project, resources.parse_listing(project, doc["listing"]))
    got = {o.resource.name: (o.status, o.message) for o in wipe.parse_outcomes(plan, doc["stdout"])}
    assert len(got) == len(plan.resources)
    (in_use,) = doc["in_use"]
    assert got[in_use][0] == "failed" and "in use" in got[in_use][1]
    assert all(status == "removed" for name, (status, _) in got.items() if name != in_use)


def test_outcomes_of_resources_already_gone() -> None:
    doc = fixture("wipe/outcomes-gone.json")
    ghosts = doc["ghosts"]
    plan = wipe.WipePlan(doc["project"], [wipe.Resource("container", "c", ghosts["container"])],
                         [wipe.Resource("network", "n", ghosts["network"])],
                         [wipe.Resource("volume", ghosts["volume"], ghosts["volume"])])
    got = [(o.resource.kind, o.status) for o in wipe.parse_outcomes(plan, doc["stdout"])]
    # `rm -f` of a missing container succeeds; a missing network or volume is "already removed".
    assert got == [("container", "removed"), ("network", "gone"), ("volume", "gone")]
    silent = wipe.parse_outcomes(plan, "")
    assert {o.status for o in silent} == {"failed"}


def test_removal_command_quotes_hostile_names_and_answers_for_each(tmp_path: Path) -> None:
    """The removal shell really produces the lines the parser reads, whatever the names hold."""
    canary = tmp_path / "pwned"
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor a; do last=$a; done\ncase "$last" in gone*) '
                    'echo "Error: No such volume: $last" >&2; exit 1;; esac\necho "$last"\n')
    fake.chmod(0o755)
    hostile = f"v'1; touch {canary}"
    plan = wipe.WipePlan("p", [wipe.Resource("container", "c", "c $(touch x)")], [],
                         [wipe.Resource("volume", hostile, hostile), wipe.Resource("volume", "gone-v", "gone-v")])
    proc = subprocess.run(["/bin/sh", "-c", wipe.remove_command(plan)], capture_output=True, text=True,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, cwd=tmp_path)
    got = {o.resource.id: o.status for o in wipe.parse_outcomes(plan, proc.stdout)}
    assert got == {"c $(touch x)": "removed", hostile: "removed", "gone-v": "gone"}
    assert not canary.exists() and not (tmp_path / "x").exists()


def test_wipe_at_a_site_reports_each_resource_and_file() -> None:
    """gather + apply over a MockContext answering with the real outputs."""
    doc = fixture("wipe/outcomes-mixed.json")
    stack = SimpleNamespace(project=doc["project"], environment_names=["development"])
    site = mock_site(doc["listing"], "/srv/stack/compose.yml\n/srv/stack/env\n",
                     doc["stdout"], "", "", "", remote=True)
    found = wipe.gather(site, stack, all_files=True)
    assert [Path(p).name for p in found.files] == ["compose.yml", "env"]
    rep = reporter()
    failed = wipe.apply(site, rep, found, stop_timeout=1)
    items = by_item(rep)
    assert failed == [f"volume {doc['in_use'][0]}"]
    assert items["compose.yml"] == (Status.CHANGED, "deleted") and items["env"] == (Status.CHANGED, "deleted")
    assert items[f"volume {doc['project']}_postgres-data"] == (Status.CHANGED, "removed")


def test_only_this_host_loses_its_secret_store() -> None:
    stack = SimpleNamespace(environment_names=["development", "production"])
    here, there = wipe.generated_names(stack, local=True), wipe.generated_names(stack, local=False)
    assert set(here) - set(there) == {".mmstack/secrets"}
    assert ".mmstack/last-start.json" in there and "env" in there


# -- backup and restore ----------------------------------------------------------------------

def test_volume_labels_from_inspect() -> None:
    doc = fixture("backup/volume-inspect.json")
    labels = resources.parse_volume_inspect(doc["stdout"])
    pg = labels[f"{doc['project']}_postgres-data"]
    assert pg["com.docker.compose.volume"] == "postgres-data" and pg["org.mmstack.volume"] == "postgres-data"


def test_helper_image_is_a_hint_that_exists_then_the_smallest_project_image() -> None:
    doc = fixture("backup/image-sizes.json")
    sizes = backup.parse_image_sizes(doc["stdout"])
    assert set(sizes) == set(doc["present"]) and all(n > 0 for n in sizes.values())
    present = doc["present"][0]
    both = {**sizes, "big:1": 10 ** 10, "small:1": 1}
    assert backup.image_candidates(doc["absent"] + [present], both, ["big:1", "small:1"]) == [present, "small:1", "big:1"]
    assert backup.image_candidates([None], both, ["big:1", "missing:1"]) == ["big:1"]


def test_checksums_and_archive_facts() -> None:
    doc = fixture("backup/checksums.json")
    sums = backup.parse_checksums(doc["stdout"])
    assert sums == {name: hashlib.sha256(text.encode()).hexdigest() for name, text in doc["files"].items()}
    doc = fixture("backup/archive-facts.json")
    assert backup.parse_archive_facts(doc["stdout"]) == (len(doc["content"]), hashlib.sha256(doc["content"].encode()).hexdigest())


def _manifest(archives: dict[str, str]) -> str:
    return json.dumps({"format": 1, "project": "p", "image": "img", "created": "2026-12-02T00:00:00Z",
                       "volumes": [{"volume": f"p_{n}", "compose_name": n, "archive": f"{n}.tar.gz", "labels": {},
                                    "size": 1, "sha256": digest} for n, digest in archives.items()]})


def test_restore_refuses_a_damaged_or_incomplete_backup() -> None:
    doc = fixture("backup/checksums.json")
    sums = backup.parse_checksums(doc["stdout"])
    good = backup.Backup("/b", json.loads(_manifest({"a": sums["a.tar.gz"]})))
    backup.verify_backup(mock_site(doc["stdout"]), good)
    damaged = backup.Backup("/b", json.loads(_manifest({"a": "0" * 64})))
    with pytest.raises(DockerError, match="does not match"):
        backup.verify_backup(mock_site(doc["stdout"]), damaged)
    missing = backup.Backup("/b", json.loads(_manifest({"gone": "0" * 64})))
    with pytest.raises(DockerError, match="incomplete"):
        backup.verify_backup(mock_site(doc["stdout"]), missing)
    with pytest.raises(DockerError, match="unreadable"):
        backup.parse_manifest('{"volumes": [{"archive": 1}]}', "/b/manifest.json")


def test_latest_is_the_newest_backup_of_the_project() -> None:
    listing = "/b/p-20261201T000000Z\n/b/p-20261202T000000Z\n/b/p-20261202T000000Z-2\n/b/pq-20301231T000000Z\n"
    assert backup.newest_backup("p", listing) == "/b/p-20261202T000000Z-2"
    assert backup.newest_backup("other", listing) is None


def test_restore_refuses_over_a_running_stack() -> None:
    from tasks.stack.maintenance import _refuse_running

    doc = fixture("backup/containers-postgres.json")
    with pytest.raises(DockerError, match="running stack on h1"):
        _refuse_running(mock_site(doc["stdout"], remote=True), doc["project"])


# -- re-key ------------------------------------------------------------------------------------

RUNNING = fixture("backup/containers-postgres.json")


def rekey_run(root: Path, *answers: str | Result, started: str | None = "development",
              check: bool = False) -> Any:
    """A run at ``root`` (its start record says ``started``) whose commands answer ``answers``."""
    from tasks.stack.state import StartRecord

    if started is not None:
        (root / ".mmstack").mkdir(parents=True, exist_ok=True)
        record = StartRecord(env=started, files=("compose.yml",), profiles=(), project=RUNNING["project"])
        (root / ".mmstack" / "last-start.json").write_text(record.to_json())
    ctx = MockContext(run=[a if isinstance(a, Result) else Result(stdout=a) for a in answers])
    return SimpleNamespace(c=ctx, stack=root, state_dir=root / ".mmstack", reporter=reporter(),
                           check=check, json=True)


def rekey_request(run: Any, new: str = "n3w'pa$$", old: str = "old") -> Any:
    return SimpleNamespace(stack=SimpleNamespace(project=RUNNING["project"]), run=run, env="development",
                           name="postgres_password", new=new, old=old)


@pytest.fixture
def db_user(monkeypatch: pytest.MonkeyPatch) -> str:
    import tasks.secrets.api as api

    monkeypatch.setattr(api, "load_environment_secrets", lambda *a: {"postgres_user": "app"})
    return "app"


def psql_calls(run: Any) -> list[tuple[str, str]]:
    """(command, standard input) of every `docker exec` the run made."""
    return [(call.args[0], call.kwargs["in_stream"].read()) for call in run.c.run.call_args_list
            if call.args[0].startswith("docker exec")]


def test_rekey_sends_the_new_password_on_stdin_only(tmp_path: Path, db_user: str) -> None:
    from tasks.stack import rekey

    run = rekey_run(tmp_path, RUNNING["stdout"], RUNNING["stdout"], "")
    rekey.PostgresPassword([])(rekey_request(run))
    ((command, stdin),) = psql_calls(run)
    assert "n3w" not in command and "old" not in command
    assert "ALTER ROLE \"app\" PASSWORD 'n3w''pa$$'" in stdin
    assert by_item(run.reporter)["postgres (development)"][0] is Status.CHANGED


def test_rekey_refuses_when_the_data_volume_exists_but_postgres_is_stopped(tmp_path: Path) -> None:
    from tasks.stack import rekey

    doc = fixture("backup/volumes-postgres-data.json")
    run = rekey_run(tmp_path, "", doc["stdout"])
    with pytest.raises(DockerError, match="postgres is not running"):
        rekey.PostgresPassword([])(rekey_request(run))


def test_rekey_leaves_a_database_of_another_environment_alone(tmp_path: Path) -> None:
    from tasks.stack import rekey

    run = rekey_run(tmp_path, started="production")   # no command may run at all
    rekey.PostgresPassword([])(rekey_request(run))
    assert by_item(run.reporter)["postgres (development)"] == (
        Status.OK, "runs environment production, whose secrets are its own")
    assert not run.c.run.called


def test_rekey_in_check_mode_only_looks(tmp_path: Path) -> None:
    from tasks.stack import rekey

    run = rekey_run(tmp_path, RUNNING["stdout"], check=True)
    rekey.PostgresPassword([])(rekey_request(run))
    assert by_item(run.reporter)["postgres (development)"] == (
        Status.CHANGED, "would change the password in the running database")
    assert psql_calls(run) == []


def test_a_failed_rekey_at_one_site_changes_the_others_back(tmp_path: Path, db_user: str) -> None:
    # Two sites run the environment; the second one's psql fails, so the first, already
    # changed, gets its old password back, and the hook fails (rotation then stores nothing).
    from tasks.stack import rekey
    from tasks.stack.targets import Here

    first = rekey_run(tmp_path / "a", RUNNING["stdout"], RUNNING["stdout"], "", RUNNING["stdout"], "")
    second = rekey_run(tmp_path / "b", RUNNING["stdout"], RUNNING["stdout"],
                       Result(exited=2, stderr="psql: error: FATAL:  role \"app\" is locked 'n3w''pa$$'"))
    hook = rekey.PostgresPassword([Here(first), Here(second)])
    with pytest.raises(DockerError, match="changed back") as caught:
        hook(rekey_request(first))
    assert "n3w" not in str(caught.value)   # psql's output is masked
    forward, back = psql_calls(first)
    assert "PASSWORD 'n3w''pa$$'" in forward[1] and "PASSWORD 'old'" in back[1]
    assert [r.message for r in first.reporter.results if r.item == "postgres (development)"] == [
        "password changed in the running database", "password changed back"]


# -- against the real engine -----------------------------------------------------------------

def test_listing_lists_exactly_the_project_on_the_real_engine(docker_client: Any,
                                                             test_images: dict[str, str]) -> None:
    # The listing command runs for real through a Site (as it would on a host): the project's
    # container, network and volume are listed; a project whose name only starts the same, and
    # a resource *named* like the project without its label, are not.
    import uuid

    from invoke import Context

    token = uuid.uuid4().hex[:8]
    project, lookalike = f"mmswl {token}", f"mmswl {token}x"
    made: list[Any] = []
    try:
        for proj in (project, lookalike):
            labels = {"com.docker.compose.project": proj, "com.docker.compose.service": "db"}
            made.append(docker_client.volumes.create(f"mmswl{token}{len(made)}", labels=labels))
            made.append(docker_client.networks.create(f"mmswl{token}{len(made)}", labels=labels))
            made.append(docker_client.containers.create(test_images["standin"], name=f"mmswl{token}{len(made)}",
                                                        labels=labels))
        made.append(docker_client.volumes.create(f"{project.replace(' ', '_')}_data"))  # no label
        plan = wipe.WipePlan.from_listing(project, resources.listing(Site(Context(), "/"), project))
        assert [r.name for r in plan.volumes] == [f"mmswl{token}0"]
        assert [r.name for r in plan.networks] == [f"mmswl{token}1"]
        assert [r.name for r in plan.containers] == [f"mmswl{token}2"]
        assert plan.containers[0].detail == "service db, created"
    finally:
        for obj in reversed(made):
            obj.remove()


def test_find_backup_by_name_path_manifest_or_latest(tmp_path: Path) -> None:
    """Run for real through a shell Site: the backups root holds two backups of p and one of pq."""
    from invoke import Context

    root = tmp_path / "stack" / "backups"
    for name in ("p-20261201T000000Z", "p-20261202T000000Z", "pq-20301231T000000Z", "p-junk"):
        (root / name).mkdir(parents=True)
        if name != "p-junk":
            (root / name / "manifest.json").write_text(_manifest({"a": "0" * 64}))
    site = Site.here(Context(), tmp_path / "stack")
    assert backup.find_backup(site, "p", str(root), "latest").directory == str(root / "p-20261202T000000Z")
    by_name = backup.find_backup(site, "p", str(root), "p-20261201T000000Z")
    by_manifest = backup.find_backup(site, "p", str(root), str(root / "p-20261201T000000Z" / "manifest.json"))
    assert by_name.directory == by_manifest.directory == str(root / "p-20261201T000000Z")
    assert by_name.manifest["volumes"][0]["compose_name"] == "a"
    with pytest.raises(DockerError, match="no backup manifest"):
        backup.find_backup(site, "p", str(root), "p-junk")
    with pytest.raises(DockerError, match="no backup of 'other'"):
        backup.find_backup(site, "other", str(root), "latest")


def test_a_backup_made_by_the_sdk_implementation_still_restores(docker_client: Any, tmp_path: Path,
                                                                test_images: dict[str, str]) -> None:
    """fixtures/backup/format1: written by the docker-SDK `backup_volumes` of c43dd49 (a volume
    holding notes.txt and sub/.hidden); restored here through a shell Site into a new project."""
    import shutil
    import uuid

    from invoke import Context

    directory = tmp_path / "backups" / "mmsoldfmt-20261202T025842Z"
    shutil.copytree(FIXTURES / "backup" / "format1", directory)
    project = f"mmsold{uuid.uuid4().hex[:8]}"
    site = Site.here(Context(), tmp_path)
    rep = reporter()
    try:
        found = backup.find_backup(site, project, str(tmp_path / "backups"), directory.name)
        backup.verify_backup(site, found)
        backup.restore_volumes(site, project, found, None, rep)
        name = f"{project}_notes"
        assert by_item(rep)[f"volume {name}"] == (Status.CHANGED, "created and filled")
        out = docker_client.containers.run(test_images["standin"], entrypoint=["sh", "-c", "cat /v/notes.txt /v/sub/.hidden"],
                                           remove=True, volumes={name: {"bind": "/v", "mode": "ro"}})
        assert out.decode() == "written-by-the-old-backup\nx\n"
        assert docker_client.volumes.get(name).attrs["Labels"]["com.docker.compose.project"] == project
    finally:
        for v in docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}):
            v.remove(force=True)
