"""How each zPCI adapter interrupt reaches the guest, per policy (accounting only).

The guest sees the same under every policy (irq.py, QEMU 7.2's path);
``irq_route`` says whether the host injects an interrupt (QEMU for its own
devices; KVM through an irqfd adapter route or through AEN host forwarding)
or the firmware forwards it into the guest's GISA (the AEN path of Linux
6.0).  ``InterruptAccounting`` is the bus FLIC's observer and counts every
adapter event under every policy at once; docs/interrupts.md is the table.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from .irq import Raised
from .policy import POLICY_NAMES

class IrqRoute(enum.Enum):
    FIRMWARE = "firmware"        # forwarded into the GISA by the firmware; SIE presents it
    GISA_ALERT = "gisa-alert"    # forwarded into the GISA, no vCPU ran: the host took a GIB alert
    KVM = "kvm"                  # the host kernel injected it
    USERSPACE = "userspace"      # QEMU set the indicators and injected it
    NONE = "none"                # no delivery path: the function registered no interruptions


IRQ_ROUTES = tuple(r.value for r in IrqRoute)
# the interrupts that reach the guest with no host code running at all
SKIPS_HOST = frozenset({IrqRoute.FIRMWARE})


class IrqReason(enum.Enum):
    EMULATED = "emulated"          # QEMU's own device model (an SHM handle): QEMU injects
    NO_FORWARDING = "no-forwarding"  # the policy's host has no AEN interpretation: irqfd adapter route
    UNREGISTERED = "unregistered"  # no MPCIFC register-interruptions in effect
    NO_GISA = "no-gisa"            # the VM has no GISA: nothing to forward into
    NO_AEN = "no-aen"              # the host holds no AEN registration for the function: irqfd
    AEN_HOST = "aen-host"          # REG_AEN without the forwarding assist (GAIT gisa 0): aen_host_forward
    FORWARDED = "forwarded"        # firmware forwarding into the GISA, a vCPU running
    VCPU_IDLE = "vcpu-idle"        # forwarded while every vCPU waited: GIB alert, host wakes one


# Whether a policy's host has Linux 6.0's adapter-event forwarding (it came with
# the load/store interpretation series; the other policies only add RPCIT paths).
FORWARDING = {"intercept-all": False, "linux-6.0": True, "ioat-assist": True,
              "firmware-rpcit": True}


@dataclass(frozen=True, slots=True)
class AenView:
    """What the host records for a function's adapter events (None: no REG_AEN)."""
    assist: bool                   # GAIT entry names the guest's GISA (forwarding assist on)


def irq_route(policy: str, passthrough: bool, registered: bool, vm_gisa: int,
              aen: AenView | None, vcpu_idle: bool) -> tuple[IrqRoute, IrqReason]:
    """Where one adapter event of a function goes under ``policy``.

    ``passthrough``: a vfio function (else QEMU's own device); ``registered``:
    the guest's MPCIFC register-interruptions is in effect.
    """
    if not registered:
        return IrqRoute.NONE, IrqReason.UNREGISTERED
    if not passthrough:
        return IrqRoute.USERSPACE, IrqReason.EMULATED
    if not FORWARDING[policy]:
        return IrqRoute.KVM, IrqReason.NO_FORWARDING
    if not vm_gisa:
        return IrqRoute.KVM, IrqReason.NO_GISA
    if aen is None:
        return IrqRoute.KVM, IrqReason.NO_AEN
    if not aen.assist:
        return IrqRoute.KVM, IrqReason.AEN_HOST
    if vcpu_idle:
        return IrqRoute.GISA_ALERT, IrqReason.VCPU_IDLE
    return IrqRoute.FIRMWARE, IrqReason.FORWARDED


class InterruptAccounting:
    """Counts every adapter event of one Machine under every policy at once.

    Installed as the bus FLIC's observer.  The host's records (AEN
    registration of the host function with the same fid) are read at the
    event, as the firmware would find them.
    """

    def __init__(self, machine):
        self.machine = machine
        self.policies = POLICY_NAMES
        self.reset()
        machine.bus.flic.observer = self

    def reset(self) -> None:
        self.events = 0
        self.outcomes: Counter = Counter()          # Raised value -> events
        self.beyond_noi = 0
        self.routes = {p: Counter() for p in self.policies}
        self.reasons = {p: Counter() for p in self.policies}
        self.functions: dict = {}                   # fid -> policy -> route -> events

    def _host_aen(self, fid: int) -> AenView | None:
        vm = self.machine.vm
        for hf in self.machine.host.functions:
            if hf.fid == fid and hf.owner == vm.id and hf.aen is not None:
                return AenView(hf.aen.assist and hf.gisa == vm.gisa)
        return None

    def __call__(self, fn, vec: int, raised: Raised) -> None:
        m = self.machine
        self.events += 1
        self.outcomes[raised.value] += 1
        if fn.irq_registered and vec >= fn.noi:
            self.beyond_noi += 1
        passthrough = m.assume == "passthrough"
        aen = self._host_aen(fn.fid) if passthrough else None
        idle = m.bus.flic.vcpu_idle
        per_fn = self.functions.setdefault(f"{fn.fid:#x}", {})
        for p in self.policies:
            route, reason = irq_route(p, passthrough, fn.irq_registered, m.vm.gisa, aen, idle)
            self.routes[p][route.value] += 1
            self.reasons[p][reason.value] += 1
            f = per_fn.setdefault(p, {})
            f[route.value] = f.get(route.value, 0) + 1

    def stats(self) -> dict:
        flic = self.machine.bus.flic
        return {
            "events": self.events,
            "raised": self.outcomes.get(Raised.RAISED.value, 0),
            "suppressed": {"summary": self.outcomes.get(Raised.SUMMARY.value, 0),
                           "ais": self.outcomes.get(Raised.AIS.value, 0)},
            "beyond_noi": self.beyond_noi,
            "delivered": flic.delivered,
            "policies": {p: {"routes": {r: self.routes[p].get(r, 0) for r in IRQ_ROUTES},
                             "reasons": dict(self.reasons[p]),
                             "skip_host": sum(self.routes[p].get(r.value, 0) for r in SKIPS_HOST)}
                         for p in self.policies},
            "functions": self.functions,
        }
