"""What an instruction handler may touch of the guest: one vCPU's registers and memory.

Handlers see only this interface, so the same model serves the unicorn
emulator, trace replay and the tests.
"""
from __future__ import annotations

from typing import Protocol

from .arch import MASK64


class Guest(Protocol):
    problem_state: bool
    # Absolute storage as the firmware reaches it for this vCPU: the DMA
    # tables an IOTA anchors are absolute whatever translation the CPU has
    # on; the instruction's own operands (read, write) are logical.  A guest
    # with no DAT is its own absolute view.
    absolute: "Guest"

    def gpr(self, r: int) -> int: ...

    def set_gpr(self, r: int, value: int) -> None: ...

    def read(self, addr: int, size: int) -> bytes | None:
        """Absolute guest memory; None where the range is not all present (addressing)."""

    def write(self, addr: int, data: bytes) -> bool:
        """False (and nothing written) where the range is not all present."""


class SimpleGuest:
    """A flat guest: 16 GPRs and ``size`` bytes of memory from address 0."""

    __slots__ = ("gprs", "mem", "problem_state", "absolute")

    def __init__(self, size: int = 1 << 20, gprs=None, problem_state: bool = False):
        self.absolute = self
        self.mem = bytearray(size)
        self.gprs = list(gprs) if gprs is not None else [0] * 16
        self.problem_state = problem_state

    def gpr(self, r: int) -> int:
        return self.gprs[r]

    def set_gpr(self, r: int, value: int) -> None:
        self.gprs[r] = value & MASK64

    def read(self, addr: int, size: int) -> bytes | None:
        if addr < 0 or size < 0 or addr + size > len(self.mem):
            return None
        return bytes(self.mem[addr:addr + size])

    def write(self, addr: int, data: bytes) -> bool:
        if addr < 0 or addr + len(data) > len(self.mem):
            return False
        self.mem[addr:addr + len(data)] = data
        return True


class RecordingGuest:
    """Wraps a Guest and logs the memory an instruction read and wrote (for traces).

    ``log``: another RecordingGuest whose lists this one appends to, so an
    instruction's operand accesses (one view) and its device's DMA (the
    machine's storage) land in one log, in the order they happened.
    """

    __slots__ = ("inner", "reads", "writes", "absolute")

    def __init__(self, inner: Guest, log: "RecordingGuest | None" = None):
        self.inner = inner
        self.reads: list[tuple[int, bytes]] = log.reads if log is not None else []
        self.writes: list[tuple[int, bytes]] = log.writes if log is not None else []
        # the firmware's absolute reads land in the same log, in order
        absolute = getattr(inner, "absolute", inner)
        self.absolute = self if absolute is inner else RecordingGuest(absolute, log=self)

    def clear(self) -> None:
        """Start the next instruction's log (lists shared with views stay shared)."""
        self.reads.clear()
        self.writes.clear()

    @property
    def problem_state(self) -> bool:
        return self.inner.problem_state

    def gpr(self, r: int) -> int:
        return self.inner.gpr(r)

    def set_gpr(self, r: int, value: int) -> None:
        self.inner.set_gpr(r, value)

    def read(self, addr: int, size: int) -> bytes | None:
        data = self.inner.read(addr, size)
        if data is not None:
            self.reads.append((addr, data))
        return data

    def write(self, addr: int, data: bytes) -> bool:
        ok = self.inner.write(addr, data)
        if ok:
            self.writes.append((addr, bytes(data)))
        return ok
