"""The guest and the devices a replayed event runs against, rebuilt from the recording.

``ReplayGuest`` holds one event's recorded registers and sparse recorded
memory; ``ReplayDevice`` wraps a device model so that loads answer what the
guest received.  Anything the model reads that the recording lacks is noted,
so the event is never counted as checked.
"""
from __future__ import annotations

from emulator.trace.format import F_PGM_KNOWN, F_PSW, Event
from firmware_model.guest import MASK64

PGM_PRIVILEGED = 0x02


class ReplayGuest:
    """A guest rebuilt from one event: recorded registers, sparse recorded memory.

    Reading a register or memory the recording does not hold gives zeros (or
    ``fill``, repeated at 8-byte alignment) and marks the event incomplete, so
    it is never counted as checked.
    """

    __slots__ = ("gprs", "known", "segs", "memsize", "problem_state", "missing", "written_regs",
                 "writes", "fill", "absolute")

    def __init__(self, ev: Event | None, memsize: int, fill: bytes | None = None):
        # the recording holds the firmware's absolute reads among the event's
        self.absolute = self
        self.memsize = memsize
        if ev is not None:
            self.reset(ev, fill)

    def reset(self, ev: Event, fill: bytes | None = None) -> None:
        """Become the guest of ``ev``: one object serves a machine's whole replay,
        attached as its storage, so the device's DMA sees the same recording."""
        self.fill = fill
        self.gprs = [0] * 16
        self.known = 0
        for r, v in ev.regs_in:
            self.gprs[r] = v
            self.known |= 1 << r
        self.segs: list[list] = [[a, bytearray(d)] for a, d in ev.reads]
        if ev.flags & F_PSW:
            self.problem_state = bool((ev.pswm_before >> 48) & 1)
        else:
            # No PSW in the trace: a privileged-operation exception on a
            # privileged instruction is only recognised in problem state.
            self.problem_state = bool(ev.flags & F_PGM_KNOWN and ev.pgm == PGM_PRIVILEGED
                                      and ev.info.privileged)
        self.missing: list[str] = []
        self.written_regs = 0
        self.writes: list[tuple[int, bytes]] = []

    def copy(self) -> "ReplayGuest":
        """This event's guest as it stands, apart from the one the machine reuses."""
        c = ReplayGuest(None, self.memsize)
        c.fill, c.gprs, c.known = self.fill, list(self.gprs), self.known
        c.segs = [[a, bytearray(d)] for a, d in self.segs]
        c.problem_state, c.missing = self.problem_state, list(self.missing)
        c.written_regs, c.writes = self.written_regs, list(self.writes)
        return c

    def gpr(self, r: int) -> int:
        if not (self.known >> r) & 1 and not (self.written_regs >> r) & 1:
            self.missing.append(f"r{r}")
        return self.gprs[r]

    def set_gpr(self, r: int, value: int) -> None:
        self.gprs[r] = value & MASK64
        self.written_regs |= 1 << r

    def _bounded(self, addr: int, size: int) -> bool:
        return addr >= 0 and size >= 0 and (not self.memsize or addr + size <= self.memsize)

    def peek(self, addr: int, size: int) -> bytes | None:
        """Memory as recorded plus what this event wrote; None where any byte is unknown."""
        end = addr + size
        for a, d in reversed(self.segs):
            # the latest segment that overlaps wins; if it holds the whole
            # range (an RPCIT's table entry, a block read back), that is all
            if a < end and addr < a + len(d):
                if a <= addr and end <= a + len(d):
                    return bytes(d[addr - a:end - a])
                break
        out = bytearray(size)
        have = bytearray(size)
        for a, d in self.segs:
            lo, hi = max(a, addr), min(a + len(d), addr + size)
            if lo < hi:
                out[lo - addr:hi - addr] = d[lo - a:hi - a]
                have[lo - addr:hi - addr] = b"\1" * (hi - lo)
        return bytes(out) if all(have) else None

    def read(self, addr: int, size: int) -> bytes | None:
        if not self._bounded(addr, size):
            return None
        data = self.peek(addr, size)
        if data is None:
            self.missing.append(f"memory {addr:#x}+{size}")
            if self.fill is None:
                return bytes(size)
            pat = self.fill[addr & 7:] + self.fill * ((size >> 3) + 2)
            base = bytearray(pat[:size])
            for a, d in self.segs:
                lo, hi = max(a, addr), min(a + len(d), addr + size)
                if lo < hi:
                    base[lo - addr:hi - addr] = d[lo - a:hi - a]
            return bytes(base)
        return data

    def write(self, addr: int, data: bytes) -> bool:
        if not self._bounded(addr, len(data)):
            return False
        data = bytes(data)
        self.segs.append([addr, bytearray(data)])      # later segments win in peek()
        self.writes.append((addr, data))
        return True


def _bswap(value: int, size: int) -> int:
    return int.from_bytes((value & ((1 << 8 * size) - 1)).to_bytes(size, "little"), "big")


class ReplayDevice:
    """A device model whose loads answer what the recording says the guest got.

    Structure (BAR sizes, access rules, config writes) is the real model's,
    so the firmware model's checks see a real device.  ``live``: the trace
    holds every guest memory access an instruction caused, device DMA
    included (boot traces, where the same models ran), so BAR stores reach
    the model and it does its DMA against the recorded memory; loads still
    run in the model for their side effects.  Otherwise (a Linux capture
    under QEMU) the device side of a store cannot be replayed and stores stop
    here.
    """

    # PciDevice's optional access ops would reach the real model around the
    # recording: without them the model calls config_read/bar_read/bar_write here
    config_load_op = bar_read_op = bar_write_op = None

    def __init__(self, inner, live: bool = False):
        self.inner = inner
        self.live = live
        self.kind = getattr(inner, "kind", "none")
        self.loaded: int | None = None          # the value the current PCILG returned

    @property
    def dma(self):
        return self.inner.dma

    @dma.setter
    def dma(self, port):
        self.inner.dma = port

    def __getattr__(self, name):                 # vendor_id, device_id, anything else
        return getattr(self.inner, name)

    def config_read(self, offset, size):
        if self.loaded is None:
            return self.inner.config_read(offset, size)
        if self.live:
            self.inner.config_read(offset, size)
        return self.loaded if size == 1 else _bswap(self.loaded, size)

    def config_write(self, offset, size, value):
        return self.inner.config_write(offset, size, value)

    def bar_size(self, bar):
        return self.inner.bar_size(bar)

    def _valid(self, bar, offset, size, write):
        valid = getattr(self.inner, "bar_access_valid", None)
        if valid is not None:
            return valid(bar, offset, size, write)
        return 0 <= offset and offset + size <= self.inner.bar_size(bar)

    def bar_read(self, bar, offset, size):
        if self.loaded is None:
            return self.inner.bar_read(bar, offset, size)
        if self.live:
            if self.inner.bar_read(bar, offset, size) is None:
                return None
        elif not self._valid(bar, offset, size, False):
            return None
        return self.loaded & ((1 << 8 * size) - 1)

    def bar_write(self, bar, offset, size, value):
        if self.live:
            return self.inner.bar_write(bar, offset, size, value)
        return self._valid(bar, offset, size, True)

    def reset(self):
        self.inner.reset()
