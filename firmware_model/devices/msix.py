"""MSI-X as QEMU 7.2 has it (hw/pci/msix.c): capability, table and PBA.

``msix_init_exclusive_bar``: the table in the low half of a BAR of its own,
the PBA at half the BAR.  The table and PBA are plain memory to the guest,
so their BAR access ops (``bar.Region.read_op`` / ``write_op``) read and
write their bytes directly; only a store that reaches a vector's control
word can change its mask, and only such a store runs the mask update.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

from .bar import AccessRules, Container, ReadOp, Region, Subregion, WriteOp
from .pci import CAP_ID_MSIX, PciConfigSpace

MSIX_ENTRY_SIZE = 16
MSIX_CAP_LENGTH = 12
MSIX_FLAGS = 2                 # message control within the capability
MSIX_ENABLE, MSIX_MASKALL = 0x80, 0x40    # high byte of message control
MSIX_ENTRY_CTRL = 12          # vector control within a table entry
MSIX_ENTRY_CTRL_MASKBIT = 0x1
_MSIX_TABLE_RULES = AccessRules(little_endian=True, valid_min=4, valid_max=8, impl_max=4)


class MsiMessage(NamedTuple):
    """A table entry's message: the MSI write the device makes."""
    address: int
    data: int


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
            Subregion(0, Region("msix-table", len(self.table), _MSIX_TABLE_RULES,
                                self._table_read, self._table_write,
                                self._table_read_op, self._table_write_op)),
            Subregion(pba_offset, Region("msix-pba", pba_size, _MSIX_TABLE_RULES,
                                         self._pba_read, self._pba_write,
                                         self._pba_read_op, self._pba_write_op)),
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
            self.table[v * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL] = MSIX_ENTRY_CTRL_MASKBIT
        self.pba[:] = bytes(len(self.pba))
        self._update_function_masked()

    def enabled(self) -> bool:
        return bool(self.config.data[self.cap + MSIX_FLAGS + 1] & MSIX_ENABLE)

    def _update_function_masked(self) -> None:
        ctrl = self.config.data[self.cap + MSIX_FLAGS + 1]
        self.function_masked = not (ctrl & MSIX_ENABLE) or bool(ctrl & MSIX_MASKALL)

    def _masked(self, vector: int) -> bool:
        return (self.function_masked
                or bool(self.table[vector * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL] & MSIX_ENTRY_CTRL_MASKBIT))

    def _pending(self, vector: int) -> bool:
        return bool(self.pba[vector // 8] & (1 << (vector % 8)))

    def _set_pending(self, vector: int, on: bool) -> None:
        if on:
            self.pba[vector // 8] |= 1 << (vector % 8)
        else:
            self.pba[vector // 8] &= ~(1 << (vector % 8)) & 0xFF

    def _message(self, vector: int) -> MsiMessage:
        e = vector * MSIX_ENTRY_SIZE
        t = self.table
        return MsiMessage(int.from_bytes(t[e:e + 8], "little"),
                          int.from_bytes(t[e + 8:e + 12], "little"))

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

    # -- access ops: a big-endian access of a little-endian region made of
    # 4-byte pieces sees the bytes in address order, whatever its size
    @staticmethod
    def _memory_read_op(mem: bytearray, addr: int, size: int) -> ReadOp:
        # a view of the bytes, read at each call; ``mem`` never changes size
        return partial(int.from_bytes, memoryview(mem)[addr:addr + size], "big")

    def _table_read_op(self, addr: int, size: int) -> ReadOp:
        return self._memory_read_op(self.table, addr, size)

    def _pba_read_op(self, addr: int, size: int) -> ReadOp:
        return self._memory_read_op(self.pba, addr, size)

    def _table_write_op(self, addr: int, size: int) -> WriteOp:
        table, end, mask = self.table, addr + size, (1 << (8 * size)) - 1
        vector = addr // MSIX_ENTRY_SIZE
        ctrl = vector * MSIX_ENTRY_SIZE + MSIX_ENTRY_CTRL

        def store(value: int) -> None:
            table[addr:end] = (value & mask).to_bytes(size, "big")
        if not addr <= ctrl < end:
            return store
        # an aligned access stays within one entry: one mask update after it
        # is what QEMU's update after each 4-byte piece amounts to
        masked, update = self._masked, self._mask_update

        def store_ctrl(value: int) -> None:
            was = masked(vector)
            store(value)
            update(vector, was)
        return store_ctrl

    def _pba_write_op(self, addr: int, size: int) -> WriteOp:
        return self._ignore_write

    @staticmethod
    def _ignore_write(value: int) -> None:
        pass

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
