"""A memory-backed PCI test device: BARs are plain byte arrays.

Each BAR has QEMU-style access rules (a MemoryRegion's ``.valid``: minimum
and maximum access size, whether unaligned accesses are accepted, and the
windows its subregions cover, outside which a BAR container refuses every
access) so tests can exercise the zPCI layer's operand-exception paths.
``virtio_rng_shaped`` gives the layout of QEMU's virtio-rng-pci function
(vendor 1af4, device 1005, interrupt pin A, BAR0 32-byte I/O, BAR1 4 KiB with
a 2-vector MSI-X table at 0 and its PBA at 0x800, BAR4 16 KiB 64-bit
prefetchable) without any virtio behaviour.

A BAR may be as large as a 64-bit BAR can be (2^63 bytes): its memory is
``sparse.SparseBytes``, so only the pages a guest writes cost anything.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..device import PciDevice
from .pci import CONFIG_SIZE
from .sparse import SparseBytes

MAX_BAR_SIZE = 1 << 63          # the largest a 64-bit BAR's size bits can describe
MAX_VECTORS_SHAPED = 128        # what fits the 4 KiB MSI-X BAR of the virtio-rng shape

_CMD_WMASK = 0x0547      # I/O, memory, bus master, parity, SERR, INTx disable


@dataclass(frozen=True)
class BarSpec:
    size: int
    io: bool = False
    mem64: bool = False
    prefetch: bool = False
    min_access: int = 1
    max_access: int = 8
    unaligned: bool = True
    windows: tuple[tuple[int, int], ...] = ()    # (offset, size) subregions; () = whole BAR

    @property
    def flags(self) -> int:
        if self.io:
            return 0x1
        return (0x4 if self.mem64 else 0) | (0x8 if self.prefetch else 0)


class MemDevice(PciDevice):
    kind = "memdev"

    def __init__(self, vendor_id: int = 0x1AF4, device_id: int = 0x10FF,
                 bars: dict[int, BarSpec] | None = None, class_code: int = 0xFF0000,
                 interrupt_pin: int = 0):
        super().__init__()
        for what, value, top in (("vendor", vendor_id, 0xFFFF), ("device", device_id, 0xFFFF),
                                 ("class code", class_code, 0xFFFFFF),
                                 ("interrupt pin", interrupt_pin, 4)):
            if not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"{what} {value!r} is outside 0..{top:#x}")
        self.vendor_id = vendor_id
        self.device_id = device_id
        self.class_code = class_code
        self.interrupt_pin = interrupt_pin
        self.bars = dict(bars if bars is not None else {0: BarSpec(4096)})
        for bar, spec in self.bars.items():
            if not isinstance(bar, int) or not 0 <= bar <= 5:
                raise ValueError(f"BAR{bar}: a function has BARs 0 to 5")
            size = spec.size
            if not isinstance(size, int) or not 1 <= size <= MAX_BAR_SIZE or size & (size - 1):
                raise ValueError(f"BAR{bar}: size {size!r} is not a power of 2 from 1 "
                                 f"to 2^63")
        self.mem = {bar: SparseBytes(spec.size) for bar, spec in self.bars.items()}
        self.config = bytearray(CONFIG_SIZE)
        self.wmask = bytearray(CONFIG_SIZE)
        self._init_config()

    @classmethod
    def virtio_rng_shaped(cls, vectors: int = 2) -> "MemDevice":
        if not 1 <= vectors <= MAX_VECTORS_SHAPED:
            raise ValueError(f"vectors: 1..{MAX_VECTORS_SHAPED} fit the 4 KiB MSI-X BAR "
                             f"of this shape")
        pba = ((vectors + 63) // 64) * 8
        return cls(0x1AF4, 0x1005, {
            0: BarSpec(32, io=True),
            # MSI-X exclusive BAR: 16 bytes of table per vector at 0, the PBA at 0x800
            1: BarSpec(4096, min_access=4, max_access=8, windows=((0, 16 * vectors), (0x800, pba))),
            4: BarSpec(16384, mem64=True, prefetch=True, unaligned=False),
        }, class_code=0x00FF00, interrupt_pin=1)

    @classmethod
    def from_props(cls, props=()) -> "MemDevice":
        """``make_device("memdev", props)``: shape=virtio-rng, vendor, device, barN=<size>."""
        from . import make_device
        return make_device("memdev", props)

    def _init_config(self) -> None:
        c = self.config
        c[:] = bytes(CONFIG_SIZE)
        self.wmask[:] = bytes(CONFIG_SIZE)
        c[0:2] = self.vendor_id.to_bytes(2, "little")
        c[2:4] = self.device_id.to_bytes(2, "little")
        c[9:12] = self.class_code.to_bytes(3, "little")
        c[0x3D] = self.interrupt_pin
        self.wmask[4:6] = _CMD_WMASK.to_bytes(2, "little")
        for bar, spec in self.bars.items():
            off = 0x10 + 4 * bar
            c[off:off + 4] = spec.flags.to_bytes(4, "little")
            low = 0xFFFFFFFC if spec.io else 0xFFFFFFF0
            self.wmask[off:off + 4] = (~(spec.size - 1) & low).to_bytes(4, "little")
            if spec.mem64 and bar < 5:
                self.wmask[off + 4:off + 8] = b"\xff\xff\xff\xff"

    # -- config space (little-endian values)
    def config_read(self, offset, size):
        if offset + size > CONFIG_SIZE:
            return None
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset, size, value):
        if offset + size > CONFIG_SIZE:
            return False
        for i in range(size):
            m = self.wmask[offset + i]
            b = (value >> (8 * i)) & 0xFF
            self.config[offset + i] = (self.config[offset + i] & ~m) | (b & m)
        return True

    # -- BARs (values as a big-endian access sees them: bytes in address order)
    def bar_size(self, bar):
        spec = self.bars.get(bar)
        return spec.size if spec is not None else 0

    def bar_access_valid(self, bar, offset, size, write=False) -> bool:
        spec = self.bars.get(bar)
        if spec is None or not spec.min_access <= size <= spec.max_access:
            return False
        if not spec.unaligned and offset & (size - 1):
            return False
        if spec.windows:
            return any(lo <= offset and offset + size <= lo + n for lo, n in spec.windows)
        return 0 <= offset and offset + size <= spec.size

    def bar_block_valid(self, bar, offset, length) -> bool:
        """PCISTB's pre-check: one window holds the block and takes 8-byte stores."""
        spec = self.bars.get(bar)
        if spec is None or not spec.min_access <= 8 <= spec.max_access:
            return False
        windows = spec.windows or ((0, spec.size),)
        return any(lo <= offset and offset + length <= lo + n for lo, n in windows)

    def bar_read(self, bar, offset, size):
        if not self.bar_access_valid(bar, offset, size):
            return None
        return int.from_bytes(self.mem[bar].read(offset, size), "big")

    def bar_write(self, bar, offset, size, value):
        if not self.bar_access_valid(bar, offset, size, True):
            return False
        self.mem[bar].write(offset, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big"))
        return True

    def reset(self):
        self._init_config()
        for m in self.mem.values():
            m.clear()
