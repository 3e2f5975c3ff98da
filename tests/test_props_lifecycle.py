"""Function lifecycle as a state machine, against QEMU 7.2's answers (qemu-oracle.md).

Enable, disable, register/deregister/re-register the IOAT, RPCIT that maps
or faults into the error state, reset error, reset block, loads, STPCIFC
and device DMA (test_props_dma.checked_dma: only through the host IOMMU
domain), in any order, through a Machine under a random policy.  The
expected condition codes and status codes come from the small model below,
written from the QEMU transcript and zpci-architecture.md, e.g.

    PCILG on a disabled handle ............ cc 3
    MPCIFC REG IOAT, again ................ cc 0, then cc 1 status 0x18
    RPCIT out of range .................... cc 1 status 0x08, function in error
    PCILG in the error state .............. cc 1 status 0x0c
    MPCIFC RESET ERROR .................... cc 0, loads work again
    RPCIT without an IOAT ................. cc 1 status 0x08 (error state too)
    STPCIFC fc ............................ 0x80, +0x10 with IOAT, 0xf0 in error
"""
from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from firmware_model.policy import POLICY_NAMES

import test_props_world as w

ENABLED, BLOCKED, ERROR = "enabled", "blocked", "error"


def status(g, r):
    return (g.gpr(r) >> 24) & 0xFF


