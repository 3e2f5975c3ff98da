"""Interpretation policies: which path serves each zPCI instruction.

A decision looks only at what the deciding party can see when the
instruction is issued: the function handle in the request register, the
vCPU's interpretation control (ECB2_ZPCI_LSI), and what the host recorded for
the function the handle names (GISA designation, KVM association, IOAT
registration and through which path it was made).  The table in
docs/decisions.md is the specification; this module is one encoding of it
and the tests hold another.

Decisions never change what the guest sees (interpretation is transparent);
they only say where the instruction was served and why.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from firmware_model.arch import FH_MASK_ENABLE, FH_MASK_SHM
from firmware_model.host import FnView, IoatPath
from firmware_model.insns import ACCESS, TABLE, InsnClass, StatusReg, rows_of
from firmware_model.outcome import ICPT_INSTRUCTION, Decision, Intercept, Route

FH_ENABLE = FH_MASK_ENABLE
FH_SHM = FH_MASK_SHM


class Reason(enum.Enum):
    """Why a decision went where it went (Decision.reason holds the value)."""
    POLICY = "policy"                  # this policy always sends this instruction to userspace
    SHM = "shm"                        # handle carries special-handle-mask bits: forced interception
    NO_LSI = "no-lsi"                  # vCPU has no zPCI load/store interpretation (ECB2_ZPCI_LSI)
    FH_DISABLED = "fh-disabled"        # handle without the enable bit: nothing to interpret
    FH_UNKNOWN = "fh-unknown"          # no host function holds exactly this handle
    NOT_INTERP = "not-interp"          # function not enabled for interpretation (no GISA designation)
    GISA_MISMATCH = "gisa-mismatch"    # enabled for interpretation, but with another guest's GISA
    NOT_OWNER = "not-owner"            # function's KVM association is another VM (or none)
    NO_IOAT = "no-ioat"                # no guest IOAT registered for the function
    IOAT_USERSPACE = "ioat-userspace"  # guest IOAT known only to userspace, not registered through KVM
    INTERPRETED = "interpreted"        # firmware completed the instruction
    IOAT_REGISTERED = "ioat-registered"  # guest IOAT registered through KVM: served without userspace
    DECLINED = "declined"              # the chosen path gave up at run time; userspace served it


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    interp_ls: bool            # firmware may complete PCILG/PCISTG/PCISTB
    rpcit: Route | None        # where an eligible RPCIT is served; None: always userspace
    doc: str


POLICIES: dict[str, Policy] = {p.name: p for p in (
    Policy("intercept-all", False, None, "every zPCI instruction exits to userspace (KVM before Linux 6.0)"),
    Policy("linux-6.0", True, None, "firmware load/store interpretation; everything else to userspace"),
    Policy("ioat-assist", True, Route.KVM, "linux-6.0 plus in-kernel RPCIT for IOATs registered through KVM"),
    Policy("firmware-rpcit", True, Route.FIRMWARE, "what-if: firmware also refreshes translations"),
)}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)

# The rows each deciding party looks at, by class: the firmware's load/store
# interpretation, and RPCIT (the kernel's IOAT assist, the what-if firmware one).
LOAD_STORE = rows_of(*ACCESS)
TRANSLATE = rows_of(InsnClass.TRANSLATE)
# rows whose decisions read the handle (the others depend on the instruction alone)
BY_HANDLE = LOAD_STORE | TRANSLATE


def handle_register(index: int, d) -> int:
    """Register number holding the handle (the table's fh_reg column); R1 for a
    row that names no function, whose decisions ignore it."""
    return d.r2 if TABLE[index].fh_reg is StatusReg.R2 else d.r1


# --- the checks, one function per deciding party -----------------------------

def ls_reason(fh: int, lsi: bool, fn: FnView | None, gisa: int) -> Reason:
    """Firmware's load/store interpretation checks, in the order they exclude."""
    if fh & FH_SHM:
        return Reason.SHM
    if not lsi:
        return Reason.NO_LSI
    if not fh & FH_ENABLE:
        return Reason.FH_DISABLED
    if fn is None:
        return Reason.FH_UNKNOWN
    if not fn.gisa:
        return Reason.NOT_INTERP
    if fn.gisa != gisa:
        return Reason.GISA_MISMATCH
    return Reason.INTERPRETED


def rpcit_kvm_reason(fh: int, fn: FnView | None, vm_id: int) -> Reason:
    """The v3 in-kernel RPCIT handler's checks (kvm-zpci-history.md 1.4)."""
    if fh & FH_SHM:
        return Reason.SHM
    if fn is None:
        return Reason.FH_UNKNOWN
    if fn.owner != vm_id:
        return Reason.NOT_OWNER
    if fn.ioat is IoatPath.NONE:
        return Reason.NO_IOAT
    if fn.ioat is not IoatPath.KVM:
        return Reason.IOAT_USERSPACE
    return Reason.IOAT_REGISTERED


def rpcit_fw_reason(fh: int, lsi: bool, fn: FnView | None, gisa: int) -> Reason:
    """What-if firmware RPCIT: load/store eligibility plus an IOAT the firmware was given."""
    r = ls_reason(fh, lsi, fn, gisa)
    if r is not Reason.INTERPRETED:
        return r
    if fn.ioat is IoatPath.NONE:
        return Reason.NO_IOAT
    if fn.ioat is not IoatPath.KVM:
        return Reason.IOAT_USERSPACE
    return Reason.IOAT_REGISTERED


def route_of(policy: Policy, index: int, fh: int, lsi: bool, fn: FnView | None,
             vm_id: int, gisa: int) -> tuple[Route, Reason]:
    """Reference decision for one policy (slow path; Decider is the fast one)."""
    if index in LOAD_STORE and policy.interp_ls:
        r = ls_reason(fh, lsi, fn, gisa)
        return (Route.FIRMWARE if r is Reason.INTERPRETED else Route.USERSPACE), r
    if index in TRANSLATE and policy.rpcit is not None:
        if policy.rpcit is Route.KVM:
            r = rpcit_kvm_reason(fh, fn, vm_id)
        else:
            r = rpcit_fw_reason(fh, lsi, fn, gisa)
        return (policy.rpcit if r is Reason.IOAT_REGISTERED else Route.USERSPACE), r
    return Route.USERSPACE, Reason.POLICY


def decide(policy: str | Policy, index: int, fh: int, lsi: bool, fn: FnView | None,
           vm_id: int, gisa: int, ipa: int = 0, ipb: int = 0) -> Decision:
    p = POLICIES[policy] if isinstance(policy, str) else policy
    route, reason = route_of(p, index, fh, lsi, fn, vm_id, gisa)
    icpt = None if route is Route.FIRMWARE else Intercept(ICPT_INSTRUCTION, ipa, ipb)
    return Decision(route, reason.value, icpt)


class DecisionKey(NamedTuple):
    """What every policy's decisions depend on: the row, each party's reason
    (None where the row is not that party's), and the intercept's IPA/IPB."""
    index: int
    ls: str | None            # the firmware's load/store reason
    kvm_rpcit: str | None     # the kernel's RPCIT reason
    fw_rpcit: str | None      # the what-if firmware RPCIT reason
    ipa: int
    ipb: int


class DecisionSet:
    """Every policy's Decision for one kind of instruction instance (shared, read-only)."""

    __slots__ = ("by_policy", "key", "outcomes")

    def __init__(self, by_policy: dict, key: DecisionKey):
        self.by_policy = by_policy
        self.key = key
        self.outcomes: dict = {}    # id(Completion) -> Outcome holding it: a caller's reuse cache


class Decider:
    """Decisions of every policy for one instruction, with cached Decision objects.

    Runs once per zPCI instruction, so it computes each party's reason once
    (load/store, KVM RPCIT, firmware RPCIT) and maps the tuple of reasons to
    a shared DecisionSet.  Callers must not mutate ``by_policy``.
    """

    __slots__ = ("active", "_cache", "_order")

    _LIMIT = 1 << 14

    def __init__(self, active: str = "linux-6.0"):
        if active not in POLICIES:
            raise ValueError(f"unknown policy {active!r} (choose from {', '.join(POLICY_NAMES)})")
        self.active = active
        self._cache: dict = {}
        self._order = tuple(POLICIES.values())

    def decisions(self, index: int, fh: int, lsi: bool, fn: FnView | None, vm_id: int,
                  gisa: int, ipa: int, ipb: int) -> DecisionSet:
        # The key holds each reason's value (a str hashes at C speed, an Enum member
        # through Enum.__hash__); ``_value_`` is the member's plain attribute.
        if index in LOAD_STORE:
            key = DecisionKey(index, ls_reason(fh, lsi, fn, gisa)._value_, None, None, ipa, ipb)
        elif index in TRANSLATE:
            key = DecisionKey(index, None, rpcit_kvm_reason(fh, fn, vm_id)._value_,
                   rpcit_fw_reason(fh, lsi, fn, gisa)._value_, ipa, ipb)
        else:
            key = DecisionKey(index, None, None, None, ipa, ipb)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._build(key)
        return hit

    def _build(self, key: DecisionKey) -> DecisionSet:
        ls, rk, rf = key.ls, key.kvm_rpcit, key.fw_rpcit
        icpt = Intercept(ICPT_INSTRUCTION, key.ipa, key.ipb)
        served = Reason.IOAT_REGISTERED.value
        out = {}
        for p in self._order:
            if ls is not None and p.interp_ls:
                route, reason = (Route.FIRMWARE if ls == Reason.INTERPRETED.value
                                 else Route.USERSPACE), ls
            elif rk is not None and p.rpcit is not None:
                reason = rk if p.rpcit is Route.KVM else rf
                route = p.rpcit if reason == served else Route.USERSPACE
            else:
                route, reason = Route.USERSPACE, Reason.POLICY.value
            out[p.name] = Decision(route, reason, None if route is Route.FIRMWARE else icpt)
        if len(self._cache) >= self._LIMIT:
            self._cache.clear()
        ds = self._cache[key] = DecisionSet(out, key)
        return ds
