"""zPCI DMA address translation as QEMU 7.2 does it.

* ``table_walk``: s390_guest_io_table_walk, region-third -> segment -> page,
  with QEMU's quirks (an all-zero entry is an error even at page level; a
  valid entry whose next origin is 0 is a table-type error, so frame 0 can
  never be mapped; the IOTA origin keeps every bit but 0x804).
* ``refresh``: the RPCIT pass over a range, maintaining the IOTLB.
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

from .arch import (
    FnState, MASK64, PAGE_MASK, PAGE_SIZE, Pec, ZPCI_INDEX_MASK, ZPCI_IOTA_RTTO_FLAG,
    ZPCI_MSI_VEC_MASK, ZPCI_PT_MASK, ZPCI_PTE_ADDR_MASK, ZPCI_PTE_INVALID,
    ZPCI_RTE_ADDR_MASK, ZPCI_SFAA_MASK, ZPCI_STE_ADDR_MASK, ZPCI_TABLE_FC,
    ZPCI_TABLE_INVALID, ZPCI_TABLE_LEN_RTX, ZPCI_TABLE_OFFSET_MASK, ZPCI_TABLE_PROTECTED,
    ZPCI_TABLE_TYPE_MASK, ZPCI_TABLE_TYPE_RTX, ZPCI_TABLE_TYPE_SX,
)
from .device import DmaError, DmaErrorKind, DmaPort


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

    @property
    def protected(self) -> bool:
        return (self.raw & ZPCI_TABLE_PROTECTED) == ZPCI_TABLE_PROTECTED

    @property
    def origin(self) -> int:
        # QEMU strips only the T bit and DT=RTTO; any other low bits stay in the address
        return self.raw & ~ZPCI_IOTA_RTTO_FLAG & MASK64


@dataclass(frozen=True, slots=True)
class WalkResult:
    error: int          # 0 or a Pec
    iova: int           # page of the walked address
    translated_addr: int
    length: int         # span of the level the walk stopped at
    perm: int


_ETT_RT, _ETT_ST, _ETT_PT = 1, 0, -1
_FRAME = {_ETT_RT: 1 << 31, _ETT_ST: 1 << 20, _ETT_PT: 1 << 12}


def _read_u64(memory, addr: int) -> int:
    # QEMU reads table entries with address_space_ldq and ignores the result:
    # storage that is not there reads as 0 (and 0 is an INVALTE error)
    raw = memory.read(addr & MASK64, 8) if memory is not None else None
    return int.from_bytes(raw, "big") if raw is not None and len(raw) == 8 else 0


def table_walk(memory, iota: int, addr: int) -> WalkResult:
    """s390_guest_io_table_walk for one address."""
    to = iota & ~ZPCI_IOTA_RTTO_FLAG & MASK64
    iova = addr & PAGE_MASK
    translated = 0
    perm = Perm.RW
    if (iota & ZPCI_TABLE_PROTECTED) == ZPCI_TABLE_PROTECTED:
        perm &= Perm.RO
    ett = _ETT_RT
    error = 0
    length = 0
    while to:
        if ett == _ETT_RT:
            tx = (iova >> 31) & ZPCI_INDEX_MASK
        elif ett == _ETT_ST:
            tx = (iova >> 20) & ZPCI_INDEX_MASK
        else:
            tx = (iova >> 12) & ZPCI_PT_MASK
        te = _read_u64(memory, to + tx * 8)
        nto = 0
        err = 0
        if not te:
            err = Pec.INVALTE
        elif (ett == _ETT_PT and te & ZPCI_PTE_INVALID) or (ett != _ETT_PT and te & ZPCI_TABLE_INVALID):
            perm = Perm.NONE
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
                perm &= Perm.RO if (te & ZPCI_TABLE_PROTECTED) == ZPCI_TABLE_PROTECTED else Perm.RW
                if ett == _ETT_PT:
                    translated = te & ZPCI_PTE_ADDR_MASK
                    nto = 0
                elif ett == _ETT_ST and te & ZPCI_TABLE_FC:
                    translated = (te & ZPCI_SFAA_MASK) | (iova & ~ZPCI_SFAA_MASK & MASK64)
                    nto = 0
        if err:
            perm = Perm.NONE
            error = err
        length = _FRAME[ett]
        to = nto
        ett -= 1
    return WalkResult(int(error), iova, translated, length, int(perm))


def _update_iotlb(fn, iova: int, translated: int, perm: int) -> int:
    """s390_pci_update_iotlb for one page; returns the DMA budget left (1 = unlimited)."""
    iotlb = fn.iotlb
    cached = iotlb.get(iova)
    if not perm:
        if cached is not None:
            del iotlb[iova]
            if fn.dma_avail is not None:
                fn.dma_avail += 1
    elif cached is None or cached.perm != perm or cached.translated_addr != translated:
        iotlb[iova] = IotlbEntry(iova, translated, perm)
        if fn.dma_avail is not None:
            # QEMU charges a replaced entry again without refunding the old one
            fn.dma_avail -= 1
    return 1 if fn.dma_avail is None else fn.dma_avail


def _unmap_range(fn, first: int, stop: int) -> int:
    """Unmap every page in [first, stop): per page as QEMU, or per cached entry when cheaper."""
    iotlb = fn.iotlb
    if (stop - first) >> 12 > len(iotlb):
        for iova in [k for k in iotlb if first <= k < stop]:
            _update_iotlb(fn, iova, 0, Perm.NONE)
    else:
        for iova in range(first, stop, PAGE_SIZE):
            if iova in iotlb:
                _update_iotlb(fn, iova, 0, Perm.NONE)
    return 1 if fn.dma_avail is None else fn.dma_avail


# Region-third tables index IOVA bits 31-41: the walk result repeats every 2^42
# bytes, so after a full period without a mapping or an error every later step
# only unmaps.
_WALK_PERIOD = 1 << 42


def refresh(fn, memory, start: int, length: int) -> tuple[int, int, int]:
    """The RPCIT range pass (rpcit_service_call after the state checks).

    Returns (error Pec or 0, failing address, dma budget left).
    """
    sstart = start & MASK64
    end = (sstart + length) & MASK64
    dma_avail = 1 if fn.dma_avail is None else fn.dma_avail
    if not fn.iota:
        return Pec.INVALAS, sstart, dma_avail
    if end < fn.pba or sstart > fn.pal:
        return Pec.OORANGE, sstart, dma_avail
    iota = fn.iota
    while True:
        start = sstart
        again = False
        mapped = False
        error = 0
        while start < end:
            w = table_walk(memory, iota, start)
            if w.error:
                error = w.error
                break
            start += w.length
            iova, translated = w.iova, w.translated_addr
            stop = min(start, end)
            if not w.perm:
                if iova < stop:
                    dma_avail = _unmap_range(fn, iova, (stop + PAGE_SIZE - 1) & PAGE_MASK)
            else:
                while iova < start and iova < end:
                    if dma_avail > 0:
                        dma_avail = _update_iotlb(fn, iova, translated, w.perm)
                        mapped = True
                        iova += PAGE_SIZE
                        translated += PAGE_SIZE
                    else:
                        again = True
                        break
            if not mapped and not again and start - sstart >= _WALK_PERIOD and start < end:
                # the rest of the range repeats this period's invalid steps: unmap it at once
                dma_avail = _unmap_range(fn, start & PAGE_MASK, (end + PAGE_SIZE - 1) >> 12 << 12)
                start = end
        if error:
            return error, start, dma_avail
        if not (again and dma_avail > 0):
            return 0, start, dma_avail


# -- device side -----------------------------------------------------------

def _set_indicator(bus, addr: int, bits: int) -> int:
    """set_ind_atomic: OR bits into a guest byte; the previous value, 0xff on failure."""
    mem = bus.memory
    old = mem.read(addr & MASK64, 1) if mem is not None else None
    if old is None:
        bus.error_event(Pec.AIRERR, None)
        return 0xFF
    mem.write(addr & MASK64, bytes([old[0] | bits]))
    return old[0]


def raise_adapter_interrupt(bus, isc: int) -> None:
    """css_adapter_interrupt via the FLIC, with SIC's single-interruption suppression."""
    if isc in bus.ais_single:
        if isc in bus.ais_pending:
            return
        bus.ais_pending.add(isc)
    bus.adapter_interrupts.append(isc)