class Lifecycle(RuleBasedStateMachine):

    @initialize(policy=st.sampled_from(POLICY_NAMES), idx=st.sampled_from([0, 1]))
    def setup(self, policy, idx):
        self.m = w.machine(policy)
        self.g = w.new_guest()
        self.idx = idx
        self.enabled = False
        self.state = None          # ENABLED / BLOCKED / ERROR while enabled
        self.ioat = False
        self.routes = set()

    # --- helpers ------------------------------------------------------------------

    @property
    def fh(self):
        return w.handle("enabled" if self.enabled else "disabled", self.idx)

    def run(self, d):
        out = self.m.execute(d, self.g)
        self.routes.add((out.mnemonic, out.decision.route.value))
        assert out.completion.pgm is None, out
        return out.completion.cc

    def mpcifc(self, oc):
        w.fib(self.g)
        return self.run(w.mpcifc(self.g, self.fh, oc))

    # --- CLP SET PCI FUNCTION --------------------------------------------------------

    @rule()
    def enable(self):
        cc = self.run(w.clp_set(self.g, self.fh, 0))
        rsp = int.from_bytes(self.g.read(w.LPCB + 34, 2), "big")
        assert cc == 0
        if self.enabled:
            assert rsp == 0x0102                      # handle not valid for the operation
        else:
            assert rsp == 0x0010
            assert int.from_bytes(self.g.read(w.LPCB + 48, 4), "big") == self.fh | w.ENABLE
            self.enabled, self.state = True, ENABLED

    @rule()
    def disable(self):
        cc = self.run(w.clp_set(self.g, self.fh, 1))
        rsp = int.from_bytes(self.g.read(w.LPCB + 34, 2), "big")
        assert cc == 0
        if not self.enabled:
            assert rsp == 0x0102
        else:
            assert rsp == 0x0010
            self.enabled, self.state, self.ioat = False, None, False

    # --- MPCIFC ---------------------------------------------------------------------

    def _ioat_op(self, oc: int, registered: bool) -> bool:
        """MPCIFC `oc`, valid when the IOAT is `registered` (or not): True if it completed."""
        cc = self.mpcifc(oc)
        if not self.enabled:
            assert cc == 3
        elif self.ioat != registered:
            assert (cc, status(self.g, 1)) == (1, 0x18)
        else:
            assert cc == 0
            return True
        return False

    @rule()
    def reg_ioat(self):
        if self._ioat_op(4, registered=False):
            self.ioat = True

    @rule()
    def dereg_ioat(self):
        if self._ioat_op(5, registered=True):
            self.ioat = False

    @rule()
    def rereg_ioat(self):
        self._ioat_op(6, registered=True)

    @rule()
    def reset_error(self):
        cc = self.mpcifc(7)
        if not self.enabled:
            assert cc == 3
        elif self.state in (BLOCKED, ERROR):
            assert cc == 0
            self.state = ENABLED
        else:
            assert (cc, status(self.g, 1)) == (1, 0x18)

    @rule()
    def reset_block(self):
        cc = self.mpcifc(9)
        if not self.enabled:
            assert cc == 3
        elif self.state == ERROR:
            assert cc == 0
            self.state = BLOCKED
        else:
            assert (cc, status(self.g, 1)) == (1, 0x18)

    # --- RPCIT ------------------------------------------------------------------------

    @rule(page=st.sampled_from([0, 1, 2, 3, 5, 9, 15]), pages=st.integers(1, 4))
    def rpcit_in_window(self, page, pages):
        cc = self.run(w.rpcit(self.g, self.fh, w.SDMA + page * 0x1000, pages * 0x1000))
        self._rpcit_expect(cc, fault=not self.ioat)

    @rule(where=st.sampled_from(["below", "above"]))
    def rpcit_out_of_range(self, where):
        start = 0x1000 if where == "below" else w.SDMA + (w.NPAGES + 4) * 0x1000
        cc = self.run(w.rpcit(self.g, self.fh, start, 0x1000))
        self._rpcit_expect(cc, fault=True)

    def _rpcit_expect(self, cc, fault):
        if not self.enabled:
            assert cc == 3
        elif self.state == ERROR:
            assert (cc, status(self.g, 1)) == (1, 0x28)       # error recovery pending
        elif fault:
            assert (cc, status(self.g, 1)) == (1, 0x08)
            self.state = ERROR
        else:
            assert cc == 0

    # --- loads and STPCIFC -------------------------------------------------------------------

    @rule()
    def pcilg_config(self):
        cc = self.run(w.load_store(self.g, "PCILG", self.fh, 15, 4, 0, 0))
        if not self.enabled:
            assert cc == 3
        elif self.state == ERROR:
            assert (cc, status(self.g, 2)) == (1, 0x0C)
        else:
            # vendor:device 1af4:1005 (virtio-rng shaped) or 1af4:10ff, byte-swapped
            assert cc == 0 and self.g.gpr(1) == (0xF41A0510, 0xF41AFF10)[self.idx]

    @rule()
    def stpcifc(self):
        cc = self.run(w.stpcifc(self.g, self.fh))
        fc = self.g.read(w.FIB + 0x100 + 8, 1)[0]
        assert cc == 0
        if not self.enabled:
            assert fc == 0
        else:
            want = 0x80 | {ENABLED: 0, BLOCKED: 0x40, ERROR: 0x60}[self.state]
            assert fc == want | (0x10 if self.ioat else 0)

    # --- device DMA: only through the IOMMU layer, in every state ---------------------------

    @rule()
    def enable_and_map(self):
        """The usual driver start in one step, so DMA that goes through is reached too."""
        if not self.enabled:
            self.enable()
        if not self.ioat:
            self.reg_ioat()
        self.rpcit_in_window(0, 4)

    @rule(page=st.integers(0, w.NPAGES - 1), write=st.booleans())
    def device_dma(self, page, write):
        from test_props_dma import checked_dma
        self.m.bus.memory = self.g
        ok = checked_dma(self.m, self.g, self.idx, page, write)
        event(f"dma {'through' if ok else 'refused'} in state {self.state}")
        if ok:
            assert self.enabled and self.ioat and self.state in (ENABLED, BLOCKED)
        elif self.enabled and self.state != ERROR:
            # a DMA the IOTLB cannot translate puts the function in the error state
            # (QEMU's s390_translate_iommu); nothing else may change
            if self.m.bus.functions[self.idx].state.name.lower() == ERROR:
                self.state = ERROR

    @invariant()
    def cached_translations_reach_memory_only_through_the_domain(self):
        # a read of a page the IOTLB holds cannot fault, so this changes no state
        from test_props_dma import dma_over_cached_pages
        self.m.bus.memory = self.g
        through = dma_over_cached_pages(self.m, self.g, self.idx)
        event(f"DMA over cached pages went through: {through > 0}")
        if through:
            assert self.enabled and self.ioat and self.state in (ENABLED, BLOCKED)

    @invariant()
    def model_matches_function(self):
        fn = self.m.bus.functions[self.idx]
        assert fn.enabled == self.enabled
        assert fn.ioat_enabled == self.ioat
        if self.enabled:
            assert fn.state.name.lower() == self.state


Lifecycle.TestCase.settings = settings(max_examples=w.scaled(120), stateful_step_count=30,
                                       deadline=None)
TestLifecycle = Lifecycle.TestCase
