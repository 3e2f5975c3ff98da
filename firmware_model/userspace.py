"""QEMU 7.2's userspace intercept path: the reference semantics of every zPCI instruction.

One ``handle_<name>`` per table row (``zpci_insns.def`` handler column),
signature ``(ctx, d, guest) -> Completion``; ``ctx.bus`` is the ZpciBus.
Checks run in QEMU's order (hw/s390x/s390-pci-inst.c).  Where QEMU has a bug
the architecture wins and docs/deviations.md says so.

Public API for the routing layer: ``UserspaceHandler(bus).execute(d, guest)``;
for the firmware path: ``pci_load`` / ``pci_store`` (BAR and config access
with QEMU's length rules), ``pcistb_access`` (PCISTB once the function is
found), ``count`` (measurement counters + FMB update).
"""
from __future__ import annotations

import enum
import struct

from . import clp as _clp
from .arch import (
    FH_MASK_ENABLE, FIB_SIZE, FMB_CNT_LD, FMB_CNT_RPCIT, FMB_CNT_ST, FMB_CNT_STB,
    FMB_OFF_COUNTERS, FMB_OFF_LAST_UPDATE, FMB_OFF_SAMPLE, FMB_UPDATE_U_BIT, FMBK_MASK,
    FnState, IotaDt, LsStatus, MASK64, ModStatus, MpcifcOc, Pec, Pgm, RPCIT_ST_INSUFF_RES,
    SicMode, StpcifcStatus, ZPCI_IO_BAR_MAX,
)
from .dma import Iota, refresh
from .fib import Fib
from .insns import TABLE
from .outcome import Completion

# Preallocated results: the hot paths return these without building objects.
CC0 = Completion(0)
CC1 = Completion(1)
CC3 = Completion(3)
CC_UNCHANGED = Completion(None)
PGM_OPERATION = Completion(pgm=Pgm.OPERATION)
PGM_PRIVILEGED = Completion(pgm=Pgm.PRIVILEGED)
PGM_ADDRESSING = Completion(pgm=Pgm.ADDRESSING)
PGM_SPECIFICATION = Completion(pgm=Pgm.SPECIFICATION)
PGM_OPERAND = Completion(pgm=Pgm.OPERAND)
_CC = (CC0, CC1, Completion(2), CC3)

_ERROR, _PERM_ERROR = FnState.ERROR, FnState.PERMANENT_ERROR
_ENABLED, _BLOCKED, _DISABLED = FnState.ENABLED, FnState.BLOCKED, FnState.DISABLED
# states in which RPCIT and MPCIFC answer cc 3 (the firmware and KVM paths share them)
NOT_USABLE = (FnState.RESERVED, FnState.STANDBY, FnState.DISABLED, FnState.PERMANENT_ERROR)


class Fault(enum.Enum):
    """Why a PCI load/store did not complete (decisions are values)."""
    INVALID_AS = "invalid-as"     # cc 1, status 20
    OPERAND = "operand"           # operand exception (QEMU's answer to any MemTx error)


INVALID_AS = Fault.INVALID_AS
OPERAND = Fault.OPERAND


def set_status(guest, r: int, status: int) -> None:
    """Store a status code in bits 32-39 of the request register."""
    guest.set_gpr(r, (guest.gpr(r) & ~0xFF000000) | ((status & 0xFF) << 24))


def _bswap(value: int, length: int) -> int:
    return int.from_bytes(value.to_bytes(length, "little"), "big")


# 32-bit byte swap for the config-space hot path: pack little, unpack big
# (no Python frame, no intermediate int.to_bytes call)
_LE32 = struct.Struct("<I").pack
_BE32 = struct.Struct(">I").unpack


def effective_address(d, guest) -> int:
    """D2(X2,B2) for RXY/RSY in 64-bit mode; register 0 as base or index means none."""
    addr = d.d2
    if d.b2:
        addr += guest.gpr(d.b2)
    if d.x2:
        addr += guest.gpr(d.x2)
    return addr & MASK64


# -- PCI access shared with the firmware path ------------------------------

def pci_load(fn, pcias: int, offset: int, length: int) -> int | Fault:
    """PCILG's address-space dispatch: the loaded register value or why not."""
    dev = fn.device
    if pcias <= ZPCI_IO_BAR_MAX:
        if not fn.bar_sizes[pcias]:
            return INVALID_AS           # QEMU 7.2 dereferences a NULL region here
        if not length or length > 8 - (offset & 7):
            return OPERAND
        value = dev.bar_read(pcias, offset, length)
        return OPERAND if value is None else value
    if pcias == 15:
        if not length or length > 4 - (offset & 3) or length == 3:
            return OPERAND
        # pci_host_config_read_common takes a 32-bit address and returns ~0 past the limit
        value = dev.config_read(offset & 0xFFFFFFFF, length)
        if value is None:
            value = 0xFFFFFFFF
        if length == 2:
            return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)
        if length == 4:
            return _BE32(_LE32(value & 0xFFFFFFFF))[0]
        return value                    # length 1 is not swapped (nor masked) by QEMU
    return INVALID_AS


