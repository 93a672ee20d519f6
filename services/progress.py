"""A console progress bar for long work (backups, restores, audit verify/copy/export): one
line redrawn on a terminal, a line every few seconds otherwise (logs of a systemd timer stay
readable) — or, with ``tty_only``, nothing but the closing summary when not on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock_text(seconds: float) -> str:
    """``0:07``, ``12:05``, ``1:02:03``: minutes and seconds, hours when there are some."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """``with ProgressBar("dossier.events", total) as bar: bar.advance(n)``.

    ``start(total)`` sets a total counted after the bar opened (and starts its clock);
    ``summary``, when set, is printed as the last line on close, on a terminal or not."""

    def __init__(self, label: str, total: int, *, out: TextIO | None = None,
                 width: int = 30, every: float = 5.0, tty_only: bool = False) -> None:
        self.label, self.total, self.width, self.every = label, max(0, total), width, every
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self.summary: str | None = None
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._tty_only = tty_only
        self._drawing = self._tty or not tty_only
        self._last = 0.0
        self.started = time.monotonic()

    def __enter__(self) -> ProgressBar:
        if self.total or not self._tty_only:  # a total still to come is drawn by ``start``
            self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._draw(force=True)
        if self._tty and self._drawing:
            self.out.write("\n")
        if self.summary is not None:
            self.out.write(self.summary + "\n")
        self.out.flush()

    def start(self, total: int) -> None:
        self.total, self.done = max(0, total), 0
        self.started = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def line(self) -> str:
        share = 1.0 if self.total == 0 else min(1.0, self.done / self.total)
        filled = int(share * self.width)
        rate = self.done / max(1e-6, time.monotonic() - self.started)
        eta = f" ETA {clock_text((self.total - self.done) / rate)}" \
            if 0 < self.done < self.total and rate > 0 else ""
        return (f"{self.label:<24} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{share * 100:5.1f}% {self.done:,}/{self.total:,} ({rate:,.0f}/s){eta}")

    def _draw(self, force: bool = False) -> None:
        if not self._drawing:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self._tty else self.every):
            return
        self._last = now
        if self._tty:
            self.out.write("\r" + self.line() + "\x1b[K")  # clear what a longer line left
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()
