"""PCI building blocks as QEMU 7.2 has them: config space, BAR regions, MSI-X.

* ``PciConfigSpace``: the 256-byte conventional configuration space with
  QEMU's write mask (``wmask``) and write-1-to-clear mask (``w1cmask``),
  capability allocation (``pci_add_capability``: first free gap from 0x40,
  new capability at the head of the list) and BAR registration.
* ``Region`` / ``Container``: a BAR as QEMU's memory core sees it when zPCI
  dispatches PCILG/PCISTG (``zpci_read_bar``: one level of subregion lookup,
  then ``memory_region_dispatch_read`` with ``MO_BE``).  ``bar_read`` /
  ``bar_write`` apply ``memory_region_access_valid``,
  ``access_with_adjusted_size`` and ``adjust_endianness`` in that order.
* ``Msix``: the MSI-X capability, table and PBA (hw/pci/msix.c).
* ``rom_bar_size``: the ROM BAR an option ROM file gets (pci_add_option_rom).

Values stay integers; a region's ``read(offset, size)`` returns the value the
device model computes (what QEMU's ``MemoryRegionOps.read`` returns) and the
dispatch turns it into what a big-endian access of the guest's length sees.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

CONFIG_SIZE = 256
HEADER_SIZE = 0x40

# config-space offsets and bits (include/hw/pci/pci_regs.h)
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
REVISION_ID, CLASS_PROG, CLASS_DEVICE = 0x08, 0x09, 0x0A
CACHE_LINE_SIZE, HEADER_TYPE = 0x0C, 0x0E
BASE_ADDRESS_0, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID = 0x10, 0x2C, 0x2E
ROM_ADDRESS, CAPABILITY_LIST = 0x30, 0x34
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D

CMD_IO, CMD_MEMORY, CMD_MASTER = 0x1, 0x2, 0x4
CMD_SERR, CMD_INTX_DISABLE = 0x100, 0x400
STATUS_CAP_LIST = 0x10
# status bits a write of 1 clears (pci_init_w1cmask)
_STATUS_W1C = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000

BAR_IO, BAR_MEM64, BAR_PREFETCH = 0x1, 0x4, 0x8
ROM_ENABLE = 0x1

CAP_ID_VNDR, CAP_ID_MSIX = 0x09, 0x11


def size_memop(length: int) -> int:
    """QEMU's size_memop(): ctz(length), so 3, 5 and 7 become 1 and 6 becomes 2."""
    return length & -length


# -- configuration space ---------------------------------------------------

