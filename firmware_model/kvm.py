"""What the host kernel serves itself: RPCIT under the IOAT assist (cf. arch/s390/kvm/priv.c).

The dropped v3 design (kvm-zpci-history.md 1.4): for a function associated
with the intercepting VM whose guest IOAT was registered through KVM, the
kernel walks the guest's I/O translation tables and shadows each entry into
the function's host IOMMU domain, instead of exiting to userspace.

The guest must see exactly what QEMU's rpcit_service_call gives it (cc,
status, error state, error event, FMB counter, the translations the device
can use), so the checks run in QEMU's order.  The kernel declines (returns
None, KVM's -EOPNOTSUPP) where it cannot give that result itself: a function
under a vfio DMA-entry budget, whose accounting lives in userspace.

v3 answered an ownership mismatch with cc 3 and a failed shadow with cc 1
status 16; QEMU answers neither case that way, so here the ownership check
declines (userspace then answers), and a shadow cannot fail once the
ownership and registration checks passed (the domain accepts exactly those
maps; a refusal would be counted as ``domain_refused``).
"""
from __future__ import annotations

from collections import Counter

from firmware_model.arch import (
    FMB_CNT_RPCIT, LsStatus, MASK64, ModStatus, Pec, FnState,
)
from firmware_model.dma import IotlbEntry, cached_pages, walk_range
from firmware_model.outcome import Completion
from firmware_model.policy import IoatPath
from firmware_model.userspace import (
    CC0 as _CC0, CC1 as _CC1, CC3 as _CC3, NOT_USABLE as _NOT_USABLE,
    PGM_PRIVILEGED as _PGM_PRIV, PGM_SPECIFICATION as _PGM_SPEC, count, set_status,
)


def shadow_function(memory, fn, hf, ioat, start: int, end: int) -> tuple[int, int, int]:
    """Refresh a function's translations from the registered guest IOAT.

    Every change lands twice: in the function's IOTLB (what the guest's
    device may reach, as QEMU keeps it) and in the host IOMMU domain (where
    the translation really lives).  Returns (Pec or 0, address reached,
    maps the domain refused).
    """
    iotlb, domain = fn.iotlb, hf.domain
    vm, gen = ioat.vm, ioat.gen
    refused = 0

    def map_page(iova, translated, perm):
        nonlocal refused
        cached = iotlb.get(iova)
        if cached is None or cached.perm != perm or cached.translated_addr != translated:
            iotlb[iova] = IotlbEntry(iova, translated, perm)
            if not domain.map(iova, translated, bool(perm & 2), vm, gen):
                refused += 1

    def unmap_range(first, stop):
        for iova in cached_pages(iotlb, first, stop):
            del iotlb[iova]
            domain.unmap(iova)

    # map_page returns None: nothing is refused to the pass itself, only counted
    error, where, _ = walk_range(memory, ioat.iota, start, end, map_page, unmap_range)
    return error, where, refused


def registration_matches(fn, ioat) -> bool:
    """A registration made through KVM, and the guest's own (or the guest has none,
    which the checks then answer as QEMU does)."""
    if ioat.path is not IoatPath.KVM:
        return False
    return not fn.ioat_enabled or (ioat.iota, ioat.pba, ioat.pal) == (fn.iota, fn.pba, fn.pal)


class KvmZpci:
    """One VM's in-kernel zPCI service.

    ``fns`` maps a guest handle to (HostFunction, ZpciFunction): the kernel's
    kzdev lookup plus the guest-visible function state it must keep
    consistent.
    """

    def __init__(self, host, vm, fns):
        self.host = host
        self.vm = vm
        self.fns = fns
        self.stats: Counter = Counter()

    def handle(self, d, guest) -> Completion | None:
        """kvm_s390_handle_b9 for the one opcode the assist adds: RPCIT."""
        if guest.problem_state:
            self.stats["instruction_rpcit"] += 1
            return _PGM_PRIV
        r1, r2 = d.r1, d.r2
        if r2 & 1:
            self.stats["instruction_rpcit"] += 1
            return _PGM_SPEC
        fh = guest.gpr(r1) >> 32
        found = self.fns.get(fh)
        if found is None:
            self.stats["rpcit_declined"] += 1
            return None
        hf, fn = found[0], found[1]
        ioat = hf.ioat
        if (hf.owner != self.vm.id or ioat is None or fn.dma_avail is not None
                or not registration_matches(fn, ioat)):
            # Not ours to serve (kzdev->kvm != vcpu->kvm), nothing registered
            # through KVM, a DMA budget only userspace accounts, or a KVM
            # registration that is not the one the guest made.
            self.stats["rpcit_declined"] += 1
            return None
        self.stats["instruction_rpcit"] += 1
        if fn.fh != fh:
            return _CC3
        state = fn.state
        if state in _NOT_USABLE:
            return _CC3
        if state is FnState.ERROR:
            set_status(guest, r1, ModStatus.ERROR_RECOVER)
            return _CC1
        start = guest.gpr(r2)
        end = (start + guest.gpr(r2 + 1)) & MASK64
        if not fn.iota:
            error, where = Pec.INVALAS, start
        elif end < fn.pba or start > fn.pal:
            error, where = Pec.OORANGE, start
        else:
            # The guest's tables are read from guest storage, as userspace reads them.
            error, where, refused = shadow_function(guest, fn, hf, ioat, start, end)
            if refused:
                self.stats["domain_refused"] += refused
        if error:
            fn.state = FnState.ERROR
            set_status(guest, r1, LsStatus.FUNC_IN_ERR)
            fn.bus.error_event(error, fn, where)
            self.stats["rpcit_error"] += 1
            return _CC1
        count(fn, FMB_CNT_RPCIT, guest)
        return _CC0

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
