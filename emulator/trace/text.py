"""Readable renderings of trace records (``zpci-emu trace show``/``stats``)."""
from __future__ import annotations

from collections import Counter

from emulator.decode import count_insns, decode_one
from emulator.trace.format import Block, End, Event, EventFlag, Mark, Note, Runs
from emulator.trace.reader import TraceReader
from firmware_model.insns import StatusReg


def block_insns(code: bytes, addr: int = 0) -> int:
    """Instructions in a block's code: the native count-only walk (length from the ILC)."""
    return count_insns(code, addr, per_index=False).total


class _Executions:
    """Block executions and the instructions they ran, from Block and Runs records."""

    def __init__(self):
        self.sizes: dict[int, int] = {}      # block id -> instructions
        self.execs = self.insns = 0

    def add(self, rec) -> bool:
        """Counts a Block or Runs record; False for any other record."""
        if isinstance(rec, Block):
            self.sizes[rec.block_id] = block_insns(rec.code, rec.addr)
        elif isinstance(rec, Runs):
            for bid, n in rec.pairs:
                self.execs += n
                self.insns += n * self.sizes[bid]
        else:
            return False
        return True


def _status_reg(ev: Event) -> int | None:
    st = ev.info.status_reg
    if st is StatusReg.NONE:
        return None
    d = decode_one(ev.insn, ev.addr)
    return {StatusReg.R1: d.r1, StatusReg.R2: d.r2, StatusReg.R2P1: d.r2 | 1}[st]


def _mem(items) -> str:
    return " ".join(f"{a:#x}+{len(d)}" for a, d in items)


def format_event(ev: Event, verbose: bool = False) -> str:
    f = ev.flags
    parts = [f"#{ev.seq} {ev.mnemonic} @{ev.addr:x} [{ev.insn.hex()}]"]
    if f & EventFlag.CC:
        cc_note = ""
        if f & EventFlag.PSW and (ev.pswm_before >> 44) & 3 == ev.cc and ev.mnemonic == "SIC":
            cc_note = " (unchanged)"
        parts.append(f"cc={ev.cc}{cc_note}")
    if f & EventFlag.PGM_KNOWN:
        if ev.pgm:
            parts.append(f"pgm={ev.pgm:#x}")
    else:
        parts.append("pgm=?")
    sr = _status_reg(ev)
    if f & EventFlag.CC and ev.cc == 1 and sr is not None:
        after = dict(ev.regs_out).get(sr, dict(ev.regs_in).get(sr))
        if after is not None:
            parts.append(f"status={(after >> 24) & 0xFF}")
    parts.append("in: " + " ".join(f"r{r}={v:x}" for r, v in ev.regs_in))
    if ev.regs_out:
        parts.append("out: " + " ".join(f"r{r}={v:x}" for r, v in ev.regs_out))
    if ev.reads:
        parts.append(f"read {_mem(ev.reads)}")
    if ev.writes:
        parts.append(f"wrote {_mem(ev.writes)}")
    tags = [n.name.lower() for n in (EventFlag.INCOMPLETE, EventFlag.DMA_TABLES) if f & n]
    if tags:
        parts.append("[" + ",".join(tags) + "]")
    line = "  ".join(parts)
    if verbose:
        for what, items in (("read", ev.reads), ("wrote", ev.writes)):
            for a, d in items:
                line += f"\n    {what} {a:#x}: {d[:64].hex()}{'...' if len(d) > 64 else ''}"
    return line


def show(path, out, verbose: bool = False, limit: int | None = None) -> None:
    with TraceReader(path) as rd:
        h = rd.header
        print(f"# {path}: {h.source.value} trace, {h.stream.value}, memory {h.memory:#x}, "
              f"workload {h.workload or '-'}", file=out)
        if h.detail:
            print(f"# {h.detail}", file=out)
        for fn in h.functions:
            print(f"# function fid {fn.fid} uid {fn.uid} {fn.kind} fh "
                  + ",".join(f"{x:#x}" for x in fn.fhs), file=out)
        pending = _Executions()         # since the last line printed

        def print_pending():
            if pending.execs:
                print(f"  ... {pending.execs} blocks, {pending.insns} instructions", file=out)
                pending.execs = pending.insns = 0

        shown = 0
        for rec in rd:
            if pending.add(rec):
                continue
            if isinstance(rec, Event):
                print_pending()
                print(format_event(rec, verbose), file=out)
                shown += 1
                if limit is not None and shown >= limit:
                    return
            elif isinstance(rec, Mark):
                print(f"== {rec.label} (from seq {rec.next_seq})", file=out)
            elif isinstance(rec, Note):
                print(f"note {rec.kind}: {rec.data}", file=out)
            elif isinstance(rec, End):
                print_pending()
                print(f"end: {rec.events} events, {rec.block_execs} block executions, "
                      f"{rec.blocks} blocks", file=out)


def stats(path) -> dict:
    by_mn: Counter = Counter()
    by_cc: Counter = Counter()
    flags: Counter = Counter()
    runs = _Executions()
    marks = notes = 0
    phase = ""
    by_phase: dict[str, int] = {}
    by_phase_mn: dict[str, Counter] = {}
    with TraceReader(path) as rd:
        h = rd.header
        for rec in rd:
            if runs.add(rec):
                continue
            if isinstance(rec, Event):
                by_mn[rec.mnemonic] += 1
                by_phase[phase] = by_phase.get(phase, 0) + 1
                by_phase_mn.setdefault(phase, Counter())[rec.mnemonic] += 1
                if rec.flags & EventFlag.CC:
                    by_cc[(rec.mnemonic, rec.cc)] += 1
                if rec.flags & EventFlag.INCOMPLETE:
                    flags["incomplete"] += 1
                if not rec.flags & EventFlag.PGM_KNOWN:
                    flags["pgm-unknown"] += 1
                elif rec.pgm:
                    flags["program-exceptions"] += 1
            elif isinstance(rec, Mark):
                marks += 1
                phase = rec.label
            elif isinstance(rec, Note):
                notes += 1
        compressed = rd.compressed
    return {"file": str(path), "source": h.source.value, "stream": h.stream.value,
            "workload": h.workload, "compressed": compressed,
            "functions": len(h.functions), "events": sum(by_mn.values()),
            "by_mnemonic": dict(sorted(by_mn.items())),
            "by_cc": {f"{m}/{c}": n for (m, c), n in sorted(by_cc.items())},
            "blocks": len(runs.sizes), "block_executions": runs.execs,
            "instructions": runs.insns if h.stream.value == "full" else None,
            "marks": marks, "notes": notes,
            "by_phase": by_phase if marks else {},
            "by_phase_mnemonic": {k: dict(sorted(v.items())) for k, v in by_phase_mn.items()}
            if marks else {}, **dict(flags)}