def pci_store(fn, pcias: int, offset: int, length: int, data: int) -> Fault | None:
    """PCISTG's address-space dispatch: None when stored."""
    dev = fn.device
    if pcias <= ZPCI_IO_BAR_MAX:
        if not fn.bar_sizes[pcias]:
            return INVALID_AS
        if not length or length > 8 - (offset & 7):
            return OPERAND
        if not dev.bar_write(pcias, offset, length, data & ((1 << (8 * length)) - 1)):
            return OPERAND
        return None
    if pcias == 15:
        if not length or length > 4 - (offset & 3) or length == 3:
            return OPERAND
        if length == 1:
            value = data & 0xFF
        elif length == 2:
            value = ((data & 0xFF) << 8) | ((data >> 8) & 0xFF)
        else:
            value = _BE32(_LE32(data & 0xFFFFFFFF))[0]
        # a write past the config-space limit is dropped silently, as QEMU does
        dev.config_write(offset & 0xFFFFFFFF, length, value)
        return None
    return INVALID_AS


_FMB_BODY = struct.Struct(">IQQQQQ")     # sample, last_update, 4 counters (offsets 4..47)


def fmb_update(fn, guest) -> None:
    """Store the measurement block (QEMU's fmb_update, run synchronously).

    QEMU writes last_update with the U bit, sample, the counters, then the
    final last_update; the single store below leaves the same final bytes.
    """
    bus = fn.bus
    sample = fn.fmb_sample
    interim = ((fn.fmb_last_update * 2) | FMB_UPDATE_U_BIT) & MASK64
    fn.fmb_sample = (sample + 1) & 0xFFFFFFFF
    fn.fmb_last_update = final = (bus.tod() * 2) & MASK64
    c = fn.counters
    body = _FMB_BODY.pack(sample, final, c[0] & MASK64, c[1] & MASK64,
                          c[2] & MASK64, c[3] & MASK64)
    if guest.write(fn.fmb_addr + FMB_OFF_SAMPLE, body):
        return
    # replay QEMU's piecewise stores so a block at the end of storage ends as QEMU leaves it
    addr = fn.fmb_addr
    pieces = ((FMB_OFF_LAST_UPDATE, interim, 8), (FMB_OFF_SAMPLE, sample, 4)) + tuple(
        (FMB_OFF_COUNTERS + 8 * i, c[i] & MASK64, 8) for i in range(4)) + (
        (FMB_OFF_LAST_UPDATE, final, 8),)
    for off, value, size in pieces:
        if not guest.write(addr + off, value.to_bytes(size, "big")):
            bus.error_event(Pec.FMBA, fn, addr)
            fn.fmb_stop()
            return


def count(fn, counter: int, guest) -> None:
    """Bump a measurement counter; store the FMB when measurement is on."""
    fn.counters[counter] += 1
    if fn.fmb_addr:
        fmb_update(fn, guest)


# -- handlers ---------------------------------------------------------------

def _ls_function(ctx, d, guest):
    """PCILG/PCISTG up to the access: the function the request in R2 names,
    or the Completion that ends the instruction."""
    if guest.problem_state:
        return PGM_PRIVILEGED
    r2 = d.r2
    if r2 & 1:
        return PGM_SPECIFICATION
    fh = guest.gpr(r2) >> 32
    if not fh & FH_MASK_ENABLE:
        return CC3
    fn = ctx.bus.by_idx.get(fh & 0xFFFF)
    if fn is None or fn.fh != fh:
        return CC3
    if fn.state is _ERROR or fn.state is _PERM_ERROR:
        set_status(guest, r2, LsStatus.BLOCKED)
        return CC1
    return fn


def _ls_fault(guest, r2: int, fault: Fault):
    """The Completion of a PCILG/PCISTG access that did not complete."""
    if fault is OPERAND:
        return PGM_OPERAND
    set_status(guest, r2, LsStatus.INVAL_AS)
    return CC1


def handle_pcilg(ctx, d, guest):
    fn = _ls_function(ctx, d, guest)
    if fn.__class__ is Completion:
        return fn
    r2 = d.r2
    req = guest.gpr(r2)
    value = pci_load(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF)
    if value.__class__ is Fault:
        return _ls_fault(guest, r2, value)
    count(fn, FMB_CNT_LD, guest)
    guest.set_gpr(d.r1, value)
    return CC0


def handle_pcistg(ctx, d, guest):
    fn = _ls_function(ctx, d, guest)
    if fn.__class__ is Completion:
        return fn
    r2 = d.r2
    req = guest.gpr(r2)
    fault = pci_store(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF, guest.gpr(d.r1))
    if fault is not None:
        return _ls_fault(guest, r2, fault)
    count(fn, FMB_CNT_ST, guest)
    return CC0


