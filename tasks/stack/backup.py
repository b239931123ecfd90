"""Back up the project's named volumes to tar.gz archives at a site, and put them back.

Layout (unchanged since the first backups, so old ones restore): ``<backups
root>/<project>-<UTC timestamp>/<volume>.tar.gz`` plus ``manifest.json`` (0700 dir, 0600 files:
volumes hold databases); the root is ``mmstack.stack.backup_dir`` relative to the stack
directory, here or on a host. Everything runs at the site through the docker CLI: a throwaway
helper container (``docker run --rm --pull never``, no network) of an image already there (the
configured ``mmstack.stack.backup_image``, else the image of a backup being restored, else the
project's own images, smallest first; the first that has ``sh``, ``tar`` and ``gzip``) mounts
the volume (read-only for a backup) and the backup directory; checksums are ``sha256sum``'s.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import DockerError
from ..engine.layout import START_RECORD_FILE, STATE_DIR
from .engine import PROJECT_LABEL, VOLUME_LABEL
from .resources import Container, Volume, engine_failure, parse_volume_inspect, run_fact

MANIFEST = "manifest.json"
HELPER_LABEL = "org.mmstack.helper"
LATEST = "latest"
_PROBE = "mkdir -p /tmp/.p && tar -cf - -C /tmp/.p . | gzip -c | gzip -dc >/dev/null"
_BACKUP = 'tar -czf "/backup/$ARCHIVE" -C /volume . && chown "$OWNER" "/backup/$ARCHIVE" && chmod 600 "/backup/$ARCHIVE"'
_RESTORE = ('cd /volume && rm -rf ./* ./.[!.]* ./..?* 2>/dev/null; '
            'tar -xzpf "/backup/$ARCHIVE" -C /volume')
NO_IMAGE_FIX = ("set mmstack.stack.backup_image to an image there that has them (e.g. a busybox or "
                "debian image); mmstack never pulls one")


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


def progress(show: bool, message: str) -> Any:
    from ..engine.console import waiting

    return waiting(message) if show else nullcontext()


# -- the helper container ----------------------------------------------------------------------

def helper_command(image: str, script: str, mounts: Iterable[tuple[str, str, str, bool]],
                   env: dict[str, str], purpose: str) -> str:
    """``docker run`` of the helper; ``mounts``: (type, source, target, read-only). Values of
    ``env`` are shell words (``"$(id -u)"`` is expanded at the site)."""
    words = ["docker run --rm --pull never --network none --user 0:0",
             f"--label {shlex.quote(f'{HELPER_LABEL}={purpose}')}", "--entrypoint sh"]
    for kind, source, target, ro in mounts:
        spec = f"type={kind},src={source},dst={target}" + (",readonly" if ro else "")
        words.append(f"--mount {shlex.quote(spec)}")
    words += [f"-e {k}={v}" for k, v in env.items()]
    words += [shlex.quote(image), "-c", shlex.quote(script)]
    return " ".join(words)


def image_sizes_command(refs: Iterable[str]) -> str:
    """Which of ``refs`` exist at the site, with their size: ``ref<TAB>bytes`` lines."""
    quoted = " ".join(shlex.quote(r) for r in refs)
    return (f"for r in {quoted}; do s=$(docker image inspect --format '{{{{.Size}}}}' -- \"$r\" 2>/dev/null) "
            "&& printf '%s\\t%s\\n' \"$r\" \"$s\"; done; exit 0")


def parse_image_sizes(stdout: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in stdout.splitlines():
        ref, _, size = line.partition("\t")
        if ref and size.strip().isdigit():
            out[ref] = int(size)
    return out


def image_candidates(hints: Iterable[str | None], sizes: dict[str, int], project_images: Iterable[str]) -> list[str]:
    """Pure: the images to try, in order: the hints that exist, then the project's by size."""
    out = [h for h in dict.fromkeys(hints) if h and h in sizes]
    rest = {r for r in project_images if r in sizes and r not in out}
    return out + sorted(rest, key=lambda r: (sizes[r], r))


def pick_image(site: Any, project: str, hints: Iterable[str | None]) -> str:
    from .resources import containers

    hints = list(hints)
    images = [c.image for c in containers(site, project) if c.image]
    refs = list(dict.fromkeys([h for h in hints if h] + images))
    sizes = parse_image_sizes(site.sh(image_sizes_command(refs)).stdout) if refs else {}
    for ref in image_candidates(hints, sizes, images):
        probe = helper_command(ref, _PROBE, (), {}, "probe")
        if site.sh(probe + " >/dev/null 2>&1").exited == 0:
            return ref
    raise DockerError(f"no image on {site.where()} can run the backup helper (it needs sh, tar and gzip)",
                      fix=NO_IMAGE_FIX)


def _helper(site: Any, command: str, what: str) -> Any:
    result = site.sh(command)
    if result.exited != 0:
        tail = (result.stderr or result.stdout or "").strip()[-300:]
        raise DockerError(f"the backup helper failed {what} on {site.where()} (exit {result.exited}): {tail}")
    return result


