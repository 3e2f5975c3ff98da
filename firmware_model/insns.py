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
