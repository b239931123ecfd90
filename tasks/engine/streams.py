"""Writing a command's output as it streams: whole lines only, each masked and, when several
hosts write at once, prefixed with the host's name under one shared lock (so lines from two
hosts never interleave mid-line, and a secret split across two chunks is still masked)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TextIO


class LineWriter:
    """A file-like for ``c.run(out_stream=...)``: buffers chunks, writes whole lines as
    ``<prefix> | line`` (or ``line`` without a prefix), masked by ``mask``."""

    def __init__(self, out: TextIO, lock: threading.Lock | None = None, prefix: str = "",
                 mask: Callable[[str], str] | None = None) -> None:
        self.out, self.prefix, self.buf = out, prefix, ""
        self.lock = lock or threading.Lock()
        self.mask = mask or (lambda text: text)

    def _line(self, line: str) -> str:
        line = self.mask(line)
        return f"{self.prefix} | {line}\n" if self.prefix else f"{line}\n"

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        if lines:
            with self.lock:
                self.out.write("".join(self._line(line) for line in lines))
                self.out.flush()
        return len(text)

    def flush(self) -> None:
        if self.buf:
            with self.lock:
                self.out.write(self._line(self.buf))
                self.out.flush()
            self.buf = ""
