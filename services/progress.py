"""A console progress bar for long work (backups, restores): one line redrawn on a terminal,
a line every few seconds otherwise (logs of a systemd timer stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``with ProgressBar("dossier.events", total) as bar: bar.advance(n)``."""

    def __init__(self, label: str, total: int, *, out: TextIO | None = None,
                 width: int = 30, every: float = 5.0) -> None:
        self.label, self.total, self.width, self.every = label, max(0, total), width, every
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._last = 0.0
        self._started = time.monotonic()

    def __enter__(self) -> ProgressBar:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._draw(force=True)
        if self._tty:
            self.out.write("\n")
        self.out.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def line(self) -> str:
        share = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        filled = int(share * self.width)
        rate = self.done / max(1e-6, time.monotonic() - self._started)
        return (f"{self.label:<24} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{share * 100:5.1f}% {self.done:,}/{self.total:,} ({rate:,.0f}/s)")

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self._tty else self.every):
            return
        self._last = now
        if self._tty:
            self.out.write("\r" + self.line())
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()
