"""One VM on a modeled host: its zPCI bus, the paths that serve it, and the accounting.

``Machine.execute(d, guest)`` runs once per zPCI instruction.  It decides
every policy's route at once (policy.Decider), runs the active policy's
route (intercept.Router), and tallies the shared DecisionSet, so one run
accounts every policy.  See docs/decisions.md for ``assume``.
"""
from __future__ import annotations

from collections import Counter

from firmware_model.arch import (
    FH_MASK_ENABLE, FH_MASK_SHM, FH_SHM_EMUL, MASK64, PAGE_MASK, PAGE_SIZE, MpcifcOc,
)
from firmware_model.config import MachineConfig
from firmware_model.device import DmaError, DmaErrorKind
from firmware_model.dma import TranslatedDma
from firmware_model.firmware import Firmware
from firmware_model.function import ZpciBus
from firmware_model.host import Errno, Host, ZpciOp
from firmware_model.insns import BY_MNEMONIC, TABLE, StatusReg
from firmware_model.intercept import (
    DECLINED as EXIT_DECLINED, EXIT_INSTRUCTION, EXIT_USERSPACE, FIRMWARE as EXIT_FIRMWARE, Router,
)
from firmware_model.irq_routes import InterruptAccounting
from firmware_model.kvm import KvmZpci
from firmware_model.outcome import Decision, Outcome, Route
from firmware_model.policy import (
    LOAD_STORE, POLICIES, POLICY_NAMES, RPCIT, Decider, Reason,
)
from firmware_model.userspace import UserspaceHandler

ASSUMPTIONS = ("passthrough", "as-given")

_CLP = BY_MNEMONIC["CLP"].index
_MPCIFC = BY_MNEMONIC["MPCIFC"].index
_REREG_IOAT = MpcifcOc.REREG_IOAT
_SHM, _EMUL, _ENABLE = FH_MASK_SHM, FH_SHM_EMUL, FH_MASK_ENABLE
_USERSPACE = Route.USERSPACE
_FIRMWARE = Route.FIRMWARE


def _device_factory():
    """make_device with one context per machine (QEMU's per-machine MAC and seed numbering)."""
    from firmware_model.devices import make_device
    context: dict = {}
    return lambda kind, props: make_device(kind, props, context=context)


def passthrough_handle(fh: int) -> int:
    """The handle as the passthrough world has it.

    QEMU's emulation marker is swapped: a QEMU handle becomes the host handle
    (no SHM bits), and a handle without SHM bits (which QEMU never hands
    out) becomes one with the marker, so the mapping is one-to-one and no
    guest handle can name a host function QEMU would not.
    """
    return fh ^ _EMUL if fh & _SHM in (0, _EMUL) else fh


class IommuDma(TranslatedDma):
    """Device DMA of a passthrough function: QEMU's rules, and the host domain must agree.

    The zPCI-side checks (state, window, IOTLB, faults into the error state)
    are QEMU's; the address the device reaches is the host IOMMU domain's.
    A translation the domain does not hold is not reachable.
    """

    __slots__ = ("hf",)

    def __init__(self, fn, hf):
        super().__init__(fn)
        self.hf = hf

    def _translate(self, iova: int, write: bool):
        pa = super()._translate(iova, write)
        if pa.__class__ is int:
            host = self.hf.domain.translate(iova, write)
            if host != pa:
                self.hf.stats["dma_blocked_by_iommu"] += 1
                return DmaError(DmaErrorKind.UNMAPPED, iova)
        return pa


