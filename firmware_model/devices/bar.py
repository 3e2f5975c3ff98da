"""A device's BARs as QEMU 7.2's memory core dispatches zPCI loads and stores.

``zpci_read_bar`` / ``zpci_write_bar`` take one level of subregion lookup
(``s390_get_subregion``), then ``memory_region_dispatch_read/write`` with
``MO_BE``: ``memory_region_access_valid``, ``access_with_adjusted_size`` and
``adjust_endianness`` in that order.  A ``Region``'s ``read(offset, size)``
returns the value the device model computes (what QEMU's
``MemoryRegionOps.read`` returns); the dispatch turns it into what a
big-endian access of the guest's length sees.

Speed: a driver issues the same few accesses over and over (a vector's
table entry, a queue's notify register), so ``BarMap`` resolves each
(bar, offset, length) once into an *access op*, a closure with the region,
its local offset, the access size and the byte swap already chosen, and
keeps it in a bounded cache.  A region whose contents are plain memory
(the MSI-X table and PBA) hands out its own ops, which read and write its
bytes directly.  Resolving has no side effect and nothing a guest does
changes a BAR's layout, so a cached op always does what a fresh
resolution would.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, NamedTuple

ReadOp = Callable[[], int]                     # the big-endian value of one access
WriteOp = Callable[[int], None]                # stores one access's big-endian value; returns None
# region-local (offset, size) -> op, for regions that make their own
ReadOpFactory = Callable[[int, int], ReadOp]
WriteOpFactory = Callable[[int, int], WriteOp]

# ops resolved per BarMap before the cache starts over: a driver uses a few
# dozen; the bound keeps a guest that walks a whole BAR from growing it
OP_CACHE_LIMIT = 4096


def size_memop(length: int) -> int:
    """QEMU's size_memop(): ctz(length), so 3, 5 and 7 become 1 and 6 becomes 2."""
    return length & -length


def _pack_swap(size: int) -> Callable[[int], int]:
    pack = struct.Struct("<" + "BHIQ"[size.bit_length() - 1]).pack
    unpack = struct.Struct(">" + "BHIQ"[size.bit_length() - 1]).unpack

    def swap(value: int) -> int:
        return unpack(pack(value))[0]
    return swap


# adjust_endianness on a value already masked to its size: bswap16/32/64;
# a one-byte access is not swapped
SWAP: dict[int, Callable[[int], int]] = {1: int, 2: _pack_swap(2), 4: _pack_swap(4),
                                         8: _pack_swap(8)}


@dataclass(frozen=True)
class AccessRules:
    """A MemoryRegionOps' .valid / .impl / .endianness (0 = QEMU's default)."""
    little_endian: bool = True
    valid_min: int = 0
    valid_max: int = 0
    unaligned: bool = False
    impl_min: int = 0
    impl_max: int = 0


def _refused_read() -> None:
    return None


def _refused_write(value: int) -> None:
    """Stands for a refused store in the cache; BarMap answers False and never calls it."""


class Region:
    """An I/O MemoryRegion with ops; ``read``/``write`` are the ops' callbacks.

    ``read_op`` / ``write_op``, when given, make the access ops of the
    region themselves (for a memory-backed region); they must give what
    the callbacks would, through the dispatch, for every valid access.
    """

    __slots__ = ("name", "size", "rules", "read", "write", "read_op", "write_op",
                 "_imin", "_imax")

    def __init__(self, name: str, size: int, rules: AccessRules,
                 read: Callable[[int, int], int], write: Callable[[int, int, int], None],
                 read_op: ReadOpFactory | None = None, write_op: WriteOpFactory | None = None):
        self.name = name
        self.size = size
        self.rules = rules
        self.read = read
        self.write = write
        self.read_op = read_op
        self.write_op = write_op
        self._imin = rules.impl_min or 1
        self._imax = rules.impl_max or 4

    def valid(self, addr: int, size: int) -> bool:
        r = self.rules
        if not r.unaligned and addr & (size - 1):
            return False
        if not r.valid_max:
            return True
        return r.valid_min <= size <= r.valid_max

    def compile(self, addr: int, size: int, write: bool) -> ReadOp | WriteOp | None:
        """The op of a ``size``-byte (a power of 2) big-endian access at ``addr``;
        None when the region refuses it (memory_region_access_valid)."""
        if not self.valid(addr, size):
            return None
        factory = self.write_op if write else self.read_op
        if factory is not None:
            return factory(addr, size)
        # access_with_adjusted_size: the device access size and, per piece,
        # its address and its shift within the value before the byte swap
        access = max(min(size, self._imax), self._imin)
        little = self.rules.little_endian
        pieces = [(addr + i, 8 * i if little else 8 * (size - access - i))
                  for i in range(0, size, access)]
        swap = SWAP[size] if little else int
        build = self._write_op if write else self._read_op
        return build(addr, size, access, (1 << (8 * access)) - 1, pieces, swap)

    def _read_op(self, addr, size, access, mask, pieces, swap) -> ReadOp:
        read = self.read
        if access == size:
            return lambda: swap(read(addr, size) & mask)

        def op() -> int:
            value = 0
            for a, shift in pieces:
                value |= (read(a, access) & mask) << shift
            return swap(value)
        return op

    def _write_op(self, addr, size, access, mask, pieces, swap) -> WriteOp:
        write = self.write
        size_mask = (1 << (8 * size)) - 1
        if access == size:
            def whole(value: int) -> None:     # None: stored (what the callback returns is not an answer)
                write(addr, size, swap(value & size_mask))
            return whole

        def op(value: int) -> None:
            value = swap(value & size_mask)
            for a, shift in pieces:
                write(a, access, (value >> shift) & mask)
        return op

    def dispatch_read(self, addr: int, size: int) -> int | None:
        """One load, resolved afresh (for accesses that do not come from a BAR)."""
        op = self.compile(addr, size, False)
        return None if op is None else op()

    def dispatch_write(self, addr: int, size: int, value: int) -> bool:
        op = self.compile(addr, size, True)
        if op is None:
            return False
        op(value)
        return True


