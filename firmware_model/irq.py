"""zPCI adapter interruptions: from an MSI-X write to a pending I/O interruption.

The guest-visible path is QEMU 7.2's (the reference, as for every
instruction), the same under every policy:

* ``msi_deliver`` is s390_msi_ctrl_write: the vector (data & 0x7ff) sets bit
  aibvo + vector of the function's adapter-interruption bit vector (AIBV) and
  bit aisbo of its summary (AISB), both numbered from the most significant
  bit of the first byte; an interruption is raised only when the summary
  *byte* was zero before (QEMU tests the old byte, not the bit).  QEMU checks
  neither the registration nor noi nor sum: an unregistered function's bits
  land at absolute 0 + offset, as QEMU's zeroed routes put them.
* ``raise_adapter_interrupt`` is css_adapter_interrupt through the TCG FLIC
  (adapter interruption suppression, facility 72): in SIC single mode the
  first interruption of an ISC switches it to no-interruptions mode until the
  next SIC.
* ``Flic`` holds the pending I/O interruptions per ISC as QEMU's FLIC does:
  each one queued at the head of its ISC's list, the CPU takes the lowest ISC
  its CR6 enables, the most recently queued first.

How each interrupt reaches the guest is accounting, never semantics
(interpretation is transparent): irq_routes.py, which ``Flic.observer``
connects to every adapter event.  docs/interrupts.md.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .arch import MASK64, FnState, Pec, ZPCI_MSI_VEC_MASK

# kind of the trace NOTE record a recorded run leaves its interrupt counts in
IRQ_NOTE = "adapter-interrupts"
IO_INT_WORD_AI = 0x80000000        # I/O-interruption word: adapter interruption
IO_INT_WORD_ISC_SHIFT = 27
NUM_ISC = 8


def isc_mask(isc: int) -> int:
    """The ISC's bit in CR6 bits 32-39 (as a byte: 0x80 >> isc), GISA IPM order too."""
    return 0x80 >> isc


@dataclass(frozen=True, slots=True)
class IoInterruption:
    """What an I/O interruption stores at lowcore 0xb8-0xc3 (TPI's interruption code)."""
    subchannel_id: int
    subchannel_nr: int
    parm: int
    word: int

    @property
    def isc(self) -> int:
        return (self.word >> IO_INT_WORD_ISC_SHIFT) & 7

    @classmethod
    def adapter(cls, isc: int) -> "IoInterruption":
        # css_adapter_interrupt: no subchannel, no parameter
        return cls(0, 0, 0, IO_INT_WORD_AI | (isc << IO_INT_WORD_ISC_SHIFT))


class Flic:
    """QEMU's TCG floating-interrupt controller, I/O part: pending interruptions per ISC.

    ``pending`` has the byte bit (``isc_mask``) of every ISC with something
    queued, so ``has_io(cr6)`` is one AND.  ``observer`` (set by the
    accounting) sees every adapter event; ``vcpu_idle`` is what the CPU says
    about itself (in an enabled wait), which only the routes read.
    """

    __slots__ = ("io", "pending", "delivered", "observer", "vcpu_idle")

    def __init__(self):
        self.io: list[list[IoInterruption]] = [[] for _ in range(NUM_ISC)]
        self.pending = 0
        self.delivered = 0
        self.observer = None
        self.vcpu_idle = False

    def inject_io(self, irq: IoInterruption) -> None:
        self.io[irq.isc].append(irq)           # the list's end is QEMU's head
        self.pending |= isc_mask(irq.isc)

    def has_io(self, cr6: int) -> bool:
        return bool(self.pending & (cr6 >> 24) & 0xFF)

    def dequeue_io(self, cr6: int) -> IoInterruption | None:
        """qemu_s390_flic_dequeue_io: the lowest enabled ISC, its newest interruption."""
        enabled = self.pending & (cr6 >> 24) & 0xFF
        if not enabled:
            return None
        for isc in range(NUM_ISC):
            if enabled & isc_mask(isc):
                q = self.io[isc]
                irq = q.pop()
                if not q:
                    self.pending &= ~isc_mask(isc)
                self.delivered += 1
                return irq
        return None                            # not reached: a pending bit has a queue

    def reset(self) -> None:
        for q in self.io:
            q.clear()
        self.pending = 0


# --- the adapter-event path (guest-visible, QEMU 7.2) ---------------------------

class Raised(enum.Enum):
    """What became of one adapter event's interruption."""
    RAISED = "raised"                  # an I/O adapter interruption was made pending
    SUMMARY = "summary-set"            # the summary byte was already non-zero: none raised
    AIS = "ais-suppressed"             # SIC single mode had already given its one interruption


def _set_indicator(bus, addr: int, bits: int) -> int:
    """set_ind_atomic: OR bits into a guest byte; the previous value, 0xff on failure."""
    mem = bus.memory
    old = mem.read(addr & MASK64, 1) if mem is not None else None
    if old is None:
        bus.error_event(Pec.AIRERR, None)
        return 0xFF
    mem.write(addr & MASK64, bytes([old[0] | bits]))
    return old[0]


def raise_adapter_interrupt(bus, isc: int) -> bool:
    """css_adapter_interrupt via the FLIC, with SIC's single-interruption suppression.

    SIC keeps its state where handle_sic sets it: ``bus.ais_single`` (QEMU's
    simm) and ``bus.ais_pending`` (nimm).  False: suppressed.
    """
    if isc in bus.ais_single:
        if isc in bus.ais_pending:
            return False
        bus.ais_pending.add(isc)
    bus.adapter_interrupts.append(isc)
    bus.flic.inject_io(IoInterruption.adapter(isc))
    return True


def msi_deliver(fn, data: int) -> None:
    """s390_msi_ctrl_write: vector -> AIBV bit, summary bit, maybe an adapter interrupt."""
    if fn.state is not FnState.ENABLED:
        return
    bus = fn.bus
    vec = data & ZPCI_MSI_VEC_MASK
    bit = fn.aibvo + vec
    _set_indicator(bus, fn.aibv + bit // 8, 0x80 >> (bit % 8))
    if _set_indicator(bus, fn.aisb + fn.aisbo // 8, 0x80 >> (fn.aisbo % 8)) != 0:
        raised = Raised.SUMMARY
    elif raise_adapter_interrupt(bus, fn.isc):
        raised = Raised.RAISED
    else:
        raised = Raised.AIS
    observer = bus.flic.observer
    if observer is not None:
        observer(fn, vec, raised)
