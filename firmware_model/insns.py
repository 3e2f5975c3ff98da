"""The zPCI instruction table, parsed from ``zpci_insns.def``.

The same file is compiled into the C decoder, so the Python dispatch and the
decoder cannot drift apart: an instruction exists for both or for neither.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

DEF_PATH = Path(__file__).with_name("zpci_insns.def")


class Format(enum.Enum):
    RRE = "RRE"
    RRF_C = "RRF_C"
    RSY_A = "RSY_A"
    RXY_A = "RXY_A"


class StatusReg(enum.Enum):
    NONE = "NONE"
    R1 = "R1"
    R2 = "R2"
    R2P1 = "R2P1"


@dataclass(frozen=True)
class ZpciInsn:
    index: int          # position in the table; the C decoder reports the same index
    opcode: int
    mnemonic: str
    format: Format
    ilen: int
    privileged: bool
    status_reg: StatusReg
    handler: str

    @property
    def mio(self) -> bool:
        return not self.privileged


_LINE = re.compile(
    r"^ZPCI_INSN\(\s*0x([0-9a-fA-F]{4})\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*([246])\s*,"
    r"\s*([01])\s*,\s*(\w+)\s*,\s*(\w+)\s*\)\s*$"
)


def _parse(text: str) -> tuple[ZpciInsn, ...]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("ZPCI_INSN"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{DEF_PATH.name}:{lineno}: malformed entry: {line!r}")
        op, mnem, fmt, ilen, priv, st, handler = m.groups()
        out.append(ZpciInsn(len(out), int(op, 16), mnem, Format(fmt), int(ilen),
                            priv == "1", StatusReg(st), handler))
    return tuple(out)


TABLE: tuple[ZpciInsn, ...] = _parse(DEF_PATH.read_text())
BY_OPCODE: dict[int, ZpciInsn] = {i.opcode: i for i in TABLE}
BY_MNEMONIC: dict[str, ZpciInsn] = {i.mnemonic: i for i in TABLE}


class Decoded:
    """One decoded zPCI instruction, with the same field names as the C struct.

    Handlers only read attributes, so a cffi ``zpci_decoded`` works wherever a
    ``Decoded`` does; this class serves the slow paths and tests.
    """

    __slots__ = ("addr", "index", "opcode", "ilen", "r1", "r2", "r3", "m3", "m4",
                 "x2", "b2", "d2", "ipa", "ipb", "flags")

    def __init__(self, addr=0, index=0xFF, opcode=0, ilen=0, r1=0, r2=0, r3=0, m3=0,
                 m4=0, x2=0, b2=0, d2=0, ipa=0, ipb=0, flags=0):
        self.addr, self.index, self.opcode, self.ilen = addr, index, opcode, ilen
        self.r1, self.r2, self.r3, self.m3, self.m4 = r1, r2, r3, m3, m4
        self.x2, self.b2, self.d2, self.ipa, self.ipb, self.flags = x2, b2, d2, ipa, ipb, flags

    @property
    def insn(self) -> ZpciInsn:
        return TABLE[self.index]

    def __eq__(self, other):
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        name = TABLE[self.index].mnemonic if self.index < len(TABLE) else "?"
        return f"Decoded({name} @{self.addr:#x} " + " ".join(
            f"{k}={getattr(self, k)}" for k in ("r1", "r2", "r3", "m3", "m4", "x2", "b2", "d2")) + ")"


def encode(mnemonic: str, r1=0, r2=0, r3=0, m3=0, m4=0, x2=0, b2=0, d2=0) -> bytes:
    """Instruction bytes for a table entry (tests, guests' expectations, traces)."""
    ins = BY_MNEMONIC[mnemonic]
    hi, lo = ins.opcode >> 8, ins.opcode & 0xFF
    if ins.format in (Format.RRE, Format.RRF_C):
        return bytes([hi, lo, (m3 << 4) | m4, (r1 << 4) | r2])
    mid = r3 if ins.format is Format.RSY_A else x2
    d = d2 & 0xFFFFF
    return bytes([hi, (r1 << 4) | mid, (b2 << 4) | ((d >> 8) & 0xF), d & 0xFF, (d >> 12) & 0xFF, lo])
