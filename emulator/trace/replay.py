"""Streaming replay of traces through the firmware model under every policy.

For each trace the header gives the machine (functions, memory); one
``firmware_model.machine.Machine`` per policy then executes the recorded zPCI
instructions in order, each on a guest rebuilt from the event (registers,
sparse memory from the recorded reads).  Device data comes from the
recording: a ``ReplayDevice`` answers BAR and config reads with the value the
guest received, so a PCILG needs no device state.

Speed: a policy decision depends only on the instruction, the handle in its
request register and the host's view of the function the handle names
(policy.py).  That view changes only through configuration instructions
(CLP, MPCIFC: enable with a GISA, IOAT registration), so outside ``--check``
the model runs fully for those and for the first event of each
(instruction, handle) per *epoch* (the stretch between two configuration
instructions); the others take the decisions computed for their key.  The
counts equal a full run on every event (tests/test_replay_cache.py).
With ``--check`` every event runs fully and is compared with the recording.

Memory stays flat: the reader holds one chunk, the cache holds one epoch.
"""
from __future__ import annotations

import struct
import sys
from collections import Counter
from dataclasses import dataclass, field

from emulator.errors import UserError
from emulator.trace.format import (
    EVENT_HEAD, MEM_HEAD, Event, EventFlag, RecordType, TraceHeader, insn_of, popcount16)
from emulator.trace.reader import TraceReader, parse_event
from emulator.trace.text import block_insns
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.guest import MASK64
from firmware_model.insns import BY_MNEMONIC, TABLE

POLICY_NAMES = ("intercept-all", "linux-6.0", "ioat-assist", "firmware-rpcit")
BASELINE = "intercept-all"
ROUTES = ("firmware", "kvm", "userspace")
ASSUME = {"passthrough": "passthrough", "as-recorded": "as-given"}

# Configuration instructions change what the host knows about a function
# (GISA designation, IOAT path): they end an epoch of the decision cache.
EPOCH_ENDERS = frozenset(BY_MNEMONIC[m].index for m in ("CLP", "MPCIFC"))

_EV = int(RecordType.EVENT)
_EH = EVENT_HEAD.size
_MH = MEM_HEAD.size
_POP = bytes(popcount16(i) for i in range(1 << 16))


def policy_names() -> tuple[str, ...]:
    try:
        from firmware_model.policy import POLICY_NAMES as names
        return tuple(names)
    except ImportError:            # pragma: no cover - the policy module is part of the tree
        return POLICY_NAMES


# --------------------------------------------------------------------------- guest and device

class MissingInput(Exception):
    pass


# An RPCIT recorded without the table entries it walked (the gdb recorder's
# default) reads them as invalid entries: the walk then unmaps instead of
# failing, so the function is not put into the error state by data the trace
# lacks.  The event stays unchecked either way.  0x420 has both the
# region/segment invalid bit (0x20) and the page-table invalid bit (0x400).
INVALID_ENTRY = (0x420).to_bytes(8, "big")


class ReplayGuest:
    """A guest rebuilt from one event: recorded registers, sparse recorded memory.

    Reading a register or memory the recording does not hold gives zeros (or
    ``fill``, repeated at 8-byte alignment) and marks the event incomplete, so
    it is never counted as checked.
    """

    __slots__ = ("gprs", "known", "segs", "memsize", "problem_state", "missing", "written_regs",
                 "writes", "fill")

    def __init__(self, ev: Event, memsize: int, fill: bytes | None = None):
        self.fill = fill
        self.gprs = [0] * 16
        self.known = 0
        for r, v in ev.regs_in:
            self.gprs[r] = v
            self.known |= 1 << r
        self.segs: list[list] = [[a, bytearray(d)] for a, d in ev.reads]
        self.memsize = memsize
        self.problem_state = bool(ev.flags & EventFlag.PSW and (ev.pswm_before >> 48) & 1)
        self.missing: list[str] = []
        self.written_regs = 0
        self.writes: list[tuple[int, bytes]] = []

    def gpr(self, r: int) -> int:
        if not (self.known >> r) & 1 and not (self.written_regs >> r) & 1:
            self.missing.append(f"r{r}")
        return self.gprs[r]

    def set_gpr(self, r: int, value: int) -> None:
        self.gprs[r] = value & MASK64
        self.written_regs |= 1 << r

    def _bounded(self, addr: int, size: int) -> bool:
        return addr >= 0 and size >= 0 and (not self.memsize or addr + size <= self.memsize)

    def peek(self, addr: int, size: int) -> bytes | None:
        """Memory as recorded plus what this event wrote; None where any byte is unknown."""
        out = bytearray(size)
        have = bytearray(size)
        for a, d in self.segs:
            lo, hi = max(a, addr), min(a + len(d), addr + size)
            if lo < hi:
                out[lo - addr:hi - addr] = d[lo - a:hi - a]
                have[lo - addr:hi - addr] = b"\1" * (hi - lo)
        return bytes(out) if all(have) else None

    def read(self, addr: int, size: int) -> bytes | None:
        if not self._bounded(addr, size):
            return None
        data = self.peek(addr, size)
        if data is None:
            self.missing.append(f"memory {addr:#x}+{size}")
            if self.fill is None:
                return bytes(size)
            pat = self.fill[addr & 7:] + self.fill * ((size >> 3) + 2)
            base = bytearray(pat[:size])
            for a, d in self.segs:
                lo, hi = max(a, addr), min(a + len(d), addr + size)
                if lo < hi:
                    base[lo - addr:hi - addr] = d[lo - a:hi - a]
            return bytes(base)
        return data

    def write(self, addr: int, data: bytes) -> bool:
        if not self._bounded(addr, len(data)):
            return False
        data = bytes(data)
        self.segs.append([addr, bytearray(data)])      # later segments win in peek()
        self.writes.append((addr, data))
        return True