class PciConfigSpace:
    """Bytes plus QEMU's per-byte write masks; values are little-endian."""

    __slots__ = ("data", "wmask", "w1cmask", "used", "rom_size")

    def __init__(self, vendor: int, device: int, revision: int, class_code: int,
                 subsys_vendor: int, subsys_id: int, interrupt_pin: int = 0):
        self.data = bytearray(CONFIG_SIZE)
        self.wmask = bytearray(CONFIG_SIZE)
        self.w1cmask = bytearray(CONFIG_SIZE)
        self.used = bytearray(CONFIG_SIZE)       # bytes owned by header or a capability
        self.used[:HEADER_SIZE] = b"\x01" * HEADER_SIZE
        self.rom_size = 0
        self.set(VENDOR_ID, 2, vendor)
        self.set(DEVICE_ID, 2, device)
        self.set(REVISION_ID, 1, revision)
        self.set(CLASS_DEVICE, 2, class_code)
        self.set(SUBSYSTEM_VENDOR_ID, 2, subsys_vendor)
        self.set(SUBSYSTEM_ID, 2, subsys_id)
        self.set(INTERRUPT_PIN, 1, interrupt_pin)
        self.wmask[CACHE_LINE_SIZE] = 0xFF
        self.wmask[INTERRUPT_LINE] = 0xFF
        self.set_mask(self.wmask, COMMAND, 2,
                      CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_SERR | CMD_INTX_DISABLE)
        self.set_mask(self.w1cmask, STATUS, 2, _STATUS_W1C)
        self.wmask[HEADER_SIZE:] = b"\xff" * (CONFIG_SIZE - HEADER_SIZE)

    def get(self, off: int, size: int) -> int:
        return int.from_bytes(self.data[off:off + size], "little")

    def set(self, off: int, size: int, value: int) -> None:
        self.data[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    @staticmethod
    def set_mask(mask: bytearray, off: int, size: int, value: int) -> None:
        mask[off:off + size] = value.to_bytes(size, "little")

    def add_capability(self, cap_id: int, size: int) -> int:
        """pci_add_capability with offset 0: first gap of ``size`` free bytes."""
        off = HEADER_SIZE
        while off + size <= CONFIG_SIZE:
            if not any(self.used[off:off + size]):
                break
            off += 1
        else:
            raise ValueError(f"no room for a {size}-byte capability {cap_id:#x}")
        self.data[off] = cap_id
        self.data[off + 1] = self.data[CAPABILITY_LIST]
        self.data[CAPABILITY_LIST] = off
        self.data[STATUS] |= STATUS_CAP_LIST
        self.used[off:off + size] = b"\x01" * size
        self.wmask[off:off + size] = bytes(size)
        return off

    def register_bar(self, bar: int, size: int, flags: int) -> None:
        """pci_register_bar: type bits in the register, the address bits writable."""
        off = BASE_ADDRESS_0 + 4 * bar
        self.set(off, 4, flags)
        low = 0xFFFFFFFC if flags & BAR_IO else 0xFFFFFFF0
        self.set_mask(self.wmask, off, 4, ~(size - 1) & low)
        if flags & BAR_MEM64:
            self.set_mask(self.wmask, off + 4, 4, ((~(size - 1)) >> 32) & 0xFFFFFFFF)

    def register_rom(self, size: int) -> None:
        self.rom_size = size
        self.set_mask(self.wmask, ROM_ADDRESS, 4, (~(size - 1) & 0xFFFFF800) | ROM_ENABLE)

    def write(self, off: int, size: int, value: int) -> None:
        """pci_default_write_config's byte loop."""
        data, wmask, w1c = self.data, self.wmask, self.w1cmask
        for i in range(size):
            b = (value >> (8 * i)) & 0xFF
            a = off + i
            m = wmask[a]
            data[a] = ((data[a] & ~m) | (b & m)) & ~(b & w1c[a]) & 0xFF


# Where Debian's QEMU finds option ROMs (qemu_find_file for QEMU_FILE_TYPE_BIOS)
ROM_DIRS = ("/usr/share/qemu", "/usr/lib/ipxe/qemu")
# efi-virtio.rom of Debian 12's ipxe-qemu is 249344 bytes: a 256 KiB ROM BAR
DEFAULT_ROM_SIZE = 0x40000


def rom_bar_size(romfile: str) -> int:
    """pci_add_option_rom: the ROM BAR is the file size rounded up to a power of 2."""
    if not romfile:
        return 0
    for d in ROM_DIRS:
        path = os.path.join(d, romfile)
        if os.path.isfile(path):
            size = max(os.path.getsize(path), 1)
            return 1 << (size - 1).bit_length()
    return DEFAULT_ROM_SIZE


# -- BAR regions -----------------------------------------------------------

@dataclass(frozen=True)
class AccessRules:
    """A MemoryRegionOps' .valid / .impl / .endianness (0 = QEMU's default)."""
    little_endian: bool = True
    valid_min: int = 0
    valid_max: int = 0
    unaligned: bool = False
    impl_min: int = 0
    impl_max: int = 0


class Region:
    """An I/O MemoryRegion with ops; ``read``/``write`` are the ops' callbacks."""

    __slots__ = ("name", "size", "rules", "read", "write", "_imin", "_imax")

    def __init__(self, name: str, size: int, rules: AccessRules,
                 read: Callable[[int, int], int], write: Callable[[int, int, int], None]):
        self.name = name
        self.size = size
        self.rules = rules
        self.read = read
        self.write = write
        self._imin = rules.impl_min or 1
        self._imax = rules.impl_max or 4

    def valid(self, addr: int, size: int) -> bool:
        r = self.rules
        if not r.unaligned and addr & (size - 1):
            return False
        if not r.valid_max:
            return True
        return r.valid_min <= size <= r.valid_max

    def dispatch_read(self, addr: int, size: int) -> int | None:
        if not self.valid(addr, size):
            return None
        access = max(min(size, self._imax), self._imin)
        mask = (1 << (8 * access)) - 1
        value = 0
        read = self.read
        if self.rules.little_endian:
            for i in range(0, size, access):
                value |= (read(addr + i, access) & mask) << (8 * i)
            # PCILG/PCISTG use MO_BE: a little-endian region is byte-swapped
            return _swap(value, size)
        for i in range(0, size, access):
            value |= (read(addr + i, access) & mask) << (8 * (size - access - i))
        return value

    def dispatch_write(self, addr: int, size: int, value: int) -> bool:
        if not self.valid(addr, size):
            return False
        access = max(min(size, self._imax), self._imin)
        mask = (1 << (8 * access)) - 1
        write = self.write
        if self.rules.little_endian:
            value = _swap(value, size)
            for i in range(0, size, access):
                write(addr + i, access, (value >> (8 * i)) & mask)
        else:
            for i in range(0, size, access):
                write(addr + i, access, (value >> (8 * (size - access - i))) & mask)
        return True


def _swap(value: int, size: int) -> int:
    """adjust_endianness: bswap16/32/64 truncate to their width, MO_8 keeps all bits."""
    if size == 1:
        return value
    if size == 2:
        return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)
    if size == 4:
        return int.from_bytes((value & 0xFFFFFFFF).to_bytes(4, "little"), "big")
    return int.from_bytes((value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"), "big")


class Container:
    """A BAR that is a container of subregions (MSI-X BAR, virtio modern BAR).

    An access that no single subregion holds falls on the container itself,
    whose ops are QEMU's unassigned ops: rejected.
    """

    __slots__ = ("name", "size", "subregions")

    def __init__(self, name: str, size: int, subregions: list[tuple[int, Region]]):
        self.name = name
        self.size = size
        self.subregions = subregions

    def find(self, offset: int, length: int) -> tuple[int, Region] | None:
        for base, region in self.subregions:
            if base <= offset and offset + length <= base + region.size:
                return base, region
        return None


class BarMap:
    """The BARs of a device, dispatching zPCI loads and stores as QEMU does."""

    __slots__ = ("bars",)

    def __init__(self):
        self.bars: dict[int, Region | Container] = {}

    def size(self, bar: int) -> int:
        r = self.bars.get(bar)
        return r.size if r is not None else 0

    def _target(self, bar: int, offset: int, length: int) -> tuple[Region, int] | None:
        r = self.bars.get(bar)
        if r is None:
            return None
        if type(r) is Container:
            hit = r.find(offset, length)
            if hit is None:
                return None
            base, region = hit
            return region, offset - base
        return r, offset

    def read(self, bar: int, offset: int, length: int) -> int | None:
        size = size_memop(length)
        t = self._target(bar, offset, length)
        if t is None:
            return None
        return t[0].dispatch_read(t[1], size)

    def write(self, bar: int, offset: int, length: int, value: int) -> bool:
        size = size_memop(length)
        t = self._target(bar, offset, length)
        if t is None:
            return False
        return t[0].dispatch_write(t[1], size, value)

    def access_valid(self, bar: int, offset: int, length: int) -> bool:
        """Whether a ``length``-byte access at ``offset`` would be dispatched (no side effect)."""
        t = self._target(bar, offset, length)
        return t is not None and t[0].valid(t[1], size_memop(length))

    def block_valid(self, bar: int, offset: int, length: int) -> bool:
        """PCISTB's check before it fetches the source (pcistb_service_call).

        QEMU picks the region with s390_get_subregion (the first subregion
        holding [offset, offset + len), len passed as a uint8_t, else the BAR
        itself) and asks memory_region_access_valid for an 8-byte write at
        every doubleword of the block.  A BAR container's own ops are the
        unassigned ops, which accept nothing; a plain region's rules look at
        alignment and access size, not at its end.
        """
        r = self.bars.get(bar)
        if r is None:
            return False
        if type(r) is Container:
            hit = r.find(offset, length & 0xFF)
            if hit is None:
                return False
            base, region = hit
            offset -= base
        else:
            region = r
        return all(region.valid(offset + i, 8) for i in range(0, length, 8))


# -- MSI-X -----------------------------------------------------------------

MSIX_ENTRY_SIZE = 16
MSIX_CAP_LENGTH = 12
MSIX_FLAGS = 2                 # message control within the capability
MSIX_ENABLE, MSIX_MASKALL = 0x80, 0x40    # high byte of message control
MSIX_ENTRY_CTRL_MASKBIT = 0x1
_MSIX_TABLE_RULES = AccessRules(little_endian=True, valid_min=4, valid_max=8, impl_max=4)


class Msix:
    """msix_init_exclusive_bar: table in the low half of a 4 KiB BAR, PBA at 2 KiB."""

    __slots__ = ("n", "cap", "table", "pba", "used", "config", "send", "bar",
                 "function_masked")

    def __init__(self, config: PciConfigSpace, nvectors: int, bar: int,
                 send: Callable[[int, int], None]):
        self.n = nvectors
        self.config = config
        self.send = send                          # (address, data) -> MSI write
        bar_size = 4096
        pba_offset = bar_size // 2
        pba_size = ((nvectors + 63) // 64) * 8
        if nvectors * MSIX_ENTRY_SIZE > pba_offset:
            pba_offset = nvectors * MSIX_ENTRY_SIZE
        if pba_offset + pba_size > 4096:
            bar_size = pba_offset + pba_size
        bar_size = 1 << (bar_size - 1).bit_length()
        self.table = bytearray(nvectors * MSIX_ENTRY_SIZE)
        self.pba = bytearray(pba_size)
        self.used = [0] * nvectors
        cap = self.cap = config.add_capability(CAP_ID_MSIX, MSIX_CAP_LENGTH)
        config.set(cap + MSIX_FLAGS, 2, nvectors - 1)
        config.set(cap + 4, 4, 0 | bar)
        config.set(cap + 8, 4, pba_offset | bar)
        config.wmask[cap + MSIX_FLAGS + 1] = MSIX_ENABLE | MSIX_MASKALL
        config.register_bar(bar, bar_size, 0)
        self.bar = Container("msix", bar_size, [
            (0, Region("msix-table", len(self.table), _MSIX_TABLE_RULES,
                       self._table_read, self._table_write)),
            (pba_offset, Region("msix-pba", pba_size, _MSIX_TABLE_RULES,
                                self._pba_read, self._pba_write)),
        ])
        self.function_masked = True
        self.reset()

    # -- state
    def reset(self) -> None:
        """msix_reset: control cleared, every vector masked, nothing pending."""
        cap = self.cap
        self.config.data[cap + MSIX_FLAGS + 1] &= ~(MSIX_ENABLE | MSIX_MASKALL) & 0xFF
        self.table[:] = bytes(len(self.table))
        for v in range(self.n):
            self.table[v * MSIX_ENTRY_SIZE + 12] = MSIX_ENTRY_CTRL_MASKBIT
        self.pba[:] = bytes(len(self.pba))
        self._update_function_masked()

    def enabled(self) -> bool:
        return bool(self.config.data[self.cap + MSIX_FLAGS + 1] & MSIX_ENABLE)

    def _update_function_masked(self) -> None:
        ctrl = self.config.data[self.cap + MSIX_FLAGS + 1]
        self.function_masked = not (ctrl & MSIX_ENABLE) or bool(ctrl & MSIX_MASKALL)

    def _masked(self, vector: int) -> bool:
        return (self.function_masked
                or bool(self.table[vector * MSIX_ENTRY_SIZE + 12] & MSIX_ENTRY_CTRL_MASKBIT))

    def _pending(self, vector: int) -> bool:
        return bool(self.pba[vector // 8] & (1 << (vector % 8)))

    def _set_pending(self, vector: int, on: bool) -> None:
        if on:
            self.pba[vector // 8] |= 1 << (vector % 8)
        else:
            self.pba[vector // 8] &= ~(1 << (vector % 8)) & 0xFF

    def _message(self, vector: int) -> tuple[int, int]:
        e = vector * MSIX_ENTRY_SIZE
        t = self.table
        return int.from_bytes(t[e:e + 8], "little"), int.from_bytes(t[e + 8:e + 12], "little")

    def _mask_update(self, vector: int, was_masked: bool) -> None:
        # msix_handle_mask_update: a vector unmasked with a message pending delivers it
        masked = self._masked(vector)
        if masked == was_masked:
            return
        if not masked and self._pending(vector):
            self._set_pending(vector, False)
            self.notify(vector)

    # -- guest side
    def config_written(self, old_ctrl: int) -> None:
        """msix_write_config after a config write that touched the capability."""
        ctrl = self.config.data[self.cap + MSIX_FLAGS + 1]
        if not (ctrl ^ old_ctrl) & (MSIX_ENABLE | MSIX_MASKALL):
            return
        old_masked = [self._masked(v) for v in range(self.n)]
        self._update_function_masked()
        for v in range(self.n):
            self._mask_update(v, old_masked[v])

    def _table_read(self, addr: int, size: int) -> int:
        return int.from_bytes(self.table[addr:addr + 4], "little")

    def _table_write(self, addr: int, size: int, value: int) -> None:
        vector = addr // MSIX_ENTRY_SIZE
        was = self._masked(vector)
        self.table[addr:addr + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        self._mask_update(vector, was)

    def _pba_read(self, addr: int, size: int) -> int:
        return int.from_bytes(self.pba[addr:addr + 4].ljust(4, b"\0"), "little")

    def _pba_write(self, addr: int, size: int, value: int) -> None:
        pass                                       # the PBA is read-only

    # -- device side
    def vector_use(self, vector: int) -> bool:
        if vector >= self.n:
            return False
        self.used[vector] += 1
        return True

    def vector_unuse(self, vector: int) -> None:
        if vector < self.n and self.used[vector]:
            self.used[vector] -= 1
            if not self.used[vector]:
                self._set_pending(vector, False)

    def unuse_all(self) -> None:
        for v in range(self.n):
            self.used[v] = 0
            self._set_pending(v, False)

    def notify(self, vector: int) -> None:
        """msix_notify: a masked vector becomes pending instead."""
        if vector >= self.n or not self.used[vector]:
            return
        if self._masked(vector):
            self._set_pending(vector, True)
            return
        self.send(*self._message(vector))
