"""Device DMA only through the IOMMU layer, in every state of a passthrough function.

A hypothesis state machine drives one Machine (functions passed through)
from both sides: the guest enables, registers and deregisters its IOAT,
refreshes translations (RPCIT: the function's IOTLB fills) and resets
errors; the host closes the vfio device, deregisters the IOAT through
KVM_S390_ZPCI_OP, reopens it, or unplugs the function, each of which leaves
translations cached in the function's IOTLB that the host IOMMU domain no
longer holds.  Between any two of those steps the device does DMA.

``checked_dma`` states the property for every DMA: it succeeds only where
the host domain holds the translation, reaches exactly the frame the domain
gives (and the owner's own DMA tables give), belongs to this VM's current
IOAT registration, and a refused DMA changes no memory.  The last tests show
that a device port which trusts the IOTLB alone fails the check.
"""
from __future__ import annotations

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from firmware_model.dma import DmaError, TranslatedDma, table_walk
from firmware_model.host import ZpciOp
from firmware_model.policy import POLICY_NAMES

import test_props_world as w

PAGES = st.integers(0, w.NPAGES - 1)


def checked_dma(m, g, idx: int, page: int, write: bool) -> bool:
    """Function ``idx``'s device reads or writes 8 bytes of DMA page ``page``: True if it
    went through, after checking that it went only where the host IOMMU domain allows."""
    fn = m.bus.functions[idx]
    hf = m.host.functions[idx]
    iova = w.SDMA + page * 0x1000 + 8 * (1 + page)
    domain_pa = hf.domain.translate(iova, write) if hf.plugged else None
    before = bytes(g.mem)
    data = bytes([0xA0 | page]) * 8
    got = fn.device.dma.write(iova, data) if write else fn.device.dma.read(iova, 8)
    if isinstance(got, DmaError) if not write else got is not None:
        assert bytes(g.mem) == before, "a refused DMA changed memory"
        return False
    # it went through: the host domain must hold it, for this VM's live registration
    assert domain_pa is not None, f"DMA at {iova:#x} reached memory the IOMMU domain does not map"
    entry = hf.domain.entries[iova & ~0xFFF]
    assert hf.plugged and hf.owner == m.vm.id and hf.vfio == m.vm.id
    assert hf.ioat is not None and entry.vm == m.vm.id and entry.gen == hf.ioat.gen
    walk = table_walk(g, hf.ioat.iota, iova)
    assert not walk.error and walk.translated_addr == entry.frame
    after = bytearray(before)
    if write:
        after[domain_pa:domain_pa + 8] = data
    else:
        assert got == before[domain_pa:domain_pa + 8]
    assert bytes(g.mem) == bytes(after), "DMA touched memory outside the domain's frame"
    return True


def dma_over_cached_pages(m, g, idx: int) -> int:
    """checked_dma reads of every page function ``idx``'s IOTLB holds (reads of cached
    pages cannot fault, so the function's state stays); how many went through."""
    pages = sorted((iova - w.SDMA) >> 12 for iova in m.bus.functions[idx].iotlb
                   if w.SDMA <= iova < w.SDMA + w.NPAGES * 0x1000)
    return sum(checked_dma(m, g, idx, page, False) for page in pages)


def run(m, g, d):
    out = m.execute(d, g)
    assert out.completion.pgm is None, out
    return out.completion.cc


