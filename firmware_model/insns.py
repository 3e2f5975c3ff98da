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
    """A register column of the table (status register, handle register)."""
    NONE = "NONE"
    R1 = "R1"
    R2 = "R2"
    R2P1 = "R2P1"


class InsnClass(enum.Enum):
    """What an instruction does; paths and policies select rows by class."""
    LOAD = "LOAD"                 # PCILG
    STORE = "STORE"               # PCISTG
    STORE_BLOCK = "STORE_BLOCK"   # PCISTB
    TRANSLATE = "TRANSLATE"       # RPCIT
    CONFIG = "CONFIG"             # CLP
    CONTROL = "CONTROL"           # MPCIFC
    QUERY = "QUERY"               # STPCIFC
    INTERRUPT = "INTERRUPT"       # SIC
    MIO = "MIO"                   # the virtual-address forms


# the classes that access a function's PCI address spaces
ACCESS = frozenset((InsnClass.LOAD, InsnClass.STORE, InsnClass.STORE_BLOCK))

# ZpciInsn.checks bits, plain ints so the per-instruction preamble tests them at C speed
CHECK_PRIVILEGED = 1    # problem state: privileged-operation exception
CHECK_EVEN_R2 = 2       # odd R2: specification exception (R2 names a register pair)


@dataclass(frozen=True)
class ZpciInsn:
    index: int          # position in the table; the C decoder reports the same index
    opcode: int
    mnemonic: str
    format: Format
    ilen: int
    cls: InsnClass
    privileged: bool
    even_r2: bool
    fh_reg: StatusReg   # register holding the function handle (NONE: no handle)
    status_reg: StatusReg
    handler: str

    @property
    def mio(self) -> bool:
        return self.cls is InsnClass.MIO

    @property
    def checks(self) -> int:
        """The preamble's checks for this row, as CHECK_* bits."""
        return (CHECK_PRIVILEGED if self.privileged else 0) | (CHECK_EVEN_R2 if self.even_r2 else 0)


_LINE = re.compile(
    r"^ZPCI_INSN\(\s*0x([0-9a-fA-F]{4})\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*([246])\s*,"
    r"\s*(\w+)\s*,\s*([01])\s*,\s*([01])\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\)\s*$"
)


def _parse(text: str) -> tuple[ZpciInsn, ...]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.startswith("ZPCI_INSN"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{DEF_PATH.name}:{lineno}: malformed entry: {line!r}")
        op, mnem, fmt, ilen, cls, priv, even, fhr, st, handler = m.groups()
        out.append(ZpciInsn(len(out), int(op, 16), mnem, Format(fmt), int(ilen), InsnClass(cls),
                            priv == "1", even == "1", StatusReg(fhr), StatusReg(st), handler))
    return tuple(out)


TABLE: tuple[ZpciInsn, ...] = _parse(DEF_PATH.read_text())
BY_OPCODE: dict[int, ZpciInsn] = {i.opcode: i for i in TABLE}
BY_MNEMONIC: dict[str, ZpciInsn] = {i.mnemonic: i for i in TABLE}


def rows_of(*classes: InsnClass) -> frozenset[int]:
    """The table indices of the rows of the given classes."""
    return frozenset(i.index for i in TABLE if i.cls in classes)


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