class Machine:
    """A host, one VM, its zPCI bus; ``execute`` serves the VM's zPCI instructions."""

    def __init__(self, config: MachineConfig | None = None, policy: str = "linux-6.0",
                 assume: str = "passthrough", bus: ZpciBus | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} (choose from {', '.join(POLICY_NAMES)})")
        if assume not in ASSUMPTIONS:
            raise ValueError(f"unknown assumption {assume!r} (choose from {', '.join(ASSUMPTIONS)})")
        self.config = config or MachineConfig()
        self.policy = policy
        self.assume = assume
        self.host = Host()
        self.vm = self.host.create_vm()
        self.bus = bus if bus is not None else ZpciBus.from_config(self.config, _device_factory())
        self.userspace = UserspaceHandler(self.bus)
        # guest handle of an enabled passthrough function -> its entry in _hf; shared with
        # the firmware and KVM paths (their function tables), refilled in place by resync()
        self._by_fh: dict[int, tuple] = {}
        self._by_pfh: dict[int, object] = {}     # host handle -> HostFunction, every function
        self.firmware = Firmware(self._by_fh)
        self.kvm = KvmZpci(self.host, self.vm, self._by_fh)
        self.router = Router(self.userspace, self.firmware, self.kvm)
        self.decider = Decider(policy)
        self._exits = self.router.exits
        self._fw_counts = self.firmware.counts   # reset in place, like the exits
        self._fw_found = self.firmware.found
        self._passthrough = assume == "passthrough"
        # rows after which a userspace-served instruction needs the host brought along
        self._after = tuple(self._passthrough and i.index in (_CLP, _MPCIFC, RPCIT) for i in TABLE)
        self._hf: dict[int, tuple] = {}          # bus index -> (HostFunction, ZpciFunction, tally, memo)
        self._tally: dict = {}                   # DecisionSet -> count, for handles naming no function
        self._unnamed_memo: dict = {}            # (index, ipa, ipb, fh) -> (view, lsi, (ds, decision))
        self._plain: dict = {}                   # (index, ipa, ipb) -> (ds, decision), handle-free rows
        # which register holds the handle, per table row (0: decisions ignore the handle)
        self._handle_reg = tuple(
            (2 if i.status_reg is StatusReg.R2 else 1) if i.index in LOAD_STORE or i.index == RPCIT
            else 0 for i in TABLE)
        if self._passthrough:
            for fn in self.bus.functions:
                self._attach(fn)
        self.resync()
        self.irq = InterruptAccounting(self)     # counts the bus's adapter events per policy

    # --- the passthrough world --------------------------------------------------

    def _attach(self, fn) -> None:
        hf = self.host.plug(fn.fid, passthrough_handle(fn.fh | _ENABLE))
        rc = self.host.vfio_open(self.vm, hf)
        if rc is not Errno.OK:
            raise RuntimeError(f"vfio open of fid {fn.fid:#x} failed: {rc.name}")
        self._hf[fn.idx] = (hf, fn, {}, {})     # host function, bus function, tally, decision memo
        # Translated device DMA passes the host domain; a port the bus chose
        # otherwise (direct, untranslated) is left as the bus made it.
        if type(fn.device.dma) is TranslatedDma:
            fn.device.dma = IommuDma(fn, hf)

    def resync(self, reregistered: int | None = None) -> None:
        """Bring the host's records in line with what userspace (QEMU) did for the guest.

        QEMU tells KVM about IOAT and AEN registrations of interpreted
        functions; here that follows every userspace-served CLP/MPCIFC.
        ``reregistered``: the guest handle of a function whose IOAT MPCIFC
        REREG_IOAT just replaced (same values, fresh registration).
        Call it after changing the bus out of band (SCLP, reset, hot plug).
        """
        if not self._passthrough:
            return
        host, vm = self.host, self.vm
        self._by_fh.clear()
        self._by_pfh.clear()
        for fn in self.bus.functions:
            if fn.idx not in self._hf:
                self._attach(fn)
            entry = self._hf[fn.idx]
            hf = entry[0]
            # While the guest has the function disabled the host has no enabled handle
            # the guest could present (QEMU's vfio reset behind CLP disable).
            hf.fh = passthrough_handle(fn.fh)
            self._by_pfh[hf.fh] = hf
            if fn.fh & _ENABLE:
                self._by_fh[fn.fh] = entry
            ioat = hf.ioat
            if fn.ioat_enabled:
                if (ioat is None or fn.fh == reregistered
                        or (ioat.iota, ioat.pba, ioat.pal) != (fn.iota, fn.pba, fn.pal)):
                    if ioat is not None:
                        host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
                    host.zpci_op(vm, hf.fh, ZpciOp.REG_IOAT, iota=fn.iota, pba=fn.pba, pal=fn.pal)
            elif ioat is not None:
                host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
            self._mirror(hf, fn, 0, 0)
            if fn.irq_registered and hf.aen is None:
                host.zpci_op(vm, hf.fh, ZpciOp.REG_AEN, ibv=fn.aibv, sb=fn.aisb if fn.sum else 0,
                             noi=fn.noi, isc=fn.isc, sbo=fn.aisbo)
            elif not fn.irq_registered and hf.aen is not None:
                host.zpci_op(vm, hf.fh, ZpciOp.DEREG_AEN)

    def _mirror(self, hf, fn, start: int, length: int) -> None:
        """QEMU's vfio maps/unmaps after its RPCIT: the domain follows the IOTLB."""
        dom, want, ioat = hf.domain, fn.iotlb, hf.ioat
        first = start & PAGE_MASK
        end = (start + length) & MASK64
        npages = (end - first) >> 12 if end > first else 0
        if 0 < npages <= len(want) + len(dom.entries):
            pages = range(first, end, PAGE_SIZE)
        else:
            pages = set(want) | set(dom.entries)
        for iova in pages:
            e = want.get(iova)
            if e is None:
                dom.unmap(iova)
            elif ioat is not None:
                m = dom.entries.get(iova)
                if m is None or m.frame != e.translated_addr or m.writable != bool(e.perm & 2):
                    dom.map(iova, e.translated_addr, bool(e.perm & 2), ioat.vm, ioat.gen)

    # --- the per-instruction path -------------------------------------------------

    def execute(self, d, guest) -> Outcome:
        bus = self.bus
        if bus.memory is not guest:
            bus.memory = guest
        index = d.index
        reg = self._handle_reg[index]
        entry = None
        run_declined = False
        if reg:
            req = guest.gpr(d.r2 if reg == 2 else d.r1)
            fh = req >> 32
            entry = self._by_fh.get(fh)
            if entry is not None and entry[1].fh == fh:
                # Memo per function: the decisions stay valid while the host's view of
                # the function (a cached object, replaced on change) and LSI stay.
                hf = entry[0]
                view = hf._view or hf.view()
                lsi = self.vm.use_zpci_interp
                key = (index, d.ipa, d.ipb)
                memo = entry[3].get(key)
                if memo is None or memo[0] is not view or memo[1] is not lsi:
                    memo = self._remember(entry, key, view, lsi)
                run = memo[4]
                if run is not None:
                    # The active policy interprets it: the firmware's handler, given the
                    # request and the function found here (Firmware.execute without the
                    # second lookup).
                    completion = run(d, guest, req, entry)
                    if completion is not None:
                        self._fw_counts[index] += 1
                        self._exits[EXIT_FIRMWARE] += 1
                        ds = memo[2]
                        tally = entry[2]
                        tally[ds] = tally.get(ds, 0) + 1
                        # Completions are mostly preallocated constants: reuse the Outcome,
                        # the memo's last one first.
                        if completion is memo[5]:
                            return memo[6]
                        out = ds.outcomes.get(id(completion))
                        if out is None:
                            out = self._outcome(ds, memo[3], index, completion)
                        memo[5] = completion
                        memo[6] = out
                        return out
                    run_declined = True
                ds, decision = memo[2], memo[3]
            else:
                entry = None
                ds, decision = self._unnamed(index, fh, d)
            if index == RPCIT:
                window = (guest.gpr(d.r2), guest.gpr((d.r2 + 1) & 15))
        else:
            key = (index, d.ipa, d.ipb)
            memo = self._plain.get(key)
            if memo is None:
                memo = self._plain_decisions(key)
            ds, decision = memo
        route = decision.route
        exits = self._exits
        # The router's userspace and firmware branches, inlined: these are the hot paths.
        if run_declined:
            # the firmware intercepted after all (see Router.run)
            exits[EXIT_DECLINED] += 1
            completion = self.router.run(_USERSPACE, d, guest)[0]
            declined = True
        elif route is _USERSPACE:
            exits[EXIT_INSTRUCTION] += 1
            exits[EXIT_USERSPACE] += 1
            completion = self.userspace.execute(d, guest)
            declined = False
        elif route is _FIRMWARE:
            completion = self.firmware.execute(d, guest)
            if completion is not None:
                exits[EXIT_FIRMWARE] += 1
                declined = False
            else:
                exits[EXIT_DECLINED] += 1
                completion = self.router.run(_USERSPACE, d, guest)[0]
                declined = True
        else:
            completion, declined = self.router.run(route, d, guest)
        tally = entry[2] if entry is not None else self._tally
        tally[ds] = tally.get(ds, 0) + 1
        if declined:
            decision = Decision(_USERSPACE, Reason.DECLINED.value, decision.intercept)
            route = _USERSPACE
        if route is _USERSPACE and self._after[index]:
            # userspace changed what the host must know: registrations, handles, mappings
            if index == _MPCIFC:
                r1 = guest.gpr(d.r1)
                self.resync(r1 >> 32 if completion.cc == 0 and r1 & 0xFF == _REREG_IOAT else None)
            elif index == _CLP:
                self.resync()
            elif entry is not None:
                self._mirror(entry[0], entry[1], *window)
        if declined:
            return Outcome(TABLE[index].mnemonic, completion, decision, ds.by_policy)
        out = ds.outcomes.get(id(completion))
        if out is None:
            out = self._outcome(ds, decision, index, completion)
        return out

    def _outcome(self, ds, decision, index: int, completion) -> Outcome:
        """The Outcome of ``decision`` (the active one of ``ds``), kept for reuse.

        ``ds.outcomes`` maps id(completion) to the Outcome holding it; the Outcome
        keeps the completion alive, so its id names no other object meanwhile.
        """
        out = Outcome(TABLE[index].mnemonic, completion, decision, ds.by_policy)
        if len(ds.outcomes) < 16:
            ds.outcomes[id(completion)] = out
        return out

    def _remember(self, entry, key: tuple, view, lsi: bool) -> tuple:
        """Decide for a handle naming one of the VM's functions, and memo it in the entry.

        The memo: [view, lsi, DecisionSet, active Decision, firmware handler to call
        directly or None, last completion of that handler, its Outcome].
        """
        index, ipa, ipb = key
        vm = self.vm
        ds = self.decider.decisions(index, entry[0].fh, lsi, view, vm.id, vm.gisa, ipa, ipb)
        decision = ds.by_policy[self.policy]
        run = self._fw_found[index] if decision.route is _FIRMWARE else None
        memos = entry[3]
        if len(memos) >= 4096:
            memos.clear()
        memo = memos[key] = [view, lsi, ds, decision, run, None, None]
        return memo

    def _unnamed(self, index: int, fh: int, d) -> tuple:
        """(DecisionSet, active Decision) for a handle that names no function the
        firmware table holds (stale, disabled, foreign, SHM patterns), memoised.
        """
        view = None
        if self._passthrough:
            fh = passthrough_handle(fh)
            # a host function the guest cannot run through the firmware table
            # (e.g. one it disabled) still answers the decision's lookup
            other = self._by_pfh.get(fh)
            if other is not None:
                view = other.view()
        vm = self.vm
        lsi = vm.use_zpci_interp
        key = (index, d.ipa, d.ipb, fh)
        memos = self._unnamed_memo
        memo = memos.get(key)
        if memo is not None and memo[0] is view and memo[1] is lsi:
            return memo[2]
        ds = self.decider.decisions(index, fh, lsi, view, vm.id, vm.gisa, d.ipa, d.ipb)
        if len(memos) >= 4096:
            memos.clear()
        pair = (ds, ds.by_policy[self.policy])
        memos[key] = (view, lsi, pair)
        return pair

    def _plain_decisions(self, key: tuple) -> tuple:
        """(DecisionSet, active Decision) for an instruction whose decisions ignore the
        handle: they depend on the instruction (index, IPA, IPB) alone."""
        index, ipa, ipb = key
        vm = self.vm
        ds = self.decider.decisions(index, 0, False, None, vm.id, vm.gisa, ipa, ipb)
        if len(self._plain) >= 4096:
            self._plain.clear()
        pair = self._plain[key] = (ds, ds.by_policy[self.policy])
        return pair

    # --- accounting --------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters for every policy from this run (JSON-able)."""
        policies = {}
        functions: dict = {}
        for p in POLICY_NAMES:
            policies[p] = {"instructions": {}, "reasons": Counter(), "routes": Counter(),
                           "exit_instruction": 0, "exit_userspace": 0}
        tallies = [(None, self._tally)] + [(e[1].fid, e[2]) for e in self._hf.values()]
        for fid, ds, n in ((fid, ds, n) for fid, t in tallies for ds, n in t.items()):
            mn = TABLE[ds.key[0]].mnemonic
            for p, dec in ds.by_policy.items():
                acc = policies[p]
                route = dec.route.value
                per = acc["instructions"].setdefault(mn, {})
                per[route] = per.get(route, 0) + n
                acc["reasons"][dec.reason] += n
                acc["routes"][route] += n
                if dec.route is not Route.FIRMWARE:
                    acc["exit_instruction"] += n
                    if dec.route is Route.USERSPACE:
                        acc["exit_userspace"] += n
                if fid is not None:
                    f = functions.setdefault(f"{fid:#x}", {}).setdefault(p, {})
                    f[route] = f.get(route, 0) + n
        for acc in policies.values():
            acc["reasons"] = dict(acc["reasons"])
            acc["routes"] = dict(acc["routes"])
        active = {"policy": self.policy, "router": self.router.stats(),
                  "firmware": self.firmware.stats(), "kvm": dict(self.kvm.stats)}
        return {"assume": self.assume, "policies": policies, "functions": functions,
                "active": active, "host": self.host.snapshot_stats(), "interrupts": self.irq.stats(),
                "vm": {"id": self.vm.id, "gisa": self.vm.gisa, "lsi": self.vm.use_zpci_interp,
                       "instructions": sum(n for _, t in tallies for n in t.values())}}

    def reset_stats(self) -> None:
        self._tally.clear()
        for e in self._hf.values():
            e[2].clear()
        self.router.reset()
        self.firmware.counts[:] = [0] * len(self.firmware.counts)
        self.kvm.stats.clear()
        self.irq.reset()

    # --- platform operations that change the bus outside the instruction path -------

    def sclp_configure(self, fid: int) -> int:
        rc = self.bus.sclp_configure(fid)
        self.resync()
        return rc

    def sclp_deconfigure(self, fid: int) -> int:
        rc = self.bus.sclp_deconfigure(fid)
        self.resync()
        return rc

    def reset(self) -> None:
        """System reset: every function reset and disabled, the host told."""
        self.bus.reset()
        self.resync()
