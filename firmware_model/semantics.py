"""What a zPCI instruction does, shared by every path that serves it.

QEMU's handlers (userspace.py), the firmware's interpretation (firmware.py)
and the host kernel's (kvm.py) differ in how they find a function and when
they decline; once they hold the function, the guest must see the same
thing whoever served it (interpretation is transparent).  That common part
lives here, in QEMU 7.2's order of checks (hw/s390x/s390-pci-inst.c), and
every path imports it:

* ``preamble``: the checks the table's columns name (privileged, even R2),
  applied once per instruction before any path runs;
* ``pci_load`` / ``pci_store``: the address-space dispatch with QEMU's
  length rules; ``load`` / ``store`` / ``store_block``: PCILG, PCISTG and
  PCISTB once the request named a function;
* ``translate``: RPCIT from the function state on, around a range pass the
  path chooses (QEMU's budgeted one, or the shadowing one of a host that
  holds the guest's IOAT);
* ``count`` / ``fmb_update``: the measurement block; ``set_status``.
"""
from __future__ import annotations

import enum
import struct

from .arch import (
    FMB_CNT_LD, FMB_CNT_RPCIT, FMB_CNT_ST, FMB_CNT_STB, FMB_OFF_COUNTERS, FMB_OFF_LAST_UPDATE,
    FMB_OFF_SAMPLE, FMB_UPDATE_U_BIT, FnState, LsStatus, MASK64, ModStatus, Pec,
    RPCIT_ST_INSUFF_RES, ZPCI_IO_BAR_MAX,
)
from .host import IoatPath
from .insns import CHECK_EVEN_R2, CHECK_PRIVILEGED, TABLE
from .outcome import (
    CC0, CC1, CC3, PGM_ADDRESSING, PGM_OPERAND, PGM_PRIVILEGED, PGM_SPECIFICATION, Completion,
)

_ERROR, _PERM_ERROR = FnState.ERROR, FnState.PERMANENT_ERROR
# states in which RPCIT and MPCIFC answer cc 3
NOT_USABLE = (FnState.RESERVED, FnState.STANDBY, FnState.DISABLED, FnState.PERMANENT_ERROR)
_ST_MASK = ~0xFF000000 & MASK64


class Fault(enum.Enum):
    """Why a PCI load/store did not complete (decisions are values)."""
    INVALID_AS = "invalid-as"     # cc 1, status 20
    OPERAND = "operand"           # operand exception (QEMU's answer to any MemTx error)


INVALID_AS = Fault.INVALID_AS
OPERAND = Fault.OPERAND

# per table row, the CHECK_* bits of its columns
CHECKS: tuple[int, ...] = tuple(i.checks for i in TABLE)


def preamble(index: int, d, guest) -> Completion | None:
    """The table's checks for row ``index``, in the architected order: the
    privileged-operation exception before the specification exception of an
    odd register pair.  None: the instruction goes on to its path."""
    checks = CHECKS[index]
    if checks & CHECK_PRIVILEGED and guest.problem_state:
        return PGM_PRIVILEGED
    if checks & CHECK_EVEN_R2 and d.r2 & 1:
        return PGM_SPECIFICATION
    return None


def set_status(guest, r: int, status: int) -> None:
    """Store a status code in bits 32-39 of the request register."""
    guest.set_gpr(r, (guest.gpr(r) & ~0xFF000000) | ((status & 0xFF) << 24))


def effective_address(d, guest) -> int:
    """D2(X2,B2) for RXY/RSY in 64-bit mode; register 0 as base or index means none."""
    addr = d.d2
    if d.b2:
        addr += guest.gpr(d.b2)
    if d.x2:
        addr += guest.gpr(d.x2)
    return addr & MASK64


# 32-bit byte swap for the config-space hot path: pack little, unpack big
# (no Python frame, no intermediate int.to_bytes call)
_LE32 = struct.Struct("<I").pack
_BE32 = struct.Struct(">I").unpack


# -- PCI access ---------------------------------------------------------------

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


