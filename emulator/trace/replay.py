"""Streaming replay of traces through the firmware model under every policy.

For each trace the header gives the machine (functions, memory; for a boot
trace the recorded command line); one ``firmware_model.machine.Machine`` per
policy then executes the recorded zPCI instructions in order, each on a
guest rebuilt from the event (registers, sparse memory from the recorded
reads).  Device data comes from the recording: a ``ReplayDevice`` answers
BAR and config loads with the value the guest received.  When the trace holds
every memory access an instruction caused (boot traces) the device models
also see the stores and do their DMA against the recorded memory, so the
writes they make are checked too.

Speed: a policy decision depends only on the instruction, the handle in its
request register and what the host records for the function the handle
names (policy.py, Machine.execute).  Only configuration instructions (CLP,
MPCIFC) change those records, so outside ``--check`` the model runs fully for
them and for the first event of each (instruction, handle) per *epoch*; an
epoch ends when a configuration instruction actually changed the records
(``decision_state``).  The other events take the decisions computed for their
key.  The counts equal a full run on every event (tests/test_replay.py,
tests/test_replay_bundled.py).  With ``--check`` every event runs fully and
is compared with the recording.

Memory stays flat: the reader holds one chunk, the cache one epoch.
"""
from __future__ import annotations

import struct
import sys
from collections import Counter
from dataclasses import dataclass, field

from emulator.decode import decode_one
from emulator.errors import UserError
from emulator.trace.format import (
    EVENT_HEAD, Event, EventFlag, RecordType, TraceHeader, popcount16)
from emulator.trace.reader import TraceReader, check_event_head, parse_event
from emulator.trace.text import block_insns
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.guest import MASK64
from firmware_model.insns import BY_MNEMONIC, TABLE
from firmware_model.policy import POLICY_NAMES, handle_register

BASELINE = "intercept-all"
ROUTES = ("firmware", "kvm", "userspace")
ASSUME = {"passthrough": "passthrough", "as-recorded": "as-given"}

# Configuration instructions change what the host knows about a function
# (GISA designation, IOAT path): they end an epoch of the decision cache.
EPOCH_ENDERS = frozenset(BY_MNEMONIC[m].index for m in ("CLP", "MPCIFC"))

_EV = int(RecordType.EVENT)
_EH = EVENT_HEAD.size


# --------------------------------------------------------------------------- guest and device

