"""The file sets a user would start: base + environment overlay + profiles."""

from __future__ import annotations

from dataclasses import dataclass

from .generate import BASE_FILE, env_file_name
from .model import Stack


@dataclass(frozen=True)
class FileSet:
    files: tuple[str, ...]
    profiles: tuple[str, ...]

    @property
    def label(self) -> str:
        return " + ".join(self.files) + "".join(f" --profile {p}" for p in self.profiles)

    def args(self) -> list[str]:
        out: list[str] = []
        for f in self.files:
            out += ["-f", f]
        for p in self.profiles:
            out += ["--profile", p]
        return out


def environment_file_set(env: str, extra_profiles: tuple[str, ...] = ()) -> FileSet:
    return FileSet((BASE_FILE, env_file_name(env)), (env, *extra_profiles))


def file_sets(stack: Stack, environments: list[str]) -> list[FileSet]:
    """Each environment alone and with each stack; the base with each stack and environment."""
    sets: list[FileSet] = []
    for env in environments:
        sets.append(environment_file_set(env))
        sets += [environment_file_set(env, (s,)) for s in stack.stack_names]
    sets += [FileSet((BASE_FILE,), (s,)) for s in stack.stack_names]
    return sets
