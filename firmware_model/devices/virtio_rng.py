"""virtio-rng-pci as QEMU 7.2 presents it (hw/virtio/virtio-rng.c).

One queue of 8 entries, no device configuration, two MSI-X vectors.  Every
device-writable byte the driver offers is filled from the entropy backend
and the element is returned with the number written.  QEMU's backends
answer from a bottom half or a file descriptor handler; the model answers
at once, which the guest cannot tell apart from a fast backend.  Bytes are
drawn as they are written (64 KiB at a time at most), so a huge buffer
costs no more than the memory it reaches.

Backend interface (what ``-object rng-*,id=ID`` gives ``-device
virtio-rng-pci,rng=ID``): any callable ``backend(n) -> bytes`` returning
``n`` bytes.  A shorter answer is padded with zeros (an exhausted file), a
longer one cut.  ``make_device`` finds the backend by id in
``context["rng_backends"]`` (a dict id -> backend); a caller that gives no
such dict (a trace replay rebuilding devices from a header) gets the
default.  Two backends are here:

* ``SeededRng(seed)``, the default: a PRNG seeded per device (the n-th
  virtio-rng-pci of a machine gets seed n), so runs are reproducible.
  QEMU's own default (rng-builtin) is truly random, so a guest that prints
  what it drew differs from QEMU anyway (docs/deviations.md).
* ``FileRng(filename)``: rng-random, reading the file (QEMU's default
  ``/dev/urandom``); opening it raises ``OSError`` as QEMU's "Could not
  open" does.
"""
from __future__ import annotations

import random
from typing import Callable

from .virtio import S_DRIVER_OK, TransportOptions, VirtioPciDevice

RngBackend = Callable[[int], bytes]
RNG_RANDOM_DEFAULT = "/dev/urandom"          # rng-random's filename when none is given


class SeededRng:
    """The default backend: reproducible bytes from a per-device seed."""

    def __init__(self, seed: int = 0):
        self._prng = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self._prng.randbytes(n)


class FileRng:
    """rng-random: bytes read from a file (a character device such as /dev/urandom)."""

    def __init__(self, filename: str = RNG_RANDOM_DEFAULT):
        self.filename = filename
        self._file = open(filename, "rb", buffering=0)     # noqa: SIM115 (kept open, as QEMU's fd)

    def __call__(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self._file.read(n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()


INT64_MAX = (1 << 63) - 1
QUEUE_SIZE = 8


class VirtioRngPci(VirtioPciDevice):
    kind = "virtio-rng-pci"
    virtio_id = 4
    legacy_device_id = 0x1005
    class_code = 0x00FF            # PCI_CLASS_OTHERS

    def __init__(self, options: TransportOptions, max_bytes: int = INT64_MAX, seed: int = 0,
                 backend: RngBackend | None = None):
        self.max_bytes = max_bytes
        # QEMU refills the quota every `period` ms of virtual time; the model
        # has no clock, so the quota only ever runs down and `period` has no use
        self.quota_remaining = max_bytes
        self.backend = backend if backend is not None else SeededRng(seed)
        super().__init__(options, 0, [QUEUE_SIZE])

    def _entropy(self, n: int) -> bytes:
        data = self.backend(n)
        if len(data) != n:
            data = bytes(data[:n]).ljust(n, b"\0")
        return data

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
                n = self.write_in(elem, self._entropy, size - offset)
                offset += n
                self.push(vq, elem, n)
            self.notify(vq)
            if self.queue_empty(vq):
                return
