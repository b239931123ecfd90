"""Back up the project's named volumes to tar.gz archives, and put them back.

Layout: ``backups/<project>-<UTC timestamp>/<volume>.tar.gz`` plus ``manifest.json`` (0700 dir,
0600 files: volumes hold databases). The work is done by a throwaway container of an image that
is already on the host (never pulled): the configured ``mmstack.stack.backup_image``, else the
image of a backup being restored, else the project's own images, smallest first; the first that
has ``sh``, ``tar`` and ``gzip`` is used. A volume is mounted read-only for a backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import DockerError
from .engine import PROJECT_LABEL, VOLUME_LABEL
from .wipe import project_filter

MANIFEST = "manifest.json"
HELPER_LABEL = "org.mmstack.helper"
_PROBE = "mkdir -p /tmp/.p && tar -cf - -C /tmp/.p . | gzip -c | gzip -dc >/dev/null"
_BACKUP = 'tar -czf "/backup/$ARCHIVE" -C /volume . && chown "$OWNER" "/backup/$ARCHIVE" && chmod 600 "/backup/$ARCHIVE"'
_RESTORE = ('cd /volume && rm -rf ./* ./.[!.]* ./..?* 2>/dev/null; '
            'tar -xzpf "/backup/$ARCHIVE" -C /volume')


@dataclass(frozen=True)
class VolumeBackup:
    volume: str          # engine name, e.g. myproj_postgres-data
    compose_name: str    # name in the compose file, e.g. postgres-data
    archive: str
    labels: dict[str, str]
    size: int
    sha256: str


def backup_dir_name(project: str, now: float | None = None) -> str:
    return f"{project}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}"


def project_volumes(client: Any, project: str) -> list[Any]:
    vols = [v for v in client.volumes.list(filters=project_filter(project))
            if (v.attrs.get("Labels") or {}).get(PROJECT_LABEL) == project]
    return sorted(vols, key=lambda v: v.name)


def image_candidates(client: Any, project: str, extra: Iterable[str | None] = ()) -> list[str]:
    """Images present locally that could run the helper, in the order they are tried."""
    from docker.errors import ImageNotFound

    out: list[str] = []
    for ref in extra:
        if ref and ref not in out:
            try:
                client.images.get(ref)
                out.append(ref)
            except ImageNotFound:
                pass
    sized: dict[str, int] = {}
    for c in client.containers.list(all=True, filters=project_filter(project)):
        ref = c.attrs.get("Config", {}).get("Image") or c.attrs.get("Image")
        if ref and ref not in out and ref not in sized:
            try:
                sized[ref] = int(client.images.get(ref).attrs.get("Size") or 0)
            except ImageNotFound:
                pass
    out += sorted(sized, key=lambda r: (sized[r], r))
    return out


def pick_image(client: Any, candidates: list[str]) -> str:
    for ref in candidates:
        try:
            client.containers.run(ref, entrypoint=["sh", "-c", _PROBE], remove=True,
                                  network_disabled=True, labels={HELPER_LABEL: "probe"})
            return ref
        except Exception:  # noqa: BLE001 - any failure: this image cannot do it
            continue
    raise DockerError("no local image can run the backup helper (it needs sh, tar and gzip)",
                      fix="set mmstack.stack.backup_image to an image on this host that has them "
                          "(e.g. a busybox or debian image); mmstack never pulls one")


def _run_helper(client: Any, image: str, script: str, mounts: dict[str, dict[str, str]],
                env: dict[str, str]) -> None:
    from docker.errors import APIError, ContainerError

    try:
        client.containers.run(image, entrypoint=["sh", "-c", script], volumes=mounts, environment=env,
                              remove=True, network_disabled=True, labels={HELPER_LABEL: "backup"},
                              user="0:0")
    except ContainerError as exc:
        err = exc.stderr.decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) else str(exc.stderr)
        raise DockerError(f"the backup helper failed (exit {exc.exit_status}): {err[-300:]}") from None
    except APIError as exc:
        raise DockerError(f"the backup helper could not run: {exc.explanation or exc}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup_volumes(client: Any, project: str, root: Path, image_hint: str | None = None,
                   report: Callable[[VolumeBackup], None] | None = None) -> Path | None:
    """Archive every named volume of ``project`` under ``root``; None when it has none.

    The caller stops the containers first (a consistent copy of a database needs that).
    """
    volumes = project_volumes(client, project)
    if not volumes:
        return None
    image = pick_image(client, image_candidates(client, project, [image_hint]))
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = backup_dir_name(project)
    dest = root / name
    n = 2
    while dest.exists():
        dest = root / f"{name}-{n}"
        n += 1
    dest.mkdir(mode=0o700)
    owner = f"{os.getuid()}:{os.getgid()}"
    done: list[VolumeBackup] = []
    for v in volumes:
        labels = dict(v.attrs.get("Labels") or {})
        compose_name = labels.get(VOLUME_LABEL) or v.name.removeprefix(f"{project}_")
        archive = f"{compose_name}.tar.gz"
        _run_helper(client, image, _BACKUP,
                    {v.name: {"bind": "/volume", "mode": "ro"}, str(dest): {"bind": "/backup", "mode": "rw"}},
                    {"ARCHIVE": archive, "OWNER": owner})
        path = dest / archive
        item = VolumeBackup(v.name, compose_name, archive, labels, path.stat().st_size, _sha256(path))
        done.append(item)
        if report:
            report(item)
    manifest = {
        "format": 1, "project": project, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image": image,
        "volumes": [item.__dict__ for item in done],
    }
    fd = os.open(dest / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return dest


def load_manifest(archive: Path) -> tuple[Path, dict[str, Any]]:
    path = Path(archive).resolve()
    if path.is_dir():
        path = path / MANIFEST
    try:
        data = json.loads(path.read_text())
        data["volumes"] = list(data["volumes"])
    except FileNotFoundError:
        raise DockerError(f"no backup manifest at {path}",
                          fix="pass the directory `inv backup` printed (backups/<project>-<timestamp>)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DockerError(f"the backup manifest is unreadable: {exc}", file=str(path)) from None
    for v in data["volumes"]:
        if not (path.parent / v["archive"]).is_file():
            raise DockerError(f"the backup is incomplete: {v['archive']} is missing", file=str(path.parent))
    return path.parent, data


def restore_volumes(client: Any, project: str, directory: Path, manifest: dict[str, Any],
                    image_hint: str | None = None,
                    report: Callable[[str, str], None] | None = None) -> None:
    """Recreate each volume (with the project's labels) and untar its archive into it.

    The caller has made sure no container of the project is running.
    """
    from docker.errors import NotFound

    image = pick_image(client, image_candidates(client, project, [image_hint, manifest.get("image")]))
    for v in manifest["volumes"]:
        if _sha256(directory / v["archive"]) != v.get("sha256", ""):
            raise DockerError(f"{v['archive']} does not match the checksum in the manifest",
                              file=str(directory), fix="the archive is damaged; use another backup")
    for v in manifest["volumes"]:
        name = f"{project}_{v['compose_name']}"
        labels = dict(v.get("labels") or {})
        labels[PROJECT_LABEL] = project
        labels.setdefault(VOLUME_LABEL, v["compose_name"])
        try:
            client.volumes.get(name)
            existed = True
        except NotFound:
            client.volumes.create(name=name, labels=labels)
            existed = False
        _run_helper(client, image, _RESTORE,
                    {name: {"bind": "/volume", "mode": "rw"}, str(directory): {"bind": "/backup", "mode": "ro"}},
                    {"ARCHIVE": v["archive"]})
        if report:
            report(name, "contents replaced" if existed else "created and filled")
