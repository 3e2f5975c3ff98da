"""zPCI adapter interruptions: from an MSI-X write to a pending I/O interruption.

The guest-visible path is QEMU 7.2's (the reference, as for every
instruction), the same under every policy:

* ``msi_deliver`` is s390_msi_ctrl_write: the vector (data & 0x7ff) sets bit
  aibvo + vector of the function's adapter-interruption bit vector (AIBV) and
  bit aisbo of its summary (AISB), both numbered from the most significant
  bit of the first byte; an interruption is raised only when the summary
  *byte* was zero before (QEMU tests the old byte, not the bit).  QEMU checks
  neither the registration nor noi nor sum: an unregistered function's bits
  land at absolute 0 + offset, as QEMU's zeroed routes put them.
* ``raise_adapter_interrupt`` is css_adapter_interrupt through the TCG FLIC
  (adapter interruption suppression, facility 72): in SIC single mode the
  first interruption of an ISC switches it to no-interruptions mode until the
  next SIC.
* ``Flic`` holds the pending I/O interruptions per ISC as QEMU's FLIC does:
  each one queued at the head of its ISC's list, the CPU takes the lowest ISC
  its CR6 enables, the most recently queued first.

How each interrupt reaches the guest is accounting, never semantics
(interpretation is transparent): ``irq_route`` says, per policy, whether the
host injects it (QEMU for its own devices; KVM through an irqfd adapter route
or through AEN host forwarding) or the firmware forwards it into the guest's
GISA (the AEN path of Linux 6.0).  ``InterruptAccounting`` counts every
adapter event under every policy at once; docs/interrupts.md is the table.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from .arch import MASK64, FnState, Pec, ZPCI_MSI_VEC_MASK
from .policy import POLICY_NAMES

# kind of the trace NOTE record a recorded run leaves its interrupt counts in
IRQ_NOTE = "adapter-interrupts"
IO_INT_WORD_AI = 0x80000000        # I/O-interruption word: adapter interruption
IO_INT_WORD_ISC_SHIFT = 27
NUM_ISC = 8


def isc_mask(isc: int) -> int:
    """The ISC's bit in CR6 bits 32-39 (as a byte: 0x80 >> isc), GISA IPM order too."""
    return 0x80 >> isc


@dataclass(frozen=True, slots=True)
class IoInterruption:
    """What an I/O interruption stores at lowcore 0xb8-0xc3 (TPI's interruption code)."""
    subchannel_id: int
    subchannel_nr: int
    parm: int
    word: int

    @property
    def isc(self) -> int:
        return (self.word >> IO_INT_WORD_ISC_SHIFT) & 7

    @classmethod
    def adapter(cls, isc: int) -> "IoInterruption":
        # css_adapter_interrupt: no subchannel, no parameter
        return cls(0, 0, 0, IO_INT_WORD_AI | (isc << IO_INT_WORD_ISC_SHIFT))


class Flic:
    """QEMU's TCG floating-interrupt controller, I/O part: pending interruptions per ISC.

    ``pending`` has the byte bit (``isc_mask``) of every ISC with something
    queued, so ``has_io(cr6)`` is one AND.  ``observer`` (set by the
    accounting) sees every adapter event; ``vcpu_idle`` is what the CPU says
    about itself (in an enabled wait), which only the routes read.
    """

    __slots__ = ("io", "pending", "delivered", "observer", "vcpu_idle")

    def __init__(self):
        self.io: list[list[IoInterruption]] = [[] for _ in range(NUM_ISC)]
        self.pending = 0
        self.delivered = 0
        self.observer = None
        self.vcpu_idle = False

    def inject_io(self, irq: IoInterruption) -> None:
        self.io[irq.isc].append(irq)           # the list's end is QEMU's head
        self.pending |= isc_mask(irq.isc)

    def has_io(self, cr6: int) -> bool:
        return bool(self.pending & (cr6 >> 24) & 0xFF)

    def dequeue_io(self, cr6: int) -> IoInterruption | None:
        """qemu_s390_flic_dequeue_io: the lowest enabled ISC, its newest interruption."""
        enabled = self.pending & (cr6 >> 24) & 0xFF
        if not enabled:
            return None
        for isc in range(NUM_ISC):
            if enabled & isc_mask(isc):
                q = self.io[isc]
                irq = q.pop()
                if not q:
                    self.pending &= ~isc_mask(isc)
                self.delivered += 1
                return irq
        return None                            # not reached: a pending bit has a queue

    def reset(self) -> None:
        for q in self.io:
            q.clear()
        self.pending = 0


# --- the adapter-event path (guest-visible, QEMU 7.2) ---------------------------

class Raised(enum.Enum):
    """What became of one adapter event's interruption."""
    RAISED = "raised"                  # an I/O adapter interruption was made pending
    SUMMARY = "summary-set"            # the summary byte was already non-zero: none raised
    AIS = "ais-suppressed"             # SIC single mode had already given its one interruption


def _set_indicator(bus, addr: int, bits: int) -> int:
    """set_ind_atomic: OR bits into a guest byte; the previous value, 0xff on failure."""
    mem = bus.memory
    old = mem.read(addr & MASK64, 1) if mem is not None else None
    if old is None:
        bus.error_event(Pec.AIRERR, None)
        return 0xFF
    mem.write(addr & MASK64, bytes([old[0] | bits]))
    return old[0]


def raise_adapter_interrupt(bus, isc: int) -> bool:
    """css_adapter_interrupt via the FLIC, with SIC's single-interruption suppression.

    SIC keeps its state where handle_sic sets it: ``bus.ais_single`` (QEMU's
    simm) and ``bus.ais_pending`` (nimm).  False: suppressed.
    """
    if isc in bus.ais_single:
        if isc in bus.ais_pending:
            return False
        bus.ais_pending.add(isc)
    bus.adapter_interrupts.append(isc)
    bus.flic.inject_io(IoInterruption.adapter(isc))
    return True


def msi_deliver(fn, data: int) -> None:
    """s390_msi_ctrl_write: vector -> AIBV bit, summary bit, maybe an adapter interrupt."""
    if fn.state is not FnState.ENABLED:
        return
    bus = fn.bus
    vec = data & ZPCI_MSI_VEC_MASK
    bit = fn.aibvo + vec
    _set_indicator(bus, fn.aibv + bit // 8, 0x80 >> (bit % 8))
    if _set_indicator(bus, fn.aisb + fn.aisbo // 8, 0x80 >> (fn.aisbo % 8)) != 0:
        raised = Raised.SUMMARY
    elif raise_adapter_interrupt(bus, fn.isc):
        raised = Raised.RAISED
    else:
        raised = Raised.AIS
    observer = bus.flic.observer
    if observer is not None:
        observer(fn, vec, raised)


# --- how an interrupt reaches the guest, per policy (accounting only) -----------

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