def pcistb_access(fn, d, guest, req: int) -> Completion:
    """PCISTB once the request in R1 named ``fn``: QEMU's checks from the function
    state on, in its order, then the stores (the firmware path runs this too)."""
    if fn.state is _ERROR or fn.state is _PERM_ERROR:
        set_status(guest, d.r1, LsStatus.BLOCKED)
        return CC1
    pcias = (req >> 16) & 0xF
    if pcias > ZPCI_IO_BAR_MAX or not fn.bar_sizes[pcias]:
        set_status(guest, d.r1, LsStatus.INVAL_AS)
        return CC1
    length = req & 0x1FFF
    offset = guest.gpr(d.r3)
    gaddr = effective_address(d, guest)
    if (offset & 7 or length <= 8 or length & 7 or length > fn.group.maxstbl
            or (offset & 0xFFF) + length > 0x1000 or gaddr & 7):
        return PGM_SPECIFICATION
    # QEMU validates every doubleword store before it reads the source operand;
    # a device without the (optional) check gets its stores validated as they happen
    dev = fn.device
    block_valid = getattr(dev, "bar_block_valid", None)
    if block_valid is not None and not block_valid(pcias, offset, length):
        return PGM_OPERAND
    data = guest.read(gaddr, length)
    if data is None:
        return PGM_ADDRESSING
    # architected order: each doubleword as PCISTG of 8 bytes stores it (QEMU 7.2
    # stores it in host byte order; see docs/deviations.md)
    for i in range(0, length, 8):
        if not dev.bar_write(pcias, offset + i, 8, int.from_bytes(data[i:i + 8], "big")):
            return PGM_OPERAND
    count(fn, FMB_CNT_STB, guest)
    return CC0


def handle_pcistb(ctx, d, guest):
    if guest.problem_state:
        return PGM_PRIVILEGED
    req = guest.gpr(d.r1)
    fh = req >> 32
    if not fh & FH_MASK_ENABLE:
        return CC3
    fn = ctx.bus.find_by_fh(fh)
    if fn is None:
        return CC3
    return pcistb_access(fn, d, guest, req)


def handle_rpcit(ctx, d, guest):
    if guest.problem_state:
        return PGM_PRIVILEGED
    r1, r2 = d.r1, d.r2
    if r2 & 1:
        return PGM_SPECIFICATION
    fn = ctx.bus.find_by_fh(guest.gpr(r1) >> 32)
    if fn is None:
        return CC3
    state = fn.state
    if state in NOT_USABLE:
        return CC3
    if state is _ERROR:
        set_status(guest, r1, ModStatus.ERROR_RECOVER)
        return CC1
    error, faddr, dma_avail = refresh(fn, guest, guest.gpr(r2), guest.gpr(r2 + 1))
    if error:
        fn.state = FnState.ERROR
        set_status(guest, r1, LsStatus.FUNC_IN_ERR)
        ctx.bus.error_event(error, fn, faddr)
        return CC1
    count(fn, FMB_CNT_RPCIT, guest)
    if dma_avail > 0:
        return CC0
    set_status(guest, r1, RPCIT_ST_INSUFF_RES)
    return CC1


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
    if guest.problem_state:
        return PGM_PRIVILEGED
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
    elif oc == MpcifcOc.REG_IOAT:
        if dmaas:
            status = ModStatus.DMAAS_INVAL
        elif fn.ioat_enabled:
            status = ModStatus.SEQUENCE
        elif not _reg_ioat(fn, fib):
            return PGM_OPERAND
    elif oc == MpcifcOc.DEREG_IOAT:
        if dmaas:
            status = ModStatus.DMAAS_INVAL
        elif not fn.ioat_enabled:
            status = ModStatus.SEQUENCE
        else:
            fn.dereg_ioat()
    elif oc == MpcifcOc.REREG_IOAT:
        if dmaas:
            status = ModStatus.DMAAS_INVAL
        elif not fn.ioat_enabled:
            status = ModStatus.SEQUENCE
        else:
            # QEMU deregisters before validating: a bad FIB leaves no IOAT behind
            fn.dereg_ioat()
            if not _reg_ioat(fn, fib):
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
            fmb_update(fn, guest)
    else:
        return PGM_OPERAND
    if status is None:
        return CC0
    set_status(guest, r1, status)
    return CC1


def handle_stpcifc(ctx, d, guest):
    if guest.problem_state:
        return PGM_PRIVILEGED
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
    if guest.problem_state:
        return PGM_PRIVILEGED
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
    if guest.problem_state:
        return PGM_PRIVILEGED
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
    return _CC[cc]


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
        self._dispatch = tuple(g["handle_" + insn.handler] for insn in TABLE)

    def execute(self, d, guest) -> Completion:
        try:
            handler = self._dispatch[d.index]
        except IndexError:
            return PGM_OPERATION            # not a zPCI instruction: unknown to QEMU's tables
        return handler(self, d, guest)

    def reg_aen(self, fn, fib: Fib) -> bool:
        return False

    def dereg_aen(self, fn) -> bool:
        return False


__all__ = ["UserspaceHandler", "Fault", "pci_load", "pci_store", "pcistb_access", "count",
           "fmb_update", "effective_address", "reg_ioat_valid", "set_status"] + [
    "handle_" + insn.handler for insn in TABLE]
