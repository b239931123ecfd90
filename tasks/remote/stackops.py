"""The stack lifecycle on a remote host, over one Fabric connection: up, status, run.

The same pieces as local runs, with only *where a command runs* swapped:

* `SshExecutor` plugs into `stack.compose.ComposeRunner`, so Compose gets exactly the argv the
  local lifecycle builds (``--project-directory``, ``-p``, ``-f compose.yml -f compose.<env>.yml
  --profile <env>``); the file set comes from `schema.filesets.environment_file_set`, the start
  record is `stack.state.StartRecord` (uploaded through `remote.sync`, so it is idempotent and
  0600 like every other file), ``ps`` is parsed by `stack.compose.parse_ps` and turned into rows
  by `stack.status.build_rows`, and a dry run by `stack.lifecycle.dry_run_actions`.
* The idempotence rule is the local one: a service is ``changed`` only when its container was
  created, recreated (another container ID after ``up``) or started; `up_outcomes` is pure.

Nothing here puts a secret on a command line or in a command's environment: the services read
their secrets from the env files that `remote.sync` uploaded over SFTP.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from ..engine.errors import RemoteError
from ..engine.files import DesiredFile
from ..engine.layout import STATE_DIR
from ..engine.report import Result
from ..stack.compose import ComposeRunner
from ..stack.composecmd import compose_probe, parse_compose_probe
from ..stack.outcomes import check_outcomes, not_ready, up_outcomes
from ..stack.state import RECORD_FILE, StartRecord
from .sync import shell_path

LOG_TAIL = 20
# Compose reads these from the environment and would then disagree with the recorded set.
_SCRUB = ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_PATH_SEPARATOR")
_ENV_PREFIX = "env " + " ".join(f"-u {k}" for k in _SCRUB) + " DOCKER_CLI_HINTS=false COMPOSE_MENU=false"
INSTALL_HINT = ("install it for the SSH user on the host: `pip install mmstack` (or, from a checkout "
                "of this repository, `pip install .`), so that `mmstack` is on that user's PATH")


# ----------------------------------------------------------------------------------------------
# Where commands run
# ----------------------------------------------------------------------------------------------

def absolute_dir(c: Any, path: str) -> str:
    """The host's ``stack_dir`` as an absolute path (``~/x`` resolved against the login's HOME)."""
    shell_path(path)  # validates
    if not path.startswith("~/"):
        return path.rstrip("/") or "/"
    home = c.run('printf %s "$HOME"', hide=True, in_stream=False).stdout.strip()
    return posixpath.join(home, path[2:]).rstrip("/")


@dataclass
class SshExecutor:
    """A `ComposeRunner` executor: runs the argv on the host, in ``cwd``, output captured.

    The argv is shell-quoted word by word; Compose's ``COMPOSE_*`` variables are removed with
    ``env -u`` so the recorded file set is the one used. No environment is sent over SSH.
    """

    conn: Any
    cwd: str
    timeout: float | None = None  # default for calls that give none (``up --wait``)

    def command(self, argv: Sequence[str]) -> str:
        return f"cd -- {shell_path(self.cwd)} && {_ENV_PREFIX} {join(argv)}"

    def __call__(self, argv: Sequence[str], *, stream: bool = False,
                 timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        from invoke.exceptions import CommandTimedOut

        limit = timeout or self.timeout
        try:
            result = self.conn.run(self.command(argv), hide=True, warn=True, in_stream=False,
                                   timeout=limit)
        except CommandTimedOut:
            raise subprocess.TimeoutExpired(list(argv), limit or 0) from None
        if result.exited == 127 and "not found" in (result.stderr or ""):
            raise FileNotFoundError(argv[0])
        return subprocess.CompletedProcess(list(argv), result.exited, result.stdout, result.stderr)


def join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


# ----------------------------------------------------------------------------------------------
# Compose on the host
# ----------------------------------------------------------------------------------------------

def compose_missing(host: str) -> RemoteError:
    return RemoteError(
        f"{host}: Compose v2 was not found on the host: neither `docker compose` (the plugin) nor a "
        "`docker-compose` v2 binary answers on the SSH user's PATH",
        fix="install the docker-compose-plugin there (Debian/Ubuntu: apt-get install "
            "docker-compose-plugin), or set mmstack.remote.compose_command")


def detect_compose(c: Any, host: str, preferred: str | None = None) -> tuple[str, ...]:
    """``docker compose`` or ``docker-compose`` on the host (``preferred`` wins when set)."""
    if preferred:
        return tuple(shlex.split(preferred))
    found = parse_compose_probe(c.run(compose_probe(), hide=True, warn=True, in_stream=False).stdout)
    if found is None:
        raise compose_missing(host)
    return found


def record_file(stack_dir: str) -> str:
    return posixpath.join(stack_dir, STATE_DIR, RECORD_FILE)


def record_desired(stack_dir: str, record: StartRecord) -> DesiredFile:
    """The start record as a file to sync (0600 in a 0700 ``.mmstack``), like the local one."""
    return DesiredFile(Path(record_file(stack_dir)), record.to_json().encode(), 0o600,
                       label=f"{STATE_DIR}/{RECORD_FILE}", dir_mode=0o700)


def read_record(c: Any, stack_dir: str) -> StartRecord | None:
    """The host's start record; None when the stack was never started there."""
    result = c.run(f"cat -- {shell_path(record_file(stack_dir))}", hide=True, warn=True, in_stream=False)
    if result.exited != 0:
        return None
    try:
        return StartRecord.from_dict(json.loads(result.stdout))
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(f"the host's start record is unreadable ({exc})", file=record_file(stack_dir),
                          fix="deploy again (`inv deploy`) to rewrite it") from None


