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

# -- architected constants (virtio 1.x, include/standard-headers/linux/*) ----

VIRTIO_VENDOR = 0x1AF4
LEGACY_DEVICE_BASE = 0x1000      # transitional ids: 0x1000 + (type-specific)
MODERN_DEVICE_BASE = 0x1040      # modern-only id: 0x1040 + virtio device id
PCI_SUBDEVICE_ID_QEMU = 0x1100

S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK = 1, 2, 4
S_FEATURES_OK, S_NEEDS_RESET = 8, 0x40

F_NOTIFY_ON_EMPTY = 24
F_ANY_LAYOUT = 27
F_RING_INDIRECT_DESC = 28
F_RING_EVENT_IDX = 29
F_BAD_FEATURE = 30
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33
F_RING_RESET = 40

DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1

QUEUE_MAX = 1024                 # VIRTIO_QUEUE_MAX
QUEUE_MAX_SIZE = 1024            # VIRTQUEUE_MAX_SIZE
NO_VECTOR = 0xFFFF

# cfg_type of the vendor capabilities
CAP_COMMON, CAP_NOTIFY, CAP_ISR, CAP_DEVICE, CAP_PCI_CFG = 1, 2, 3, 4, 5
CAP_LEN = 16
NOTIFY_CAP_LEN = 20
PCI_CFG_CAP_LEN = 20

# legacy I/O registers
L_HOST_FEATURES, L_GUEST_FEATURES, L_QUEUE_PFN = 0, 4, 8
L_QUEUE_NUM, L_QUEUE_SEL, L_QUEUE_NOTIFY = 12, 14, 16
L_STATUS, L_ISR, L_CONFIG_VECTOR, L_QUEUE_VECTOR = 18, 19, 20, 22
L_QUEUE_ADDR_SHIFT = 12
L_VRING_ALIGN = 4096

# modern common configuration
C_DFSELECT, C_DF, C_GFSELECT, C_GF = 0x00, 0x04, 0x08, 0x0C
C_MSIX, C_NUMQ, C_STATUS, C_CFGGENERATION = 0x10, 0x12, 0x14, 0x15
C_Q_SELECT, C_Q_SIZE, C_Q_MSIX, C_Q_ENABLE, C_Q_NOFF = 0x16, 0x18, 0x1A, 0x1C, 0x1E
C_Q_DESCLO, C_Q_DESCHI, C_Q_AVAILLO, C_Q_AVAILHI = 0x20, 0x24, 0x28, 0x2C
C_Q_USEDLO, C_Q_USEDHI, C_Q_RESET = 0x30, 0x34, 0x3A
# the 32-bit halves of the queue addresses: register -> (proxy queue field, index)
_Q_ADDR_HALVES = {C_Q_DESCLO: ("desc", 0), C_Q_DESCHI: ("desc", 1),
                  C_Q_AVAILLO: ("avail", 0), C_Q_AVAILHI: ("avail", 1),
                  C_Q_USEDLO: ("used", 0), C_Q_USEDHI: ("used", 1)}

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


class VirtQueueElement:
    __slots__ = ("index", "out_sg", "in_sg")

    def __init__(self, index: int, out_sg: list, in_sg: list):
        self.index = index
        self.out_sg = out_sg      # [(addr, len)] the device reads
        self.in_sg = in_sg        # [(addr, len)] the device writes

    def out_size(self) -> int:
        return sum(n for _, n in self.out_sg)

    def in_size(self) -> int:
        return sum(n for _, n in self.in_sg)


class VirtQueue:
    """A split virtqueue's device-side state (QEMU's VirtQueue)."""

    __slots__ = ("index", "num_default", "num", "desc", "avail", "used",
                 "last_avail_idx", "shadow_avail_idx", "used_idx", "inuse",
                 "vector", "signalled_used", "signalled_used_valid",
                 "notification", "handler")

    def __init__(self, index: int, num: int, handler):
        self.index = index
        self.num_default = num
        self.handler = handler
        self.reset()

    def reset(self) -> None:
        self.num = self.num_default
        self.desc = self.avail = self.used = 0
        self.last_avail_idx = self.shadow_avail_idx = self.used_idx = 0
        self.inuse = 0
        self.vector = NO_VECTOR
        self.signalled_used = 0
        self.signalled_used_valid = False
        self.notification = True


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


