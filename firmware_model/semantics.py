"""What a zPCI instruction does, shared by every path that serves it.

QEMU's handlers (userspace.py), the firmware's interpretation (firmware.py)
and the host kernel's (kvm.py) differ in how they find a function and when
they decline; once they hold the function, the guest must see the same
thing whoever served it (interpretation is transparent).  That common part
lives here, in QEMU 7.2's order of checks (hw/s390x/s390-pci-inst.c), and
every path imports it:

* ``preamble``: the checks the table's columns name (privileged, even R2),
  applied once per instruction before any path runs (the dispatcher keeps
  its answer with its decisions);
* ``pci_load`` / ``pci_store``: the address-space dispatch with QEMU's
  length rules, resolved once per access into an op (``load_op`` /
  ``store_op``); ``load`` / ``store`` / ``store_block``: PCILG, PCISTG and
  PCISTB once the request named a function;
* ``translate``: RPCIT from the function state on, around a range pass the
  path chooses (QEMU's budgeted one, or the shadowing one of a host that
  holds the guest's IOAT);
* ``count`` / ``fmb_update``: the measurement block; ``set_status``.
"""
from __future__ import annotations

import enum
import struct
from functools import partial

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


def preamble(index: int, d, problem_state: bool) -> Completion | None:
    """The table's checks for row ``index``, in the architected order: the
    privileged-operation exception before the specification exception of an
    odd register pair.  None: the instruction goes on to its path.  The
    answer depends on the row, the encoding and the guest's problem state
    alone, so a dispatcher may keep it with its decisions."""
    checks = CHECKS[index]
    if checks & CHECK_PRIVILEGED and problem_state:
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


# -- PCI access ---------------------------------------------------------------
#
# A driver issues the same few accesses over and over, so each (address space,
# offset, length) of a function is resolved once into an *access op*: the
# address-space dispatch and QEMU's length rules applied, the device's own op
# where it has one (``PciDevice.config_load_op`` / ``bar_read_op`` /
# ``bar_write_op``).  An op holds no value: each call reads or writes the
# device as it is then.  ``ZpciFunction.load_ops`` / ``store_ops`` keep them,
# keyed by (the request's PCIAS and length fields, offset): the device and its
# BAR sizes never change under a function, so neither does what a key resolves to.

_AS_LEN = 0x000F000F            # PCIAS and length fields of a PCILG/PCISTG request
OP_CACHE_LIMIT = 4096           # resolved accesses per function before the cache starts over


def _answer(value):
    """An op that always gives ``value`` (a fault the resolution already knows)."""
    return lambda *_: value


_INVALID_AS_OP, _OPERAND_OP = _answer(INVALID_AS), _answer(OPERAND)


def _config_load(read, offset: int, length: int) -> int:
    """A configuration-space PCILG through ``config_read``: the PCI value as the
    big-endian register sees it."""
    value = read(offset, length)
    # pci_host_config_read_common returns ~0 past the limit
    if value is None:
        value = 0xFFFFFFFF
    if length == 1:
        return value                    # length 1 is not swapped (nor masked) by QEMU
    return int.from_bytes((value & ((1 << 8 * length) - 1)).to_bytes(length, "little"), "big")


def _config_store(write, offset: int, length: int, data: int) -> None:
    """A configuration-space PCISTG through ``config_write``."""
    value = data & ((1 << 8 * length) - 1)
    if length > 1:
        value = int.from_bytes(value.to_bytes(length, "little"), "big")
    # a write past the config-space limit is dropped silently, as QEMU does
    write(offset, length, value)


def _bar_store(write, bar: int, offset: int, length: int, data: int) -> Fault | None:
    return None if write(bar, offset, length, data & ((1 << (8 * length)) - 1)) else OPERAND


def _refused(fn, pcias: int, offset: int, length: int):
    """The op of an access the address-space and length rules refuse; None when
    they let it reach the device."""
    if pcias <= ZPCI_IO_BAR_MAX:
        if not fn.bar_sizes[pcias]:
            return _INVALID_AS_OP       # QEMU 7.2 dereferences a NULL region here
        if not length or length > 8 - (offset & 7):
            return _OPERAND_OP
        return None
    if pcias == 15:
        if not length or length > 4 - (offset & 3) or length == 3:
            return _OPERAND_OP
        return None
    return _INVALID_AS_OP


