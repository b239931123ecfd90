"""Typed errors raised inside mmstack; the task boundary turns them into `invoke.Exit`.

Every error says *where* (file, line, key path) and *how to fix it*, because the person reading
it is usually in the middle of editing a YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MmstackError(Exception):
    """Base error: a message plus where it happened and what to do about it."""

    message: str
    file: str | None = None
    line: int | None = None
    key_path: str | None = None
    fix: str | None = None
    exit_code: int = 1

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def location(self) -> str:
        where = self.file or ""
        if where and self.line:
            where += f":{self.line}"
        if self.key_path:
            where = f"{where}: {self.key_path}" if where else self.key_path
        return where

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class SchemaError(MmstackError):
    """The compose schema (or a settings file) is malformed or inconsistent."""


class MultiError(MmstackError):
    """Several errors found in one pass; all are reported, not just the first."""

    errors: list[MmstackError]

    def __init__(self, errors: list[MmstackError], exit_code: int = 1) -> None:
        self.errors = list(errors)
        super().__init__(
            message=f"{len(self.errors)} error(s)",
            exit_code=exit_code,
        )

    def __str__(self) -> str:
        return "\n".join(f"error: {e}" for e in self.errors)


class TemplateError(MmstackError):
    """An env template failed to render (unknown variable, syntax error)."""


class ConfigError(MmstackError):
    """A task argument or configuration value is invalid."""


class SecretsError(MmstackError):
    """The secrets store is missing, unreadable, or cannot be decrypted."""


class LockError(MmstackError):
    """Another mmstack run holds the stack lock."""


class DockerError(MmstackError):
    """The Docker engine or Compose is missing, unreachable, or failed."""


class GpuError(MmstackError):
    """GPU facts could not be read or parsed."""


class RemoteError(MmstackError):
    """A remote host could not be reached or a remote step failed."""
