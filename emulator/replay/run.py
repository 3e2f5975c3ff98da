"""The replay loop: every event of a trace through one machine per policy.

Outside ``--check`` the decision cache (epochs.py) lets the full model run
only for configuration instructions and the first event of each key per
epoch; with ``--check`` every event runs fully and is compared with the
recording (compare.py).  Memory stays flat: the reader holds one chunk, the
cache one epoch.
"""
from __future__ import annotations

import struct
import sys

from emulator.errors import UserError
from emulator.replay.compare import compare, expected_regs, unchecked_reason
from emulator.replay.epochs import Decisions, EpochCache, decision_state
from emulator.replay.heads import CONFIG, KEYED, KIND_KEY, HeadKinds, decoded
from emulator.replay.machines import ASSUME, config_from_header, make_machine
from emulator.replay.results import Mismatch, WorkloadResult
from emulator.replay import incomplete, progress
from emulator.trace.format import EVENT_HEAD, F_CC, F_INCOMPLETE, Event, RecordType
from emulator.trace.reader import TraceReader, parse_event
from emulator.trace.text import block_insns
from firmware_model.insns import TABLE
from firmware_model.policy import POLICY_NAMES

_EV = int(RecordType.EVENT)
_EH = EVENT_HEAD.size
_K0, _K1 = KIND_KEY.start, KIND_KEY.stop


