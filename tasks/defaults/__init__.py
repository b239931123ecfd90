"""The stack files mmstack ships: the schema, the env templates and the sample inventory.

Installed, they are the packages ``mmstack.defaults.schemas``, ``.env_templates`` and
``.inventory`` (mapped from the repository's top-level folders in pyproject.toml); in a checkout
they are those folders themselves. `shipped_file` finds one either way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"schemas": "schemas", "env_templates": "env-templates", "inventory": "inventory"}


def shipped_files(kind: str) -> dict[str, bytes]:
    """File name -> content of one kind of shipped file (``schemas``, ``env_templates``, ...)."""
    try:
        root = resources.files(f"{__name__}.{kind}")
        entries = {e.name: e.read_bytes() for e in root.iterdir()
                   if e.is_file() and not e.name.startswith(("_", "."))}
        if entries:
            return entries
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    folder = REPO_ROOT / FOLDERS[kind]  # a checkout: the top-level folder itself
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
