"""``--check``: what the model did differently from the recording, or why an event cannot be judged."""
from __future__ import annotations

from emulator.replay.standins import ReplayGuest
from emulator.trace.format import F_CC, F_INCOMPLETE, F_PGM_KNOWN, F_PSW, Event


def expected_regs(ev: Event) -> dict[int, int]:
    """The registers after the instruction as recorded: inputs, overwritten by outputs."""
    exp = dict(ev.regs_in)
    exp.update(ev.regs_out)
    return exp


def compare(ev: Event, outcome, g: ReplayGuest, all_writes: bool = True) -> list[str]:
    """What the model did differently from the recording (empty: identical).

    ``all_writes``: the recording saw every store the instruction made (boot
    traces); an import holds only the operand blocks, so a model store
    elsewhere (e.g. an FMB update) cannot be judged there.
    """
    out = []
    comp = outcome.completion
    f = ev.flags
    if f & F_PGM_KNOWN:
        want = ev.pgm or None
        if comp.pgm != want:
            out.append(f"program exception {comp.pgm and hex(comp.pgm)} recorded {want and hex(want)}")
    if comp.pgm is None and f & F_CC:
        if comp.cc is None:
            if f & F_PSW and (ev.pswm_before >> 44) & 3 != ev.cc:
                out.append(f"cc unchanged, recorded cc {(ev.pswm_before >> 44) & 3} -> {ev.cc}")
        elif comp.cc != ev.cc:
            out.append(f"cc {comp.cc} recorded {ev.cc}")
    exp = expected_regs(ev)
    outmask = sum(1 << r for r, _ in ev.regs_out)
    for r in range(16):
        if r in exp:
            if g.gprs[r] != exp[r]:
                out.append(f"r{r} {g.gprs[r]:#x} recorded {exp[r]:#x}")
        elif (g.written_regs >> r) & 1:
            out.append(f"r{r} written ({g.gprs[r]:#x}), recorded unchanged")
        elif (outmask >> r) & 1:
            out.append(f"r{r} not written")
    for a, d in ev.writes:
        got = g.peek(a, len(d))
        if got is None:
            out.append(f"memory {a:#x}+{len(d)} not written")
        elif got != d:
            i = next(i for i in range(len(d)) if got[i] != d[i])
            j = min(len(d), i + 8)
            out.append(f"memory {a:#x}+{len(d)} differs at +{i:#x}: {got[i:j].hex()} "
                       f"recorded {d[i:j].hex()}")
    for a, d in g.writes if all_writes else ():
        if not any(wa <= a and a + len(d) <= wa + len(wd) for wa, wd in ev.writes):
            before = None
            for ra, rd in ev.reads:
                if ra <= a and a + len(d) <= ra + len(rd):
                    before = rd[a - ra:a - ra + len(d)]
            if before != d:
                out.append(f"unrecorded write to {a:#x}+{len(d)}")
    return out


def unchecked_reason(ev: Event, g: ReplayGuest) -> str | None:
    """Why the event's result cannot be judged against the recording (None: it can)."""
    if ev.flags & F_INCOMPLETE:
        return "inputs incomplete in trace"
    if g.missing:
        return "model read unrecorded input"
    if not ev.flags & F_PGM_KNOWN:
        return "program exception not recorded"
    return None
