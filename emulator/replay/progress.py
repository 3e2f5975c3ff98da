"""Progress of a long replay on a terminal: one status line on stderr, only when stderr is a TTY.

The replay loop calls ``update`` every few thousand events (never per
event), and the line is redrawn at most every ``INTERVAL`` seconds, so a
replay pays nothing measurable for it; pipes, files and tests get no output.
"""
from __future__ import annotations

import os
import sys
import time

INTERVAL = 0.25          # seconds between redraws
# The loop's update strides (event count masks): the cached path is fast,
# the full model (--check) some hundred times slower.
CACHED_STRIDE = 0xFFFF
FULL_STRIDE = 0x3FF


class Progress:
    """``<trace>: 42% of 26.2 MB, 4,200,000 events`` redrawn in place; erased at the end."""

    __slots__ = ("rd", "out", "name", "total", "shown", "width")

    def __init__(self, rd, out):
        self.rd = rd
        self.out = out
        self.name = rd.path.name
        try:
            self.total = os.path.getsize(rd.path)
        except OSError:
            self.total = 0
        self.shown = 0.0
        self.width = 0

    def update(self, events: int) -> None:
        now = time.monotonic()
        if now - self.shown < INTERVAL:
            return
        self.shown = now
        pos = self.rd.raw_position()
        pct = f"{100 * pos // self.total}% of {self.total / 1e6:.1f} MB, " if self.total else ""
        self._draw(f"{self.name}: {pct}{events:,} events")

    def close(self) -> None:
        if self.width:
            self._draw("")

    def _draw(self, text: str) -> None:
        pad = max(0, self.width - len(text))
        self.out.write("\r" + text + " " * pad + ("\r" if not text else ""))
        self.out.flush()
        self.width = len(text)


def progress_bar(rd, out=None) -> Progress | None:
    """A Progress line for the trace ``rd`` reads, or None when stderr is not a terminal."""
    out = sys.stderr if out is None else out
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Progress(rd, out) if tty else None
