"""Progress of a long replay on a terminal: a byte bar on stderr, only when stderr is a TTY."""
from __future__ import annotations

import os
import sys


def progress_bar(rd):
    """A tqdm bar over the trace file's bytes, or None (stderr not a terminal, no tqdm)."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:            # pragma: no cover
        return None
    return tqdm(total=os.path.getsize(rd.path), unit="B", unit_scale=True,
                desc=rd.path.name, leave=False, file=sys.stderr)
