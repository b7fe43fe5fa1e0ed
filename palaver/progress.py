"""A one-line progress bar on stderr, for commands that take a while (``palaver replay``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``label [#####.....] done/total unit note``, redrawn at most five times a second and at the end.
    ``quiet``: draw nothing (not a terminal, or asked to be quiet)."""

    def __init__(self, label: str, total: float, unit: str = "", quiet: bool = False, out: TextIO | None = None):
        self.label, self.total, self.unit, self.quiet = label, max(total, 1e-9), unit, quiet
        self.done = 0.0
        self._out = out or sys.stderr
        self._last = 0.0
        self._drawn = False

    def update(self, done: float, note: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.2 and done < self.total):
            return
        self._last = now
        filled = int(30 * min(done, self.total) / self.total)
        unit = f" {self.unit}" if self.unit else ""
        self._out.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                        f"{done:.0f}/{self.total:.0f}{unit} {note}   ")  # fmt: skip
        self._out.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._out.write("\n")
            self._out.flush()
