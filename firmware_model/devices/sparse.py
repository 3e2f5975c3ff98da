"""Device memory that costs nothing until it is written.

A BAR, a test device's memory or a block image in memory can be as large as
a property says (a terabyte from a trace header) while a guest touches a
few pages of it.  ``SparseBytes`` holds ``size`` bytes as 4 KiB pages made
on the first write to them; an unwritten page reads as zeros, or as what
``base(offset, length)`` gives (the file under a snapshot drive).  Reads
and slices clip at ``size`` as a bytearray's do; a write past ``size`` is
cut there, so the memory never grows.
"""
from __future__ import annotations

from typing import Callable

PAGE = 4096


class SparseBytes:
    __slots__ = ("size", "pages", "_base")

    def __init__(self, size: int, base: Callable[[int, int], bytes] | None = None):
        if size < 0:
            raise ValueError(f"negative size {size}")
        self.size = size
        self.pages: dict[int, bytearray] = {}
        self._base = base

    def __len__(self) -> int:
        return self.size

    def _unwritten(self, offset: int, length: int) -> bytes:
        if self._base is None:
            return bytes(length)
        return self._base(offset, length).ljust(length, b"\0")[:length]

    def read(self, offset: int, length: int) -> bytes:
        offset = max(offset, 0)
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        page, off = divmod(offset, PAGE)
        if off + (end - offset) <= PAGE:          # the usual case: one page
            buf = self.pages.get(page)
            if buf is None:
                return self._unwritten(offset, end - offset)
            return bytes(buf[off:off + end - offset])
        out = bytearray()
        pos = offset
        while pos < end:
            page, off = divmod(pos, PAGE)
            n = min(PAGE - off, end - pos)
            buf = self.pages.get(page)
            out += self._unwritten(pos, n) if buf is None else buf[off:off + n]
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        pos = max(offset, 0)
        i = pos - offset
        end = min(offset + len(data), self.size)
        while pos < end:
            page, off = divmod(pos, PAGE)
            n = min(PAGE - off, end - pos)
            buf = self.pages.get(page)
            if buf is None:
                start = page * PAGE
                buf = self.pages[page] = bytearray(
                    self._unwritten(start, min(PAGE, self.size - start)).ljust(PAGE, b"\0"))
            buf[off:off + n] = data[i:i + n]
            pos += n
            i += n

    def clear(self) -> None:
        """Every byte back to its unwritten value."""
        self.pages.clear()

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise ValueError("SparseBytes slices take no step")
            return self.read(start, max(stop - start, 0))
        if key < 0:
            key += self.size
        if not 0 <= key < self.size:
            raise IndexError("SparseBytes index out of range")
        return self.read(key, 1)[0]

    def __setitem__(self, key: int | slice, value) -> None:
        """``m[i] = byte`` and ``m[a:b] = data`` of the same length (the size never changes)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            data = bytes(value)
            if step != 1 or len(data) != max(stop - start, 0):
                raise ValueError("SparseBytes slice assignment keeps the size")
            self.write(start, data)
            return
        if key < 0:
            key += self.size
        if not 0 <= key < self.size:
            raise IndexError("SparseBytes index out of range")
        self.write(key, bytes((value,)))
