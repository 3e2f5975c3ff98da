"""The kernel function at a guest address, for the line a stopped Linux boot ends with.

The symbol table is the one the kernel carries (kallsyms), decoded from the
decompressed image by emulator.capture.kernel; it is read only when a run
stops on something not modelled, and only for a Linux kernel image.
"""
from __future__ import annotations

import bisect
from pathlib import Path

from emulator.errors import UserError


def function_at(kernel: str | Path, addr: int) -> str | None:
    """``name+0xoff`` for ``addr`` in the kernel image ``kernel``, or None."""
    from emulator.capture import kernel as K
    try:
        img = K.extract_image(Path(kernel).read_bytes(), where=str(kernel))
        syms = sorted((s.addr, s.name) for s in K.kallsyms(img)
                      if s.type.lower() in ("t", "w"))
    except (OSError, UserError, ValueError, IndexError):
        return None
    starts = [a for a, _ in syms]
    i = bisect.bisect_right(starts, addr) - 1
    if i < 0 or not syms:
        return None
    start, name = syms[i]
    if i + 1 == len(syms) and addr - start > 1 << 20:
        return None
    return f"{name}+{addr - start:#x}"
