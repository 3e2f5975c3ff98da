"""zPCI DMA address translation as QEMU 7.2 does it.

* ``table_walk``: s390_guest_io_table_walk, region-third -> segment -> page,
  with QEMU's quirks (an all-zero entry is an error even at page level; a
  valid entry whose next origin is 0 is a table-type error, so frame 0 can
  never be mapped; the IOTA origin keeps every bit but 0x804).
* ``walk_range``: one RPCIT pass over a range; ``refresh_pass`` (QEMU's,
  under the vfio DMA budget) and ``shadow_pass`` (a host that shadows the
  guest's tables into the IOMMU domain) drive it.
* ``TranslatedDma``: device DMA through the function's bus-master address
  space: the IOMMU region [0, pal] (s390_translate_iommu: only what RPCIT put
  in the IOTLB; below pba an out-of-range error), the MSI page at the group's
  msia (s390_msi_ctrl_write), and nothing elsewhere (unassigned: the access
  fails without an error state or event).
* ``DirectDma``: device DMA straight to guest memory (no zPCI translation),
  as QEMU's virtio devices without VIRTIO_F_ACCESS_PLATFORM do
  (address_space_memory); their MSIs still go through the bus-master space.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import partial

from .arch import (
    FnState, MASK64, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, Pec, ZPCI_INDEX_MASK, ZPCI_IOTA_RTTO_FLAG,
    ZPCI_PT_MASK, ZPCI_PTE_ADDR_MASK, ZPCI_PTE_INVALID,
    ZPCI_RT_SHIFT, ZPCI_RTE_ADDR_MASK, ZPCI_SFAA_MASK, ZPCI_ST_SHIFT, ZPCI_STE_ADDR_MASK,
    ZPCI_TABLE_FC, ZPCI_TABLE_INVALID, ZPCI_TABLE_LEN_RTX, ZPCI_TABLE_OFFSET_MASK,
    ZPCI_TABLE_PROTECTED, ZPCI_TABLE_TYPE_MASK, ZPCI_TABLE_TYPE_RTX, ZPCI_TABLE_TYPE_SX,
)
from .device import DmaError, DmaErrorKind, DmaPort
from .irq import msi_deliver


class Perm(enum.IntFlag):
    NONE = 0
    RO = 1
    WO = 2
    RW = 3


@dataclass(frozen=True, slots=True)
class IotlbEntry:
    iova: int
    translated_addr: int
    perm: int


@dataclass(frozen=True, slots=True)
class Iota:
    """The I/O translation anchor as a value (FIB offset 32)."""
    raw: int

    @property
    def dt(self) -> int:
        return (self.raw >> 2) & 0x7

    @property
    def t(self) -> int:
        return (self.raw >> 11) & 0x1


@dataclass(frozen=True, slots=True)
class WalkResult:
    error: int          # 0 or a Pec
    iova: int           # page of the walked address
    translated_addr: int
    length: int         # span of the level the walk stopped at
    perm: int


_ETT_RT, _ETT_ST, _ETT_PT = 1, 0, -1
# Perm as plain ints on the per-access paths (IntFlag arithmetic is a call)
_RO, _WO, _RW = int(Perm.RO), int(Perm.WO), int(Perm.RW)
_FRAME = {_ETT_RT: 1 << ZPCI_RT_SHIFT, _ETT_ST: 1 << ZPCI_ST_SHIFT, _ETT_PT: PAGE_SIZE}


def _read_u64(memory, addr: int) -> int:
    # QEMU reads table entries with address_space_ldq and ignores the result:
    # storage that is not there reads as 0 (and 0 is an INVALTE error)
    raw = memory.read(addr & MASK64, 8) if memory is not None else None
    return int.from_bytes(raw, "big") if raw is not None and len(raw) == 8 else 0


def table_walk(memory, iota: int, addr: int) -> WalkResult:
    """s390_guest_io_table_walk for one address."""
    return WalkResult(*_walk(memory, iota, addr))


def _walk(memory, iota: int, addr: int) -> tuple[int, int, int, int, int]:
    """table_walk's fields as a tuple (RPCIT walks once per page: no object)."""
    # QEMU strips only the T bit and DT=RTTO; any other low bits stay in the address
    to = iota & ~ZPCI_IOTA_RTTO_FLAG & MASK64
    iova = addr & PAGE_MASK
    translated = 0
    # plain ints, not Perm: flag arithmetic costs a call per operation, and
    # RPCIT walks three entries for every page a Linux guest maps
    perm = _RW
    if (iota & ZPCI_TABLE_PROTECTED) == ZPCI_TABLE_PROTECTED:
        perm = _RO
    ett = _ETT_RT
    error = 0
    length = 0
    while to:
        if ett == _ETT_RT:
            tx = (iova >> ZPCI_RT_SHIFT) & ZPCI_INDEX_MASK
        elif ett == _ETT_ST:
            tx = (iova >> ZPCI_ST_SHIFT) & ZPCI_INDEX_MASK
        else:
            tx = (iova >> PAGE_SHIFT) & ZPCI_PT_MASK
        te = _read_u64(memory, to + tx * 8)
        nto = 0
        err = 0
        if not te:
            err = Pec.INVALTE
        elif (ett == _ETT_PT and te & ZPCI_PTE_INVALID) or (ett != _ETT_PT and te & ZPCI_TABLE_INVALID):
            perm = 0
        elif ett == _ETT_RT and ((te & ZPCI_TABLE_LEN_RTX) != ZPCI_TABLE_LEN_RTX
                                 or te & ZPCI_TABLE_OFFSET_MASK):
            err = Pec.INVALTL
        else:
            if ett == _ETT_PT:
                nto = te & ZPCI_PTE_ADDR_MASK
            elif ett == _ETT_ST:
                nto = te & ZPCI_STE_ADDR_MASK if (te & ZPCI_TABLE_TYPE_MASK) == ZPCI_TABLE_TYPE_SX else 0
            else:
                nto = te & ZPCI_RTE_ADDR_MASK if (te & ZPCI_TABLE_TYPE_MASK) == ZPCI_TABLE_TYPE_RTX else 0
            if not nto:
                err = Pec.TT
            else:
                if (te & ZPCI_TABLE_PROTECTED) == ZPCI_TABLE_PROTECTED:
                    perm &= _RO
                if ett == _ETT_PT:
                    translated = te & ZPCI_PTE_ADDR_MASK
                    nto = 0
                elif ett == _ETT_ST and te & ZPCI_TABLE_FC:
                    translated = (te & ZPCI_SFAA_MASK) | (iova & ~ZPCI_SFAA_MASK & MASK64)
                    nto = 0
        if err:
            perm = 0
            error = err
        length = _FRAME[ett]
        to = nto
        ett -= 1
    return int(error), iova, translated, length, perm


