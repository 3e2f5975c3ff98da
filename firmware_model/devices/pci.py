"""PCI building blocks as QEMU 7.2 has them: config space, BAR regions, MSI-X.

* ``PciConfigSpace``: the 256-byte conventional configuration space with
  QEMU's write mask (``wmask``) and write-1-to-clear mask (``w1cmask``),
  capability allocation (``pci_add_capability``: first free gap from 0x40,
  new capability at the head of the list) and BAR registration.
* ``rom_bar_size``: the ROM BAR an option ROM file gets (pci_add_option_rom).

BARs and their dispatch are in ``bar.py``, MSI-X in ``msix.py``.
"""
from __future__ import annotations

import os
from functools import partial
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

    def load_op(self, off: int, size: int) -> Callable[[], int]:
        """What a big-endian load of ``size`` bytes at ``off`` sees, each time it is
        called: the PCI (little-endian) value byte-swapped is the bytes read in
        address order."""
        return partial(int.from_bytes, memoryview(self.data)[off:off + size], "big")

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
