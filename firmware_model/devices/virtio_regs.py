"""The virtio-pci registers as QEMU 7.2 serves them (hw/virtio/virtio-pci.c).

The legacy I/O BAR (virtio_ioport_read/write, the device configuration
after it) and the modern BAR's regions: common configuration (the switch on
the exact register offset), ISR (read clears), device configuration and
notify.  ``PciRegisters`` is a mixin of ``virtio.VirtioPciDevice``, whose
state (queues, proxy queues, features, status, vectors) it reads and
writes; the regions' ``read(addr, size)`` / ``write(addr, size, value)``
callbacks are its methods.
"""
from __future__ import annotations

from typing import NamedTuple

from .pci import CMD_MASTER, COMMAND
from .virtio_arch import (
    C_CFGGENERATION, C_DF, C_DFSELECT, C_GF, C_GFSELECT, C_MSIX, C_NUMQ, C_Q_AVAILHI,
    C_Q_AVAILLO, C_Q_DESCHI, C_Q_DESCLO, C_Q_ENABLE, C_Q_MSIX, C_Q_NOFF, C_Q_RESET,
    C_Q_SELECT, C_Q_SIZE, C_Q_USEDHI, C_Q_USEDLO, C_STATUS, F_BAD_FEATURE, L_CONFIG_VECTOR,
    L_GUEST_FEATURES, L_HOST_FEATURES, L_ISR, L_QUEUE_ADDR_SHIFT, L_QUEUE_NOTIFY, L_QUEUE_NUM,
    L_QUEUE_PFN, L_QUEUE_SEL, L_QUEUE_VECTOR, L_STATUS, L_VRING_ALIGN, NO_VECTOR, QUEUE_MAX,
    S_ACKNOWLEDGE, S_DRIVER,
)
from .virtqueue import set_num

class AddrHalf(NamedTuple):
    """A common-config register holding half of a queue address."""
    field: str          # the proxy queue's list: desc, avail or used
    half: int           # 0: bits 0-31, 1: bits 32-63


_Q_ADDR_HALVES = {C_Q_DESCLO: AddrHalf("desc", 0), C_Q_DESCHI: AddrHalf("desc", 1),
                  C_Q_AVAILLO: AddrHalf("avail", 0), C_Q_AVAILHI: AddrHalf("avail", 1),
                  C_Q_USEDLO: AddrHalf("used", 0), C_Q_USEDHI: AddrHalf("used", 1)}


def _align(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


class PciRegisters:
    """Legacy I/O and modern common/ISR/device/notify registers (see the module doc)."""

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
            if value & (1 << F_BAD_FEATURE):
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
            return getattr(pq, half.field)[half.half]
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
                set_num(vq, value)
        elif addr == C_Q_MSIX:
            if vq is not None:
                vq.vector = self._rebind_vector(vq.vector, value)
            else:
                self.extra_vectors[sel] = self._rebind_vector(
                    self.extra_vectors.get(sel, NO_VECTOR), value)
        elif addr == C_Q_ENABLE:
            if value == 1:
                if vq is not None:
                    set_num(vq, pq.num)
                    if vq.num:
                        vq.desc = (pq.desc[1] << 32) | pq.desc[0]
                        vq.avail = (pq.avail[1] << 32) | pq.avail[0]
                        vq.used = (pq.used[1] << 32) | pq.used[0]
                pq.enabled = 1
                pq.reset = 0
            else:
                self.virtio_error(f"wrong value for queue_enable {value:x}")
        elif addr in _Q_ADDR_HALVES:
            half = _Q_ADDR_HALVES[addr]
            getattr(pq, half.field)[half.half] = value
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