def _budget(fn) -> int:
    """The DMA entries the function may still map (1 stands for unlimited)."""
    return 1 if fn.dma_avail is None else fn.dma_avail


def _map_page(fn, iova: int, translated: int, perm: int) -> bool:
    """s390_pci_update_iotlb for one page of a valid entry; True when the budget refuses it."""
    avail = fn.dma_avail
    if avail is not None and avail <= 0:
        return True
    cached = fn.iotlb.get(iova)
    if cached is None or cached.perm != perm or cached.translated_addr != translated:
        fn.iotlb[iova] = IotlbEntry(iova, translated, perm)
        if avail is not None:
            # QEMU charges a replaced entry again without refunding the old one
            fn.dma_avail = avail - 1
    return False


def cached_pages(cache: dict, first: int, stop: int) -> list[int]:
    """The page IOVAs in [first, stop) that ``cache`` holds, without visiting
    every page of a range larger than the cache."""
    if (stop - first) >> 12 > len(cache):
        return [k for k in cache if first <= k < stop]
    return [k for k in range(first, stop, PAGE_SIZE) if k in cache]


def _unmap_range(fn, first: int, stop: int) -> None:
    """s390_pci_update_iotlb for the pages [first, stop) of an invalid entry."""
    iotlb = fn.iotlb
    for iova in cached_pages(iotlb, first, stop):
        del iotlb[iova]
        if fn.dma_avail is not None:
            fn.dma_avail += 1


# Region-third tables index IOVA bits 31-41: the walk result repeats every 2^42
# bytes, so after a full period without a mapping or an error every later step
# only unmaps.
_WALK_PERIOD = 1 << 42