class Subregion(NamedTuple):
    base: int                    # offset of the region within its container
    region: Region


class Target(NamedTuple):
    """Where an access of a BAR lands."""
    region: Region
    offset: int                  # within the region


class Container:
    """A BAR that is a container of subregions (MSI-X BAR, virtio modern BAR).

    An access that no single subregion holds falls on the container itself,
    whose ops are QEMU's unassigned ops: rejected.
    """

    __slots__ = ("name", "size", "subregions")

    def __init__(self, name: str, size: int, subregions: list[Subregion]):
        self.name = name
        self.size = size
        self.subregions = [Subregion(*s) for s in subregions]

    def find(self, offset: int, length: int) -> Subregion | None:
        for sub in self.subregions:
            if sub.base <= offset and offset + length <= sub.base + sub.region.size:
                return sub
        return None


class BarMap:
    """The BARs of a device, dispatching zPCI loads and stores as QEMU does."""

    __slots__ = ("bars", "_reads", "_writes")

    def __init__(self):
        self.bars: dict[int, Region | Container] = {}
        self._reads: dict[tuple[int, int, int], ReadOp] = {}
        self._writes: dict[tuple[int, int, int], WriteOp] = {}

    def size(self, bar: int) -> int:
        r = self.bars.get(bar)
        return r.size if r is not None else 0

    def _target(self, bar: int, offset: int, length: int) -> Target | None:
        r = self.bars.get(bar)
        if r is None:
            return None
        if type(r) is Container:
            hit = r.find(offset, length)
            if hit is None:
                return None
            return Target(hit.region, offset - hit.base)
        return Target(r, offset)

    def _resolve(self, bar: int, offset: int, length: int, write: bool):
        t = self._target(bar, offset, length)
        op = None if t is None else t.region.compile(t.offset, size_memop(length), write)
        if op is None:
            op = _refused_write if write else _refused_read
        cache = self._writes if write else self._reads
        if len(cache) >= OP_CACHE_LIMIT:
            cache.clear()
        cache[bar, offset, length] = op
        return op

    def read_op(self, bar: int, offset: int, length: int) -> ReadOp:
        """The op of a ``length``-byte load at ``offset``; a refused load's op gives None."""
        op = self._reads.get((bar, offset, length))
        if op is None:
            op = self._resolve(bar, offset, length, False)
        return op

    def write_op(self, bar: int, offset: int, length: int) -> WriteOp | None:
        """The op of a ``length``-byte store at ``offset``; None when it is refused."""
        op = self._writes.get((bar, offset, length))
        if op is None:
            op = self._resolve(bar, offset, length, True)
        return None if op is _refused_write else op

    def read(self, bar: int, offset: int, length: int) -> int | None:
        return self.read_op(bar, offset, length)()

    def write(self, bar: int, offset: int, length: int, value: int) -> bool:
        op = self.write_op(bar, offset, length)
        if op is None:
            return False
        op(value)
        return True

    def access_valid(self, bar: int, offset: int, length: int) -> bool:
        """Whether a ``length``-byte access at ``offset`` would be dispatched (no side effect)."""
        t = self._target(bar, offset, length)
        return t is not None and t.region.valid(t.offset, size_memop(length))

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
            region, offset = hit.region, offset - hit.base
        else:
            region = r
        return all(region.valid(offset + i, 8) for i in range(0, length, 8))
