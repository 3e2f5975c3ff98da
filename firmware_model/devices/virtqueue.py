"""Split virtqueues as QEMU 7.2 runs them (hw/virtio/virtio.c, split ring).

``VirtQueue`` is a queue's device-side state; ``RingAccess`` is the part of
a virtio device that walks descriptors (virtqueue_pop,
virtqueue_get_avail_bytes) and fills the used ring (virtqueue_push,
virtio_notify with event-index suppression).  It is a mixin of the device:
it needs ``dma_read(addr, size) -> bytes``, ``dma_write(addr, data)``,
``dma_errors``, ``virtio_error(message)``, ``has_feature(bit)``,
``_order()`` (the rings' byte order), ``set_isr(bits)``,
``notify_vector(vector)`` and the ``disabled`` / ``broken`` flags.
"""
from __future__ import annotations

from typing import NamedTuple

from .virtio_arch import (
    AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, F_NOTIFY_ON_EMPTY,
    F_RING_EVENT_IDX, NO_VECTOR, QUEUE_MAX_SIZE, USED_F_NO_NOTIFY,
)

DESC_SIZE = 16
_CHUNK = 1 << 16            # DMA granule of the model for long buffers (a multiple of 4)


class Desc(NamedTuple):
    """One split-ring descriptor (struct vring_desc)."""
    addr: int
    len: int
    flags: int
    next: int


class Sg(NamedTuple):
    """One piece of guest memory of an element."""
    addr: int
    len: int


class VirtQueueElement:
    __slots__ = ("index", "out_sg", "in_sg")

    def __init__(self, index: int, out_sg: list[Sg], in_sg: list[Sg]):
        self.index = index
        self.out_sg = out_sg      # the pieces the device reads
        self.in_sg = in_sg        # the pieces the device writes

    def out_size(self) -> int:
        return sum(sg.len for sg in self.out_sg)

    def in_size(self) -> int:
        return sum(sg.len for sg in self.in_sg)


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



def set_num(vq: VirtQueue, num: int) -> None:
    """virtio_queue_set_num: no flipping between existent and absent, bounded size."""
    if bool(num) != bool(vq.num) or num > QUEUE_MAX_SIZE or num < 0:
        return
    vq.num = num


def _s16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


class RingAccess:
    """Descriptor walking and the used ring, for a virtio device (see the module doc)."""

    def _ld(self, addr: int, size: int) -> int:
        return int.from_bytes(self.dma_read(addr, size), self._order())

    def _st(self, addr: int, size: int, value: int) -> None:
        self.dma_write(addr, value.to_bytes(size, self._order()))

    def _avail_idx(self, vq: VirtQueue) -> int:
        vq.shadow_avail_idx = self._ld(vq.avail + 2, 2)
        return vq.shadow_avail_idx

    def _desc(self, table: int, i: int) -> Desc:
        raw = self.dma_read(table + DESC_SIZE * i, DESC_SIZE)
        order = self._order()
        return Desc(int.from_bytes(raw[0:8], order), int.from_bytes(raw[8:12], order),
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
        out_sg: list[Sg] = []
        in_sg: list[Sg] = []
        while True:
            if not length:
                self.virtio_error("virtio: zero sized buffers are not allowed")
                return None
            if flags & DESC_F_WRITE:
                in_sg.append(Sg(addr, length))
            else:
                if in_sg:
                    self.virtio_error("Incorrect order for descriptors")
                    return None
                out_sg.append(Sg(addr, length))
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