def msi_deliver(fn, data: int) -> None:
    """s390_msi_ctrl_write: vector -> AIBV bit, summary bit, maybe an adapter interrupt."""
    if fn.state is not FnState.ENABLED:
        return
    bus = fn.bus
    vec = data & ZPCI_MSI_VEC_MASK
    bit = fn.aibvo + vec
    _set_indicator(bus, fn.aibv + bit // 8, 0x80 >> (bit % 8))
    if _set_indicator(bus, fn.aisb + fn.aisbo // 8, 0x80 >> (fn.aisbo % 8)) == 0:
        raise_adapter_interrupt(bus, fn.isc)


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
        if not entry.perm & (Perm.WO if write else Perm.RO):
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

    def read(self, iova: int, size: int) -> bytes | DmaError:
        out = bytearray()
        first_error = None
        mem = self.fn.bus.memory
        for page_iova, n in self._pages(iova & MASK64, size):
            if self._in_msi_page(page_iova):
                out += b"\xff" * n
                continue
            pa = self._translate(page_iova, False)
            data = None
            if isinstance(pa, DmaError):
                first_error = first_error or pa
            else:
                data = mem.read(pa, n) if mem is not None else None
                if data is None:
                    first_error = first_error or DmaError(DmaErrorKind.ADDRESSING, page_iova)
            out += data if data is not None else bytes(n)
        return first_error if first_error is not None else bytes(out)

    def write(self, iova: int, data: bytes) -> DmaError | None:
        first_error = None
        mem = self.fn.bus.memory
        pos = 0
        for page_iova, n in self._pages(iova & MASK64, len(data)):
            chunk = data[pos:pos + n]
            pos += n
            if self._in_msi_page(page_iova):
                msi_deliver(self.fn, int.from_bytes(chunk[:4], "little"))
                continue
            pa = self._translate(page_iova, True)
            if isinstance(pa, DmaError):
                first_error = first_error or pa
            elif mem is None or not mem.write(pa, chunk):
                first_error = first_error or DmaError(DmaErrorKind.ADDRESSING, page_iova)
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
