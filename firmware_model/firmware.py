"""The firmware's own zPCI interpretation: load/store, and (what-if) RPCIT.

Firmware serves only functions the host enabled for interpretation with
this guest's GISA (the decision established that before we run); it finds
the function by the handle the guest presents, through ``fns`` (the
host's handle map), never through QEMU's bus.  What the guest then sees
must equal QEMU's answer for the same state, so the checks run in QEMU's
order; the BAR/config access rules, PCISTB past the function lookup and the
measurement counters are shared with userspace (userspace.pci_load /
pci_store / pcistb_access / count).

``execute`` returns None where firmware would not complete the instruction
itself (it intercepts instead); the router then sends it to userspace.
"""
from __future__ import annotations

from firmware_model.arch import (
    FMB_CNT_LD, FMB_CNT_RPCIT, FMB_CNT_ST, FnState, LsStatus, MASK64, ModStatus, Pec,
)
from firmware_model.insns import TABLE
from firmware_model.kvm import registration_matches, shadow_function
from firmware_model.outcome import Completion
from firmware_model.userspace import (
    CC0 as _CC0, CC1 as _CC1, CC3 as _CC3, NOT_USABLE as _NOT_USABLE, PGM_OPERAND as _OPND,
    PGM_PRIVILEGED as _PRIV, PGM_SPECIFICATION as _SPEC, Fault, count, fmb_update, pci_load,
    pci_store, pcistb_access, set_status,
)

_OPERAND = Fault.OPERAND
_ERROR, _PERM = FnState.ERROR, FnState.PERMANENT_ERROR
_ST_MASK = ~0xFF000000 & MASK64


class Firmware:
    """Interpretation for one VM's vCPUs.

    ``fns`` maps a handle the guest may present to (HostFunction,
    ZpciFunction) for the functions the host enabled for interpretation
    with this VM's GISA (the firmware's function table); a mapping, so the
    lookup is one dict probe.
    """

    __slots__ = ("fns", "counts", "_dispatch", "found")

    def __init__(self, fns):
        self.fns = fns
        self.counts = [0] * len(TABLE)       # instructions completed, per table row
        handlers = {"PCILG": self.pcilg, "PCISTG": self.pcistg, "PCISTB": self.pcistb,
                    "RPCIT": self.rpcit}
        self._dispatch = tuple(handlers.get(i.mnemonic, self._intercept) for i in TABLE)
        # Per table row, the load/store handler for a caller that already looked the
        # request's handle up in ``fns`` (Machine.execute): ``h(d, guest, req, found)``
        # with ``req`` the request register and ``found[1].fh == req >> 32``.  It gives
        # what the row's ``execute`` gives, without the second lookup; the caller counts
        # a completion in ``counts`` as ``execute`` does.  None: no such shortcut.
        direct = {"PCILG": self.pcilg_found, "PCISTG": self.pcistg_found,
                  "PCISTB": self.pcistb_found}
        self.found = tuple(direct.get(i.mnemonic) for i in TABLE)

    def execute(self, d, guest) -> Completion | None:
        c = self._dispatch[d.index](d, guest)
        if c is not None:
            self.counts[d.index] += 1
        return c

    def _intercept(self, d, guest):
        return None

    def stats(self) -> dict:
        return {TABLE[i].mnemonic: n for i, n in enumerate(self.counts) if n}

    # -- load/store --------------------------------------------------------

    def pcilg(self, d, guest):
        return self._ls_entry(d, guest, self.pcilg_found)

    def _ls_entry(self, d, guest, found_path):
        """PCILG/PCISTG up to the function: None where firmware does not know the handle."""
        if guest.problem_state:
            return _PRIV
        if d.r2 & 1:
            return _SPEC
        req = guest.gpr(d.r2)
        found = self.fns.get(req >> 32)
        if found is None:
            return None
        if found[1].fh != req >> 32:
            return _CC3
        return found_path(d, guest, req, found)

    def pcilg_found(self, d, guest, req, found):
        if guest.problem_state:
            return _PRIV
        r2 = d.r2
        if r2 & 1:
            return _SPEC
        fn = found[1]
        state = fn.state
        if state is _ERROR or state is _PERM:
            guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.BLOCKED << 24))
            return _CC1
        value = pci_load(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF)
        if value.__class__ is Fault:
            if value is _OPERAND:
                return _OPND
            guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.INVAL_AS << 24))
            return _CC1
        fn.counters[FMB_CNT_LD] += 1
        if fn.fmb_addr:
            fmb_update(fn, guest)
        guest.set_gpr(d.r1, value)
        return _CC0

    def pcistg(self, d, guest):
        return self._ls_entry(d, guest, self.pcistg_found)

    def pcistg_found(self, d, guest, req, found):
        if guest.problem_state:
            return _PRIV
        r2 = d.r2
        if r2 & 1:
            return _SPEC
        fn = found[1]
        state = fn.state
        if state is _ERROR or state is _PERM:
            guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.BLOCKED << 24))
            return _CC1
        fault = pci_store(fn, (req >> 16) & 0xF, guest.gpr(r2 + 1), req & 0xF, guest.gpr(d.r1))
        if fault is not None:
            if fault is _OPERAND:
                return _OPND
            guest.set_gpr(r2, (req & _ST_MASK) | (LsStatus.INVAL_AS << 24))
            return _CC1
        fn.counters[FMB_CNT_ST] += 1
        if fn.fmb_addr:
            fmb_update(fn, guest)
        return _CC0

    def pcistb(self, d, guest):
        if guest.problem_state:
            return _PRIV
        req = guest.gpr(d.r1)
        found = self.fns.get(req >> 32)
        if found is None:
            return None
        if found[1].fh != req >> 32:
            return _CC3
        return self.pcistb_found(d, guest, req, found)

    def pcistb_found(self, d, guest, req, found):
        if guest.problem_state:
            return _PRIV
        return pcistb_access(found[1], d, guest, req)

    # -- what-if: RPCIT against the IOAT the host gave the firmware -----------

    def rpcit(self, d, guest):
        if guest.problem_state:
            return _PRIV
        r1, r2 = d.r1, d.r2
        if r2 & 1:
            return _SPEC
        fh = guest.gpr(r1) >> 32
        found = self.fns.get(fh)
        if found is None:
            return None
        hf, fn = found[0], found[1]
        ioat = hf.ioat
        if ioat is None or fn.dma_avail is not None or not registration_matches(fn, ioat):
            # no anchor to refresh against, a budget only userspace keeps, or a
            # registration that is not the guest's: intercept
            return None
        if fn.fh != fh or fn.state in _NOT_USABLE:
            return _CC3
        if fn.state is _ERROR:
            set_status(guest, r1, ModStatus.ERROR_RECOVER)
            return _CC1
        start = guest.gpr(r2)
        end = (start + guest.gpr(r2 + 1)) & MASK64
        if not fn.iota:
            error, where = Pec.INVALAS, start
        elif end < fn.pba or start > fn.pal:
            error, where = Pec.OORANGE, start
        else:
            error, where, _ = shadow_function(guest, fn, hf, ioat, start, end)
        if error:
            fn.state = FnState.ERROR
            set_status(guest, r1, LsStatus.FUNC_IN_ERR)
            fn.bus.error_event(error, fn, where)
            return _CC1
        count(fn, FMB_CNT_RPCIT, guest)
        return _CC0

