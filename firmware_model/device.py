"""The interface between a zPCI function and the PCI device behind it.

Config space values are PCI (little-endian) values; the zPCI layer swaps them
for the guest register as QEMU does. BAR accesses return the value a
big-endian access of ``size`` bytes sees (QEMU dispatches PCILG/PCISTG with
MO_BE), so each device model owns its own byte order and access rules.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class DmaErrorKind(enum.Enum):
    UNMAPPED = "unmapped"          # no IOTLB entry (never refreshed, or invalid)
    PROTECTED = "protected"        # write to a read-only translation
    OUT_OF_RANGE = "out-of-range"  # outside [pba, pal]
    NO_IOAT = "no-ioat"            # translation not registered or function not enabled
    ADDRESSING = "addressing"      # beyond guest memory


@dataclass(frozen=True)
class DmaError:
    kind: DmaErrorKind
    iova: int


class DmaPort:
    """Where a device's DMA goes. The bus installs one per function at plug time."""

    def read(self, iova: int, size: int) -> bytes | DmaError:
        raise NotImplementedError

    def write(self, iova: int, data: bytes) -> DmaError | None:
        raise NotImplementedError

    def msi(self, address: int, data: int) -> None:
        """A message-signalled interrupt write (zPCI turns it into an adapter interrupt)."""


class NoDma(DmaPort):
    def read(self, iova, size):
        return DmaError(DmaErrorKind.NO_IOAT, iova)

    def write(self, iova, data):
        return DmaError(DmaErrorKind.NO_IOAT, iova)


class PciDevice:
    """Base class for device models; defaults describe an absent device.

    ``config_read`` returning None means "past the end of config space"; the
    zPCI layer then answers all ones, as QEMU's config accessors do.

    Optional: ``bar_block_valid(bar, offset, length) -> bool``. QEMU checks
    that one subregion takes the whole PCISTB block as 8-byte stores before
    it reads the source operand; a device that has the method lets the model
    give the operand exception in that order.

    Optional, for speed: access ops, each resolved once per (offset, size)
    and kept by the model (``semantics.load_op`` / ``store_op``), so an op
    must read or write the device's state at every call and hold no value.
    ``config_load_op(offset, size)``: a callable giving what PCILG of those
    configuration bytes loads (the value big-endian), or None (the model
    then calls ``config_read``); ``bar_read_op(bar, offset, size)``: a
    callable giving what ``bar_read`` would; ``bar_write_op(bar, offset,
    size)``: a callable taking the value, or None for a refused store.  A
    wrapper that changes what the device answers must set them to None.
    """

    kind = "none"
    vendor_id = 0xFFFF
    device_id = 0xFFFF

    def __init__(self):
        self.dma: DmaPort = NoDma()

    def config_read(self, offset: int, size: int) -> int | None:
        return None

    def config_write(self, offset: int, size: int, value: int) -> bool:
        return False

    def bar_size(self, bar: int) -> int:
        return 0

    def bar_read(self, bar: int, offset: int, size: int) -> int | None:
        return None

    def bar_write(self, bar: int, offset: int, size: int, value: int) -> bool:
        return False

    def reset(self) -> None:
        pass
