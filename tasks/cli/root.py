"""The root namespace: every task at the top level, named after the original make targets.

Each concern lives in its own collection module exporting ``ns`` (with its config defaults);
here their tasks are lifted to the top level, so users type `inv start-dev`, not
`inv stack.start-dev`. Collection modules import nothing heavy at load time, which keeps
`inv --list` and shell completion fast.
"""

from __future__ import annotations

from importlib import import_module

from invoke import Collection

# Order is the order of `inv --list` sections in the README.
MODULES = ("setup", "compose", "security", "secrets", "gpu", "stack", "remote", "verify")


def build_namespace() -> Collection:
    root = Collection()
    config: dict = {}
    for name in MODULES:
        module = import_module(f"{__package__}.{name}")
        sub: Collection = module.ns
        for task_name, task_obj in sub.tasks.items():
            root.add_task(task_obj, task_name)
        _deep_update(config, sub.configuration())
    root.configure(config)
    return root


def _deep_update(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


ns = build_namespace()