def load_op(fn, pcias: int, offset: int, length: int):
    """PCILG's address-space dispatch, resolved: a callable giving the loaded
    register value, or the Fault (None: OPERAND, a device's refusal)."""
    refused = _refused(fn, pcias, offset, length)
    if refused is not None:
        return refused
    dev = fn.device
    if pcias == 15:
        # pci_host_config_read_common takes a 32-bit address
        offset &= 0xFFFFFFFF
        op_of = getattr(dev, "config_load_op", None)
        op = op_of(offset, length) if op_of is not None else None
        return op if op is not None else partial(_config_load, dev.config_read, offset, length)
    op_of = getattr(dev, "bar_read_op", None)
    if op_of is not None:
        return op_of(pcias, offset, length)
    return partial(dev.bar_read, pcias, offset, length)


def store_op(fn, pcias: int, offset: int, length: int):
    """PCISTG's address-space dispatch, resolved: a callable taking the register's
    data, giving None when stored or the Fault."""
    refused = _refused(fn, pcias, offset, length)
    if refused is not None:
        return refused
    dev = fn.device
    if pcias == 15:
        return partial(_config_store, dev.config_write, offset & 0xFFFFFFFF, length)
    op_of = getattr(dev, "bar_write_op", None)
    if op_of is None:
        return partial(_bar_store, dev.bar_write, pcias, offset, length)
    return op_of(pcias, offset, length) or _OPERAND_OP


def _resolved(ops: dict, resolve, fn, key: tuple):
    """``resolve``'s op for ``key`` (the PCIAS and length fields, offset), kept in ``ops``."""
    if len(ops) >= OP_CACHE_LIMIT:
        ops.clear()
    as_len, offset = key
    op = ops[key] = resolve(fn, as_len >> 16, offset, as_len & 0xF)
    return op


def pci_load(fn, pcias: int, offset: int, length: int) -> int | Fault:
    """PCILG's address-space dispatch: the loaded register value or why not."""
    value = load_op(fn, pcias, offset, length)()
    return OPERAND if value is None else value


def pci_store(fn, pcias: int, offset: int, length: int, data: int) -> Fault | None:
    """PCISTG's address-space dispatch: None when stored."""
    return store_op(fn, pcias, offset, length)(data)


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
    # the accessors called through locals: a guest's per-instance accessor (the
    # emulator's builtins) called as a method is looked up the slow way each time
    gpr = guest.gpr
    key = (req & _AS_LEN, gpr(r2 + 1))
    op = fn.load_ops.get(key)
    if op is None:
        op = _resolved(fn.load_ops, load_op, fn, key)
    value = op()
    if value.__class__ is not int:
        return _fault(guest, r2, req, OPERAND if value is None else value)
    fn.counters[FMB_CNT_LD] += 1
    if fn.fmb_addr:
        fmb_update(fn)
    set_gpr = guest.set_gpr
    set_gpr(d.r1, value)
    return CC0


def store(fn, d, guest, req: int) -> Completion:
    """PCISTG once the request (``req``, R2's value) named ``fn``."""
    r2 = d.r2
    c = _blocked(fn, guest, r2, req)
    if c is not None:
        return c
    gpr = guest.gpr                                 # (see load)
    ops = fn.store_ops
    key = (req & _AS_LEN, gpr(r2 + 1))
    op = ops.get(key) or _resolved(ops, store_op, fn, key)
    fault = op(gpr(d.r1))
    if fault is not None:
        return _fault(guest, r2, req, fault)
    fn.counters[FMB_CNT_ST] += 1                    # count, inline: the hot path
    if fn.fmb_addr:
        fmb_update(fn)
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
    count(fn, FMB_CNT_STB)
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
    count(fn, FMB_CNT_RPCIT)
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


def fmb_update(fn) -> None:
    """Store the measurement block (QEMU's fmb_update, run synchronously).

    The block's address is absolute and the store is the firmware's, not an
    operand of the instruction: it goes to the machine's storage (bus.memory),
    never through the vCPU's view (DAT).  QEMU writes last_update with the U
    bit, sample, the counters, then the final last_update; the single store
    below leaves the same final bytes.
    """
    bus = fn.bus
    guest = bus.memory
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


def count(fn, counter: int) -> None:
    """Bump a measurement counter; store the FMB when measurement is on."""
    fn.counters[counter] += 1
    if fn.fmb_addr:
        fmb_update(fn)
