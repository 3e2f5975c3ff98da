"""Guest-visible zPCI functions and the zPCI bus, as QEMU 7.2 keeps them.

``ZpciFunction`` mirrors QEMU's S390PCIBusDevice (plus its S390PCIIOMMU):
identity (fid, uid, fh), state, the PCI device behind it, its group, the DMA
window, the registered IOAT and IOTLB, the interrupt registration and the
measurement block.  ``ZpciBus`` mirrors S390pciState: functions in plug
order, QEMU's index/fid/uid allocation and its lookups.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from .arch import (
    DEFAULT_MUI, FH_MASK_ENABLE, FH_MASK_INDEX, FH_SHM_EMUL, FnState, UID_UNDEFINED, ZPCI_DEFAULT_FN_GRP, ZPCI_DTSM, ZPCI_EDMA_ADDR, ZPCI_MAX_FID,
    ZPCI_MAX_UID, ZPCI_MSI_ADDR, ZPCI_SDMA_ADDR,
)
from .device import PciDevice
from .dma import DirectDma, TranslatedDma
from .irq import Flic

__all__ = ["ConfigError", "FnState", "FunctionGroup", "DEFAULT_GROUP", "SeiEvent",
           "ZpciFunction", "ZpciBus"]


class ConfigError(ValueError):
    """A machine description QEMU would refuse (duplicate fid/uid/target, no free slot)."""


@dataclass(frozen=True, slots=True)
class FunctionGroup:
    """What CLP QUERY PCI FUNCTION GROUP reports (QEMU's ClpRspQueryPciGrp)."""
    pfgid: int = ZPCI_DEFAULT_FN_GRP
    noi: int = 128              # "i": number of interrupts
    version: int = 0
    fr: int = 1                 # 0x01 refresh: the program must RPCIT after mapping
    maxstbl: int = 128
    mui: int = DEFAULT_MUI      # measurement update interval, ms
    dtsm: int = ZPCI_DTSM
    dasm: int = 0
    msia: int = ZPCI_MSI_ADDR


DEFAULT_GROUP = FunctionGroup()


@dataclass(frozen=True, slots=True)
class SeiEvent:
    """A pending store-event-information container (CHSC SEI, nt 2).

    cc 1 = error event (faddr, e meaningful), cc 2 = availability event.
    """
    cc: int
    pec: int
    fh: int
    fid: int
    faddr: int = 0
    e: int = 0


class ZpciFunction:
    """One zPCI function.  Mutable: the instructions change it."""

    __slots__ = (
        "bus", "device", "bar_sizes", "target", "idx", "fh", "fid", "uid", "state", "group",
        "sdma", "edma", "pchid", "vfn", "flags", "pft", "fmbl", "pfip", "util_str",
        "interp",
        # IOAT (QEMU's S390PCIIOMMU)
        "ioat_enabled", "pba", "pal", "iota", "iotlb", "dma_avail",
        # interrupt registration
        "irq_registered", "isc", "noi", "aibv", "aibvo", "aisb", "aisbo", "sum",
        # measurement
        "fmb_addr", "counters", "fmb_sample", "fmb_last_update",
        # PCILG/PCISTG accesses resolved once (semantics.load_op / store_op)
        "load_ops", "store_ops",
    )

    def __init__(self, bus: "ZpciBus", device: PciDevice, idx: int, fid: int, uid: int,
                 target: str | None = None, group: FunctionGroup = DEFAULT_GROUP):
        self.bus = bus
        self.device = device
        # PCI BAR sizes are fixed at realize time; the hot path reads this tuple
        self.bar_sizes = tuple(device.bar_size(i) for i in range(6))
        self.target = target
        self.idx = idx
        self.fh = idx
        self.fid = fid
        self.uid = uid
        self.state = FnState.RESERVED
        self.group = group
        self.sdma = ZPCI_SDMA_ADDR
        self.edma = ZPCI_EDMA_ADDR
        self.pchid = 0
        self.vfn = 0
        self.flags = 0
        self.pft = 0
        self.fmbl = 0
        self.pfip = bytes(4)
        self.util_str = bytes(64)
        self.interp = False
        self.ioat_enabled = False
        self.pba = 0
        self.pal = 0
        self.iota = 0
        self.iotlb: dict = {}          # page iova -> dma.IotlbEntry
        self.dma_avail: int | None = None   # None: no vfio DMA limit (emulated)
        self.irq_registered = False
        self.isc = self.noi = self.aibv = self.aibvo = self.aisb = self.aisbo = self.sum = 0
        self.fmb_addr = 0
        self.counters = [0, 0, 0, 0]
        self.fmb_sample = 0
        self.fmb_last_update = 0
        self.load_ops: dict = {}
        self.store_ops: dict = {}

    # -- state helpers (QEMU's pci_dereg_irqs / pci_dereg_ioat / fmb_timer_free)
    @property
    def enabled(self) -> bool:
        return bool(self.fh & FH_MASK_ENABLE)

    def dereg_irqs(self) -> None:
        self.irq_registered = False
        self.isc = self.noi = self.aibv = self.aibvo = self.aisb = self.aisbo = self.sum = 0

    def dereg_ioat(self) -> None:
        self.ioat_enabled = False
        self.iotlb.clear()
        self.pba = self.pal = self.iota = 0

    def fmb_stop(self) -> None:
        # QEMU clears the whole block, counters included, whenever measurement stops
        self.fmb_addr = 0
        self.counters[:] = (0, 0, 0, 0)
        self.fmb_sample = 0
        self.fmb_last_update = 0

    def reset(self) -> None:
        """s390_pci_device_reset: what CLP disable and a system reset do."""
        if self.state is FnState.RESERVED:
            return
        if self.state is not FnState.STANDBY:
            self.fh &= ~FH_MASK_ENABLE
            self.state = FnState.DISABLED
        if self.irq_registered:
            self.dereg_irqs()
        if self.ioat_enabled:
            self.dereg_ioat()
        self.fmb_stop()

    def bar_size(self, bar: int) -> int:
        return self.bar_sizes[bar] if 0 <= bar < 6 else 0

    def __repr__(self) -> str:
        return (f"ZpciFunction(fid={self.fid:#x} uid={self.uid} fh={self.fh:#010x} "
                f"state={self.state.name} kind={getattr(self.device, 'kind', '?')})")


DmaFactory = Callable[["ZpciFunction", "ZpciBus"], object]


def _takes_context(factory) -> bool:
    """Whether a device factory accepts ``context=`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if p.name == "context" and p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                              inspect.Parameter.POSITIONAL_OR_KEYWORD):
            return True
    return False


class ZpciBus:
    """QEMU's S390pciState: the zPCI functions of one VM."""

    def __init__(self, memory=None):
        self.functions: list[ZpciFunction] = []      # plug order = CLP LIST order
        self.by_idx: dict[int, ZpciFunction] = {}
        self.next_idx = 0
        self.groups: dict[int, FunctionGroup] = {ZPCI_DEFAULT_FN_GRP: DEFAULT_GROUP}
        self.events: list[SeiEvent] = []
        self.adapter_interrupts: list[int] = []      # ISCs raised by MSI delivery, in order
        self.ais_single: set[int] = set()            # ISCs in SIC single-interruption mode
        self.ais_pending: set[int] = set()           # ... whose one interruption was raised
        self.flic = Flic()                           # pending I/O adapter interruptions (irq.py)
        self.tod = lambda: 0                         # TOD clock for FMB last_update (deterministic)
        # for interpreted functions: the host's current handle (None if it cannot be read);
        # CLP SET PCI FN enable re-reads it as QEMU's s390_pci_get_host_fh does
        self.host_fh: Callable[[ZpciFunction], int | None] | None = None
        self.memory = memory                         # a Guest; device DMA and MSIs go here

    # -- lookups, exactly as QEMU
    def find_by_idx(self, idx: int) -> ZpciFunction | None:
        return self.by_idx.get(idx)

    def find_by_fh(self, fh: int) -> ZpciFunction | None:
        fn = self.by_idx.get(fh & FH_MASK_INDEX)
        if fn is not None and fn.fh == fh:
            return fn
        return None

    def find_by_fid(self, fid: int) -> ZpciFunction | None:
        for fn in self.functions:
            if fn.fid == fid:
                return fn
        return None

    def find_by_uid(self, uid: int) -> ZpciFunction | None:
        for fn in self.functions:
            if fn.uid == uid:
                return fn
        return None

    def find_by_target(self, target: str | None) -> ZpciFunction | None:
        if target is None:
            return None
        for fn in self.functions:
            if fn.target == target:
                return fn
        return None

    def next_avail(self, after: ZpciFunction | None) -> ZpciFunction | None:
        """s390_pci_find_next_avail_dev: the next non-RESERVED function in plug order."""
        fns = self.functions
        i = 0 if after is None else fns.index(after) + 1
        while i < len(fns):
            if fns[i].state is not FnState.RESERVED:
                return fns[i]
            i += 1
        return None

    # -- allocation, exactly as QEMU
    def _generate_uid(self) -> int:
        uid = 0
        while uid < ZPCI_MAX_UID:
            uid += 1
            if self.find_by_uid(uid) is None:
                return uid
        return UID_UNDEFINED

    def _generate_fid(self) -> int:
        used = {fn.fid for fn in self.functions}
        fid = 0
        while fid <= ZPCI_MAX_FID:
            if fid not in used:
                return fid
            fid += 1
        raise ConfigError("no free fid could be found")

    def _alloc_idx(self) -> int:
        idx = self.next_idx
        while idx in self.by_idx:
            idx = (idx + 1) & FH_MASK_INDEX
            if idx == self.next_idx:
                raise ConfigError("no slot for plugging zpci device")
        return idx

    def plug(self, device: PciDevice, fid: int | None = None, uid: int | None = None,
             target: str | None = None, shm: int = FH_SHM_EMUL,
             group: FunctionGroup | None = None, dma: DmaFactory | None = None) -> ZpciFunction:
        """Plug a PCI device with its zpci device (cold plug: ends DISABLED).

        ``shm`` is OR-ed into the handle as QEMU does for emulated (FH_SHM_EMUL)
        and intercepted vfio (FH_SHM_VFIO) functions; 0 for an interpreted one.
        ``dma`` builds the device's DmaPort; default: the function's bus-master
        address space (translation through its IOTLB, s390_translate_iommu)
        for a device whose ``dma_translated`` is true or absent, and guest
        memory itself for one whose DMA bypasses the IOMMU (QEMU's virtio
        devices without VIRTIO_F_ACCESS_PLATFORM use address_space_memory).
        """
        if target is not None and self.find_by_target(target) is not None:
            raise ConfigError(f"target {target} already has an associated zpci device")
        if uid is None or uid == UID_UNDEFINED:
            uid = self._generate_uid()
            if uid == UID_UNDEFINED:
                raise ConfigError("no free uid could be found")
        elif not 0 < uid <= ZPCI_MAX_UID:
            raise ConfigError(f"uid {uid} out of range")
        elif self.find_by_uid(uid) is not None:
            raise ConfigError(f"uid {uid} already in use")
        if fid is None:
            fid = self._generate_fid()
        elif not 0 <= fid <= ZPCI_MAX_FID:
            raise ConfigError(f"fid {fid} out of range")
        elif self.find_by_fid(fid) is not None:
            raise ConfigError(f"fid {fid} already in use")
        idx = self._alloc_idx()
        if group is not None:
            self.groups.setdefault(group.pfgid, group)
        fn = ZpciFunction(self, device, idx, fid, uid, target, group or DEFAULT_GROUP)
        self.next_idx = (idx + 1) & FH_MASK_INDEX
        self.functions.append(fn)
        self.by_idx[idx] = fn
        # the PCI device's plug: configured but disabled
        fn.state = FnState.DISABLED
        fn.fh |= shm
        if dma is None:
            translated = getattr(device, "dma_translated", True)
            device.dma = TranslatedDma(fn) if translated else DirectDma(fn)
        else:
            device.dma = dma(fn, self)
        return fn

    @classmethod
    def from_config(cls, config, make_device: Callable[..., PciDevice] | None = None,
                    memory=None) -> "ZpciBus":
        """A bus with every ``FunctionSpec`` of a MachineConfig plugged in order.

        ``make_device(kind, props)`` builds each device (default: the registry's
        ``firmware_model.devices.make_device``).  A factory that takes a
        ``context`` keyword gets one dict for the whole bus, so per-machine
        numbering (QEMU's default MACs, default PRNG seeds) counts up across
        the functions as in one QEMU process.  A spec whose ``kind`` is None
        is a zpci device without its PCI device.
        """
        if make_device is None:
            from .devices import make_device
        bus = cls(memory)
        context: dict = {}
        with_context = _takes_context(make_device)
        for spec in config.functions:
            if spec.kind is None:
                # a zpci device whose target never appeared: QEMU keeps it
                # RESERVED, unlisted, but its handle index stays taken
                bus.next_idx = (bus._alloc_idx() + 1) & FH_MASK_INDEX
                continue
            if with_context:
                device = make_device(spec.kind, spec.props, context=context)
            else:
                device = make_device(spec.kind, spec.props)
            bus.plug(device, fid=spec.fid, uid=spec.uid, target=spec.target)
        return bus

    # -- events and platform operations
    def error_event(self, pec: int, fn: ZpciFunction | None, faddr: int = 0, e: int = 0) -> None:
        fh, fid = (fn.fh, fn.fid) if fn is not None else (0, 0)
        self.events.append(SeiEvent(1, int(pec), fh, fid, faddr, e))

    def _sclp_target(self, fid: int) -> tuple[ZpciFunction | None, int]:
        """The function an SCLP (de)configure names, or None and the response
        code that refuses it."""
        fn = self.find_by_fid(fid)
        if fn is None:
            return None, 0x09F0
        if fn.state is FnState.RESERVED:
            return None, 0x05F0
        return fn, 0

    def sclp_configure(self, fid: int) -> int:
        """SCLP configure I/O adapter; returns the SCLP response code."""
        fn, rc = self._sclp_target(fid)
        if fn is None:
            return rc
        if fn.state is FnState.STANDBY:
            fn.state = FnState.DISABLED
            return 0x0020
        return 0x0120

    def sclp_deconfigure(self, fid: int) -> int:
        fn, rc = self._sclp_target(fid)
        if fn is None:
            return rc
        if fn.state is FnState.STANDBY:
            return 0x0120
        if fn.irq_registered:
            fn.dereg_irqs()
        if fn.ioat_enabled:
            fn.dereg_ioat()
        fn.state = FnState.STANDBY
        return 0x0020

    def reset(self) -> None:
        """System reset: every zpci device is reset (and disabled)."""
        for fn in self.functions:
            fn.reset()
        # the FLIC's reset: nothing pending, SIC back to all-interruptions mode
        self.flic.reset()
        self.ais_single.clear()
        self.ais_pending.clear()

