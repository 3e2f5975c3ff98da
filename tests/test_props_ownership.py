"""Ownership of host zPCI functions as a hypothesis state machine.

Several VMs and functions; vfio open/close (the KVM association),
KVM_S390_ZPCI_OP with own, foreign and stale handles, IOAT registration and
deregistration through both paths, hot unplug, VM destruction, and guest
instructions from any VM.  The test keeps its own model of who owns what
and derives every expected errno from docs/decisions.md, not from host.py.

Invariants after every step:
* no VM gets interpretation or in-kernel service for a function it does not own;
* every translation in a function's IOMMU domain came from its owner's
  currently registered guest IOAT: same VM, same registration, and the frame
  is what the owner's own tables give for that IOVA;
* nothing stays registered (GISA, AEN, IOAT, mappings) on a function without owner.
"""
from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from firmware_model import insns
from firmware_model.dma import table_walk
from firmware_model.guest import SimpleGuest
from firmware_model.host import Errno, Host, ZpciOp
from firmware_model.kvm import KvmZpci
from firmware_model.outcome import Route
from firmware_model.policy import POLICY_NAMES, decide

import test_props_world as w

NVMS, NFNS = 3, 3
RTT, STT, PT = 0x4000, 0x8000, 0xC000
IOVA = 0x100000000
WINDOW = (IOVA, IOVA + 0xFFFFF)
PCILG = insns.BY_MNEMONIC["PCILG"].index
RPCIT = insns.BY_MNEMONIC["RPCIT"].index


def vm_memory(vm_no: int) -> SimpleGuest:
    """A guest whose tables map IOVA page k to a frame only this VM uses."""
    g = SimpleGuest(0x10000)
    w.write_dma_tables(g.mem, {k: (0x100000 * (vm_no + 1)) + 0x1000 * k for k in range(16)},
                       RTT, STT, PT, IOVA)
    return g


IOTA = RTT | 0x804


