"""The Function Information Block (MPCIFC input, STPCIFC output), 80 bytes big-endian."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .arch import FIB_SIZE

# fmt, 7 reserved, fc, 7 reserved, pba, pal, iota, data, reserved, aibv, aisb, fmb_addr, reserved, gd
_FIB = struct.Struct(">B7xB7xQQQI4xQQQ4xI")
assert _FIB.size == FIB_SIZE


@dataclass(frozen=True, slots=True)
class Fib:
    fmt: int = 0
    fc: int = 0
    pba: int = 0
    pal: int = 0
    iota: int = 0
    # format-0 interruption word (offset 40), split as QEMU's FIB_DATA_* macros
    isc: int = 0
    noi: int = 0
    aibvo: int = 0
    sum: int = 0
    aisbo: int = 0
    aibv: int = 0
    aisb: int = 0
    fmb_addr: int = 0
    gd: int = 0

    @property
    def data(self) -> int:
        """The interruption word as STPCIFC rebuilds it."""
        return (((self.isc & 0x7) << 28) | ((self.noi & 0xFFF) << 16) | ((self.aibvo & 0x3F) << 8)
                | ((self.sum & 1) << 7) | (self.aisbo & 0x3F))

    @classmethod
    def unpack(cls, raw: bytes) -> "Fib":
        fmt, fc, pba, pal, iota, data, aibv, aisb, fmb_addr, gd = _FIB.unpack(raw[:FIB_SIZE])
        return cls(fmt, fc, pba, pal, iota, (data >> 28) & 0x7, (data >> 16) & 0xFFF,
                   (data >> 8) & 0x3F, (data >> 7) & 1, data & 0x3F, aibv, aisb, fmb_addr, gd)

    def pack(self) -> bytes:
        return _FIB.pack(self.fmt, self.fc, self.pba, self.pal, self.iota, self.data,
                         self.aibv, self.aisb, self.fmb_addr, self.gd)