# -- stopping for a consistent copy ------------------------------------------------------------

def running_containers(site: Any, project: str) -> list[Container]:
    from .resources import containers

    return [c for c in containers(site, project) if c.running]


def stop_containers(site: Any, running: list[Container], timeout: int) -> None:
    if running:
        result = site.docker("stop", "-t", str(int(timeout)), "--", *[c.id for c in running])
        if result.exited != 0:
            raise engine_failure(site, "stopping the project's containers", result)


def site_record(site: Any) -> Any:
    """The start record at the site (None when there is none or it cannot be read)."""
    from .state import StartRecord

    text = site.read(site.path(STATE_DIR, START_RECORD_FILE))
    try:
        return StartRecord.from_dict(json.loads(text)) if text else None
    except (ValueError, KeyError, TypeError):
        return None


def start_again(site: Any, project: str, stopped: list[Container], compose_of: Any) -> None:
    """Start what was stopped: through Compose with the recorded file set when the site has a
    start record of this project (dependency order), else container by container.
    ``compose_of(record)``: the Compose command for that record, or None."""
    record = site_record(site)
    compose = compose_of(record) if record is not None and record.project == project else None
    if compose:
        site.compose_runner(tuple(compose), record).run("start")
        return
    result = site.docker("start", "--", *[c.id for c in stopped])
    if result.exited != 0:
        raise engine_failure(site, "starting the project's containers again", result)


# -- backup ------------------------------------------------------------------------------------

def make_backup_dir_command(root: str, name: str) -> str:
    from .site import quote_path

    base = quote_path(posixpath.join(root, name))
    return (f"umask 077 && mkdir -p -- {quote_path(root)} && d={base} && n=2 && "
            f'while [ -e "$d" ]; do d={base}-$n; n=$((n+1)); done && mkdir -m 700 -- "$d" && printf %s "$d"')


def archive_facts_command(path: str) -> str:
    from .site import quote_path

    return f"wc -c < {quote_path(path)} && sha256sum -- {quote_path(path)}"


def parse_archive_facts(stdout: str) -> tuple[int, str]:
    """Pure: (size, sha256) from `archive_facts_command`."""
    lines = stdout.split("\n")
    try:
        return int(lines[0].strip()), lines[1].split()[0]
    except (IndexError, ValueError):
        raise DockerError("unexpected output while checksumming an archive") from None


def manifest_file(directory: str, manifest: dict[str, Any]) -> Any:
    from ..engine.files import DesiredFile

    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return DesiredFile(Path(posixpath.join(directory, MANIFEST)), text.encode(), 0o600,
                       label=f"{posixpath.basename(directory)}/{MANIFEST}", dir_mode=0o700)


def backup_volumes(site: Any, project: str, root: str, volumes: list[Volume], image_hint: str | None,
                   reporter: Any, show_progress: bool = False) -> str:
    """Archive ``volumes`` into a new directory under ``root``; returns that directory.

    The caller stops the containers first (a consistent copy of a database needs that).
    """
    image = pick_image(site, project, [image_hint])
    labels = parse_volume_inspect(run_fact(site, "docker volume inspect -- "
                                           + " ".join(shlex.quote(v.name) for v in volumes),
                                           "reading the volumes' labels"))
    made = site.sh(make_backup_dir_command(root, backup_dir_name(project)))
    if made.exited != 0 or not made.stdout:
        raise DockerError(f"cannot create a backup directory under {root} on {site.where()}: "
                          f"{(made.stderr or '').strip()[-200:]}")
    dest = made.stdout.strip()
    done: list[VolumeBackup] = []
    for v in volumes:
        archive = f"{v.compose_name}.tar.gz"
        command = helper_command(image, _BACKUP, [("volume", v.name, "/volume", True),
                                                  ("bind", dest, "/backup", False)],
                                 {"ARCHIVE": shlex.quote(archive), "OWNER": '"$(id -u):$(id -g)"'}, "backup")
        with progress(show_progress, f"backing up {v.name}"):
            _helper(site, command, f"backing up {v.name}")
        size, digest = parse_archive_facts(run_fact(site, archive_facts_command(posixpath.join(dest, archive)),
                                                    f"checksumming {archive}"))
        item = VolumeBackup(v.name, v.compose_name, archive, labels.get(v.name, {}), size, digest)
        done.append(item)
        reporter.changed(f"backup {v.name}", f"{posixpath.join(dest, archive)} ({size} bytes)")
    manifest = {"format": 1, "project": project, "image": image,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "volumes": [asdict(item) for item in done]}
    site.put([manifest_file(dest, manifest)], reporter, check=False)
    return dest


# -- restore -----------------------------------------------------------------------------------

@dataclass
class Backup:
    directory: str              # at the site
    manifest: dict[str, Any]


