"""The `mmstack` console command: the same task tree, for a stack directory anywhere.

    mmstack setup                       # the stack in the current directory
    MMSTACK_DIR=/srv/stack mmstack status
    mmstack --print-completion-script bash
"""

from __future__ import annotations

from invoke import Program

from .root import ns

VERSION = "0.1.0"


def main() -> None:
    Program(namespace=ns, version=VERSION, name="mmstack", binary="mmstack").run()

