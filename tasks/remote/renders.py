"""What a deploy uploads, rendered once per distinct file set and shared by every host.

A host's compose, config and env files depend on the environment it runs and on the GPU plan
made from its facts (with its ``gpu:`` overrides from the inventory); its ``stack_dir`` only
moves them (`reroot`). So sixteen identical hosts need one rendering, not sixteen: the first
host that needs a file set renders it, hosts that need the same one wait for it and reuse it,
and hosts with another plan (other GPUs, other overrides) render theirs at the same time.

The rendered bytes are the same a per-host rendering would give: `schema.steps` builds them
(`desired_stack_files`); this module only decides how often.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import posixpath
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.files import DesiredFile

Render = Callable[[str, "dict[str, Any] | None"], Sequence[DesiredFile]]


def file_set_key(environment: str, gpu_plan: dict[str, Any] | None) -> tuple[str, str]:
    """Two hosts share a file set exactly when these are equal (plans compared by value)."""
    return environment, json.dumps(gpu_plan, sort_keys=True, default=str)


@dataclass
class FileSet:
    """One rendering: its inputs, its files (once rendered) and the hosts that use it."""

    environment: str
    gpu_plan: dict[str, Any] | None
    hosts: list[str] = field(default_factory=list)
    files: Sequence[DesiredFile] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_dict(self, order: Sequence[str] = ()) -> dict[str, Any]:
        rank = {name: i for i, name in enumerate(order)}
        plan = self.gpu_plan or {}
        return {
            "environment": self.environment,
            "hosts": sorted(self.hosts, key=lambda h: (rank.get(h, len(rank)), h)),
            "files": len(self.files or ()),
            "vllm_device_ids": list(plan.get("vllm_device_ids") or []),
            "tensor_parallel": plan.get("tensor_parallel"),
        }


class SharedRenders:
    """Hands each host its file set, rendering each distinct one once (thread-safe).

    ``render(environment, gpu_plan)`` makes the files (paths under the local stack directory).
    """

    def __init__(self, render: Render) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._sets: dict[tuple[str, str], FileSet] = {}

    def files_for(self, host: str, environment: str, gpu_plan: dict[str, Any] | None
                  ) -> Sequence[DesiredFile]:
        key = file_set_key(environment, gpu_plan)
        with self._lock:
            entry = self._sets.get(key)
            if entry is None:
                entry = self._sets[key] = FileSet(environment, gpu_plan)
            entry.hosts.append(host)
        with entry.lock:  # the first host renders; the others with this key wait for it
            if entry.files is None:
                entry.files = tuple(self._render(environment, gpu_plan))
        return entry.files

    @property
    def file_sets(self) -> list[FileSet]:
        with self._lock:
            return [s for s in self._sets.values() if s.files is not None]

    def to_list(self, order: Sequence[str] = ()) -> list[dict[str, Any]]:
        return [s.to_dict(order) for s in self.file_sets]


def reroot(files: Sequence[DesiredFile], local_root: Path, remote_root: str) -> list[DesiredFile]:
    """Move desired files from the local stack directory to the host's ``stack_dir``."""
    out = []
    for f, rel in zip(files, relative_paths(tuple(files), local_root)):
        out.append(dataclasses.replace(f, path=Path(posixpath.join(remote_root, rel))))
    return out


@functools.lru_cache(maxsize=64)
def relative_paths(files: tuple[DesiredFile, ...], local_root: Path) -> tuple[str, ...]:
    """Each file's path under ``local_root``, POSIX-style; computed once per file set (every
    host of the set shares it), not once per host."""
    out = []
    for f in files:
        path = Path(f.path)
        out.append((path.relative_to(local_root) if path.is_absolute() else path).as_posix())
    return tuple(out)


def stack_renders(stack: Any, secrets: Mapping[str, dict[str, str]],
                  bytecode_dir: Path | None = None) -> SharedRenders:
    """`SharedRenders` for a loaded `Stack`, with each environment's secrets (``bytecode_dir``:
    where compiled templates are kept between runs, as `inv setup` keeps them)."""
    from ..schema.steps import desired_stack_files

    def render(environment: str, gpu_plan: dict[str, Any] | None) -> Sequence[DesiredFile]:
        return desired_stack_files(stack.root, environment, gpu_plan, secrets[environment], stack,
                                   bytecode_dir)

    return SharedRenders(render)
