"""Events whose inputs the trace lacks: run on placeholders, then keep the recorded outcome.

A recording made as linux-guest-traces.md describes holds an RPCIT's
registers but not the DMA table entries its walk reads (the importer flags
such events INCOMPLETE).  The model still runs them, so every policy's
decision is counted, but what it computes from placeholders is not a result
to judge: the event is counted unchecked.  What it leaves behind must be
the state the recording shows, or a model-made error state would turn every
later load and store of the function into a false mismatch.  So the event
runs on each placeholder in turn until the model's completion is the
recorded one, and that run's state is kept; when none reproduces it, the
functions are put back as they were before the event.
"""
from __future__ import annotations

from typing import NamedTuple

from emulator.replay.compare import compare
from emulator.replay.standins import ReplayGuest
from emulator.trace.format import Event

# Placeholders for the table entries an RPCIT's walk reads: first an
# invalid entry at every level (0x20 invalidates region and segment table
# entries, 0x400 page table entries: the walk unmaps, cc 0, what a guest
# refreshing a range it just unmapped sees), then zeros (not a valid table
# entry of any level: the walk fails, the function enters the error state,
# what a recorded cc 1 shows).
INVALID_ENTRY = (0x420).to_bytes(8, "big")
RPCIT_PLACEHOLDERS = (INVALID_ENTRY, None)
ZEROS = (None,)


def placeholders(ev: Event) -> tuple:
    """The 8-byte patterns unrecorded memory reads as for this event, in the order to try (None: zeros)."""
    return RPCIT_PLACEHOLDERS if ev.mnemonic == "RPCIT" else ZEROS


def run(m, d, ev: Event, g: ReplayGuest):
    """Run an incomplete event on ``m`` in ``g`` (the machine's replay guest);
    (outcome, guest) of the run whose completion is the recorded one.

    If no placeholder reproduces the recording, the functions are left as
    before the event and the first run's outcome and guest (a copy) are given.
    """
    saved = save(m.bus)
    first = None
    for fill in placeholders(ev):
        g.reset(ev, fill)
        outcome = m.execute(d, g)
        if not compare(ev, outcome, g, all_writes=False):
            return outcome, g
        restore(m.bus, saved)
        first = first or (outcome, g.copy())
    return first


class FunctionState(NamedTuple):
    """What of a function an instruction's completion changes and later events depend on."""
    state: object          # FnState
    fh: int
    dma_avail: int | None
    iotlb: dict


class BusState(NamedTuple):
    functions: tuple       # one FunctionState per bus function, in bus order
    events: int            # error events raised so far


def save(bus) -> BusState:
    return BusState(tuple(FunctionState(fn.state, fn.fh, fn.dma_avail, dict(fn.iotlb))
                          for fn in bus.functions), len(bus.events))


def restore(bus, saved: BusState) -> None:
    """Put the functions back as ``save`` found them; drop error events raised since."""
    for fn, st in zip(bus.functions, saved.functions):
        fn.state, fn.fh, fn.dma_avail = st.state, st.fh, st.dma_avail
        fn.iotlb.clear()
        fn.iotlb.update(st.iotlb)
    del bus.events[saved.events:]
