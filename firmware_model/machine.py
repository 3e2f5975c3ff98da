"""One VM on a modeled host, and the one dispatch point of its zPCI instructions.

``Machine.execute(d, guest)`` runs once per zPCI instruction, always the
same way: the decoded row -> every policy's decision (policy.Decider,
memoised per function and instruction encoding, with the answer of the
table's preamble, semantics.preamble) -> the active policy's path
(firmware.py, kvm.py, or userspace.py, which also serves what a path
declines; a path's body directly where this lookup named the function) -> one count in the
Stats object -> the Outcome.  Nothing else routes or counts.  See
docs/design.md for the path of one PCILG and docs/decisions.md for
``assume``.
"""
from __future__ import annotations

from . import firmware
from .arch import MpcifcOc
from .config import MachineConfig
from .function import ZpciBus
from .host import Host
from .irq_routes import InterruptAccounting
from .insns import TABLE, InsnClass, StatusReg
from .kvm import KvmZpci
from .outcome import Decision, Outcome, Route
from .passthrough import Passthrough, passthrough_handle
from .policy import BY_HANDLE, POLICIES, POLICY_NAMES, Decider, Reason
from .semantics import preamble
from .stats import Served, Stats
from .userspace import UserspaceHandler

ASSUMPTIONS = ("passthrough", "as-given")
_MEMO_LIMIT = 4096
_REREG_IOAT = MpcifcOc.REREG_IOAT
# classes after which a userspace-served instruction needs the host brought along
_HOST_VISIBLE = (InsnClass.CONFIG, InsnClass.CONTROL, InsnClass.TRANSLATE)


def _device_factory():
    """make_device with one context per machine (QEMU's per-machine MAC and seed numbering)."""
    from firmware_model.devices import make_device
    context: dict = {}
    return lambda kind, props: make_device(kind, props, context=context)


def _intercept(d, guest, req, found):
    return None     # a path without a handler for the row: it intercepts


