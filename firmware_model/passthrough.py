"""The passthrough world: every bus function a vfio function the VM owns.

Each function of the guest's bus gets a host function, opened through vfio
on behalf of the VM (the KVM association, interpretation with its GISA).
``Passthrough.resync`` brings the host's records in line with what
userspace (QEMU) did for the guest; ``mirror`` makes the host IOMMU domain
follow the IOTLB after a userspace RPCIT.  ``by_fh`` is the firmware's
function table: guest handle of an enabled function -> its FunctionEntry.
"""
from __future__ import annotations

from .arch import FH_MASK_ENABLE, FH_MASK_SHM, FH_SHM_EMUL, MASK64, PAGE_MASK, PAGE_SIZE
from .device import DmaError, DmaErrorKind
from .dma import TranslatedDma
from .host import Errno, ZpciOp


def passthrough_handle(fh: int) -> int:
    """The handle as the passthrough world has it.

    QEMU's emulation marker is swapped: a QEMU handle becomes the host handle
    (no SHM bits), and a handle without SHM bits (which QEMU never hands
    out) becomes one with the marker, so the mapping is one-to-one and no
    guest handle can name a host function QEMU would not.
    """
    return fh ^ FH_SHM_EMUL if fh & FH_MASK_SHM in (0, FH_SHM_EMUL) else fh


class FunctionEntry:
    """One function as the firmware and the kernel hold it: the host function,
    the guest-visible bus function, and the decisions memoised for it
    (dispatch.Memo per (row, IPA, IPB))."""

    __slots__ = ("hf", "fn", "memos")

    def __init__(self, hf, fn):
        self.hf = hf
        self.fn = fn
        self.memos: dict = {}


class IommuDma(TranslatedDma):
    """Device DMA of a passthrough function: QEMU's rules, and the host domain must agree.

    The zPCI-side checks (state, window, IOTLB, faults into the error state)
    are QEMU's; the address the device reaches is the host IOMMU domain's.
    A translation the domain does not hold is not reachable.
    """

    __slots__ = ("hf",)

    def __init__(self, fn, hf):
        super().__init__(fn)
        self.hf = hf

    def _translate(self, iova: int, write: bool):
        pa = super()._translate(iova, write)
        if pa.__class__ is int:
            host = self.hf.domain.translate(iova, write)
            if host != pa:
                self.hf.stats["dma_blocked_by_iommu"] += 1
                return DmaError(DmaErrorKind.UNMAPPED, iova)
        return pa


class Passthrough:
    """The host side of one VM's passthrough functions."""

    __slots__ = ("host", "vm", "bus", "entries", "by_fh", "by_pfh")

    def __init__(self, host, vm, bus):
        self.host, self.vm, self.bus = host, vm, bus
        self.entries: dict[int, FunctionEntry] = {}     # bus index -> entry
        self.by_fh: dict[int, FunctionEntry] = {}       # guest handle of an enabled function
        self.by_pfh: dict[int, object] = {}             # host handle -> HostFunction, every function
        for fn in bus.functions:
            self.attach(fn)

    def attach(self, fn) -> None:
        hf = self.host.plug(fn.fid, passthrough_handle(fn.fh | FH_MASK_ENABLE))
        rc = self.host.vfio_open(self.vm, hf)
        if rc is not Errno.OK:
            raise RuntimeError(f"vfio open of fid {fn.fid:#x} failed: {rc.name}")
        self.entries[fn.idx] = FunctionEntry(hf, fn)
        # Translated device DMA passes the host domain; a port the bus chose
        # otherwise (direct, untranslated) is left as the bus made it.
        if type(fn.device.dma) is TranslatedDma:
            fn.device.dma = IommuDma(fn, hf)

    def resync(self, reregistered: int | None = None) -> None:
        """See Machine.resync."""
        host, vm = self.host, self.vm
        self.by_fh.clear()
        self.by_pfh.clear()
        for fn in self.bus.functions:
            if fn.idx not in self.entries:
                self.attach(fn)
            entry = self.entries[fn.idx]
            hf = entry.hf
            # While the guest has the function disabled the host has no enabled handle
            # the guest could present (QEMU's vfio reset behind CLP disable).
            hf.fh = passthrough_handle(fn.fh)
            self.by_pfh[hf.fh] = hf
            if fn.fh & FH_MASK_ENABLE:
                self.by_fh[fn.fh] = entry
            ioat = hf.ioat
            if fn.ioat_enabled:
                if (ioat is None or fn.fh == reregistered
                        or (ioat.iota, ioat.pba, ioat.pal) != (fn.iota, fn.pba, fn.pal)):
                    if ioat is not None:
                        host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
                    host.zpci_op(vm, hf.fh, ZpciOp.REG_IOAT, iota=fn.iota, pba=fn.pba, pal=fn.pal)
            elif ioat is not None:
                host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
            self.mirror(entry, 0, 0)
            if fn.irq_registered and hf.aen is None:
                host.zpci_op(vm, hf.fh, ZpciOp.REG_AEN, ibv=fn.aibv, sb=fn.aisb if fn.sum else 0,
                             noi=fn.noi, isc=fn.isc, sbo=fn.aisbo)
            elif not fn.irq_registered and hf.aen is not None:
                host.zpci_op(vm, hf.fh, ZpciOp.DEREG_AEN)

    def mirror(self, entry: FunctionEntry, start: int, length: int) -> None:
        """QEMU's vfio maps/unmaps after its RPCIT: the domain follows the IOTLB
        (the whole IOTLB when ``length`` is 0)."""
        hf = entry.hf
        dom, want, ioat = hf.domain, entry.fn.iotlb, hf.ioat
        first = start & PAGE_MASK
        end = (start + length) & MASK64
        npages = (end - first) >> 12 if end > first else 0
        if 0 < npages <= len(want) + len(dom.entries):
            pages = range(first, end, PAGE_SIZE)
        else:
            pages = set(want) | set(dom.entries)
        for iova in pages:
            e = want.get(iova)
            if e is None:
                dom.unmap(iova)
            elif ioat is not None:
                m = dom.entries.get(iova)
                if m is None or m.frame != e.translated_addr or m.writable != bool(e.perm & 2):
                    dom.map(iova, e.translated_addr, bool(e.perm & 2), ioat.vm, ioat.gen)
