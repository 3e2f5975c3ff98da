"""What the host kernel serves itself: RPCIT under the IOAT assist (cf. arch/s390/kvm/priv.c).

The dropped v3 design (kvm-zpci-history.md 1.4): for a function associated
with the intercepting VM whose guest IOAT was registered through KVM, the
kernel walks the guest's I/O translation tables and shadows each entry into
the function's host IOMMU domain, instead of exiting to userspace.

The guest must see exactly what QEMU's rpcit_service_call gives it (cc,
status, error state, error event, FMB counter, the translations the device
can use): past the kernel's own checks that is semantics.translate.  The
kernel declines (returns None, KVM's -EOPNOTSUPP) where it cannot give that
result itself: a function under a vfio DMA-entry budget, whose accounting
lives in userspace.

v3 answered an ownership mismatch with cc 3 and a failed shadow with cc 1
status 16; QEMU answers neither case that way, so here the ownership check
declines (userspace then answers), and a shadow cannot fail once the
ownership and registration checks passed (the domain accepts exactly those
maps; a refusal would be counted as ``domain_refused``).
"""
from __future__ import annotations

from collections import Counter

from .arch import MASK64, Pec
from .dma import cached_pages, shadow_pass, walk_range
from .insns import InsnClass, TABLE
from .outcome import CC3, Completion
from .semantics import registration_matches, translate


class KvmZpci:
    """One VM's in-kernel zPCI service.

    ``rows[index](d, guest, req, found) -> Completion | None`` per table row
    (None: no in-kernel handler); ``found`` is the dispatcher's lookup of
    the handle among the VM's functions (the kernel's kzdev lookup) with
    the guest-visible function state it must keep consistent.
    ``counters``: what only the kernel knows (failed refreshes, maps its
    domain refused); the dispatcher counts the instructions.
    """

    def __init__(self, host, vm, counters: Counter | None = None):
        self.host = host
        self.vm = vm
        self.counters: Counter = Counter() if counters is None else counters
        handlers = {InsnClass.TRANSLATE: self.rpcit}
        self.rows = tuple(handlers.get(i.cls) for i in TABLE)

    def rpcit(self, d, guest, req, found) -> Completion | None:
        """kvm_s390_handle_b9 for the one opcode the assist adds."""
        if found is None:
            return None
        hf, fn = found.hf, found.fn
        ioat = hf.ioat
        if (hf.owner != self.vm.id or ioat is None or fn.dma_avail is not None
                or not registration_matches(fn, ioat)):
            # Not ours to serve (kzdev->kvm != vcpu->kvm), nothing registered
            # through KVM, a DMA budget only userspace accounts, or a KVM
            # registration that is not the one the guest made.
            return None
        if fn.fh != req >> 32:
            return CC3
        counters = self.counters

        def shadow(start, end):
            # the guest's tables are read from guest storage, as userspace reads them
            error, where, refused = shadow_pass(guest.absolute, fn, hf.domain, ioat, start, end)
            if refused:
                counters["domain_refused"] += refused
            return error, where

        completion, error = translate(fn, d, guest, shadow)
        if error:
            counters["rpcit_error"] += 1
        return completion

    def shadow(self, hf, memory, start: int, length: int) -> tuple[int, int]:
        """Host-only shadowing (no guest-visible function): the ownership tests' entry point."""
        ioat = hf.ioat
        if hf.owner != self.vm.id or ioat is None:
            return Pec.INVALAS, start
        vm, gen, domain = self.vm.id, ioat.gen, hf.domain
        end = (start + length) & MASK64
        if end < ioat.pba or start > ioat.pal:
            return Pec.OORANGE, start

        def map_page(iova, translated, perm):
            domain.map(iova, translated, bool(perm & 2), vm, gen)

        def unmap_range(first, stop):
            for iova in cached_pages(domain.entries, first, stop):
                domain.unmap(iova)

        return walk_range(memory, ioat.iota, start, end, map_page, unmap_range)[:2]