class VirtioPciDevice(PciDevice):
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

    def bar_size(self, bar: int) -> int:
        return self.bars.size(bar)

    # bar_read / bar_write are the BarMap's own methods, bound per instance in
    # __init__: one Python frame less on every PCILG/PCISTG of a BAR
    def bar_read(self, bar: int, offset: int, size: int) -> int | None:
        return self.bars.read(bar, offset, size)

    def bar_write(self, bar: int, offset: int, size: int, value: int) -> bool:
        return self.bars.write(bar, offset, size, value)

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

    # -- legacy I/O BAR ---------------------------------------------------------
    def _legacy_config_offset(self) -> int:
        return 24 if self.msix is not None and self.msix.enabled() else 20

    def _legacy_config_order(self) -> str:
        # ld*_p is target (big-endian) order, bswapped for a big-endian device;
        # the memory core swaps again for the MO_BE access
        return "big" if self._order() == "little" else "little"

    def _legacy_read(self, addr: int, size: int) -> int:
        base = self._legacy_config_offset()
        if addr < base:
            return self._ioport_read(addr)
        return self._config_load(addr - base, size, self._legacy_config_order())

    def _legacy_write(self, addr: int, size: int, value: int) -> None:
        base = self._legacy_config_offset()
        if addr < base:
            self._ioport_write(addr, value)
            return
        self._config_store(addr - base, size, value, self._legacy_config_order())

    def _ioport_read(self, addr: int) -> int:
        vq = self.vqs[self.queue_sel] if self.queue_sel < len(self.vqs) else None
        if addr == L_HOST_FEATURES:
            return self.host_features & 0xFFFFFFFF
        if addr == L_GUEST_FEATURES:
            return self.guest_features & 0xFFFFFFFF
        if addr == L_QUEUE_PFN:
            return (vq.desc >> L_QUEUE_ADDR_SHIFT) & 0xFFFFFFFF if vq else 0
        if addr == L_QUEUE_NUM:
            return vq.num if vq else 0
        if addr == L_QUEUE_SEL:
            return self.queue_sel
        if addr == L_STATUS:
            return self.status
        if addr == L_ISR:
            return self._isr_read(0, 1)
        if addr == L_CONFIG_VECTOR:
            return self.config_vector
        if addr == L_QUEUE_VECTOR:
            return vq.vector if vq else NO_VECTOR
        return 0xFFFFFFFF

    def _ioport_write(self, addr: int, value: int) -> None:
        value &= 0xFFFFFFFF
        vq = self.vqs[self.queue_sel] if self.queue_sel < len(self.vqs) else None
        if addr == L_GUEST_FEATURES:
            if value & _bit(F_BAD_FEATURE):
                value = self.bad_features()
            self.set_features(value)
        elif addr == L_QUEUE_PFN:
            pa = value << L_QUEUE_ADDR_SHIFT
            if pa == 0:
                self._transport_reset()
            elif vq is not None and vq.num:
                vq.desc = pa
                vq.avail = pa + vq.num * 16
                vq.used = _align(vq.avail + 4 + 2 * vq.num, L_VRING_ALIGN)
        elif addr == L_QUEUE_SEL:
            if value < QUEUE_MAX:
                self.queue_sel = value
        elif addr == L_QUEUE_NOTIFY:
            if value < QUEUE_MAX:
                self.queue_notify(value)
        elif addr == L_STATUS:
            self._write_status(value)
            # Linux before 2.6.34 drives the device with bus master off: QEMU sets
            # it with pci_default_write_config, so the virtio "disabled" flag stays
            if value == S_ACKNOWLEDGE | S_DRIVER:
                self.cfg.write(COMMAND, 1, self.cfg.data[COMMAND] | CMD_MASTER)
        elif addr == L_CONFIG_VECTOR:
            self.config_vector = self._rebind_vector(self.config_vector, value)
        elif addr == L_QUEUE_VECTOR:
            if vq is not None:
                vq.vector = self._rebind_vector(vq.vector, value)

    # -- modern regions ---------------------------------------------------------
    def _common_read(self, addr: int, size: int) -> int:
        sel = self.queue_sel
        pq = self.proxy_vqs[sel]
        if addr == C_DFSELECT:
            return self.dfselect
        if addr == C_DF:
            if self.dfselect <= 1:
                return ((self.host_features & ~self.legacy_features)
                        >> (32 * self.dfselect)) & 0xFFFFFFFF
            return 0
        if addr == C_GFSELECT:
            return self.gfselect
        if addr == C_GF:
            return self.proxy_guest_features[self.gfselect] if self.gfselect < 2 else 0
        if addr == C_MSIX:
            return self.config_vector
        if addr == C_NUMQ:
            n = 0
            for vq in self.vqs:
                if vq.num:
                    n = vq.index + 1
            return n
        if addr == C_STATUS:
            return self.status
        if addr == C_CFGGENERATION:
            return self.generation
        if addr == C_Q_SELECT:
            return sel
        if addr == C_Q_SIZE:
            return self.vqs[sel].num if sel < len(self.vqs) else 0
        if addr == C_Q_MSIX:
            return self.vqs[sel].vector if sel < len(self.vqs) else self.extra_vectors.get(sel, NO_VECTOR)
        if addr == C_Q_ENABLE:
            return pq.enabled
        if addr == C_Q_NOFF:
            return sel
        half = _Q_ADDR_HALVES.get(addr)
        if half is not None:
            return getattr(pq, half[0])[half[1]]
        if addr == C_Q_RESET:
            return pq.reset
        return 0

    def _common_write(self, addr: int, size: int, value: int) -> None:
        sel = self.queue_sel
        pq = self.proxy_vqs[sel]
        vq = self.vqs[sel] if sel < len(self.vqs) else None
        if addr == C_DFSELECT:
            self.dfselect = value
        elif addr == C_GFSELECT:
            self.gfselect = value
        elif addr == C_GF:
            if self.gfselect < 2:
                self.proxy_guest_features[self.gfselect] = value
                g = self.proxy_guest_features
                self.set_features((g[1] << 32) | g[0])
        elif addr == C_MSIX:
            self.config_vector = self._rebind_vector(self.config_vector, value)
        elif addr == C_STATUS:
            self._write_status(value)
        elif addr == C_Q_SELECT:
            if value < QUEUE_MAX:
                self.queue_sel = value
        elif addr == C_Q_SIZE:
            pq.num = value
            if vq is not None:
                _set_num(vq, value)
        elif addr == C_Q_MSIX:
            if vq is not None:
                vq.vector = self._rebind_vector(vq.vector, value)
            else:
                self.extra_vectors[sel] = self._rebind_vector(
                    self.extra_vectors.get(sel, NO_VECTOR), value)
        elif addr == C_Q_ENABLE:
            if value == 1:
                if vq is not None:
                    _set_num(vq, pq.num)
                    if vq.num:
                        vq.desc = (pq.desc[1] << 32) | pq.desc[0]
                        vq.avail = (pq.avail[1] << 32) | pq.avail[0]
                        vq.used = (pq.used[1] << 32) | pq.used[0]
                pq.enabled = 1
                pq.reset = 0
            else:
                self.virtio_error(f"wrong value for queue_enable {value:x}")
        elif addr in _Q_ADDR_HALVES:
            field, i = _Q_ADDR_HALVES[addr]
            getattr(pq, field)[i] = value
        elif addr == C_Q_RESET:
            if value == 1 and vq is not None:
                vq.reset()
                pq.reset = 0
                pq.enabled = 0

    def _isr_read(self, addr: int, size: int) -> int:
        value, self.isr = self.isr, 0
        return value

    def _isr_write(self, addr: int, size: int, value: int) -> None:
        pass

    def _device_read(self, addr: int, size: int) -> int:
        return self._config_load(addr, size, "little")

    def _device_write(self, addr: int, size: int, value: int) -> None:
        self._config_store(addr, size, value, "little")

    def _config_load(self, addr: int, size: int, order: str) -> int:
        """virtio_config_read*: all ones past the device's config."""
        cfg = self.get_config()
        if addr + size > len(cfg):
            return 0xFFFFFFFF
        return int.from_bytes(cfg[addr:addr + size], order)

    def _config_store(self, addr: int, size: int, value: int, order: str) -> None:
        cfg = bytearray(self.get_config())
        if addr + size > len(cfg):
            return
        cfg[addr:addr + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, order)
        self.set_config(bytes(cfg))

    def _notify_read(self, addr: int, size: int) -> int:
        return 0

    def _notify_write(self, addr: int, size: int, value: int) -> None:
        queue = addr // self.notify_mult
        if queue < QUEUE_MAX:
            self.queue_notify(queue)

    # -- split ring access ------------------------------------------------------
    def _ld(self, addr: int, size: int) -> int:
        return int.from_bytes(self.dma_read(addr, size), self._order())

    def _st(self, addr: int, size: int, value: int) -> None:
        self.dma_write(addr, value.to_bytes(size, self._order()))

    def _avail_idx(self, vq: VirtQueue) -> int:
        vq.shadow_avail_idx = self._ld(vq.avail + 2, 2)
        return vq.shadow_avail_idx

    def _desc(self, table: int, i: int) -> tuple[int, int, int, int]:
        raw = self.dma_read(table + 16 * i, 16)
        order = self._order()
        return (int.from_bytes(raw[0:8], order), int.from_bytes(raw[8:12], order),
                int.from_bytes(raw[12:14], order), int.from_bytes(raw[14:16], order))

    def queue_empty(self, vq: VirtQueue) -> bool:
        if self.disabled or self.broken:
            return True
        if not vq.avail:
            return True
        if vq.shadow_avail_idx != vq.last_avail_idx:
            return False
        return self._avail_idx(vq) == vq.last_avail_idx

    def _num_heads(self, vq: VirtQueue, idx: int) -> int:
        n = (self._avail_idx(vq) - idx) & 0xFFFF
        if n > vq.num:
            self.virtio_error(f"Guest moved used index from {idx} to {vq.shadow_avail_idx}")
            return -1
        return n

    def _get_head(self, vq: VirtQueue, idx: int) -> int | None:
        head = self._ld(vq.avail + 4 + 2 * (idx % vq.num), 2)
        if head >= vq.num:
            self.virtio_error(f"Guest says index {head} is available")
            return None
        return head

    def get_avail_bytes(self, vq: VirtQueue, max_in: int, max_out: int) -> tuple[int, int]:
        """virtqueue_get_avail_bytes (split): device-writable and -readable bytes."""
        if not vq.desc:
            return 0, 0
        idx = vq.last_avail_idx
        total_bufs = in_total = out_total = 0
        while True:
            rc = self._num_heads(vq, idx)
            if rc <= 0:
                break
            table, max_ = vq.desc, vq.num
            num_bufs = total_bufs
            i = self._get_head(vq, idx)
            idx = (idx + 1) & 0xFFFF
            if i is None:
                return 0, 0
            addr, length, flags, nxt = self._desc(table, i)
            indirect = bool(flags & DESC_F_INDIRECT)
            if indirect:
                if not length or length % 16:
                    self.virtio_error("Invalid size for indirect buffer table")
                    return 0, 0
                if num_bufs >= max_:
                    self.virtio_error("Looped descriptor")
                    return 0, 0
                table, max_ = addr, length // 16
                num_bufs = i = 0
                addr, length, flags, nxt = self._desc(table, 0)
            while True:
                num_bufs += 1
                if num_bufs > max_:
                    self.virtio_error("Looped descriptor")
                    return 0, 0
                if flags & DESC_F_WRITE:
                    in_total += length
                else:
                    out_total += length
                if in_total >= max_in and out_total >= max_out:
                    return in_total, out_total
                if not flags & DESC_F_NEXT:
                    break
                if nxt >= max_:
                    self.virtio_error(f"Desc next is {nxt}")
                    return 0, 0
                addr, length, flags, nxt = self._desc(table, nxt)
            total_bufs = total_bufs + 1 if indirect else num_bufs
        if rc < 0:
            return 0, 0
        return in_total, out_total

    def pop(self, vq: VirtQueue) -> VirtQueueElement | None:
        """virtqueue_pop (split)."""
        if self.disabled or self.broken:
            return None
        if self.queue_empty(vq):
            return None
        if vq.inuse >= vq.num:
            self.virtio_error("Virtqueue size exceeded")
            return None
        idx = vq.last_avail_idx
        vq.last_avail_idx = (idx + 1) & 0xFFFF
        head = self._get_head(vq, idx)
        if head is None:
            return None
        if self.has_feature(F_RING_EVENT_IDX) and vq.notification:
            self._st(vq.used + 4 + 8 * vq.num, 2, vq.last_avail_idx)
        table, max_ = vq.desc, vq.num
        addr, length, flags, nxt = self._desc(table, head)
        if flags & DESC_F_INDIRECT:
            if not length or length % 16:
                self.virtio_error("Invalid size for indirect buffer table")
                return None
            table, max_ = addr, length // 16
            addr, length, flags, nxt = self._desc(table, 0)
        out_sg: list[tuple[int, int]] = []
        in_sg: list[tuple[int, int]] = []
        while True:
            if not length:
                self.virtio_error("virtio: zero sized buffers are not allowed")
                return None
            if flags & DESC_F_WRITE:
                in_sg.append((addr, length))
            else:
                if in_sg:
                    self.virtio_error("Incorrect order for descriptors")
                    return None
                out_sg.append((addr, length))
            if len(out_sg) + len(in_sg) > max_:
                self.virtio_error("Looped descriptor")
                return None
            if not flags & DESC_F_NEXT:
                break
            if nxt >= max_:
                self.virtio_error(f"Desc next is {nxt}")
                return None
            addr, length, flags, nxt = self._desc(table, nxt)
        vq.inuse += 1
        return VirtQueueElement(head, out_sg, in_sg)

    def read_out(self, elem: VirtQueueElement) -> bytes:
        """The device-readable bytes of an element (failed pieces read as zeros)."""
        return b"".join(self.dma_read(addr, length) for addr, length in elem.out_sg)

    def write_in(self, elem: VirtQueueElement, source, size: int) -> int:
        """iov_from_buf into the device-writable buffers; returns the bytes placed.

        ``source(n)`` supplies the next n bytes.  A piece whose DMA fails ends
        that buffer: QEMU's mapping of it would have been short or a bounce
        buffer whose contents go nowhere; the bytes count as placed either way.
        """
        pos = 0
        for addr, length in elem.in_sg:
            if pos >= size:
                break
            n = min(length, size - pos)
            done = 0
            while done < n:
                chunk = min(n - done, _CHUNK)
                errors = len(self.dma_errors)
                self.dma_write(addr + done, source(chunk))
                done += chunk
                if len(self.dma_errors) != errors:
                    break
            pos += n
        return pos

    def push(self, vq: VirtQueue, elem: VirtQueueElement, length: int) -> None:
        """virtqueue_push: fill one used element and flush it."""
        if self.disabled or self.broken:
            vq.inuse -= 1
            return
        slot = vq.used_idx % vq.num
        self._st(vq.used + 4 + 8 * slot, 4, elem.index)
        self._st(vq.used + 8 + 8 * slot, 4, length)
        old = vq.used_idx
        new = vq.used_idx = (old + 1) & 0xFFFF
        self._st(vq.used + 2, 2, new)
        vq.inuse -= 1
        if _s16(new - vq.signalled_used) < ((new - old) & 0xFFFF):
            vq.signalled_used_valid = False

    def detach(self, vq: VirtQueue, elem: VirtQueueElement) -> None:
        vq.inuse -= 1

    def set_notification(self, vq: VirtQueue, enable: bool) -> None:
        vq.notification = enable
        if not vq.desc:
            return
        if self.has_feature(F_RING_EVENT_IDX):
            self._st(vq.used + 4 + 8 * vq.num, 2, self._avail_idx(vq))
        else:
            flags = self._ld(vq.used, 2)
            flags = flags & ~USED_F_NO_NOTIFY if enable else flags | USED_F_NO_NOTIFY
            self._st(vq.used, 2, flags)

    def _should_notify(self, vq: VirtQueue) -> bool:
        if (self.has_feature(F_NOTIFY_ON_EMPTY) and not vq.inuse
                and self.queue_empty(vq)):
            return True
        if not self.has_feature(F_RING_EVENT_IDX):
            return not self._ld(vq.avail, 2) & AVAIL_F_NO_INTERRUPT
        valid = vq.signalled_used_valid
        vq.signalled_used_valid = True
        old = vq.signalled_used
        new = vq.signalled_used = vq.used_idx
        used_event = self._ld(vq.avail + 4 + 2 * vq.num, 2)
        return not valid or ((new - used_event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)

    def notify(self, vq: VirtQueue) -> None:
        """virtio_notify: ISR bit 0 and the queue's vector, unless suppressed."""
        if not self._should_notify(vq):
            return
        self.set_isr(1)
        self.notify_vector(vq.vector)


_CHUNK = 1 << 16            # DMA granule of the model for long buffers (a multiple of 4)


def _set_num(vq: VirtQueue, num: int) -> None:
    """virtio_queue_set_num: no flipping between existent and absent, bounded size."""
    if bool(num) != bool(vq.num) or num > QUEUE_MAX_SIZE or num < 0:
        return
    vq.num = num


def _align(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


def _s16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value