def _bswap(value: int, size: int) -> int:
    return int.from_bytes((value & ((1 << 8 * size) - 1)).to_bytes(size, "little"), "big")


class ReplayDevice:
    """A device model whose loads answer what the recording says the guest got.

    Structure (BAR sizes, config writes) goes to the real model so the
    firmware model's checks see a real device; BAR writes are swallowed, since
    the device side effects (DMA, interrupts) are not part of a replay.
    """

    def __init__(self, inner):
        self.inner = inner
        self.kind = getattr(inner, "kind", "none")
        self.loaded: int | None = None          # the value the current PCILG returned
        self.used = False

    @property
    def dma(self):
        return self.inner.dma

    @dma.setter
    def dma(self, port):
        self.inner.dma = port

    def __getattr__(self, name):                 # vendor_id, device_id, anything else
        return getattr(self.inner, name)

    def config_read(self, offset, size):
        if self.loaded is None:
            return self.inner.config_read(offset, size)
        self.used = True
        return _bswap(self.loaded, size)

    def config_write(self, offset, size, value):
        return self.inner.config_write(offset, size, value)

    def bar_size(self, bar):
        return self.inner.bar_size(bar)

    def bar_read(self, bar, offset, size):
        if self.loaded is None:
            return self.inner.bar_read(bar, offset, size)
        self.used = True
        return self.loaded & ((1 << 8 * size) - 1)

    def bar_write(self, bar, offset, size, value):
        return 0 <= offset and offset + size <= self.inner.bar_size(bar)

    def reset(self):
        self.inner.reset()


# --------------------------------------------------------------------------- machines

def config_from_header(h: TraceHeader) -> MachineConfig:
    return MachineConfig(memory=h.memory or (1 << 30), functions=tuple(
        FunctionSpec(kind=f.kind, props=f.props, fid=f.fid, uid=f.uid) for f in h.functions))


def make_machine(config: MachineConfig, policy: str, assume: str, where: str):
    try:
        from firmware_model.machine import Machine
    except ImportError as exc:
        raise UserError(f"the firmware model is not available ({exc})", where=where) from None
    try:
        m = Machine(config, policy, assume)
    except (KeyError, ValueError) as exc:
        raise UserError(f"cannot build the machine the header describes: {exc}", where=where) from None
    devices = []
    bus = getattr(m, "bus", None)
    for fn in getattr(bus, "functions", ()):
        dev = ReplayDevice(fn.device)
        fn.device = dev
        devices.append(dev)
    return m, devices


# --------------------------------------------------------------------------- results

@dataclass
class Mismatch:
    path: str
    seq: int
    addr: int
    mnemonic: str
    policy: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: seq {self.seq} {self.mnemonic} @{self.addr:x} [{self.policy}]: {self.what}"


