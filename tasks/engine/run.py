"""The per-invocation context every task builds first: where the stack is, how to report.

Values resolve as task argument > Invoke config (``mmstack.*``) > built-in default; the
defaults live in engine/settings.py.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from invoke import Context, Exit
from invoke.exceptions import UnexpectedExit

from . import settings
from .errors import MmstackError, MultiError
from .layout import STATE_DIR, hand_edit_backup_dir
from .lock import stack_lock
from .report import Reporter

STATE_DIR_NAME = STATE_DIR  # see engine/layout.py
F = TypeVar("F", bound=Callable[..., Any])


def config_value(c: Context, key: str) -> Any:
    """``mmstack.<key>`` from the Invoke config (dotted keys allowed), else its built-in default."""
    node: Any = c.config.get("mmstack", {})
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError):
            return settings.default(key)
    return settings.default(key) if node is None else node


def resolve(arg: Any, c: Context, key: str) -> Any:
    """argument > config > built-in default."""
    if arg is not None:
        return arg
    return config_value(c, key)


def stack_dir_of(c: Context) -> Path:
    """The directory holding the stack: config ``mmstack.stack_dir``, ``$MMSTACK_DIR``, or cwd."""
    configured = config_value(c, "stack_dir") or os.environ.get("MMSTACK_DIR")
    return Path(configured).resolve() if configured else Path.cwd()


@dataclass
class Run:
    """One task invocation: stack location, check/diff/json flags and the reporter."""

    c: Context
    stack: Path
    reporter: Reporter
    check: bool = False
    diff: bool = False
    json: bool = False
    _extra: dict[str, Any] = field(default_factory=dict)
    _caches: list[Any] = field(default_factory=list)
    _on_lock: list[Callable[[], None]] = field(default_factory=list)
    _holds_lock: bool = False

    @classmethod
    def start(
        cls,
        c: Context,
        *,
        check: bool = False,
        diff: bool = False,
        json: bool = False,
        reporter: Reporter | None = None,
    ) -> "Run":
        verbose = bool(config_value(c, "verbose"))
        rep = reporter or Reporter(json_mode=json, show_diff=diff, check=check, verbose=verbose)
        return cls(c, stack_dir_of(c), rep, check, diff, json)

    @property
    def state_dir(self) -> Path:
        return self.stack / STATE_DIR_NAME

    @property
    def hand_edit_backups(self) -> Path:
        """Where this stack keeps a file it replaced after a hand edit (`engine.layout`)."""
        return Path(hand_edit_backup_dir(str(self.stack)))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise runs that may write; check mode reads only, so it takes no lock.

        Holding the lock, the run first removes the temp files a killed run left behind, then
        saves what read-only steps before it learnt (`save_when_locked`).
        """
        if self.check:
            yield
            return
        timeout = float(config_value(self.c, "lock_timeout"))
        with stack_lock(self.state_dir, timeout=timeout):
            from .tmpfiles import remove_stale_temp_files

            self._holds_lock = True
            try:
                remove_stale_temp_files(self.stack)
                for save in self._on_lock:
                    save()
                self._on_lock.clear()
                yield
            finally:
                self._holds_lock = False

    def save_when_locked(self, save: Callable[[], None]) -> None:
        """Run ``save`` now if this run holds the lock, else as soon as it takes it (a run that
        fails before then, or never writes, saves nothing)."""
        if self._holds_lock:
            save()
        else:
            self._on_lock.append(save)

    def add_output(self, key: str, value: Any) -> None:
        """Extra data for the JSON document printed by `finish`."""
        self._extra[key] = value

    def keep(self, cache: Any) -> None:
        """Save ``cache`` (an engine.cache.ContentCache) when the run finishes: a run refused
        for bad input never gets there, so it leaves no cache (nor the directory) behind."""
        self._caches.append(cache)

    def finish(self) -> None:
        """Save the kept caches, print the recap; exit non-zero when anything failed."""
        for cache in self._caches:
            cache.save()
        self.reporter.recap(self._extra or None)
        if self.reporter.failed_any:
            raise Exit(code=2)


def boundary(func: F) -> F:
    """Turn typed mmstack errors into a clean `invoke.Exit`: message on stderr, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MultiError as exc:
            raise Exit(str(exc), code=exc.exit_code) from None  # each line says "error:" already
        except MmstackError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except UnexpectedExit as exc:
            # A command failed and the task did not expect it; say which, without the
            # Python traceback (commands never carry secrets, so echoing one is safe).
            result = exc.result
            tail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
            detail = ("\n  " + "\n  ".join(tail)) if tail else ""
            raise Exit(f"error: command failed (exit {result.exited}): {result.command}{detail}",
                       code=1) from None
        except BrokenPipeError:
            # The reader of a pipeline went away (`inv status --json | head`): not our error.
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            raise Exit(code=141) from None
        except (Exit, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence at the task boundary
            if os.environ.get("MMSTACK_DEBUG"):
                raise
            raise Exit(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "  this is a bug in mmstack; rerun with MMSTACK_DEBUG=1 for the traceback",
                code=70,
            ) from None

    return wrapper  # type: ignore[return-value]