class Memo:
    """Every policy's decisions for one kind of instruction instance, and what the
    dispatcher needs to serve it: the preamble's answers, the active path's
    handler (None: userspace), the Stats cells it counts into, the last
    completion and its Outcome."""

    __slots__ = ("view", "lsi", "checked", "checked_problem", "decisions", "decision", "run",
                 "body", "cell", "declined_cell", "declined", "completion", "outcome")

    def __init__(self, view, lsi, d, decisions, decision, run, body, cell, declined_cell):
        self.view = view                    # the host's view it was decided on (None: none)
        self.lsi = lsi
        # the preamble's answer in the supervisor and in the problem state: the
        # instance (row, IPA, IPB) fixes every field it reads
        self.checked = preamble(d.index, d, False)
        self.checked_problem = preamble(d.index, d, True)
        self.decisions = decisions          # policy.DecisionSet
        self.decision = decision            # the active policy's
        self.run = run
        # for a function the firmware table names: run's body, (fn, d, guest, req),
        # which never declines (None: run does the path's own lookup)
        self.body = body
        self.cell = cell
        self.declined_cell = declined_cell
        self.declined = Decision(Route.USERSPACE, Reason.DECLINED.value, decision.intercept)
        self.completion = None
        self.outcome = None


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
        self.counters = Stats()
        self.userspace = UserspaceHandler(self.bus)
        self.kvm = KvmZpci(self.host, self.vm, self.counters.kernel)
        self.decider = Decider(policy)
        self._passthrough = assume == "passthrough"
        self.world = Passthrough(self.host, self.vm, self.bus) if self._passthrough else None
        # the firmware's function table (guest handle -> FunctionEntry), refilled by resync
        self._by_fh: dict = self.world.by_fh if self.world else {}
        self._hf: dict = self.world.entries if self.world else {}
        self._paths = {Route.FIRMWARE: firmware.ROWS, Route.KVM: self.kvm.rows}
        self._bodies = {Route.FIRMWARE: firmware.BODIES}
        self._userspace = self.userspace.rows
        # per row: the handle register decisions read (0: they ignore the handle),
        # and whether userspace serving it changes what the host must know
        self._handle_reg = tuple(
            (2 if i.fh_reg is StatusReg.R2 else 1) if i.index in BY_HANDLE else 0 for i in TABLE)
        self._after = tuple(self._passthrough and i.cls in _HOST_VISIBLE for i in TABLE)
        self._unnamed_memo: dict = {}   # (index, ipa, ipb, host fh) -> Memo
        self._plain: dict = {}          # (index, ipa, ipb) -> Memo, for rows decided without a handle
        self.resync()
        self.irq = InterruptAccounting(self)     # counts the bus's adapter events per policy

    # --- the host in line with the guest --------------------------------------------

    def resync(self, reregistered: int | None = None) -> None:
        """Bring the host's records in line with what userspace (QEMU) did for the guest.

        QEMU tells KVM about IOAT and AEN registrations of interpreted
        functions; here that follows every userspace-served CLP/MPCIFC.
        ``reregistered``: the guest handle of a function whose IOAT MPCIFC
        REREG_IOAT just replaced (same values, fresh registration).
        Call it after changing the bus out of band (SCLP, reset, hot plug).
        """
        if self.world is not None:
            self.world.resync(reregistered)

    def _after_userspace(self, index: int, d, guest, completion, req: int, found) -> None:
        """Userspace changed what the host must know: registrations, handles, mappings."""
        cls = TABLE[index].cls
        if cls is InsnClass.CONTROL:
            r1 = guest.gpr(d.r1)
            self.resync(r1 >> 32 if completion.cc == 0 and r1 & 0xFF == _REREG_IOAT else None)
        elif cls is InsnClass.CONFIG:
            self.resync()
        elif found is not None and found.fn.fh == req >> 32:
            self.world.mirror(found, guest.gpr(d.r2), guest.gpr((d.r2 + 1) & 15))

    def attach(self, memory) -> None:
        """Bind the machine's absolute storage, where device DMA, MSIs and indicators go.

        Once, before the first instruction: the guest passed to ``execute`` is
        the vCPU's view for the instruction's own operands (logical under DAT),
        the storage is the machine's (absolute) and never changes with it.
        """
        self.bus.memory = memory

    # --- the dispatch point -----------------------------------------------------------

    def execute(self, d, guest) -> Outcome:
        bus = self.bus
        if bus.memory is None:
            # a machine never attached: its storage is the first guest it serves
            bus.memory = guest
        index = d.index
        reg = self._handle_reg[index]
        if reg:
            req = guest.gpr(d.r2 if reg == 2 else d.r1)
            fh = req >> 32
            found = self._by_fh.get(fh)
            if found is not None and found.fn.fh == fh:
                # decisions stay valid while the host's view of the function (a cached
                # object, replaced on change) and the vCPU's LSI stay
                lsi = self.vm.use_zpci_interp
                key = (index, d.ipa, d.ipb)
                memo = found.memos.get(key)
                if memo is None or memo.view is not found.hf._view or memo.lsi is not lsi:
                    memo = self._remember(found, key, lsi, d)
                body = memo.body
                if body is not None:
                    # the path's lookup is the one just made: its body serves
                    completion = memo.checked_problem if guest.problem_state else memo.checked
                    if completion is None:
                        completion = body(found.fn, d, guest, req)
                    memo.cell.n += 1
                    if completion is memo.completion:
                        return memo.outcome
                    return self._outcome(memo, index, completion)
            else:
                memo = self._unnamed(index, fh, d)
        else:
            req = 0
            found = None
            key = (index, d.ipa, d.ipb)
            memo = self._plain.get(key)
            if memo is None:
                memo = self._plain_decisions(key, d)
        completion = memo.checked_problem if guest.problem_state else memo.checked
        run = memo.run
        if run is not None:
            # the firmware or the kernel
            if completion is None:
                completion = run(d, guest, req, found)
                if completion is None:
                    return self._declined(memo, index, d, guest, req, found)
        else:
            if completion is None:
                completion = self._userspace[index](d, guest)
            if self._after[index]:
                self._after_userspace(index, d, guest, completion, req, found)
        memo.cell.n += 1
        if completion is memo.completion:
            return memo.outcome
        return self._outcome(memo, index, completion)

    @staticmethod
    def _outcome(memo: Memo, index: int, completion) -> Outcome:
        """The Outcome of ``completion`` under the memo's decisions, kept as the memo's last.

        Completions are mostly preallocated constants: their Outcomes are reused,
        the memo's last one first (execute checks that one itself)."""
        ds = memo.decisions
        out = ds.outcomes.get(id(completion))
        if out is None:
            out = Outcome(TABLE[index].mnemonic, completion, memo.decision, ds.by_policy)
            # ds.outcomes maps id(completion) to the Outcome holding it; the Outcome
            # keeps the completion alive, so its id names no other object meanwhile
            if len(ds.outcomes) < 16:
                ds.outcomes[id(completion)] = out
        memo.completion = completion
        memo.outcome = out
        return out

    def _declined(self, memo: Memo, index: int, d, guest, req: int, found) -> Outcome:
        """The firmware or the kernel declined at run time: userspace serves it."""
        completion = self._userspace[index](d, guest)
        if self._after[index]:
            self._after_userspace(index, d, guest, completion, req, found)
        memo.declined_cell.n += 1
        return Outcome(TABLE[index].mnemonic, completion, memo.declined, memo.decisions.by_policy)

    # --- memoised decisions -------------------------------------------------------------

    def _memo(self, fid, view, lsi: bool, d, fh: int, named: bool = False) -> Memo:
        """``named``: the handle names ``fid`` in the firmware table (the path's bodies apply)."""
        vm = self.vm
        index = d.index
        ds = self.decider.decisions(index, fh, lsi, view, vm.id, vm.gisa, d.ipa, d.ipb)
        decision = ds.by_policy[self.policy]
        route = decision.route
        run = body = None
        if route is not Route.USERSPACE:
            run = self._paths[route][index] or _intercept
            if named and route in self._bodies:
                body = self._bodies[route][index]
        cell = self.counters.cell(fid, ds, Served.of(route, False))
        declined = self.counters.cell(fid, ds, Served.of(route, True))
        return Memo(view, lsi, d, ds, decision, run, body, cell, declined)

    def _remember(self, found, key: tuple, lsi: bool, d) -> Memo:
        """Decide for a handle naming one of the VM's functions, memoised in its entry."""
        view = found.hf.view()
        memos = found.memos
        if len(memos) >= _MEMO_LIMIT:
            memos.clear()
        memo = memos[key] = self._memo(found.fn.fid, view, lsi, d, found.hf.fh, named=True)
        return memo

    def _unnamed(self, index: int, fh: int, d) -> Memo:
        """Decisions for a handle that names no function the firmware table holds
        (stale, disabled, foreign, SHM patterns), memoised."""
        view = None
        if self._passthrough:
            fh = passthrough_handle(fh)
            # a host function the guest cannot run through the firmware table
            # (e.g. one it disabled) still answers the decision's lookup
            other = self.world.by_pfh.get(fh)
            if other is not None:
                view = other.view()
        lsi = self.vm.use_zpci_interp
        key = (index, d.ipa, d.ipb, fh)
        memos = self._unnamed_memo
        memo = memos.get(key)
        if memo is not None and memo.view is view and memo.lsi is lsi:
            return memo
        if len(memos) >= _MEMO_LIMIT:
            memos.clear()
        memo = memos[key] = self._memo(None, view, lsi, d, fh)
        return memo

    def _plain_decisions(self, key: tuple, d) -> Memo:
        """Decisions for a row whose decisions ignore the handle: they depend on the
        instruction (index, IPA, IPB) alone."""
        if len(self._plain) >= _MEMO_LIMIT:
            self._plain.clear()
        memo = self._plain[key] = self._memo(None, None, False, d, 0)
        return memo

    # --- accounting --------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters for every policy from this run (JSON-able)."""
        policies, functions = self.counters.by_policy(POLICY_NAMES)
        active = {"policy": self.policy, **self.counters.active()}
        return {"assume": self.assume, "policies": policies, "functions": functions,
                "active": active, "host": self.host.snapshot_stats(), "interrupts": self.irq.stats(),
                "vm": {"id": self.vm.id, "gisa": self.vm.gisa, "lsi": self.vm.use_zpci_interp,
                       "instructions": self.counters.instructions()}}

    def reset_stats(self) -> None:
        self.counters.reset()
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