def parse_manifest(text: str, where: str) -> dict[str, Any]:
    """Pure: a manifest's contents, checked for what restore reads."""
    try:
        data = json.loads(text)
        data["volumes"] = [dict(v) for v in data["volumes"]]
        for v in data["volumes"]:
            str(v["archive"]), str(v["compose_name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DockerError(f"the backup manifest is unreadable: {exc}", file=where) from None
    return data


def list_backups_command(root: str) -> str:
    from .site import quote_path

    return (f"for d in {quote_path(root)}/*/; do [ -f \"${{d}}{MANIFEST}\" ] && printf '%s\\n' \"${{d%/}}\"; "
            "done; exit 0")


def newest_backup(project: str, listing: str) -> str | None:
    """Pure: the newest ``<project>-<timestamp>[-n]`` directory of a `list_backups_command`."""
    def key(path: str) -> tuple[str, int]:
        stamp, _, n = posixpath.basename(path)[len(project) + 1:].partition("-")
        return stamp, int(n) if n.isdigit() else 1

    mine = [p for p in listing.splitlines() if posixpath.basename(p).startswith(f"{project}-")]
    return max(mine, key=key) if mine else None


def find_backup(site: Any, project: str, root: str, archive: str) -> Backup:
    """The backup ``archive`` names at the site: a directory or its manifest.json, absolute, or
    relative to the current directory (here), the stack directory or the backups root; or
    ``latest``, the newest of the project under the backups root."""
    if archive == LATEST:
        found = newest_backup(project, site.sh(list_backups_command(root)).stdout)
        if found is None:
            raise DockerError(f"no backup of {project!r} under {root} on {site.where()}",
                              fix="make one first: inv backup")
        tries = [found]
    elif posixpath.isabs(archive):
        tries = [archive]
    else:
        tries = [] if site.remote else [str(Path(archive).resolve())]
        tries += [site.path(archive), posixpath.join(root, archive)]
    for path in tries:
        directory = posixpath.dirname(path) if posixpath.basename(path) == MANIFEST else path.rstrip("/")
        text = site.read(posixpath.join(directory, MANIFEST))
        if text is not None:
            return Backup(directory, parse_manifest(text, posixpath.join(directory, MANIFEST)))
    raise DockerError(f"no backup manifest at {tries[-1]} on {site.where()}",
                      fix="pass the directory `inv backup` printed (backups/<project>-<timestamp>), or latest")


def checksums_command(directory: str, archives: Iterable[str]) -> str:
    from .site import quote_path

    return f"cd -- {quote_path(directory)} && sha256sum -- " + " ".join(shlex.quote(a) for a in archives) + "; exit 0"


def parse_checksums(stdout: str) -> dict[str, str]:
    """Pure: `sha256sum` lines as {file: digest} (``*name`` in binary mode too)."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        digest, _, name = line.partition(" ")
        if len(digest) == 64 and name:
            out[name[1:] if name[:1] in " *" else name] = digest
    return out


def verify_backup(site: Any, backup: Backup) -> None:
    """Every archive is there and matches the manifest's checksum (computed at the site)."""
    volumes = backup.manifest["volumes"]
    if not volumes:
        return
    sums = parse_checksums(site.sh(checksums_command(backup.directory, [v["archive"] for v in volumes])).stdout)
    for v in volumes:
        if v["archive"] not in sums:
            raise DockerError(f"the backup is incomplete: {v['archive']} is missing", file=backup.directory)
        if sums[v["archive"]] != v.get("sha256", ""):
            raise DockerError(f"{v['archive']} does not match the checksum in the manifest",
                              file=backup.directory, fix="the archive is damaged; use another backup")


def volume_name(project: str, v: dict[str, Any]) -> str:
    return f"{project}_{v['compose_name']}"


def ensure_volume_command(name: str, labels: dict[str, str]) -> str:
    """Print ``existed`` or create the volume with its labels and print ``created``."""
    q = shlex.quote(name)
    label_words = " ".join(f"--label {shlex.quote(f'{k}={val}')}" for k, val in sorted(labels.items()))
    return (f"if docker volume inspect -- {q} >/dev/null 2>&1; then echo existed; "
            f"else docker volume create {label_words} -- {q} >/dev/null && echo created; fi")


def restore_volumes(site: Any, project: str, backup: Backup, image_hint: str | None, reporter: Any,
                    show_progress: bool = False) -> None:
    """Recreate each volume (with the project's labels) and untar its archive into it.

    The caller has made sure no container of the project is running.
    """
    image = pick_image(site, project, [image_hint, backup.manifest.get("image")])
    for v in backup.manifest["volumes"]:
        name = volume_name(project, v)
        labels = dict(v.get("labels") or {})
        labels[PROJECT_LABEL] = project
        labels.setdefault(VOLUME_LABEL, v["compose_name"])
        made = site.sh(ensure_volume_command(name, labels))
        if made.exited != 0:
            raise engine_failure(site, f"creating the volume {name}", made)
        command = helper_command(image, _RESTORE, [("volume", name, "/volume", False),
                                                   ("bind", backup.directory, "/backup", True)],
                                 {"ARCHIVE": shlex.quote(v["archive"])}, "restore")
        with progress(show_progress, f"restoring {name}"):
            _helper(site, command, f"restoring {name}")
        reporter.changed(f"volume {name}", "contents replaced" if made.stdout.strip() == "existed"
                         else "created and filled")