class FileReplay:
    """One trace's replay: its reader, its machines (one per policy) and its result."""

    def __init__(self, path, policies, assume, check, on_mismatch, progress, fast):
        self.path = str(path)
        self.rd = TraceReader(path)
        h = self.rd.header
        self.check = check
        self.fast = fast and not check
        self.on_mismatch = on_mismatch
        self.progress = progress
        self.memsize = h.memory
        self.all_writes = h.source.value in ("boot", "synthetic")
        self.policies = tuple(policies)
        cfg = config_from_header(h)
        stand_ins: list = []
        ids = {f.kind: (f.vendor_id, f.device_id) for f in h.functions
               if f.vendor_id is not None and f.device_id is not None}
        self.machines = [make_machine(cfg, p, ASSUME[assume], self.path, stand_ins,
                                      live=self.all_writes, ids=ids, memsize=h.memory)
                         for p in self.policies]
        self.res = WorkloadResult(self.path, h.workload or self.path, h.source.value, h.stream.value,
                                  self.policies, routes={p: {} for p in self.policies},
                                  stand_ins=sorted(set(stand_ins)))
        self.decoded: dict = {}
        # A chunk of a split trace (parallel.py) holds --check back while the
        # state before its start is not known: then this names why, and
        # ``release(ev)`` says whether the machines' state is known again after ev.
        self.held: str | None = None
        self.new_cache = EpochCache

    def release(self, ev) -> bool:
        return False

    # -- one event through every policy's machine
    def run_full(self, ev: Event) -> tuple:
        """Run the full model on ``ev`` under every policy (comparing under --check); the routes."""
        key = (ev.insn, ev.addr)
        d = self.decoded.get(key)
        if d is None:
            if len(self.decoded) > 4096:
                self.decoded.clear()
            d = self.decoded[key] = decoded(ev.insn, ev.addr)
        loaded = None
        if (ev.mnemonic in ("PCILG", "PCILGI") and ev.flags & F_CC and ev.cc == 0
                and not ev.pgm):
            r1 = ev.insn[3] >> 4
            loaded = expected_regs(ev).get(r1)
        partial = ev.flags & F_INCOMPLETE
        routes = []
        res = self.res
        reasons = set()
        check = self.check and self.held is None
        for p, (m, devices, g) in zip(self.policies, self.machines):
            for dev in devices:
                dev.loaded = loaded
            if partial:
                outcome, g = incomplete.run(m, d, ev, g)
            else:
                g.reset(ev)
                outcome = m.execute(d, g)
            routes.append(outcome.decision.route.value)
            if check:
                why = unchecked_reason(ev, g)
                if why is not None:
                    reasons.add(why)
                    continue
                diffs = compare(ev, outcome, g, self.all_writes)
                if diffs:
                    reasons.add("mismatch")
                    for what in diffs:
                        self.on_mismatch(Mismatch(self.path, ev.seq, ev.addr, ev.mnemonic, p, what))
        for m, devices, _ in self.machines:
            for dev in devices:
                dev.loaded = None
            # Interrupts and error events the devices raised are outputs no
            # replayed instruction reads back; drop them so memory stays flat.
            bus = m.bus
            if len(bus.adapter_interrupts) > 4096:
                del bus.adapter_interrupts[:]
                bus.flic.reset()        # no CPU takes them: queued no more than were raised
            if len(bus.events) > 4096:
                del bus.events[:]
        if self.check and not check:
            res.unchecked[self.held] += 1
            if self.release(ev):
                self.held = None
        elif self.check:
            if "mismatch" in reasons:
                res.mismatched += 1
                res.checked += 1
            elif reasons:
                res.unchecked[sorted(reasons)[0]] += 1
            else:
                res.checked += 1
                res.passed += 1
        res.full_model_events += 1
        return tuple(routes)

    def run(self) -> WorkloadResult:
        rd, res = self.rd, self.res
        gen = rd.body()
        other = rd.other_record
        binsn: list[int] = []
        insns = 0
        full = rd.full
        self.heads = heads = HeadKinds(rd)
        specs = heads.specs
        cache = self.new_cache()
        counts = cache.counts
        last = rd.last_seq          # -1 and 0 unless resumed at a seek point (parallel.py)
        nev = rd.n_events
        unpack_seq = struct.Struct("<Q").unpack_from
        fast = self.fast
        memsize = self.memsize
        bar = progress.progress_bar(rd) if self.progress else None
        cached_stride, full_stride = progress.CACHED_STRIDE, progress.FULL_STRIDE
        try:
            for rtype, buf, start, n, off in gen:
                if rtype != _EV:
                    rd.n_events, rd.last_seq = nev, last
                    rec = other(rtype, buf, start, n, off)
                    if rtype == RecordType.RUNS:
                        insns += sum(cnt * binsn[b] for b, cnt in rec.pairs)
                    elif rtype == RecordType.BLOCK:
                        binsn.append(block_insns(rec.code, rec.addr))
                    continue
                # The head from the instruction to the memory counts decides the
                # record's layout: one dict lookup checks it for the whole kind.
                spec = specs.get(buf[start + _K0:start + _K1])
                if spec is None:
                    rd.n_events, rd.last_seq = nev, last
                    spec = heads.learn(buf, start, n, off)
                index, fh_off, role, explen, memst, lens, sid = spec
                (seqv,) = unpack_seq(buf, start)
                if seqv <= last or rd.ended:
                    rd.last_seq = last
                    raise rd.error(off, "data after the END record" if rd.ended
                                   else f"event seq {seqv} does not follow {last}")
                prev, last = last, seqv
                nev += 1
                if n != explen or memst is not None:
                    if n != explen or memst.unpack_from(buf, start + _EH)[1::2] != lens or (
                            memsize and max(a + ln for a, ln in zip(
                                memst.unpack_from(buf, start + _EH)[0::2], lens)) > memsize):
                        rd.last_seq = prev
                        parse_event(rd, buf, start, n, off)      # the full check; raises if bad
                if fast and role == KEYED:
                    # A path may decline (and userspace serve) depending on the
                    # instruction's fields and the problem state as well as on the
                    # handle: the key holds the event's head kind (instruction
                    # bytes included) and the PSW byte with the problem-state bit.
                    k = (sid, buf[start + fh_off:start + fh_off + 4], buf[start + 22])
                    c = counts.get(k)
                    if c is not None:
                        counts[k] = c + 1
                        if bar is not None and not nev & cached_stride:
                            bar.update(nev)
                        continue
                    rd.last_seq = prev
                    cache.first(k, Decisions(index, self.run_full(parse_event(rd, buf, start, n, off))))
                else:
                    rd.last_seq = prev
                    if bar is not None and not nev & full_stride:
                        bar.update(nev)
                    if role == CONFIG and fast:
                        before = decision_state(self.machines)
                    routes = self.run_full(parse_event(rd, buf, start, n, off))
                    cache.totals[Decisions(index, routes)] += 1
                    if role == CONFIG and fast and decision_state(self.machines) != before:
                        cache.end_epoch()
            rd.n_events, rd.last_seq = nev, last
            rd.finish()
        finally:
            if bar is not None:
                bar.close()
            rd.close()
        totals = cache.finish()
        for (index, routes), c in totals.items():
            mn = TABLE[index].mnemonic
            res.events += c
            res.by_mnemonic[mn] += c
            for p, r in zip(self.policies, routes):
                per = res.routes[p].setdefault(mn, {})
                per[r] = per.get(r, 0) + c
        res.instructions = insns if full else None
        res.block_execs = rd.n_execs
        return res


def check_options(policies, assume: str) -> tuple:
    """The policies to replay under (all when none are named), after checking the names."""
    policies = tuple(policies or POLICY_NAMES)
    for p in policies:
        if p not in POLICY_NAMES:
            raise UserError(f"unknown policy {p!r} (choose from {', '.join(POLICY_NAMES)}, all)")
    if assume not in ASSUME:
        raise UserError(f"unknown --assume {assume!r} (passthrough, as-recorded)")
    return policies


def replay(paths, policies=None, assume: str = "passthrough", check: bool = False,
           on_mismatch=None, progress: bool | None = None, fast: bool = True) -> list[WorkloadResult]:
    """Replay each trace; one WorkloadResult per file."""
    policies = check_options(policies, assume)
    if progress is None:
        progress = sys.stderr.isatty()
    if on_mismatch is None:
        def on_mismatch(m):
            print(m)
    out = []
    for p in paths:
        out.append(FileReplay(p, policies, assume, check, on_mismatch, progress, fast).run())
    return out
