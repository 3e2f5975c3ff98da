"""QEMU 7.2's userspace intercept path: the reference semantics of every zPCI instruction.

One ``handle_<name>`` per table row (``zpci_insns.def`` handler column),
signature ``(ctx, d, guest) -> Completion``; ``ctx.bus`` is the ZpciBus.
Each finds the function the way QEMU does (by its bus, hw/s390x/s390-pci-inst.c),
then runs QEMU's checks in QEMU's order; what is the same on every path
(PCI access, PCISTB, RPCIT from the function state on, the measurement
block) comes from semantics.py, and the table's checks (privileged, even
R2) ran in the preamble before any handler.  Where QEMU has a bug the
architecture wins and docs/deviations.md says so.

``UserspaceHandler(bus)``: ``rows[index](d, guest)`` is the handler of a row
bound to the handler (the dispatcher's entry, after the preamble);
``execute(d, guest)`` runs the preamble and the row (for direct callers).
"""
from __future__ import annotations

from functools import partial

from . import clp as _clp
from .arch import (
    FH_MASK_ENABLE, FIB_SIZE, FMBK_MASK, FnState, IotaDt, MASK64, ModStatus, MpcifcOc,
    Pec, SicMode, StpcifcStatus,
)
from .dma import Iota, refresh_pass
from .fib import Fib
from .insns import TABLE
from .outcome import (
    CC, CC0, CC1, CC3, CC_UNCHANGED, PGM_ADDRESSING, PGM_OPERAND, PGM_OPERATION,
    PGM_SPECIFICATION, Completion,
)
from .semantics import (
    NOT_USABLE, effective_address, fmb_update, load, preamble, set_status, store, store_block,
    translate,
)

_ERROR, _PERM_ERROR = FnState.ERROR, FnState.PERMANENT_ERROR
_ENABLED, _BLOCKED, _DISABLED = FnState.ENABLED, FnState.BLOCKED, FnState.DISABLED
_IOAT_OPS = (MpcifcOc.REG_IOAT, MpcifcOc.DEREG_IOAT, MpcifcOc.REREG_IOAT)


# -- handlers ---------------------------------------------------------------

def _enabled_function(ctx, fh: int):
    """PCILG/PCISTG/PCISTB: the function an enabled handle names, as QEMU looks
    it up (index, then the full handle), or None (cc 3)."""
    return ctx.bus.find_by_fh(fh) if fh & FH_MASK_ENABLE else None


def handle_pcilg(ctx, d, guest):
    req = guest.gpr(d.r2)
    fn = _enabled_function(ctx, req >> 32)
    return CC3 if fn is None else load(fn, d, guest, req)


def handle_pcistg(ctx, d, guest):
    req = guest.gpr(d.r2)
    fn = _enabled_function(ctx, req >> 32)
    return CC3 if fn is None else store(fn, d, guest, req)


def handle_pcistb(ctx, d, guest):
    req = guest.gpr(d.r1)
    fn = _enabled_function(ctx, req >> 32)
    return CC3 if fn is None else store_block(fn, d, guest, req)


def handle_rpcit(ctx, d, guest):
    fn = ctx.bus.find_by_fh(guest.gpr(d.r1) >> 32)
    if fn is None:
        return CC3
    return translate(fn, d, guest, partial(refresh_pass, fn, guest.absolute))[0]


def reg_ioat_valid(fn, fib: Fib) -> tuple[int, int] | None:
    """QEMU 7.2 reg_ioat's validation: the (pba, pal) to register, or None (operand exception)."""
    pba = fib.pba & ~0xFFF & MASK64
    pal = fib.pal | 0xFFF
    if pba > pal or pba < fn.sdma or pal > fn.edma:
        return None
    # 7.2 only supports a region-third table with translation enabled
    iota = Iota(fib.iota)
    if iota.dt != IotaDt.RTTO or not iota.t:
        return None
    return pba, pal