@dataclass
class WorkloadResult:
    path: str
    workload: str
    source: str
    stream: str
    policies: tuple[str, ...]
    events: int = 0
    by_mnemonic: Counter = field(default_factory=Counter)
    # policy -> mnemonic -> route -> count
    routes: dict = field(default_factory=dict)
    instructions: int | None = None
    block_execs: int = 0
    full_model_events: int = 0
    checked: int = 0
    passed: int = 0
    mismatched: int = 0
    unchecked: Counter = field(default_factory=Counter)

    def exits(self, policy: str) -> int:
        return sum(n for per in self.routes[policy].values()
                   for r, n in per.items() if r != "firmware")

    def route_totals(self, policy: str) -> dict[str, int]:
        tot = {r: 0 for r in ROUTES}
        for per in self.routes[policy].values():
            for r, n in per.items():
                tot[r] += n
        return tot

    def to_json(self) -> dict:
        return {"path": self.path, "workload": self.workload, "source": self.source,
                "stream": self.stream, "events": self.events,
                "by_mnemonic": dict(sorted(self.by_mnemonic.items())),
                "instructions": self.instructions, "block_executions": self.block_execs,
                "routes": {p: {m: dict(sorted(v.items())) for m, v in sorted(self.routes[p].items())}
                           for p in self.policies},
                "route_totals": {p: self.route_totals(p) for p in self.policies},
                "exits": {p: self.exits(p) for p in self.policies},
                "full_model_events": self.full_model_events,
                "check": {"checked": self.checked, "passed": self.passed,
                          "mismatched": self.mismatched, "unchecked": dict(self.unchecked)}}


# --------------------------------------------------------------------------- checking

def _expected_regs(ev: Event) -> dict[int, int]:
    exp = dict(ev.regs_in)
    exp.update(ev.regs_out)
    return exp


def compare(ev: Event, outcome, g: ReplayGuest) -> list[str]:
    """What the model did differently from the recording (empty: identical)."""
    out = []
    comp = outcome.completion
    f = ev.flags
    if f & EventFlag.PGM_KNOWN:
        want = ev.pgm or None
        if comp.pgm != want:
            out.append(f"program exception {comp.pgm and hex(comp.pgm)} recorded {want and hex(want)}")
    if comp.pgm is None and f & EventFlag.CC:
        if comp.cc is None:
            if f & EventFlag.PSW and (ev.pswm_before >> 44) & 3 != ev.cc:
                out.append(f"cc unchanged, recorded cc {(ev.pswm_before >> 44) & 3} -> {ev.cc}")
        elif comp.cc != ev.cc:
            out.append(f"cc {comp.cc} recorded {ev.cc}")
    exp = _expected_regs(ev)
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
        if got != d:
            out.append(f"memory {a:#x}+{len(d)} differs from the recorded write"
                       if got is not None else f"memory {a:#x}+{len(d)} not written")
    for a, d in g.writes:
        if not any(wa <= a and a + len(d) <= wa + len(wd) for wa, wd in ev.writes):
            before = None
            for ra, rd in ev.reads:
                if ra <= a and a + len(d) <= ra + len(rd):
                    before = rd[a - ra:a - ra + len(d)]
            if before != d:
                out.append(f"unrecorded write to {a:#x}+{len(d)}")
    return out


def unchecked_reason(ev: Event, g: ReplayGuest) -> str | None:
    if ev.flags & EventFlag.INCOMPLETE:
        return "inputs incomplete in trace"
    if g.missing:
        return "model read unrecorded input"
    if not ev.flags & EventFlag.PGM_KNOWN:
        return "program exception not recorded"
    return None


# --------------------------------------------------------------------------- the replay

def _decoded(insn: bytes, addr: int):
    try:
        from emulator.decode import decode_one
    except ImportError:             # native core missing: the Python fields
        return _py_decoded(insn, addr)
    d = decode_one(insn, addr)
    return d if d is not None else _py_decoded(insn, addr)


def _py_decoded(insn: bytes, addr: int):
    from firmware_model.insns import Decoded, Format
    ins = insn_of(insn)
    c = insn
    ipa = c[0] << 8 | c[1]
    if ins.ilen == 4:
        ipb = (c[2] << 24) | (c[3] << 16)
        m3, m4 = (c[2] >> 4, c[2] & 0xF) if ins.format is Format.RRF_C else (0, 0)
        return Decoded(addr=addr, index=ins.index, opcode=ins.opcode, ilen=4, r1=c[3] >> 4,
                       r2=c[3] & 0xF, m3=m3, m4=m4, ipa=ipa, ipb=ipb)
    ipb = int.from_bytes(c[2:6], "big")
    d2 = ((c[2] & 0xF) << 8 | c[3]) | (c[4] << 12)
    if d2 & 0x80000:
        d2 -= 1 << 20
    mid = c[1] & 0xF
    rsy = ins.format is Format.RSY_A
    return Decoded(addr=addr, index=ins.index, opcode=ins.opcode, ilen=6, r1=c[1] >> 4,
                   r3=mid if rsy else 0, x2=0 if rsy else mid, b2=c[2] >> 4, d2=d2, ipa=ipa, ipb=ipb)


