"""The decision cache: decisions memoised per event kind and handle within an epoch.

A policy decision depends only on the instruction, the handle in its request
register and what the host records for the function the handle names
(policy.py, Machine.execute).  Only configuration instructions (CLP, MPCIFC)
change those records, so the model runs fully for them and for the first
event of each key per *epoch*; an epoch ends when a configuration
instruction actually changed the records (``decision_state``).  The other
events take the decisions computed for their key.
"""
from __future__ import annotations

from collections import Counter
from typing import NamedTuple


class Decisions(NamedTuple):
    index: int        # the instruction's row in firmware_model/zpci_insns.def
    routes: tuple     # one route value per policy, in the replay's policy order


class EpochCache:
    """Counts of events per key in the current epoch and the decisions taken for each key.

    The replay loop counts a repeat itself (``counts[key] += 1``: the hot
    path); ``totals`` collects every epoch's counts per Decisions.
    """

    __slots__ = ("counts", "decided", "totals", "epochs")

    def __init__(self):
        self.counts: dict = {}           # key -> events in this epoch
        self.decided: dict = {}          # key -> Decisions
        self.totals: Counter = Counter()  # Decisions -> events
        self.epochs = 0

    def first(self, key, decisions: Decisions) -> None:
        """The first event of ``key`` in this epoch, decided by the full model."""
        self.decided[key] = decisions
        self.counts[key] = 1

    def end_epoch(self) -> None:
        """The decision records changed: fold this epoch's counts, forget its decisions."""
        decided, totals = self.decided, self.totals
        for key, c in self.counts.items():
            totals[decided[key]] += c
        self.counts.clear()              # in place: the loop holds the dict
        decided.clear()
        self.epochs += 1

    def finish(self) -> Counter:
        self.end_epoch()
        return self.totals


def decision_state(machines) -> object:
    """Everything a decision (or a path's decline) reads besides the instruction.

    Machine.execute decides from the handle, the VM's interpretation control
    and GISA, and the host's view of the function the handle resolves to;
    the firmware and KVM paths decline on the same records (IOAT present, a
    vfio DMA limit).  A configuration instruction that leaves all of it as it
    was does not end the cache's epoch.
    """
    out = []
    try:
        for m, *_ in machines:
            vm = m.vm
            out.append((vm.use_zpci_interp, vm.gisa, vm.id,
                        tuple((hf.fh, hf.plugged, hf.view(), hf.ioat is None)
                              for hf in m.host.functions),
                        tuple((fn.fh, fn.ioat_enabled, fn.dma_avail is None)
                              for fn in m.bus.functions)))
    except AttributeError:         # a Machine without these records: every change counts
        return object()
    return tuple(out)