def runner_for(c: Any, stack_dir: str, record: StartRecord, timeout: float | None = None) -> ComposeRunner:
    return ComposeRunner(record.compose, PurePosixPath(stack_dir),  # type: ignore[arg-type]
                         record, execute=SshExecutor(c, stack_dir, timeout))


def by_service(ps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pure: `compose ps` entries keyed by service (the first container of each)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in ps:
        out.setdefault(str(entry.get("Service", "")), entry)
    return out


def dry_run_view(before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`compose ps` entries in the shape `lifecycle.dry_run_actions` reads (``Names``)."""
    return {svc: {**e, "Names": [str(e.get("Name", ""))]} for svc, e in before.items()}


def log_tail(c: Any, container: str, mask: Callable[[str], str], lines: int = LOG_TAIL) -> list[str]:
    """The last lines of a container's output on the host, secrets masked."""
    result = c.run(f"docker logs --tail {int(lines)} {shlex.quote(container)} 2>&1", hide=True,
                   warn=True, in_stream=False)
    return mask(result.stdout or "").rstrip("\n").splitlines()[-lines:]


def failing_rows(c: Any, runner: ComposeRunner, services: list[str], scheme_of: dict[str, str],
                 mask: Callable[[str], str]) -> dict[str, Any]:
    """Rows of the services that are failing (or still starting) after a failed ``up``."""
    from ..stack.status import build_rows

    out = {}
    for row in build_rows(runner.ps(), services, scheme_of):
        if row.failed or row.health == "starting":
            if row.container:
                row.log_tail = log_tail(c, row.container, mask)
            out[row.service] = row
    return out


def stack_up(c: Any, host: Any, hr: Any, *, stack: Any, environment: str, check: bool,
             files_changed: bool, timeout: int, preferred: str | None,
             mask: Callable[[str], str]) -> None:
    """Bring ``environment`` up on the host and wait for health (the last step of `deploy`)."""
    from ..schema.filesets import environment_file_set
    from ..stack.start import compose_failure, dry_run_actions, dry_run_failure, service_images, up_failed
    from ..stack.common import expected_services
    from ..stack.status import schemes
    from .sync import sync_files

    root = absolute_dir(c, host.stack_dir)
    try:
        compose = detect_compose(c, host.name, preferred)
    except RemoteError as exc:
        hr.failed("stack up", str(exc))
        return
    fs = environment_file_set(environment)
    record = StartRecord(env=environment, files=fs.files, profiles=fs.profiles, project=stack.project,
                         compose=compose)
    runner = runner_for(c, root, record, timeout=timeout + 120)
    services = expected_services(stack, record)
    for result in sync_files(c, [record_desired(root, record)], check=check, host=host.name):
        hr.add(result)

    if check:
        if files_changed:
            hr.skipped("stack up", "check mode: files would change first, and Compose's dry run can "
                       "only read the files already on the host")
            return
        before = by_service(runner.ps())
        proc, progress = runner.dry_run_up()
        failure = dry_run_failure(proc, progress, mask, service_images(stack, environment))
        if failure:
            hr.failed("stack up", failure)
            return
        actions = dry_run_actions(proc.stdout + proc.stderr, stack.project, dry_run_view(before))
        for svc, status, message in check_outcomes(actions, before, services):
            hr.add(Result(svc, status, message))
        return

    before = by_service(runner.ps())
    proc = runner.up(wait=True, timeout=timeout, stream=False)
    after = by_service(runner.ps())
    failing: dict[str, Any] = {}
    up_bad = up_failed(proc, ready=not not_ready(after, services))
    if up_bad or not_ready(after, services):
        failing = failing_rows(c, runner, services, schemes(stack.resolved_services(environment)), mask)
    for svc, status, message in up_outcomes(before, after, services, failing):
        data = {"log_tail": failing[svc].log_tail} if svc in failing else None
        hr.add(Result(svc, status, message, data=data))
        for line in failing[svc].log_tail if svc in failing else ():
            hr.info(f"    {svc} | {line}")
    if up_bad:
        hr.failed("stack up", compose_failure(f"`{' '.join(compose)} up`", proc, mask,
                                              service_images(stack, environment)))


def _tail(text: str | None, lines: int = 6) -> str:
    rows = [r for r in (text or "").strip().splitlines() if r.strip()][-lines:]
    return ("; " + " / ".join(r.strip() for r in rows)) if rows else ""


# ----------------------------------------------------------------------------------------------
# status
# ----------------------------------------------------------------------------------------------

def stack_status(c: Any, host: Any, hr: Any, *, stack: Any, preferred: str | None,
                 mask: Callable[[str], str], show_table: bool) -> dict[str, Any]:
    """The local `status` rows for what the last deploy started on the host."""
    from ..stack.common import expected_services
    from ..stack.status import build_rows, schemes, table

    root = absolute_dir(c, host.stack_dir)
    record = read_record(c, root)
    if record is None:
        raise RemoteError(f"{host.name}: the stack has not been started on this host "
                          f"(no {record_file(root)})",
                          fix=f"deploy it first: inv deploy --hosts {host.name}")
    if preferred:
        record = StartRecord(record.env, record.files, record.profiles, record.project,
                             tuple(shlex.split(preferred)))
    elif not record.compose:
        record = StartRecord(record.env, record.files, record.profiles, record.project,
                             detect_compose(c, host.name))
    runner = runner_for(c, root, record, timeout=120)
    rows = build_rows(runner.ps(), expected_services(stack, record),
                      schemes(stack.resolved_services(record.env)))
    for row in rows:
        if row.failed and row.container:
            row.log_tail = log_tail(c, row.container, mask)
    if show_table:
        hr.info(f"environment {record.env} (project {record.project}, "
                f"{' '.join(record.compose_args())})")
        for line in table(rows).splitlines():
            hr.info(line)
    for row in rows:
        if row.failed:
            hr.failed(row.service, row.summary, data={"log_tail": row.log_tail} if row.log_tail else None)
            if show_table:
                for line in row.log_tail:
                    hr.info(f"    {row.service} | {line}")
        else:
            hr.ok(row.service, row.summary + (f" {row.url}" if row.url else ""))
    return {"environment": record.env, "project": record.project,
            "services": [r.to_dict() for r in rows]}


# ----------------------------------------------------------------------------------------------
# remote-run: any task, through the host's own `mmstack` command
# ----------------------------------------------------------------------------------------------

MISSING_MARK = "@@mmstack-remote: mmstack not found@@"
NODIR_MARK = "@@mmstack-remote: no stack directory@@"


def remote_run_command(stack_dir: str, argv: Sequence[str]) -> str:
    """``cd <stack_dir> && MMSTACK_DIR=<stack_dir> mmstack ARGV``, every word shell-quoted.

    Only the stack directory travels in the environment; the task's arguments are the user's.
    """
    if not argv:
        raise RemoteError("no task given", fix='say which task to run, e.g. --task "status --json"')
    d = shell_path(stack_dir)
    return (f"command -v mmstack >/dev/null 2>&1 || {{ echo {shlex.quote(MISSING_MARK)} >&2; exit 127; }}; "
            f"cd -- {d} 2>/dev/null || {{ echo {shlex.quote(NODIR_MARK)} >&2; exit 1; }}; "
            f"MMSTACK_DIR={d}; export MMSTACK_DIR; exec mmstack {join(argv)}")


_RECAP_RE = re.compile(r"^RECAP\b.*\bchanged=(\d+)", re.MULTILINE)


def reported_changes(stdout: str) -> int | None:
    """Pure: the ``changed`` count the remote task reported (its recap line or its JSON)."""
    text = stdout.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            return int(doc["recap"]["changed"])
        except (ValueError, KeyError, TypeError):
            return None
    found = _RECAP_RE.findall(stdout)
    return int(found[-1]) if found else None


class PrefixWriter:
    """A file-like that writes whole lines as ``<host> | line`` under a shared lock."""

    def __init__(self, prefix: str, out: TextIO, lock: threading.Lock) -> None:
        self.prefix, self.out, self.lock, self.buf = prefix, out, lock, ""

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        if lines:
            with self.lock:
                self.out.write("".join(f"{self.prefix} | {line}\n" for line in lines))
                self.out.flush()
        return len(text)

    def flush(self) -> None:
        if self.buf:
            with self.lock:
                self.out.write(f"{self.prefix} | {self.buf}\n")
                self.out.flush()
            self.buf = ""


def run_task(c: Any, host: Any, hr: Any, argv: Sequence[str], *,
             out: PrefixWriter | None = None, err: PrefixWriter | None = None,
             timeout: float | None = None) -> dict[str, Any]:
    """Run ``mmstack ARGV`` on the host; one result for the host, output captured (and streamed
    with a host prefix when writers are given)."""
    from invoke.exceptions import CommandTimedOut

    command = remote_run_command(host.stack_dir, argv)
    label = "mmstack " + join(argv)
    kw: dict[str, Any] = {"hide": True} if out is None else {"out_stream": out, "err_stream": err}
    try:
        result = c.run(command, warn=True, in_stream=False, timeout=timeout, **kw)
    except CommandTimedOut:
        raise RemoteError(f"{host.name}: `{label}` did not finish in {timeout:g}s") from None
    finally:
        for w in (out, err):
            if w is not None:
                w.flush()
    stdout, stderr = result.stdout or "", result.stderr or ""
    data = {"exit": result.exited, "stdout": stdout, "stderr": stderr}
    if MISSING_MARK in stderr:
        hr.failed(label, f"`mmstack` is not installed on the host (not on the SSH user's PATH); "
                  f"{INSTALL_HINT}", data=data)
    elif NODIR_MARK in stderr:
        hr.failed(label, f"the stack directory {host.stack_dir} does not exist on the host",
                  data={**data, "fix": f"deploy first: inv deploy --hosts {host.name}"})
    elif result.exited != 0:
        hr.failed(label, f"exit {result.exited}" + _tail(stderr or stdout, 3), data=data)
    else:
        changes = reported_changes(stdout)
        if changes:
            hr.changed(label, f"exit 0, changed={changes}", data=data)
        else:
            hr.ok(label, "exit 0", data=data)
    return data