# An RPCIT recorded without the table entries it walked (the gdb recorder's
# default) reads them as invalid entries: the walk then unmaps instead of
# failing, so the function is not put into the error state by data the trace
# lacks.  The event stays unchecked either way.  0x420 has both the
# region/segment invalid bit (0x20) and the page-table invalid bit (0x400).
INVALID_ENTRY = (0x420).to_bytes(8, "big")
PGM_PRIVILEGED = 0x02


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
        if ev.flags & EventFlag.PSW:
            self.problem_state = bool((ev.pswm_before >> 48) & 1)
        else:
            # No PSW in the trace: a privileged-operation exception on a
            # privileged instruction is only recognised in problem state.
            self.problem_state = bool(ev.flags & EventFlag.PGM_KNOWN and ev.pgm == PGM_PRIVILEGED
                                      and ev.info.privileged)
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

    Structure (BAR sizes, access rules, config writes) is the real model's,
    so the firmware model's checks see a real device.  ``live``: the trace
    holds every guest memory access an instruction caused, device DMA
    included (boot traces, where the same models ran), so BAR stores reach
    the model and it does its DMA against the recorded memory; loads still
    run in the model for their side effects.  Otherwise (a Linux capture
    under QEMU) the device side of a store cannot be replayed and stores stop
    here.
    """

    def __init__(self, inner, live: bool = False):
        self.inner = inner
        self.live = live
        self.kind = getattr(inner, "kind", "none")
        self.loaded: int | None = None          # the value the current PCILG returned

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
        if self.live:
            self.inner.config_read(offset, size)
        return self.loaded if size == 1 else _bswap(self.loaded, size)

    def config_write(self, offset, size, value):
        return self.inner.config_write(offset, size, value)

    def bar_size(self, bar):
        return self.inner.bar_size(bar)

    def _valid(self, bar, offset, size, write):
        valid = getattr(self.inner, "bar_access_valid", None)
        if valid is not None:
            return valid(bar, offset, size, write)
        return 0 <= offset and offset + size <= self.inner.bar_size(bar)

    def bar_read(self, bar, offset, size):
        if self.loaded is None:
            return self.inner.bar_read(bar, offset, size)
        if self.live:
            if self.inner.bar_read(bar, offset, size) is None:
                return None
        elif not self._valid(bar, offset, size, False):
            return None
        return self.loaded & ((1 << 8 * size) - 1)

    def bar_write(self, bar, offset, size, value):
        if self.live:
            return self.inner.bar_write(bar, offset, size, value)
        return self._valid(bar, offset, size, True)

    def reset(self):
        self.inner.reset()


# --------------------------------------------------------------------------- machines

def config_from_header(h: TraceHeader) -> MachineConfig:
    """The machine the trace ran on.

    A boot trace's ``detail`` is its command line, which names the devices
    exactly as the recording machine built them, so it is preferred; the
    function list serves every other source (and a command line that no
    longer parses).
    """
    prefix = "zpci-emu boot "
    if h.source.value == "boot" and h.detail.startswith(prefix):
        try:
            import shlex
            from emulator import qemu_args
            cfg = qemu_args.parse(shlex.split(h.detail[len(prefix):])).config
        except Exception:          # noqa: BLE001 - any parse problem: use the function list
            cfg = None
        if cfg is not None and [f.fid for f in cfg.functions] == [f.fid for f in h.functions] \
                and (not h.memory or cfg.memory == h.memory):
            return cfg
    return MachineConfig(memory=h.memory or (1 << 30), functions=tuple(
        FunctionSpec(kind=f.kind, props=f.props, fid=f.fid, uid=f.uid) for f in h.functions))


# The image a replayed virtio-blk device reads when the recording names none
# (a Linux capture records the device's properties, not QEMU's -drive).  Its
# size only shows in the capacity a live replay would load; a capture's loads
# answer from the recording.
REPLAY_BLANK_IMAGE = 1 << 20


def _block_props(props: tuple, context: dict) -> tuple:
    """virtio-blk properties for a replay: never write to an image file.

    A recorded image that still exists is read into memory (snapshot); a
    recording without one, or whose file is gone, gets a blank image.
    """
    import os
    from firmware_model.devices.virtio_blk import BlockImage
    p = dict(props)
    path = p.get("x-drive-file")
    if path and os.path.isfile(path):
        return tuple(props) + (("x-drive-snapshot", "on"),)
    drives = context.setdefault("drives", {})
    name = f"replay-blank-{len(drives)}"
    drives[name] = BlockImage.blank(REPLAY_BLANK_IMAGE, readonly=p.get("x-drive-readonly") == "on")
    return tuple((k, v) for k, v in props if k != "drive" and not k.startswith("x-drive-")) \
        + (("drive", name),)


def _device_factory(stand_ins: list, live: bool, ids: dict):
    """Device models for a replay: the registry's, wrapped so loads answer from the recording.

    A kind the registry does not model gets the memory-backed stand-in with
    virtio-pci's BAR layout (without the legacy BAR 0 when disable-legacy is
    on) and the PCI ids the recording listed, and is named in ``stand_ins``:
    decisions do not depend on the device, but a --check of its BAR accesses
    compares against the stand-in's access rules.  Every bundled trace has a
    model (virtio-blk-pci included, see ``_block_props``).
    """
    from firmware_model.devices import DEVICE_KINDS, make_device

    def make(kind: str, props: tuple, context: dict | None = None):
        if kind in DEVICE_KINDS:
            context = {} if context is None else context
            if kind == "virtio-blk-pci":
                props = _block_props(props, context)
            # one context per bus, so default MACs count up as QEMU's do
            inner = make_device(kind, props, context=context)   # bad properties: the caller's one-line error
        else:
            from firmware_model.devices.memdev import MemDevice
            stand_ins.append(kind)
            if kind.startswith("virtio"):
                shape = MemDevice.virtio_rng_shaped()
                bars = dict(shape.bars)
                if ("disable-legacy", "on") in tuple(props):
                    bars.pop(0, None)
                ven, dev = ids.get(kind, (shape.vendor_id, shape.device_id))
                inner = MemDevice(ven, dev, bars)
            else:
                inner = MemDevice()
        return ReplayDevice(inner, live and kind not in stand_ins)
    return make


def make_machine(config: MachineConfig, policy: str, assume: str, where: str, stand_ins=None,
                 live: bool = False, ids: dict | None = None):
    from firmware_model.function import ZpciBus
    from firmware_model.machine import Machine
    stand_ins = [] if stand_ins is None else stand_ins
    try:
        bus = ZpciBus.from_config(config, _device_factory(stand_ins, live, ids or {}))
        m = Machine(config, policy, assume, bus=bus)
    except (KeyError, ValueError) as exc:
        raise UserError(f"cannot build the machine the header describes: {exc}", where=where) from None
    return m, [fn.device for fn in bus.functions]


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
    stand_ins: list = field(default_factory=list)     # device kinds without a model

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
                "device_stand_ins": self.stand_ins,
                "check": {"checked": self.checked, "passed": self.passed,
                          "mismatched": self.mismatched, "unchecked": dict(self.unchecked)}}


# --------------------------------------------------------------------------- checking

def _expected_regs(ev: Event) -> dict[int, int]:
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
    if ev.flags & EventFlag.INCOMPLETE:
        return "inputs incomplete in trace"
    if g.missing:
        return "model read unrecorded input"
    if not ev.flags & EventFlag.PGM_KNOWN:
        return "program exception not recorded"
    return None


# --------------------------------------------------------------------------- the replay

def _decoded(insn: bytes, addr: int):
    # the reader has already refused event bytes that are not a zPCI instruction
    return decode_one(insn, addr)


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
        self.all_writes = h.source.value in ("boot", "synthetic")
        self.policies = tuple(policies)
        cfg = config_from_header(h)
        stand_ins: list = []
        ids = {f.kind: (f.vendor_id, f.device_id) for f in h.functions
               if f.vendor_id is not None and f.device_id is not None}
        self.machines = [make_machine(cfg, p, ASSUME[assume], self.path, stand_ins,
                                      live=self.all_writes, ids=ids) for p in self.policies]
        self.res = WorkloadResult(self.path, h.workload or self.path, h.source.value, h.stream.value,
                                  self.policies, routes={p: {} for p in self.policies},
                                  stand_ins=sorted(set(stand_ins)))
        self.decoded: dict = {}
        self._sid = 0

    # -- one event through every policy's machine
    def run_full(self, ev: Event) -> tuple:
        key = (ev.insn, ev.addr)
        d = self.decoded.get(key)
        if d is None:
            if len(self.decoded) > 4096:
                self.decoded.clear()
            d = self.decoded[key] = _decoded(ev.insn, ev.addr)
        loaded = None
        if (ev.mnemonic in ("PCILG", "PCILGI") and ev.flags & EventFlag.CC and ev.cc == 0
                and not ev.pgm):
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
                diffs = compare(ev, outcome, g, self.all_writes)
                if diffs:
                    reasons.add("mismatch")
                    for what in diffs:
                        self.on_mismatch(Mismatch(self.path, ev.seq, ev.addr, ev.mnemonic, p, what))
        for m, devices in self.machines:
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
        nev = 0
        unpack_seq = struct.Struct("<Q").unpack_from
        fast = self.fast
        memsize = self.memsize
        bar = _progress_bar(rd) if self.progress else None
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
            spec = specs.get(buf[start + 32:start + 52])
            if spec is None:
                rd.n_events, rd.last_seq = nev, last
                spec = self._spec(buf, start, n, off, specs)
            index, fh_off, kind, explen, memst, lens, sid = spec
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
            if fast and kind == 1:
                # A path may decline (and userspace serve) depending on the
                # instruction's fields and the problem state as well as on the
                # handle: the key holds the event's head kind (instruction
                # bytes included) and the PSW byte with the problem-state bit.
                k = (epoch, sid, buf[start + fh_off:start + fh_off + 4], buf[start + 22])
                c = counts.get(k)
                if c is not None:
                    counts[k] = c + 1
                    if bar is not None and not nev & 0xFFFF:
                        bar.update(rd.raw_position() - bar.n)
                    continue
                rd.last_seq = prev
                cache[k] = (index, self.run_full(parse_event(rd, buf, start, n, off)))
                counts[k] = 1
            else:
                rd.last_seq = prev
                if kind == 2 and fast:
                    before = self.decision_state()
                routes = self.run_full(parse_event(rd, buf, start, n, off))
                agg[(index, routes)] += 1
                if kind == 2 and fast and self.decision_state() != before:
                    for k2, c in counts.items():
                        agg[cache[k2]] += c
                    counts.clear()
                    cache.clear()
                    epoch += 1
        rd.n_events, rd.last_seq = nev, last
        rd.finish()
        for k2, c in counts.items():
            agg[cache[k2]] += c
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

    def decision_state(self):
        """Everything a decision (or a path's decline) reads besides the instruction.

        Machine.execute decides from the handle, the VM's interpretation
        control and GISA, and the host's view of the function the handle
        resolves to; the firmware and KVM paths decline on the same records
        (IOAT present, a vfio DMA limit).  A configuration instruction that
        leaves all of it as it was does not end the cache's epoch.
        """
        out = []
        try:
            for m, _ in self.machines:
                vm = m.vm
                out.append((vm.use_zpci_interp, vm.gisa, vm.id,
                            tuple((hf.fh, hf.plugged, hf.view(), hf.ioat is None)
                                  for hf in m.host.functions),
                            tuple((fn.fh, fn.ioat_enabled, fn.dma_avail is None)
                                  for fn in m.bus.functions)))
        except AttributeError:         # a Machine without these records: every change counts
            return object()
        return tuple(out)

    def _spec(self, buf, start, n, off, specs):
        """What the fast path needs for one kind of event head; checks the head once."""
        rd = self.rd
        if n < _EH:
            raise rd.error(off, f"short EVENT record ({n} bytes)")
        (_seq, _addr, _pb, _pa, insn6, ilen, flags, cc, _r, _pgm, in_mask, out_mask, nr, nw) = \
            EVENT_HEAD.unpack_from(buf, start)
        ins = check_event_head(rd, off, insn6, ilen, flags, cc)
        d = _decoded(bytes(insn6[:ilen]), 0)
        hr = handle_register(ins.index, d)
        nin = popcount16(in_mask)
        if ins.index in EPOCH_ENDERS:
            kind, fh_off = 2, 0
        elif (in_mask >> hr) & 1:
            kind = 1
            fh_off = _EH + 8 * popcount16(in_mask & ((1 << hr) - 1)) + 4   # high word: the handle
        else:
            kind, fh_off = 0, 0      # handle not recorded: the full model sees it as missing
        regs = 8 * (nin + popcount16(out_mask))
        nmem = nr + nw
        if nmem:
            # The memory ranges' lengths of this record stand for its kind:
            # records of the same shape (DMA table entries, an IIB) then check
            # in one unpack; any other shape takes parse_event's walk.
            rd.last_seq = _seq - 1
            ev = parse_event(rd, buf, start, n, off)
            lens = tuple(len(d) for _, d in ev.reads + ev.writes)
            memst = struct.Struct("<" + "8x" * (regs // 8) + "".join(f"QI{ln}x" for ln in lens))
            explen = memst.size + _EH
        else:
            memst, explen, lens = None, _EH + regs, ()
        self._sid += 1
        spec = (ins.index, fh_off, kind, explen, memst, lens, self._sid)
        if len(specs) > 4096:
            specs.clear()
        specs[bytes(buf[start + 32:start + 52])] = spec
        return spec


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
    policies = tuple(policies or POLICY_NAMES)
    for p in policies:
        if p not in POLICY_NAMES:
            raise UserError(f"unknown policy {p!r} (choose from {', '.join(POLICY_NAMES)}, all)")
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