class Ownership(RuleBasedStateMachine):

    @initialize()
    def setup(self):
        self.host = Host()
        self.vms = [self.host.create_vm() for _ in range(NVMS)]
        self.mem = [vm_memory(i) for i in range(NVMS)]
        self.fns = [self.host.plug(0x100 + i, 0x05000000 | i) for i in range(NFNS)]
        # the model, kept apart from host.py's records
        self.alive = [True] * NVMS
        self.plugged = [True] * NFNS
        self.owner = [None] * NFNS          # VM number
        self.aen = [False] * NFNS
        self.ioat = [None] * NFNS           # None, "kvm", "userspace"
        # start from a populated host: VM 0 owns function 0, VM 1 function 1
        # and its guest IOAT through KVM; VM 1's is known only to userspace
        for f in (0, 1):
            self.vfio_open(f, f)
        self.zpci_op(0, 0, False, "own", ZpciOp.REG_IOAT, 0, False)
        self.vfio_ioat(1, 1, False, False)

    # --- helpers ----------------------------------------------------------

    def _release(self, f):
        self.owner[f] = None
        self.aen[f] = False
        self.ioat[f] = None

    def _handle(self, f, kind):
        fh = self.fns[f].fh
        return {"own": fh, "stale": fh ^ 0x01000000, "disabled": fh & ~0x80000000}[kind]

    # --- vfio -------------------------------------------------------------

    # Hypothesis tries rules with fewer arguments first; one weighted dispatcher keeps
    # the destructive calls (unplug, destroy) from dominating every run.
    @rule(what=st.sampled_from(["vfio_open", "vfio_open", "vfio_open", "vfio_close", "new_vm",
                                "replug", "hot_unplug", "destroy_vm"]),
          v=st.integers(0, NVMS - 1), f=st.integers(0, NFNS - 1), to_owner=st.booleans())
    def lifecycle(self, what, v, f, to_owner):
        if what in ("hot_unplug", "replug"):
            getattr(self, what)(f)
        elif what in ("destroy_vm", "new_vm"):
            getattr(self, what)(v)
        elif what == "vfio_close":
            self.vfio_close(v, f, to_owner)
        else:
            self.vfio_open(v, f)

    def vfio_open(self, v, f):
        rc = self.host.vfio_open(self.vms[v], self.fns[f])
        if not self.alive[v]:
            want = Errno.ENOENT
        elif not self.plugged[f]:
            want = Errno.ENODEV
        elif self.owner[f] is not None:
            want = Errno.EBUSY
        else:
            want = Errno.OK
            self.owner[f] = v
        assert rc == want

    def vfio_close(self, v, f, to_owner):
        v = self._pick(v, f, to_owner)
        rc = self.host.vfio_close(self.vms[v], self.fns[f])
        if self.owner[f] == v:
            assert rc == Errno.OK
            self._release(f)
        else:
            assert rc == Errno.EBADF

    # --- KVM_S390_ZPCI_OP ---------------------------------------------------

    def _pick(self, v, f, to_owner):
        """Most calls come from the owner, so the interesting paths get reached."""
        return self.owner[f] if to_owner and self.owner[f] is not None else v

    def _owned(self, f, to_owner):
        owned = [i for i in range(NFNS) if self.owner[i] is not None]
        return owned[f % len(owned)] if to_owner and owned else f

    @rule(v=st.integers(0, NVMS - 1), f=st.integers(0, NFNS - 1), to_owner=st.booleans(),
          kind=st.sampled_from(["own", "own", "stale", "disabled"]),
          op=st.sampled_from([0, 0, 1, 2, 2, 3, 9]), flags=st.sampled_from([0, 0, 1, 2, 0x80]),
          bad_window=st.sampled_from([False, False, True]))
    def zpci_op(self, v, f, to_owner, kind, op, flags, bad_window):
        f = self._owned(f, to_owner)
        v = self._pick(v, f, to_owner)
        pba, pal = (WINDOW[1], WINDOW[0]) if bad_window else WINDOW
        fh = self._handle(f, kind)
        rc = self.host.zpci_op(self.vms[v], fh, op, flags=flags, ibv=0x1000, iota=IOTA,
                               pba=pba, pal=pal)
        mine = self.alive[v] and kind == "own" and self.owner[f] == v and self.plugged[f]
        if not mine:
            want = Errno.ENODEV
        elif op == ZpciOp.REG_AEN:
            want = Errno.EINVAL if flags & ~1 or self.aen[f] else Errno.OK
            self.aen[f] = True if want == Errno.OK else self.aen[f]
        elif op == ZpciOp.DEREG_AEN:
            want = Errno.OK
            self.aen[f] = False
        elif op == ZpciOp.REG_IOAT:
            want = Errno.EINVAL if bad_window or self.ioat[f] == "kvm" else Errno.OK
            if want == Errno.OK:
                self.ioat[f] = "kvm"
        elif op == ZpciOp.DEREG_IOAT:
            want = Errno.OK if self.ioat[f] == "kvm" else Errno.EINVAL
            if want == Errno.OK:
                self.ioat[f] = None
        else:
            want = Errno.EINVAL
        assert rc == want, (v, f, kind, op, flags)

    # --- the userspace IOAT path ---------------------------------------------

    @rule(v=st.integers(0, NVMS - 1), f=st.integers(0, NFNS - 1), to_owner=st.booleans(),
          dereg=st.booleans())
    def vfio_ioat(self, v, f, to_owner, dereg):
        f = self._owned(f, to_owner)
        v = self._pick(v, f, to_owner)
        vm, hf = self.vms[v], self.fns[f]
        if dereg:
            rc = self.host.vfio_deregister_ioat(vm, hf)
            if self.owner[f] != v:
                assert rc == Errno.EBADF
            elif self.ioat[f] != "userspace":
                assert rc == Errno.EINVAL
            else:
                assert rc == Errno.OK
                self.ioat[f] = None
            return
        rc = self.host.vfio_register_ioat(vm, hf, IOTA, *WINDOW)
        if self.owner[f] != v:
            assert rc == Errno.EBADF
        elif self.ioat[f] == "kvm":
            assert rc == Errno.EBUSY
        else:
            assert rc == Errno.OK
            self.ioat[f] = "userspace"

    # --- release paths ----------------------------------------------------------

    def hot_unplug(self, f):
        rc = self.host.hot_unplug(self.fns[f])
        assert rc == (Errno.OK if self.plugged[f] else Errno.ENODEV)
        self.plugged[f] = False
        self._release(f)

    def destroy_vm(self, v):
        rc = self.host.destroy_vm(self.vms[v])
        assert rc == (Errno.OK if self.alive[v] else Errno.ENOENT)
        self.alive[v] = False
        for f in range(NFNS):
            if self.owner[f] == v:
                self._release(f)

    # --- new VMs and functions take the place of gone ones, so runs keep going ---------

    def new_vm(self, v):
        if not self.alive[v]:
            self.vms[v] = self.host.create_vm()
            self.alive[v] = True

    def replug(self, f):
        if not self.plugged[f]:
            n = len(self.host.functions)
            self.fns[f] = self.host.plug(0x100 + n, 0x05000000 | n)
            self.plugged[f] = True

    # --- guest instructions from any VM -----------------------------------------------

    @rule(v=st.integers(0, NVMS - 1), f=st.integers(0, NFNS - 1), to_owner=st.booleans(),
          kind=st.sampled_from(["own", "own", "stale", "disabled"]),
          page=st.integers(0, 20), npages=st.integers(1, 4))
    def guest_rpcit(self, v, f, to_owner, kind, page, npages):
        f = self._owned(f, to_owner)
        v = self._pick(v, f, to_owner)
        vm, hf = self.vms[v], self.fns[f]
        fh = self._handle(f, kind)
        start = IOVA + page * 0x1000
        for p in ("ioat-assist", "firmware-rpcit"):
            d = decide(p, RPCIT, fh, vm.lsi, self.host.view(fh), vm.id, vm.gisa)
            if d.route is not Route.USERSPACE:
                # the kernel (or firmware) shadows from the VM's own tables
                before = hf.domain.maps
                KvmZpci(self.host, vm).shadow(hf, self.mem[v], start, npages * 0x1000)
                event(f"{p}: shadowed, mapped={hf.domain.maps > before}")
            else:
                event(f"{p}: {d.reason}")

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def records_agree_with_model(self):
        for f, hf in enumerate(self.fns):
            want_owner = None if self.owner[f] is None else self.vms[self.owner[f]].id
            assert hf.owner == want_owner
            if hf.owner is None:
                assert hf.gisa == 0 and hf.aen is None and hf.ioat is None
                assert not hf.domain.entries
            else:
                assert hf.gisa == self.vms[self.owner[f]].gisa
                assert (hf.aen is not None) == self.aen[f]
                assert (None if hf.ioat is None else hf.ioat.path.value) == self.ioat[f]
        for v, vm in enumerate(self.vms):
            assert {id(h) for h in vm.kzdev} == {id(self.fns[f]) for f in range(NFNS)
                                                 if self.owner[f] == v}

    @invariant()
    def nobody_is_served_for_a_foreign_function(self):
        for v, vm in enumerate(self.vms):
            for f, hf in enumerate(self.fns):
                for kind in ("own", "stale"):
                    fh = self._handle(f, kind)
                    view = self.host.view(fh)
                    for p in POLICY_NAMES:
                        for index in (PCILG, RPCIT):
                            d = decide(p, index, fh, vm.lsi, view, vm.id, vm.gisa)
                            if d.route is not Route.USERSPACE:
                                assert self.owner[f] == v and kind == "own"
                                assert self.alive[v] and self.plugged[f]

    @invariant()
    def every_translation_comes_from_the_owners_ioat(self):
        for f, hf in enumerate(self.fns):
            if not hf.domain.entries:
                continue
            v = self.owner[f]
            assert v is not None and hf.ioat is not None
            for iova, m in hf.domain.entries.items():
                assert m.vm == self.vms[v].id and m.gen == hf.ioat.gen
                w = table_walk(self.mem[v], hf.ioat.iota, iova)
                assert not w.error and w.perm and w.translated_addr == m.frame
                assert hf.ioat.pba <= iova <= hf.ioat.pal


Ownership.TestCase.settings = settings(max_examples=w.scaled(150), stateful_step_count=40,
                                       deadline=None)
TestOwnership = Ownership.TestCase