def _handle_reg(index: int, d) -> int:
    try:
        from firmware_model.policy import handle_register
    except ImportError:            # pragma: no cover
        return d.r1
    return handle_register(index, d)


class _FileReplay:
    def __init__(self, path, policies, assume, check, on_mismatch, progress, fast):
        self.path = str(path)
        self.rd = TraceReader(path)
        h = self.rd.header
        self.check = check
        self.fast = fast and not check
        self.on_mismatch = on_mismatch
        self.progress = progress
        self.memsize = h.memory
        self.policies = tuple(policies)
        cfg = config_from_header(h)
        self.machines = [make_machine(cfg, p, ASSUME[assume], self.path) for p in self.policies]
        self.res = WorkloadResult(self.path, h.workload or self.path, h.source.value, h.stream.value,
                                  self.policies, routes={p: {} for p in self.policies})
        self.decoded: dict = {}

    # -- one event through every policy's machine
    def run_full(self, ev: Event) -> tuple:
        key = (ev.insn, ev.addr)
        d = self.decoded.get(key)
        if d is None:
            if len(self.decoded) > 4096:
                self.decoded.clear()
            d = self.decoded[key] = _decoded(ev.insn, ev.addr)
        loaded = None
        if ev.mnemonic in ("PCILG", "PCILGI"):
            r1 = ev.insn[3] >> 4
            loaded = _expected_regs(ev).get(r1)
        fill = INVALID_ENTRY if ev.flags & EventFlag.INCOMPLETE and ev.mnemonic == "RPCIT" else None
        routes = []
        res = self.res
        reasons = set()
        for p, (m, devices) in zip(self.policies, self.machines):
            for dev in devices:
                dev.loaded = loaded
            g = ReplayGuest(ev, self.memsize, fill)
            outcome = m.execute(d, g)
            routes.append(outcome.decision.route.value)
            if self.check:
                why = unchecked_reason(ev, g)
                if why is not None:
                    reasons.add(why)
                    continue
                diffs = compare(ev, outcome, g)
                if diffs:
                    reasons.add("mismatch")
                    for what in diffs:
                        self.on_mismatch(Mismatch(self.path, ev.seq, ev.addr, ev.mnemonic, p, what))
        for dev in self.machines[0][1] if self.machines else ():
            dev.loaded = None
        if self.check:
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
        counts: dict = {}            # (epoch, index, handle bytes) -> events
        cache: dict = {}             # same key -> routes
        agg: Counter = Counter()     # (index, routes) -> events
        specs: dict = {}
        epoch = 0
        last = -1
        unpack_seq = struct.Struct("<Q").unpack_from
        pop = _POP
        fast = self.fast
        memsize = self.memsize
        bar = None
        if self.progress:
            bar = _progress_bar(rd)
        tick = 0
        for rtype, buf, start, n, off in gen:
            if rtype != _EV:
                rec = other(rtype, buf, start, n, off)
                if rtype == RecordType.RUNS:
                    insns += sum(cnt * binsn[b] for b, cnt in rec.pairs)
                elif rtype == RecordType.BLOCK:
                    binsn.append(block_insns(rec.code, rec.addr))
                continue
            if rd.ended:
                raise rd.error(off, "data after the END record")
            spec = specs.get(buf[start + 32:start + 48])
            if spec is None:
                spec = self._spec(buf, start, n, off, specs)
            index, fh_off, nin, kind = spec
            (seqv,) = unpack_seq(buf, start)
            if seqv <= last:
                rd.last_seq = last
                raise rd.error(off, f"event seq {seqv} does not follow {last}")
            prev, last = last, seqv
            rd.n_events += 1
            if buf[start + 48:start + 52] == b"\0\0\0\0":
                if n != _EH + 8 * (nin + pop[buf[start + 46] | buf[start + 47] << 8]):
                    rd.last_seq = prev
                    parse_event(rd, buf, start, n, off)      # raises the precise error
                    raise rd.error(off, "EVENT record length does not match its registers")
            else:
                rd.last_seq = last
                self._check_mem(buf, start, n, off, nin, memsize)
            if fast and kind == 1:
                k = (epoch, index, buf[start + fh_off:start + fh_off + 4])
                c = counts.get(k)
                if c is not None:
                    counts[k] = c + 1
                else:
                    rd.last_seq = prev
                    cache[k] = self.run_full(parse_event(rd, buf, start, n, off))
                    counts[k] = 1
            else:
                rd.last_seq = prev
                routes = self.run_full(parse_event(rd, buf, start, n, off))
                agg[(index, routes)] += 1
                if kind == 2 and fast:
                    for k2, c in counts.items():
                        agg[(k2[1], cache[k2])] += c
                    counts.clear()
                    cache.clear()
                    epoch += 1
            tick += 1
            if bar is not None and not tick & 0xFFFF:
                bar.update(rd.raw_position() - bar.n)
        rd.last_seq = last
        rd.finish()
        for k2, c in counts.items():
            agg[(k2[1], cache[k2])] += c
        if bar is not None:
            bar.update(rd.raw_position() - bar.n)
            bar.close()
        rd.close()
        for (index, routes), c in agg.items():
            mn = TABLE[index].mnemonic
            res.events += c
            res.by_mnemonic[mn] += c
            for p, r in zip(self.policies, routes):
                per = res.routes[p].setdefault(mn, {})
                per[r] = per.get(r, 0) + c
        res.instructions = insns if full else None
        res.block_execs = rd.n_execs
        return res

    def _spec(self, buf, start, n, off, specs):
        """What the fast path needs for one kind of event head; checks the head once."""
        rd = self.rd
        if n < _EH:
            raise rd.error(off, f"short EVENT record ({n} bytes)")
        (_seq, _addr, _pb, _pa, insn6, ilen, flags, cc, _r, _pgm, in_mask, _out, _nr, _nw) = \
            EVENT_HEAD.unpack_from(buf, start)
        ins = insn_of(insn6)
        if ins is None or ins.ilen != ilen:
            raise rd.error(off, f"event instruction {insn6[:ilen].hex()} is not a zPCI instruction")
        if flags & ~0x1F:
            raise rd.error(off, f"unknown event flags {flags:#x}")
        if cc > 3:
            raise rd.error(off, f"condition code {cc} out of range")
        d = _decoded(bytes(insn6[:ilen]), 0)
        hr = _handle_reg(ins.index, d)
        nin = popcount16(in_mask)
        if ins.index in EPOCH_ENDERS:
            kind, fh_off = 2, 0
        elif (in_mask >> hr) & 1:
            kind = 1
            fh_off = _EH + 8 * popcount16(in_mask & ((1 << hr) - 1)) + 4   # high word: the handle
        else:
            kind, fh_off = 0, 0      # handle not recorded: the full model sees it as missing
        spec = (ins.index, fh_off, nin, kind)
        if len(specs) > 4096:
            specs.clear()
        specs[bytes(buf[start + 32:start + 48])] = spec
        return spec

    def _check_mem(self, buf, start, n, off, nin, memsize):
        rd = self.rd
        nout = _POP[buf[start + 46] | buf[start + 47] << 8]
        nr, nw = struct.unpack_from("<HH", buf, start + 48)
        p = start + _EH + 8 * (nin + nout)
        lim = start + n
        for _ in range(nr + nw):
            if p + _MH > lim:
                raise rd.error(off, "EVENT record shorter than its memory list")
            a, ln = MEM_HEAD.unpack_from(buf, p)
            p += _MH + ln
            if p > lim:
                raise rd.error(off, "EVENT memory data runs past the record")
            if memsize and a + ln > memsize:
                raise rd.error(off, f"memory at {a:#x}+{ln} is outside the header's {memsize:#x} bytes")
        if p != lim:
            raise rd.error(off, f"EVENT record has {lim - p} unexplained bytes")


def _progress_bar(rd: TraceReader):
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:            # pragma: no cover
        return None
    import os
    return tqdm(total=os.path.getsize(rd.path), unit="B", unit_scale=True,
                desc=rd.path.name, leave=False, file=sys.stderr)


def replay(paths, policies=None, assume: str = "passthrough", check: bool = False,
           on_mismatch=None, progress: bool | None = None, fast: bool = True) -> list[WorkloadResult]:
    """Replay each trace; one WorkloadResult per file."""
    names = policy_names()
    policies = tuple(policies or names)
    for p in policies:
        if p not in names:
            raise UserError(f"unknown policy {p!r} (choose from {', '.join(names)}, all)")
    if assume not in ASSUME:
        raise UserError(f"unknown --assume {assume!r} (passthrough, as-recorded)")
    if progress is None:
        progress = sys.stderr.isatty()
    if on_mismatch is None:
        def on_mismatch(m):
            print(m)
    out = []
    for p in paths:
        out.append(_FileReplay(p, policies, assume, check, on_mismatch, progress, fast).run())
    return out