def _blocked(fn, guest, r: int, req: int) -> Completion | None:
    """A function in an error state refuses access: cc 1 status 'blocked' in the request."""
    state = fn.state
    if state is _ERROR or state is _PERM_ERROR:
        guest.set_gpr(r, (req & _ST_MASK) | (LsStatus.BLOCKED << 24))
        return CC1
    return None


def _fault(guest, r: int, req: int, fault: Fault) -> Completion:
    """The Completion of a PCILG/PCISTG access that did not complete."""
    if fault is OPERAND:
        return PGM_OPERAND
    guest.set_gpr(r, (req & _ST_MASK) | (LsStatus.INVAL_AS << 24))
    return CC1


def load(fn, d, guest, req: int) -> Completion:
    """PCILG once the request (``req``, R2's value) named ``fn``."""
    r2 = d.r2
    state = fn.state
    if state is _ERROR or state is _PERM_ERROR:     # _blocked, inline: the hot path
        guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.BLOCKED << 24))
        return CC1
    value = pci_load(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF)
    if value.__class__ is Fault:
        return _fault(guest, r2, req, value)
    fn.counters[FMB_CNT_LD] += 1
    if fn.fmb_addr:
        fmb_update(fn, guest)
    guest.set_gpr(d.r1, value)
    return CC0


def store(fn, d, guest, req: int) -> Completion:
    """PCISTG once the request (``req``, R2's value) named ``fn``."""
    r2 = d.r2
    c = _blocked(fn, guest, r2, req)
    if c is not None:
        return c
    fault = pci_store(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF, guest.gpr(d.r1))
    if fault is not None:
        return _fault(guest, r2, req, fault)
    count(fn, FMB_CNT_ST, guest)
    return CC0


def store_block(fn, d, guest, req: int) -> Completion:
    """PCISTB once the request (``req``, R1's value) named ``fn``."""
    c = _blocked(fn, guest, d.r1, req)
    if c is not None:
        return c
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


# -- RPCIT ----------------------------------------------------------------------

def translate(fn, d, guest, range_pass) -> tuple[Completion, int]:
    """RPCIT once the request in R1 named ``fn``: QEMU's checks from the function
    state on, the range pass, the error state and event, the counter.

    ``range_pass(start, end) -> (Pec or 0, address reached)`` walks an
    in-window range: the path's choice.  Returns the Completion and the Pec
    of a failed refresh (0 when none failed), which a path may count.
    """
    state = fn.state
    r1 = d.r1
    if state in NOT_USABLE:
        return CC3, 0
    if state is _ERROR:
        set_status(guest, r1, ModStatus.ERROR_RECOVER)
        return CC1, 0
    start = guest.gpr(d.r2)
    end = (start + guest.gpr(d.r2 + 1)) & MASK64
    if not fn.iota:
        error, where = Pec.INVALAS, start
    elif end < fn.pba or start > fn.pal:
        error, where = Pec.OORANGE, start
    else:
        error, where = range_pass(start, end)
    if error:
        fn.state = FnState.ERROR
        set_status(guest, r1, LsStatus.FUNC_IN_ERR)
        fn.bus.error_event(error, fn, where)
        return CC1, error
    count(fn, FMB_CNT_RPCIT, guest)
    avail = fn.dma_avail
    if avail is not None and avail <= 0:
        # the vfio DMA budget ran out: QEMU's "insufficient resources"
        set_status(guest, r1, RPCIT_ST_INSUFF_RES)
        return CC1, 0
    return CC0, 0


def registration_matches(fn, ioat) -> bool:
    """A host's IOAT registration it may refresh against: made through KVM, and
    the guest's own (or the guest has none, which ``translate`` then answers
    as QEMU does)."""
    if ioat.path is not IoatPath.KVM:
        return False
    return not fn.ioat_enabled or (ioat.iota, ioat.pba, ioat.pal) == (fn.iota, fn.pba, fn.pal)


# -- measurement --------------------------------------------------------------

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
