"""The one statistics object of a Machine: every instruction counted once.

The dispatcher bumps one ``Cell`` per instruction: the cell of (function,
every policy's decisions, how it was served).  Everything reported is
derived from the cells when asked: each policy's routes and reasons, the
per-function counts, the active policy's exits the way KVM counts them
(every intercept an ``exit_instruction``, every one that leaves the kernel
also an ``exit_userspace``), what the firmware completed per instruction,
and the kernel's instruction counts.  Counters only a path can know (a
refresh that failed in the kernel, maps its domain refused) live in
``kernel``, which the KVM path is given.
"""
from __future__ import annotations

import enum
from collections import Counter

from .insns import TABLE
from .outcome import Route


class Served(enum.Enum):
    """How the active policy's path served one instruction."""
    FIRMWARE = "firmware"
    KVM = "kvm"
    USERSPACE = "userspace"
    FIRMWARE_DECLINED = "firmware-declined"     # the firmware intercepted after all
    KVM_DECLINED = "kvm-declined"               # the kernel answered -EOPNOTSUPP

    @classmethod
    def of(cls, route: Route, declined: bool) -> "Served":
        if route is Route.FIRMWARE:
            return cls.FIRMWARE_DECLINED if declined else cls.FIRMWARE
        if route is Route.KVM:
            return cls.KVM_DECLINED if declined else cls.KVM
        return cls.USERSPACE


# Exit kinds, in the order Machine.stats() reports them, and the ones each way of
# serving an instruction counts.
EXIT_NAMES = ("firmware", "exit_instruction", "exit_userspace", "kvm_handled", "declined")
EXITS = {
    Served.FIRMWARE: ("firmware",),
    Served.FIRMWARE_DECLINED: ("declined", "exit_instruction", "exit_userspace"),
    Served.KVM: ("exit_instruction", "kvm_handled"),
    Served.KVM_DECLINED: ("exit_instruction", "declined", "exit_userspace"),
    Served.USERSPACE: ("exit_instruction", "exit_userspace"),
}


class Cell:
    """Instructions of one function (None: a handle naming none, or no handle),
    with one set of decisions, served one way."""

    __slots__ = ("fid", "decisions", "served", "n")

    def __init__(self, fid: int | None, decisions, served: Served):
        self.fid = fid
        self.decisions = decisions      # policy.DecisionSet
        self.served = served
        self.n = 0


class Stats:
    __slots__ = ("_cells", "kernel")

    def __init__(self):
        self._cells: dict = {}
        self.kernel: Counter = Counter()

    def cell(self, fid: int | None, decisions, served: Served) -> Cell:
        key = (fid, decisions, served)
        c = self._cells.get(key)
        if c is None:
            c = self._cells[key] = Cell(fid, decisions, served)
        return c

    def reset(self) -> None:
        for c in self._cells.values():
            c.n = 0
        self.kernel.clear()

    def instructions(self) -> int:
        return sum(c.n for c in self._cells.values())

    def by_policy(self, policy_names) -> tuple[dict, dict]:
        """Every policy's decisions of this run, and the same per function."""
        policies = {p: {"instructions": {}, "reasons": Counter(), "routes": Counter(),
                        "exit_instruction": 0, "exit_userspace": 0} for p in policy_names}
        functions: dict = {}
        for c in self._cells.values():
            n = c.n
            if not n:
                continue
            mn = TABLE[c.decisions.key.index].mnemonic
            for p, dec in c.decisions.by_policy.items():
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
                if c.fid is not None:
                    f = functions.setdefault(f"{c.fid:#x}", {}).setdefault(p, {})
                    f[route] = f.get(route, 0) + n
        for acc in policies.values():
            acc["reasons"] = dict(acc["reasons"])
            acc["routes"] = dict(acc["routes"])
        return policies, functions

    def active(self) -> dict:
        """The active policy's exits, firmware completions and kernel counts."""
        exits = dict.fromkeys(EXIT_NAMES, 0)
        firmware: dict = {}
        kvm = Counter()
        for c in self._cells.values():
            n = c.n
            if not n:
                continue
            for kind in EXITS[c.served]:
                exits[kind] += n
            mn = TABLE[c.decisions.key.index].mnemonic
            if c.served is Served.FIRMWARE:
                firmware[mn] = firmware.get(mn, 0) + n
            elif c.served is Served.KVM:
                kvm[f"instruction_{mn.lower()}"] += n
            elif c.served is Served.KVM_DECLINED:
                kvm[f"{mn.lower()}_declined"] += n
        kvm.update(self.kernel)
        return {"router": exits, "firmware": firmware, "kvm": dict(kvm)}
