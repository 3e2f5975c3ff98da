"""virtio-rng-pci as QEMU 7.2 presents it (hw/virtio/virtio-rng.c, rng-builtin).

One queue of 8 entries, no device configuration, two MSI-X vectors.  Every
device-writable byte the driver offers is filled with random bytes and the
element is returned with the number written.  QEMU's builtin backend answers
from a bottom half; the model answers at once, which the guest cannot tell
apart from a fast bottom half.  The bytes come from a PRNG seeded per device,
so runs are reproducible; they are drawn as they are written (64 KiB at a
time at most), so a huge buffer costs no more than the memory it reaches.
"""
from __future__ import annotations

import random

from .virtio import S_DRIVER_OK, TransportOptions, VirtioPciDevice

INT64_MAX = (1 << 63) - 1
QUEUE_SIZE = 8


class VirtioRngPci(VirtioPciDevice):
    kind = "virtio-rng-pci"
    virtio_id = 4
    legacy_device_id = 0x1005
    class_code = 0x00FF            # PCI_CLASS_OTHERS

    def __init__(self, options: TransportOptions, max_bytes: int = INT64_MAX, seed: int = 0):
        self.max_bytes = max_bytes
        # QEMU refills the quota every `period` ms of virtual time; the model
        # has no clock, so the quota only ever runs down and `period` has no use
        self.quota_remaining = max_bytes
        self.prng = random.Random(seed)
        super().__init__(options, 0, [QUEUE_SIZE])

    def _queue_handlers(self):
        return [self._handle_input]

    def _handle_input(self, vq) -> None:
        self.process()

    def set_status_hook(self, status: int) -> None:
        # virtio_rng_set_status: the new status is in place before processing
        self.status = status
        self.process()

    def _guest_ready(self) -> bool:
        return bool(self.vqs[0].avail) and bool(self.status & S_DRIVER_OK)

    def process(self) -> None:
        """virtio_rng_process, with the backend's answer (chunk_received) inline."""
        vq = self.vqs[0]
        while self._guest_ready():
            quota = 0 if self.quota_remaining < 0 else min(self.quota_remaining, 0xFFFFFFFF)
            size, _ = self.get_avail_bytes(vq, quota, 0)
            size = min(self.quota_remaining, size)
            if size <= 0:
                return
            offset = 0
            self.quota_remaining -= size
            while offset < size:
                elem = self.pop(vq)
                if elem is None:
                    break
                n = self.write_in(elem, self.prng.randbytes, size - offset)
                offset += n
                self.push(vq, elem, n)
            self.notify(vq)
            if self.queue_empty(vq):
                return
