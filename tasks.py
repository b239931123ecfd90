"""Invoke entry point for the stack in this directory: `inv --list` shows every task.

Invoke imports this file as the module `tasks`, which would hide the `tasks/` package next to
it; giving the module a `__path__` makes it that package's stand-in, so `tasks.cli...` resolves
to the files in tasks/.
"""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().with_name("tasks"))]

from tasks.cli.root import ns  # noqa: E402

# Tasks act on the stack in this directory, wherever `inv` is started from.
ns.configure({"mmstack": {"stack_dir": str(Path(__file__).resolve().parent)}})