def walk_range(memory, iota: int, start: int, end: int, map_page, unmap_range
               ) -> tuple[int, int, bool]:
    """One pass of QEMU's RPCIT loop over [start, end) of the tables ``iota`` anchors.

    Steps follow the level each walk stopped at, from the unaligned address.
    ``map_page(iova, translated, perm)`` is called for each 4K page of a valid
    entry and returns True to refuse it (an exhausted DMA budget: the rest of
    that entry is skipped); ``unmap_range(first, stop)`` gets the pages
    [first, stop) of an invalid entry at once, since one region entry spans
    2 GiB.  Returns (Pec or 0, address reached, whether a page was refused).
    """
    addr = start
    mapped = refused = False
    while addr < end:
        error, page, frame, length, perm = _walk(memory, iota, addr)
        if error:
            return error, addr, refused
        addr += length
        stop = addr if addr < end else end
        if not perm:
            if page < stop:
                unmap_range(page, (stop + PAGE_SIZE - 1) & PAGE_MASK)
        else:
            while page < stop:
                if map_page(page, frame, perm):
                    refused = True
                    break
                mapped = True
                page += PAGE_SIZE
                frame += PAGE_SIZE
        if not mapped and not refused and addr - start >= _WALK_PERIOD and addr < end:
            # every later step repeats an invalid step of this period
            unmap_range(addr & PAGE_MASK, (end + PAGE_SIZE - 1) >> 12 << 12)
            return 0, end, refused
    return 0, addr, refused


def refresh_pass(fn, memory, start: int, end: int) -> tuple[int, int]:
    """QEMU's RPCIT range pass over [start, end) of an in-window range, under the
    function's DMA budget: (Pec or 0, address reached)."""
    map_page = partial(_map_page, fn)
    unmap_range = partial(_unmap_range, fn)
    while True:
        # QEMU runs the pass again when it refused a page and later unmaps freed entries
        error, reached, refused = walk_range(memory, fn.iota, start, end, map_page, unmap_range)
        if error or not refused or _budget(fn) <= 0:
            return error, reached


def shadow_pass(memory, fn, domain, ioat, start: int, end: int) -> tuple[int, int, int]:
    """The range pass of a host that shadows the guest's tables itself (KVM's
    IOAT assist, the what-if firmware RPCIT): every change lands in the
    function's IOTLB (what the device may reach, as QEMU keeps it) and in the
    host IOMMU ``domain`` (where the translation really lives), under the
    registration ``ioat``.  Returns (Pec or 0, address reached, maps the
    domain refused)."""
    iotlb = fn.iotlb
    vm, gen = ioat.vm, ioat.gen
    refused = 0

    def map_page(iova, translated, perm):
        nonlocal refused
        cached = iotlb.get(iova)
        if cached is None or cached.perm != perm or cached.translated_addr != translated:
            iotlb[iova] = IotlbEntry(iova, translated, perm)
            if not domain.map(iova, translated, bool(perm & 2), vm, gen):
                refused += 1

    def unmap_range(first, stop):
        for iova in cached_pages(iotlb, first, stop):
            del iotlb[iova]
            domain.unmap(iova)

    # map_page returns None: nothing is refused to the pass itself, only counted
    error, where, _ = walk_range(memory, ioat.iota, start, end, map_page, unmap_range)
    return error, where, refused


# -- device side -----------------------------------------------------------

