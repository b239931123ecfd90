"""The terminal: whether to colour, and how (one policy, rendered by rich).

Colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``;
``FORCE_COLOR`` forces it. Off a terminal every output is plain text and rich is not even
imported, so pipelines and the no-op runs stay fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

# Item statuses and other roles -> rich styles; the one palette of every mmstack output.
STYLES = {
    "ok": "green", "changed": "yellow", "failed": "red", "skipped": "cyan", "unreachable": "red",
    "heading": "bold", "dim": "dim", "link": "green",
    "critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim",
}


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def colour_enabled(stream: Any = None) -> bool:
    """Colour for ``stream`` (default stdout) under the NO_COLOR / TERM=dumb / FORCE_COLOR rules."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream if stream is not None else sys.stdout)


def console(stream: TextIO, colour: bool | None = None) -> Any:
    """A rich Console on ``stream`` that follows the colour policy (markup and highlighting off:
    what mmstack prints is data, never rich markup)."""
    from rich.console import Console

    colour = colour_enabled(stream) if colour is None else colour
    return Console(file=stream, force_terminal=colour, no_color=not colour, color_system="standard" if colour else None,
                   highlight=False, markup=False, emoji=False, soft_wrap=True)


def paint(text: str, role: str, colour: bool) -> str:
    """``text`` with the style of ``role`` as ANSI codes (rich renders them), or as is."""
    if not colour or not text:
        return text
    from rich.text import Text

    rendered = _renderer()
    with rendered.capture() as cap:
        rendered.print(Text(text, style=STYLES.get(role, role)), end="")
    return cap.get()


_RENDERER: Any = None


def _renderer() -> Any:
    global _RENDERER
    if _RENDERER is None:
        from io import StringIO

        _RENDERER = console(StringIO(), colour=True)
    return _RENDERER


def waiting(message: str, stream: TextIO | None = None) -> Any:
    """A spinner with ``message`` on a terminal while a long wait runs (a context manager);
    nothing off a terminal."""
    stream = stream or sys.stderr
    if not is_terminal(stream) or os.environ.get("TERM") == "dumb":
        from contextlib import nullcontext

        return nullcontext()
    return console(stream).status(message)
