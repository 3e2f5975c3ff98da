"""The report's interrupt columns: adapter interrupts per workload and policy, and
how many of them skip the host.

A trace holds zPCI instructions, not interrupts: a device's MSI is no event,
and replay serves repeated doorbells from a cache without running the device.
So the counts come from the run that recorded the trace: ``zpci-emu boot
--trace`` leaves the firmware model's interrupt accounting (every policy at
once, functions passed through) in a NOTE record of kind ``IRQ_NOTE``.  A
trace without that record (recorded before interrupts were accounted, or a
Linux capture) has no counts, shown as '-', never as 0.  With ``--assume
as-recorded`` the functions are QEMU's own devices, whose interrupts QEMU
injects every one: none skips the host.
"""
from __future__ import annotations

from pathlib import Path

from emulator.errors import UserError
from emulator.trace.format import RecordType
from emulator.trace.reader import TraceError, TraceReader
from firmware_model.irq import IRQ_NOTE


def recorded_interrupts(path) -> dict | None:
    """The interrupt accounting a recorded run left in the trace, or None."""
    if Path(path).suffix != ".zpt":
        return None
    try:
        rd = TraceReader(path)
    except (TraceError, UserError):
        return None
    found = None
    try:
        for rtype, buf, start, n, off in rd.body():
            if rtype == RecordType.NOTE:
                note = rd.other_record(rtype, buf, start, n, off)
                if note.kind == IRQ_NOTE:
                    found = note.data
    except TraceError:
        return None             # replay reports what is wrong with the file
    finally:
        rd.close()
    return found


def interrupt_columns(note: dict | None, policy: str, assume: str) -> tuple[int | None, int | None]:
    """(adapter events, events delivered without the host) for one row; None: not recorded."""
    if note is None:
        return None, None
    events = note.get("events", 0)
    if assume != "passthrough":
        return events, 0
    per = note.get("policies", {}).get(policy)
    return events, (per.get("skip_host", 0) if per is not None else None)


def add_interrupt_columns(rep: dict, assume: str) -> None:
    """Adds ``interrupts`` and ``interrupts_skip_host`` to every summary row of a report."""
    notes: dict = {}
    for row in rep["summary"]:
        path = row["trace"]
        if path not in notes:
            notes[path] = recorded_interrupts(path)
        row["interrupts"], row["interrupts_skip_host"] = interrupt_columns(
            notes[path], row["policy"], assume)


def cell(row: dict) -> str:
    """'skipping/all' for the table, '-' when the trace has no counts."""
    skip = row.get("interrupts_skip_host")
    return "-" if skip is None else f"{skip}/{row['interrupts']}"
