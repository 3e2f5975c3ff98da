"""The virtio-pci transport and split virtqueues as QEMU 7.2 runs them.

Layout (hw/virtio/virtio-pci.c, 7.2 defaults): BAR0 legacy I/O (transitional
devices only), BAR1 the MSI-X table and PBA, BAR4 the modern 16 KiB region
with common config @0, ISR @0x1000, device config @0x2000 and notify @0x3000
(4 bytes per queue), capabilities in QEMU's order of addition.

Behaviour follows QEMU's functions of the same purpose: the common-config
switch on the exact register offset, the legacy I/O switch, feature
negotiation (virtio_set_features, FEATURES_OK validation, ACCESS_PLATFORM
required once offered), virtio_error (NEEDS_RESET + config interrupt, device
broken), bus master in the command register (clearing it disables the device
and drops DRIVER_OK), and the split ring processing (virtqueue_pop,
virtqueue_get_avail_bytes, push, notify).

Device DMA goes through ``self.dma``.  A failed DMA is silent on the device
side, as in QEMU: a read that fails sees zeros (QEMU reads an unassigned
region or a bounce buffer filled from one), a write that fails is dropped.
The zPCI consequences (error state, error event) are the DMA port's.  With
``iommu_platform=on`` the DMA uses the function's bus-master address space, so
Bus Master off makes it fail; without it QEMU lets virtio reach guest memory
directly, whatever the command register says.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..device import DmaError, PciDevice
from .bar import AccessRules, BarMap, Container, Region, Subregion
from .msix import MSIX_FLAGS, Msix
from .pci import BAR_IO, BAR_MEM64, BAR_PREFETCH, CAP_ID_VNDR, CMD_MASTER, COMMAND, PciConfigSpace
from .virtio_arch import (  # noqa: F401  (the device models and tests take them from here)
    CAP_COMMON, CAP_DEVICE, CAP_ISR, CAP_LEN, CAP_NOTIFY, CAP_PCI_CFG, F_ACCESS_PLATFORM,
    F_ANY_LAYOUT, F_BAD_FEATURE, F_NOTIFY_ON_EMPTY, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC,
    F_RING_RESET, F_VERSION_1, MODERN_DEVICE_BASE, NO_VECTOR, NOTIFY_CAP_LEN, PCI_CFG_CAP_LEN,
    PCI_SUBDEVICE_ID_QEMU, QUEUE_MAX, S_DRIVER_OK, S_FEATURES_OK, S_NEEDS_RESET, VIRTIO_VENDOR,
)
from .virtio_regs import PciRegisters
from .virtqueue import RingAccess, VirtQueue

MODERN_REGION_SIZE = 0x1000
COMMON_OFF, ISR_OFF, DEVICE_OFF, NOTIFY_OFF = 0x0000, 0x1000, 0x2000, 0x3000
LEGACY_BAR, MSIX_BAR, MODERN_BAR = 0, 1, 4

_LE_IMPL_1_4 = AccessRules(little_endian=True, impl_min=1, impl_max=4)


def _bit(n: int) -> int:
    return 1 << n


@dataclass(frozen=True)
class TransportOptions:
    """The virtio-pci properties the model honours (already validated)."""
    legacy: bool = True
    modern: bool = True
    iommu_platform: bool = False
    vectors: int = 2
    page_per_vq: bool = False
    ioeventfd: bool = False
    queue_reset: bool = True
    event_idx: bool = True
    indirect_desc: bool = True
    notify_on_empty: bool = True
    any_layout: bool = True
    rom_size: int = 0



class _ProxyQueue:
    """VirtIOPCIQueue: what the modern common config holds before queue_enable."""
    __slots__ = ("num", "enabled", "reset", "desc", "avail", "used")

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.num = 0
        self.enabled = 0
        self.reset = 0
        self.desc = [0, 0]
        self.avail = [0, 0]
        self.used = [0, 0]


class VirtioPciDevice(PciRegisters, RingAccess, PciDevice):
    """Transport plus the generic virtio device; subclasses add the device type."""

    virtio_id = 0
    legacy_device_id = 0
    class_code = 0x00FF
    config_len = 0
    device_legacy_features = 0     # feature bits only a legacy driver sees

    def __init__(self, options: TransportOptions, device_features: int,
                 queue_sizes: list[int]):
        super().__init__()
        self.options = options
        self.dma_translated = options.iommu_platform
        modern, legacy = options.modern, options.legacy
        features = (_bit(F_RING_INDIRECT_DESC) * options.indirect_desc
                    | _bit(F_RING_EVENT_IDX) * options.event_idx
                    | _bit(F_NOTIFY_ON_EMPTY) * options.notify_on_empty
                    | _bit(F_ANY_LAYOUT) * options.any_layout
                    | _bit(F_RING_RESET) * options.queue_reset
                    | device_features)
        if options.iommu_platform:
            features |= _bit(F_ACCESS_PLATFORM)
        if modern:
            features |= _bit(F_VERSION_1)
        if legacy:
            features |= _bit(F_BAD_FEATURE)
        self.host_features = features
        self.legacy_features = (_bit(F_NOTIFY_ON_EMPTY) | _bit(F_ANY_LAYOUT)
                                | _bit(F_BAD_FEATURE) | self.device_legacy_features)
        self.vendor_id = VIRTIO_VENDOR
        self.device_id = (self.legacy_device_id if legacy
                          else MODERN_DEVICE_BASE + self.virtio_id)
        self.vqs = [VirtQueue(i, n, h) for i, (n, h) in
                    enumerate(zip(queue_sizes, self._queue_handlers()))]
        self.proxy_vqs = [_ProxyQueue() for _ in range(QUEUE_MAX)]
        self.dfselect = self.gfselect = 0
        self.proxy_guest_features = [0, 0]
        self.generation = 0
        self.config_vector = NO_VECTOR
        self.status = 0
        self.isr = 0
        self.guest_features = 0
        self.queue_sel = 0
        self.broken = False
        self.disabled = False
        self.ioeventfd_started = False
        self.big_endian = True          # s390x: legacy rings and config are big-endian
        self.errors: list[str] = []     # virtio_error messages, for tests and logs
        self.dma_errors: list[DmaError] = []
        self.extra_vectors: dict[int, int] = {}
        self._build_config()
        self.bar_read = self.bars.read
        self.bar_write = self.bars.write

    # -- subclass hooks --------------------------------------------------------
    def _queue_handlers(self) -> list:
        return []

    def get_config(self) -> bytes:
        """The device configuration bytes in the current device byte order."""
        return b""

    def set_config(self, data: bytes) -> None:
        pass

    def set_status_hook(self, status: int) -> None:
        pass

    def device_reset(self) -> None:
        pass

    def bad_features(self) -> int:
        return 0

    def set_features_hook(self, features: int) -> None:
        pass

    # -- construction -----------------------------------------------------------
    def _build_config(self) -> None:
        o = self.options
        legacy, modern = o.legacy, o.modern
        if legacy:
            cfg = PciConfigSpace(VIRTIO_VENDOR, self.legacy_device_id, 0, self.class_code,
                                 VIRTIO_VENDOR, self.virtio_id, interrupt_pin=1)
        else:
            cfg = PciConfigSpace(VIRTIO_VENDOR, MODERN_DEVICE_BASE + self.virtio_id, 1,
                                 self.class_code, VIRTIO_VENDOR, PCI_SUBDEVICE_ID_QEMU,
                                 interrupt_pin=1)
        self.cfg = cfg
        bars = self.bars = BarMap()
        self.pci_cfg_cap = 0
        self.notify_mult = 0x1000 if o.page_per_vq else 4
        if modern:
            notify_size = self.notify_mult * QUEUE_MAX
            regions = [
                (COMMON_OFF, Region("virtio-pci-common", MODERN_REGION_SIZE, _LE_IMPL_1_4,
                                    self._common_read, self._common_write), CAP_COMMON),
                (ISR_OFF, Region("virtio-pci-isr", MODERN_REGION_SIZE, _LE_IMPL_1_4,
                                 self._isr_read, self._isr_write), CAP_ISR),
                (DEVICE_OFF, Region("virtio-pci-device", MODERN_REGION_SIZE, _LE_IMPL_1_4,
                                    self._device_read, self._device_write), CAP_DEVICE),
                (NOTIFY_OFF, Region("virtio-pci-notify", notify_size, _LE_IMPL_1_4,
                                    self._notify_read, self._notify_write), CAP_NOTIFY),
            ]
            self.modern_regions = [Subregion(base, r) for base, r, _ in regions]
            for base, region, cfg_type in regions:
                if cfg_type == CAP_NOTIFY:
                    off = cfg.add_capability(CAP_ID_VNDR, NOTIFY_CAP_LEN)
                    cfg.set(off + 16, 4, self.notify_mult)
                    cfg.data[off + 2] = NOTIFY_CAP_LEN
                else:
                    off = cfg.add_capability(CAP_ID_VNDR, CAP_LEN)
                    cfg.data[off + 2] = CAP_LEN
                cfg.data[off + 3] = cfg_type
                cfg.data[off + 4] = MODERN_BAR
                cfg.set(off + 8, 4, base)
                cfg.set(off + 12, 4, region.size)
            end = NOTIFY_OFF + notify_size
            bar_size = 1 << (end - 1).bit_length()
            cfg.register_bar(MODERN_BAR, bar_size, BAR_MEM64 | BAR_PREFETCH)
            bars.bars[MODERN_BAR] = Container("virtio-pci", bar_size, self.modern_regions)
            # VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and data are writable
            off = self.pci_cfg_cap = cfg.add_capability(CAP_ID_VNDR, PCI_CFG_CAP_LEN)
            cfg.data[off + 2] = PCI_CFG_CAP_LEN
            cfg.data[off + 3] = CAP_PCI_CFG
            cfg.wmask[off + 4] = 0xFF
            cfg.wmask[off + 8:off + 20] = b"\xff" * 12
        else:
            self.modern_regions = []
        self.msix = None
        if o.vectors:
            self.msix = Msix(cfg, o.vectors, MSIX_BAR, self._send_msi)
            bars.bars[MSIX_BAR] = self.msix.bar
        if legacy:
            size = 24 if self.msix is not None else 20
            size = 1 << (size + self.config_len - 1).bit_length()
            cfg.register_bar(LEGACY_BAR, size, BAR_IO)
            bars.bars[LEGACY_BAR] = Region("virtio-pci", size, _LE_IMPL_1_4,
                                           self._legacy_read, self._legacy_write)
        if o.rom_size:
            cfg.register_rom(o.rom_size)
        self._initial_config = bytes(cfg.data)

    # -- PciDevice interface ----------------------------------------------------
    def config_read(self, offset: int, size: int) -> int | None:
        if offset + size > 256:
            return None
        cap = self.pci_cfg_cap
        if cap and offset < cap + 20 and offset + size > cap + 16:
            self._pci_cfg_window(read=True)
        return int.from_bytes(self.cfg.data[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> bool:
        if offset + size > 256:
            return False
        cfg = self.cfg
        msix = self.msix
        old_ctrl = cfg.data[msix.cap + MSIX_FLAGS + 1] if msix is not None else 0
        cfg.write(offset, size, value)
        if msix is not None and offset < msix.cap + 12 and offset + size > msix.cap:
            msix.config_written(old_ctrl)
        if offset <= COMMAND < offset + size:
            if not cfg.data[COMMAND] & CMD_MASTER:
                self.disabled = True
                self.ioeventfd_started = False
                self.set_status(self.status & ~S_DRIVER_OK & 0xFF)
            else:
                self.disabled = False
        cap = self.pci_cfg_cap
        if cap and offset < cap + 20 and offset + size > cap + 16:
            self._pci_cfg_window(read=False)
        return True

    def config_load_op(self, offset: int, size: int):
        """The PCILG view of ``size`` config bytes at ``offset`` (PciDevice's optional op);
        None for the VIRTIO_PCI_CAP_PCI_CFG window, whose reads run a BAR access."""
        cap = self.pci_cfg_cap
        if offset + size > 256 or (cap and offset < cap + 20 and offset + size > cap + 16):
            return None
        return self.cfg.load_op(offset, size)

    def bar_size(self, bar: int) -> int:
        return self.bars.size(bar)

    # bar_read / bar_write are the BarMap's own methods, bound per instance in
    # __init__: one Python frame less on every PCILG/PCISTG of a BAR
    def bar_read(self, bar: int, offset: int, size: int) -> int | None:
        return self.bars.read(bar, offset, size)

    def bar_write(self, bar: int, offset: int, size: int, value: int) -> bool:
        return self.bars.write(bar, offset, size, value)

    def bar_read_op(self, bar: int, offset: int, size: int):
        return self.bars.read_op(bar, offset, size)

    def bar_write_op(self, bar: int, offset: int, size: int):
        return self.bars.write_op(bar, offset, size)

    def bar_access_valid(self, bar: int, offset: int, size: int, write: bool = False) -> bool:
        """Whether bar_read/bar_write of ``size`` bytes at ``offset`` would be accepted."""
        return self.bars.access_valid(bar, offset, size)

    def bar_block_valid(self, bar: int, offset: int, length: int) -> bool:
        """PCISTB's pre-check: one region takes the whole block as 8-byte stores."""
        return self.bars.block_valid(bar, offset, length)

    def reset(self) -> None:
        """A PCI-level reset: config registers, MSI-X and the virtio device."""
        self.cfg.data[:] = self._initial_config
        if self.msix is not None:
            self.msix.reset()
        self.disabled = False
        self._transport_reset()

    # -- bus master and DMA -----------------------------------------------------
    def dma_read(self, addr: int, size: int) -> bytes:
        if self.dma_translated and not self.cfg.data[COMMAND] & CMD_MASTER:
            return bytes(size)
        data = self.dma.read(addr, size)
        if isinstance(data, DmaError):
            self.dma_errors.append(data)
            return bytes(size)
        return data

    def dma_write(self, addr: int, data: bytes) -> None:
        if self.dma_translated and not self.cfg.data[COMMAND] & CMD_MASTER:
            return
        err = self.dma.write(addr, data)
        if err is not None:
            self.dma_errors.append(err)

    def _send_msi(self, address: int, data: int) -> None:
        # msi_send_message stores through the bus-master address space
        if self.cfg.data[COMMAND] & CMD_MASTER:
            self.dma.msi(address, data)

    # -- the VIRTIO_PCI_CAP_PCI_CFG window --------------------------------------
    def _pci_cfg_window(self, read: bool) -> None:
        cap = self.pci_cfg_cap
        cfg = self.cfg
        off = cfg.get(cap + 8, 4)
        length = cfg.get(cap + 12, 4)
        if length not in (1, 2, 4):
            return
        addr = off & ~(length - 1)
        for base, region in self.modern_regions:
            if base <= addr and addr + length <= base + region.size:
                break
        else:
            return
        # virtio_address_space_read/write make a little-endian access of the
        # region; dispatch_* speak the big-endian (PCILG) view, so the data
        # bytes go in and out in big-endian order
        if read:
            value = region.dispatch_read(addr - base, length)
            if value is not None:
                cfg.data[cap + 16:cap + 16 + length] = value.to_bytes(length, "big")
        else:
            value = int.from_bytes(cfg.data[cap + 16:cap + 16 + length], "big")
            region.dispatch_write(addr - base, length, value)

    # -- generic virtio device --------------------------------------------------
    def has_feature(self, bit: int) -> bool:
        return bool(self.guest_features >> bit & 1)

    def _order(self) -> str:
        """virtio_is_big_endian: the byte order of the rings and the device config."""
        return "little" if self.guest_features >> F_VERSION_1 & 1 or not self.big_endian else "big"

    def virtio_error(self, message: str) -> None:
        self.errors.append(message)
        if self.has_feature(F_VERSION_1):
            self.status |= S_NEEDS_RESET
            self.notify_config()
        self.broken = True

    def set_isr(self, bits: int) -> None:
        self.isr |= bits

    def notify_vector(self, vector: int) -> None:
        if self.disabled or self.broken:
            return
        msix = self.msix
        # without MSI-X QEMU raises INTx, which reaches nothing on s390x
        if msix is not None and msix.enabled():
            msix.notify(vector)

    def notify_config(self) -> None:
        if not self.status & S_DRIVER_OK:
            return
        self.set_isr(3)
        self.generation = (self.generation + 1) & 0xFF
        self.notify_vector(self.config_vector)

    def set_features(self, value: int) -> int:
        if self.status & S_FEATURES_OK:
            return -1
        bad = value & ~self.host_features
        value &= self.host_features
        self.set_features_hook(value)
        self.guest_features = value
        return -1 if bad else 0

    def set_status(self, value: int) -> int:
        if self.has_feature(F_VERSION_1):
            if not self.status & S_FEATURES_OK and value & S_FEATURES_OK:
                if (self.host_features >> F_ACCESS_PLATFORM & 1
                        and not self.has_feature(F_ACCESS_PLATFORM)):
                    return -1
        self.set_status_hook(value)
        self.status = value
        return 0

    def virtio_reset(self) -> None:
        self.set_status_hook(0)
        self.device_reset()
        self.broken = False
        self.guest_features = 0
        self.queue_sel = 0
        self.status = 0
        self.disabled = False
        self.isr = 0
        self.config_vector = NO_VECTOR
        self.notify_vector(NO_VECTOR)
        for vq in self.vqs:
            vq.reset()
        self.extra_vectors.clear()

    def _transport_reset(self) -> None:
        """virtio_pci_reset: bus reset of the device, vectors unused, proxy queues cleared."""
        self.ioeventfd_started = False
        self.virtio_reset()
        if self.msix is not None:
            self.msix.unuse_all()
        for pq in self.proxy_vqs:
            pq.clear()

    def _start_ioeventfd(self) -> None:
        """On DRIVER_OK QEMU arms the host notifiers and kicks every queue once."""
        if not self.options.ioeventfd or self.ioeventfd_started:
            return
        self.ioeventfd_started = True
        for vq in self.vqs:
            if vq.num and vq.desc and not self.broken:
                vq.handler(vq)

    def _write_status(self, value: int) -> None:
        if not value & S_DRIVER_OK:
            self.ioeventfd_started = False
        self.set_status(value & 0xFF)
        if value & S_DRIVER_OK:
            self._start_ioeventfd()
        if self.status == 0:
            self._transport_reset()

    def queue_notify(self, n: int) -> None:
        if n >= len(self.vqs):
            return
        vq = self.vqs[n]
        if not vq.desc or self.broken:
            return
        vq.handler(vq)

    def _rebind_vector(self, old: int, value: int) -> int:
        """Release ``old`` and take ``value``; the vector a register then reads.

        A vector past the table (NO_VECTOR included) is neither released nor
        taken, and the register reads NO_VECTOR so the driver sees the failure.
        """
        msix = self.msix
        if msix is None:
            return NO_VECTOR
        msix.vector_unuse(old)
        return value & 0xFFFF if msix.vector_use(value) else NO_VECTOR

