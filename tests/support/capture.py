"""A `Run` whose reporter writes into buffers, for tests that call task steps in-process."""

from __future__ import annotations

import io
from dataclasses import dataclass

from tasks.engine.run import Run


@dataclass
class Captured:
    run: Run
    out: io.StringIO
    err: io.StringIO

    @property
    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()