def _reg_ioat(fn, fib: Fib) -> bool:
    window = reg_ioat_valid(fn, fib)
    if window is None:
        return False
    fn.pba, fn.pal = window
    fn.iota = fib.iota
    fn.ioat_enabled = True
    return True


def _reg_irqs(fn, fib: Fib) -> None:
    # TCG's FLIC maps indicators without checking them: registration cannot fail
    fn.isc, fn.noi, fn.aibvo, fn.sum, fn.aisbo = fib.isc, fib.noi, fib.aibvo, fib.sum, fib.aisbo
    fn.aibv, fn.aisb = fib.aibv, fib.aisb
    fn.irq_registered = True


def handle_mpcifc(ctx, d, guest):
    r1 = d.r1
    r1v = guest.gpr(r1)
    oc = r1v & 0xFF
    dmaas = (r1v >> 16) & 0xFF
    fiba = effective_address(d, guest)
    if fiba & 7:
        return PGM_SPECIFICATION
    fn = ctx.bus.find_by_fh(r1v >> 32)
    if fn is None or fn.state in NOT_USABLE:
        return CC3
    raw = guest.read(fiba, FIB_SIZE)
    if raw is None:
        return PGM_ADDRESSING
    fib = Fib.unpack(raw)
    if fib.fmt != 0:
        return PGM_OPERAND
    status = None
    if oc == MpcifcOc.REG_INT:
        if fn.interp:
            if not ctx.reg_aen(fn, fib):
                status = ModStatus.SEQUENCE
        elif fn.irq_registered:
            status = ModStatus.SEQUENCE
        else:
            _reg_irqs(fn, fib)
    elif oc == MpcifcOc.DEREG_INT:
        if fn.interp:
            if not ctx.dereg_aen(fn):
                status = ModStatus.SEQUENCE
        elif not fn.irq_registered:
            status = ModStatus.SEQUENCE
        else:
            fn.dereg_irqs()
    elif oc in _IOAT_OPS:
        if dmaas:
            status = ModStatus.DMAAS_INVAL
        elif fn.ioat_enabled != (oc != MpcifcOc.REG_IOAT):
            # register needs none registered; deregister and reregister need one
            status = ModStatus.SEQUENCE
        else:
            if oc != MpcifcOc.REG_IOAT:
                # QEMU deregisters before validating: a bad FIB leaves no IOAT behind
                fn.dereg_ioat()
            if oc != MpcifcOc.DEREG_IOAT and not _reg_ioat(fn, fib):
                return PGM_OPERAND
    elif oc == MpcifcOc.RESET_ERROR:
        if fn.state is _BLOCKED or fn.state is _ERROR:
            fn.state = FnState.ENABLED
        else:
            status = ModStatus.SEQUENCE
    elif oc == MpcifcOc.RESET_BLOCK:
        if fn.state is _ERROR:
            fn.state = FnState.BLOCKED
        else:
            status = ModStatus.SEQUENCE
    elif oc == MpcifcOc.SET_MEASURE:
        fmb_addr = fib.fmb_addr
        if fmb_addr & FMBK_MASK:
            # cc 1 without a status code: QEMU leaves R1 alone here
            ctx.bus.error_event(Pec.FMBPRO, fn, fmb_addr)
            fn.fmb_stop()
            return CC1
        if not fmb_addr:
            fn.fmb_stop()
        else:
            fn.fmb_addr = fmb_addr
            fmb_update(fn)
    else:
        return PGM_OPERAND
    if status is None:
        return CC0
    set_status(guest, r1, status)
    return CC1


