"""What a run of the CPU reports: why it ended and what it counted."""
from __future__ import annotations

from dataclasses import dataclass, field

from firmware_model.insns import TABLE


class Halt(Exception):
    """Ends a run: the guest quiesced, stopped, or did what we cannot emulate."""

    def __init__(self, exit_code: int, message: str | None, addr: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.addr = addr            # the guest instruction it names, for a symbol


@dataclass
class RunStats:
    insns: int = 0
    zpci: list = field(default_factory=lambda: [0] * len(TABLE))
    privileged: dict = field(default_factory=dict)      # mnemonic -> count
    program_interruptions: dict = field(default_factory=dict)   # code -> count
    blocks: int = 0

    def count_program(self, code: int) -> None:
        s = self.program_interruptions
        s[code] = s.get(code, 0) + 1

    def count_privileged(self, name: str) -> None:
        s = self.privileged
        s[name] = s.get(name, 0) + 1


def insn_hex(t) -> str:
    """The trapping instruction's bytes in hex, as messages name it."""
    return bytes(t.bytes[0:min(t.d.ilen, t.nbytes)]).hex() or "(unreadable)"
