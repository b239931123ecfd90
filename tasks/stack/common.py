"""What every lifecycle step shares: the Compose command, the validated stack, the services a
start record runs, the secret masker, confirmation, and whether progress streams."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from ..engine.errors import ConfigError
from ..engine.console import is_terminal
from ..engine.run import Run, config_value
from .state import StartRecord



def compose_argv(run: Run, record: StartRecord | None = None) -> tuple[str, ...]:
    """The Compose command on this machine: the one recorded by the last start when it still
    exists (no probe), else `composecmd.find_compose` (which runs `version` on each candidate)."""
    from .site import Site

    return compose_at(run, Site.here(run.c, run.stack), record)


def preferred_compose(run: Run, site: Any) -> str | None:
    """The configured Compose command for ``site`` (mmstack.remote.compose_command on hosts)."""
    return config_value(run.c, "remote.compose_command" if site.remote else "compose_command") or None


def compose_at(run: Run, site: Any, record: StartRecord | None = None) -> tuple[str, ...]:
    """The Compose command at ``site`` for a step on what a start recorded: the configured one,
    else the recorded one (here: when it still exists; on a host it is trusted, and a command
    that vanished fails the step with Compose's "not found"), else the probe."""
    preferred = preferred_compose(run, site)
    if preferred:
        return tuple(shlex.split(preferred))
    if record and record.compose:
        exe = record.compose[0]
        if site.remote or (os.path.isabs(exe) and os.access(exe, os.X_OK)):
            return record.compose
    from .composecmd import find_compose, find_compose_command

    return find_compose(site) if site.remote else find_compose_command()


def load_stack_cached(run: Run) -> Any:
    """The validated stack; a schema that already passed with this code is not re-validated."""
    from ..schema.load import load_stack, validation_cache

    cache = validation_cache(run.state_dir, writable=not run.check)
    stack = load_stack(run.stack, cache=cache)
    run.keep(cache)
    return stack


def expected_services(stack: Any, record: StartRecord) -> list[str]:
    """Services the recorded file set runs: the environment's, plus those of extra profiles."""
    names = list(stack.environment(record.env).services)
    for profile in record.profiles:
        if profile == record.env:
            continue
        extra: list[str] = []
        if profile in stack.stack_names:
            extra = stack.dependency_closure(list(stack.data["stacks"][profile]["services"]))
        elif profile in stack.environment_names:
            extra = stack.environment(profile).services
        names += [s for s in extra if s not in names]
    order = stack.service_names
    return sorted(names, key=order.index)


def secret_masker(run: Run, stack: Any) -> Any:
    """A function hiding every stored secret value in a text (identity when none can be read)."""
    from ..engine.masking import masker

    try:
        from ..secrets.api import all_secret_values

        values = list(all_secret_values(run, stack))
    except Exception:  # noqa: BLE001 - masking must never break status
        values = []
    return masker(values)


def lazy_masker(run: Run, stack: Any) -> Any:
    """`secret_masker`, whose secrets are read only when a text is first masked."""
    cache: list[Any] = []

    def mask(text: str) -> str:
        if not cache:
            cache.append(secret_masker(run, stack))
        return cache[0](text)

    return mask


def confirm(question: str, yes: bool, what: str) -> None:
    """Ask the user to type ``yes``; refuse without a terminal unless ``--yes`` was given."""
    if yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfigError(f"refusing to {what} without confirmation: no terminal to ask on",
                          fix="pass --yes to confirm from a script, or --check to only list")
    sys.stderr.write(f"{question}\nType yes to continue: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != "yes":
        raise ConfigError(f"cancelled: nothing was done ({what} needs the answer 'yes')", exit_code=1)


def stream_progress() -> bool:
    """Compose's own progress (pulls, ``--wait``) goes straight to a terminal."""
    return is_terminal(sys.stdout)


class Stop(Exception):
    """A step reported its failures; finish the run now."""