def handle_stpcifc(ctx, d, guest):
    r1 = d.r1
    r1v = guest.gpr(r1)
    fh = r1v >> 32
    if (r1v >> 16) & 0xFF:
        set_status(guest, r1, StpcifcStatus.INVAL_DMAAS)
        return CC1
    fiba = effective_address(d, guest)
    if fiba & 7:
        return PGM_SPECIFICATION
    fn = ctx.bus.by_idx.get(fh & 0xFFFF)      # by index only, unlike every other instruction
    if fn is None:
        return CC3
    state = fn.state
    if state is FnState.RESERVED or state is FnState.STANDBY:
        return CC3
    if state is _DISABLED:
        if fh & FH_MASK_ENABLE:
            return CC3
        fib = Fib()
    elif state is _PERM_ERROR:
        set_status(guest, r1, StpcifcStatus.PERM_ERROR)
        return CC1
    else:
        # QEMU sets "blocked" together with "error" (0x20 is its ERROR, 0x40 its BLOCKED)
        fc = 0x80 | (0x40 if state is _BLOCKED else 0x60 if state is _ERROR else 0)
        if fn.ioat_enabled:
            fc |= 0x10
        if not fh & FH_MASK_ENABLE:
            guest.set_gpr(r1, r1v | (1 << 63))
        fib = Fib(0, fc, fn.pba, fn.pal, fn.iota, fn.isc, fn.noi, fn.aibvo, fn.sum, fn.aisbo,
                  fn.aibv, fn.aisb, fn.fmb_addr)
    if not guest.write(fiba, fib.pack()):
        return PGM_ADDRESSING
    return CC0


def handle_sic(ctx, d, guest):
    mode = guest.gpr(d.r1) & 0xFFFF
    isc = (guest.gpr(d.r3) >> 27) & 0x7
    bus = ctx.bus
    if mode == SicMode.ALL:
        bus.ais_single.discard(isc)
    elif mode == SicMode.SINGLE:
        bus.ais_single.add(isc)
    else:
        return PGM_OPERAND
    bus.ais_pending.discard(isc)
    return CC_UNCHANGED


def handle_clp(ctx, d, guest):
    addr = guest.gpr(d.r2)
    hdr = guest.read(addr, 4)
    if hdr is None:
        return PGM_ADDRESSING
    req_len = int.from_bytes(hdr[:2], "big")
    if not _clp.lengths_valid(req_len):
        return PGM_OPERAND
    blk = guest.read(addr, req_len + 4)
    if blk is None:
        return PGM_ADDRESSING
    res_len = int.from_bytes(blk[req_len:req_len + 2], "big")
    if not _clp.lengths_valid(req_len, res_len):
        return PGM_OPERAND
    total = req_len + res_len
    blk = guest.read(addr, total)
    if blk is None:
        return PGM_ADDRESSING
    buf = bytearray(_clp.CLP_BUFFER_SIZE)
    buf[:total] = blk
    cc = _clp.execute(ctx.bus, buf, req_len)
    if not guest.write(addr, bytes(buf[:total])):
        return PGM_ADDRESSING
    return CC[cc]


def _operation(ctx, d, guest):
    # QEMU 7.2 has no MIO instructions: they are unknown opcodes to it
    return PGM_OPERATION


handle_pcistg_mio = _operation
handle_pcilg_mio = _operation
handle_pcistb_mio = _operation
handle_pciwb = _operation


class UserspaceHandler:
    """The host's userspace (QEMU) serving intercepted zPCI instructions of one VM.

    Subclass and override ``reg_aen`` / ``dereg_aen`` for interpreted functions
    (QEMU issues KVM_S390_ZPCI_OP there); the defaults report failure, which
    the guest sees as cc 1 status 24 as QEMU reports an ioctl error.
    """

    def __init__(self, bus):
        self.bus = bus
        g = globals()
        # per table row, the handler bound to this context: (d, guest) -> Completion
        self.rows = tuple(partial(g["handle_" + insn.handler], self) for insn in TABLE)

    def execute(self, d, guest) -> Completion:
        """The preamble and the row's handler, for a caller without the dispatcher."""
        index = d.index
        if index >= len(self.rows):
            return PGM_OPERATION            # not a zPCI instruction: unknown to QEMU's tables
        return preamble(index, d, guest.problem_state) or self.rows[index](d, guest)

    def reg_aen(self, fn, fib: Fib) -> bool:
        return False

    def dereg_aen(self, fn) -> bool:
        return False


__all__ = ["UserspaceHandler", "reg_ioat_valid"] + ["handle_" + insn.handler for insn in TABLE]