class DmaThroughIommu(RuleBasedStateMachine):

    @initialize(policy=st.sampled_from(POLICY_NAMES))
    def setup(self, policy):
        # start where DMA flows: both functions enabled, IOATs registered, pages refreshed
        self.m, self.g = _mapped_machine(policy, functions=(0, 1))
        self.enabled = [True, True]

    def fh(self, idx):
        return w.handle("enabled" if self.enabled[idx] else "disabled", idx)

    # --- the guest ------------------------------------------------------------------

    @rule(idx=w.IDX, on=st.booleans())
    def clp_set(self, idx, on):
        run(self.m, self.g, w.clp_set(self.g, self.fh(idx), 0 if on else 1))
        rsp = int.from_bytes(self.g.read(w.LPCB + 34, 2), "big")
        if rsp == 0x0010:
            self.enabled[idx] = on

    @rule(idx=w.IDX, oc=st.sampled_from([4, 4, 5, 6, 7]))
    def mpcifc(self, idx, oc):
        w.fib(self.g)
        run(self.m, self.g, w.mpcifc(self.g, self.fh(idx), oc))

    @rule(idx=w.IDX, page=PAGES, pages=st.integers(1, 6))
    def rpcit(self, idx, page, pages):
        pages = min(pages, w.NPAGES - page)
        run(self.m, self.g, w.rpcit(self.g, self.fh(idx), w.SDMA + page * 0x1000, pages * 0x1000))

    # --- the host: what leaves the IOTLB and the IOMMU domain apart ----------------------

    @rule(idx=w.IDX, what=st.sampled_from(["vfio_close", "vfio_close", "dereg_ioat", "dereg_ioat",
                                           "vfio_open", "hot_unplug"]))
    def host(self, idx, what):
        host, vm, hf = self.m.host, self.m.vm, self.m.host.functions[idx]
        cached = bool(self.m.bus.functions[idx].iotlb)
        if what == "vfio_close":
            host.vfio_close(vm, hf)
        elif what == "vfio_open":
            host.vfio_open(vm, hf)
        elif what == "dereg_ioat":
            host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
        else:
            host.hot_unplug(hf)
        event(f"{what} with translations cached: {cached}")

    # --- the device -------------------------------------------------------------------

    @invariant()
    def cached_translations_reach_memory_only_through_the_domain(self):
        for idx in (0, 1):
            through = dma_over_cached_pages(self.m, self.g, idx)
            hf = self.m.host.functions[idx]
            if self.m.bus.functions[idx].iotlb and not hf.domain.entries:
                assert through == 0
                event("IOTLB and domain disagree: every cached page refused")

    @rule(idx=w.IDX, page=PAGES, write=st.booleans())
    def device_dma(self, idx, page, write):
        self._dma(idx, page, write)

    @rule(idx=w.IDX, page=st.integers(0, 7), write=st.booleans())
    def device_dma_mapped_page(self, idx, page, write):
        self._dma(idx, page, write)

    def _dma(self, idx, page, write):
        fn, hf = self.m.bus.functions[idx], self.m.host.functions[idx]
        disagree = (page * 0x1000 + w.SDMA) in fn.iotlb and not hf.domain.entries
        ok = checked_dma(self.m, self.g, idx, page, write)
        event(f"dma {'through' if ok else 'refused'}"
              + (" while IOTLB and domain disagree" if disagree else ""))


DmaThroughIommu.TestCase.settings = settings(max_examples=w.scaled(150), stateful_step_count=40,
                                             deadline=None)
TestDmaThroughIommu = DmaThroughIommu.TestCase


# --- the three disagreements, each once by hand, and a device that ignores the domain --------

def _mapped_machine(policy="linux-6.0", functions=(0,)):
    """``functions`` enabled, IOAT registered, pages 0-7 refreshed (IOTLB and domain agree)."""
    m = w.machine(policy)
    g = w.new_guest()
    m.bus.memory = g
    for idx in functions:
        fh = w.handle("enabled", idx)
        assert run(m, g, w.clp_set(g, w.handle("disabled", idx), 0)) == 0
        w.fib(g)
        assert run(m, g, w.mpcifc(g, fh, 4)) == 0
        assert run(m, g, w.rpcit(g, fh, w.SDMA, 8 * 0x1000)) == 0
        assert checked_dma(m, g, idx, 1, True) and checked_dma(m, g, idx, 2, False)
    return m, g


DISAGREEMENTS = {
    "vfio_close": lambda m, hf: m.host.vfio_close(m.vm, hf),
    "kvm_dereg_ioat": lambda m, hf: m.host.zpci_op(m.vm, hf.fh, ZpciOp.DEREG_IOAT),
    "hot_unplug": lambda m, hf: m.host.hot_unplug(hf),
}


def test_dma_is_refused_where_only_the_iotlb_still_translates():
    for name, act in DISAGREEMENTS.items():
        m, g = _mapped_machine()
        hf = m.host.functions[0]
        assert act(m, hf).name == "OK", name
        assert m.bus.functions[0].iotlb and not hf.domain.entries, name
        for page in (1, 2, 5):
            for write in (False, True):
                assert not checked_dma(m, g, 0, page, write), (name, page, write)


def test_a_device_port_that_trusts_the_iotlb_fails_the_check():
    """The mutant the property exists for: DMA through the function's IOTLB alone."""
    import pytest
    for name, act in DISAGREEMENTS.items():
        m, g = _mapped_machine()
        fn = m.bus.functions[0]
        fn.device.dma = TranslatedDma(fn)
        act(m, m.host.functions[0])
        with pytest.raises(AssertionError, match="does not map"):
            checked_dma(m, g, 0, 1, True)