class TranslatedDma(DmaPort):
    """Device DMA as a QEMU zPCI function's bus-master address space sees it."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def _in_msi_page(self, iova: int) -> bool:
        fn = self.fn
        msia = fn.group.msia
        if not msia <= iova < msia + PAGE_SIZE:
            return False
        # the IOMMU region [0, pal] is added after the MSI page and wins an overlap
        return not (fn.ioat_enabled and iova <= fn.pal)

    def _translate(self, iova: int, write: bool) -> int | DmaError:
        fn = self.fn
        if fn.state not in (FnState.ENABLED, FnState.BLOCKED) or not fn.ioat_enabled:
            return DmaError(DmaErrorKind.NO_IOAT, iova)
        if iova > fn.pal:
            # QEMU's IOMMU region spans [0, pal] (s390_pci_iommu_enable sizes it
            # pal + 1): above it the access is unassigned, without an error
            return DmaError(DmaErrorKind.OUT_OF_RANGE, iova)
        if iova < fn.pba:
            return self._fault(Pec.OORANGE, DmaErrorKind.OUT_OF_RANGE, iova)
        entry = fn.iotlb.get(iova & PAGE_MASK)
        if entry is None:
            return self._fault(Pec.TPROTE, DmaErrorKind.UNMAPPED, iova)
        if not entry.perm & (_WO if write else _RO):
            return self._fault(Pec.TPROTE, DmaErrorKind.PROTECTED, iova)
        return entry.translated_addr + (iova & (PAGE_SIZE - 1))

    def _fault(self, pec: int, kind: DmaErrorKind, iova: int) -> DmaError:
        fn = self.fn
        fn.state = FnState.ERROR
        fn.bus.error_event(pec, fn, iova)
        return DmaError(kind, iova)

    def _pages(self, iova: int, size: int):
        while size > 0:
            n = min(size, PAGE_SIZE - (iova & (PAGE_SIZE - 1)))
            yield iova, n
            iova = (iova + n) & MASK64
            size -= n

    def _read_piece(self, mem, page_iova: int, n: int) -> bytes | DmaError:
        """n bytes at page_iova, all within one page."""
        if self._in_msi_page(page_iova):
            return b"\xff" * n
        pa = self._translate(page_iova, False)
        if pa.__class__ is not int:
            return pa
        data = mem.read(pa, n) if mem is not None else None
        return data if data is not None else DmaError(DmaErrorKind.ADDRESSING, page_iova)

    def _write_piece(self, mem, page_iova: int, chunk: bytes) -> DmaError | None:
        """chunk at page_iova, all within one page."""
        if self._in_msi_page(page_iova):
            msi_deliver(self.fn, int.from_bytes(chunk[:4], "little"))
            return None
        pa = self._translate(page_iova, True)
        if pa.__class__ is not int:
            return pa
        if mem is None or not mem.write(pa, chunk):
            return DmaError(DmaErrorKind.ADDRESSING, page_iova)
        return None

    def read(self, iova: int, size: int) -> bytes | DmaError:
        mem = self.fn.bus.memory
        iova &= MASK64
        if (iova & (PAGE_SIZE - 1)) + size <= PAGE_SIZE:
            # one page: descriptors, ring fields and most buffers
            return self._read_piece(mem, iova, size)
        out = bytearray()
        first_error = None
        for page_iova, n in self._pages(iova, size):
            data = self._read_piece(mem, page_iova, n)
            if data.__class__ is DmaError:
                first_error = first_error or data
                data = bytes(n)
            out += data
        return first_error if first_error is not None else bytes(out)

    def write(self, iova: int, data: bytes) -> DmaError | None:
        mem = self.fn.bus.memory
        iova &= MASK64
        if (iova & (PAGE_SIZE - 1)) + len(data) <= PAGE_SIZE:
            return self._write_piece(mem, iova, data)
        first_error = None
        pos = 0
        for page_iova, n in self._pages(iova, len(data)):
            err = self._write_piece(mem, page_iova, data[pos:pos + n])
            pos += n
            first_error = first_error or err
        return first_error

    def msi(self, address: int, data: int) -> None:
        # msi_send_message: a 32-bit little-endian store into the bus-master space
        self.write(address, (data & 0xFFFFFFFF).to_bytes(4, "little"))


class DirectDma(DmaPort):
    """Device DMA straight to guest absolute memory; MSIs still reach the zPCI vector.

    msi_send_message stores into the PCI device's bus-master address space
    whatever address space the device uses for its own DMA, so an MSI takes
    the same path as under ``TranslatedDma``.
    """

    __slots__ = ("fn", "_bus_master")

    def __init__(self, fn):
        self.fn = fn
        self._bus_master = TranslatedDma(fn)

    def read(self, iova: int, size: int) -> bytes | DmaError:
        mem = self.fn.bus.memory
        data = mem.read(iova, size) if mem is not None else None
        return data if data is not None else DmaError(DmaErrorKind.ADDRESSING, iova)

    def write(self, iova: int, data: bytes) -> DmaError | None:
        mem = self.fn.bus.memory
        if mem is None or not mem.write(iova, data):
            return DmaError(DmaErrorKind.ADDRESSING, iova)
        return None

    def msi(self, address: int, data: int) -> None:
        self._bus_master.msi(address, data)
