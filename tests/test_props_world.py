"""A small guest world for the property tests: memory layout, instruction builders, snapshots.

Imported by the other test_props_* modules; its own tests check the world
itself (tables translate, the builders encode what they claim).
"""
from __future__ import annotations

import struct

from hypothesis import settings, strategies as st

from firmware_model import insns
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.guest import SimpleGuest
from firmware_model.insns import BY_MNEMONIC, Decoded

def scaled(n: int) -> int:
    """n examples under the ci profile (200), proportionally more under thorough."""
    return max(1, n * settings.default.max_examples // 200)


MEM = 0x60000
LPCB = 0x10000          # 8 KiB CLP block
FIB = 0x13000
BLOCK = 0x13800         # PCISTB source data
RTT = 0x20000           # region-third table, 16 KiB
STT = 0x24000           # segment table, 16 KiB
PT = 0x28000            # page table, 2 KiB
FRAMES = 0x30000        # 16 DMA target frames
FMB = 0x40000
SDMA = 0x100000000      # QEMU's default DMA window start
NPAGES = 16

RTE_VALID = 0x4 | 0x3
RTE_INVALID = 0x20 | 0x4 | 0x3
STE_INVALID = 0x20
PTE_INVALID = 0x400
PROT = 0x200

EMUL = 0x00020000
ENABLE = 0x80000000

# memdev shaped like QEMU's virtio-rng-pci (BAR1 MSI-X rules, BAR4 16 KiB, BAR0 I/O)
CONFIG = MachineConfig(memory=MEM, functions=(
    FunctionSpec("memdev", (("shape", "virtio-rng"),)),
    FunctionSpec("memdev", (("bar0", "0x1000"), ("bar2", "0x2000"))),
))


# a real device model as function 0: virtio-rng, modern-only, DMA through zPCI translation
CONFIG_VIRTIO = MachineConfig(memory=MEM, functions=(
    FunctionSpec("virtio-rng-pci", (("disable-legacy", "on"), ("iommu_platform", "on"))),
    FunctionSpec("memdev", (("bar0", "0x1000"), ("bar2", "0x2000"))),
))


def _memdev(kind, props):
    from firmware_model.devices.memdev import MemDevice
    return MemDevice.from_props(props)


def machine(policy: str, assume: str = "passthrough", config=None):
    """A Machine over CONFIG with memdev devices (whatever the device registry holds),
    or over ``config`` with the registry's models."""
    from firmware_model.function import ZpciBus
    from firmware_model.machine import Machine
    if config is not None:
        return Machine(config, policy=policy, assume=assume)
    return Machine(CONFIG, policy=policy, assume=assume, bus=ZpciBus.from_config(CONFIG, _memdev))


def decoded(mnemonic: str, **f) -> Decoded:
    """A Decoded with IPA/IPB as SIE would store them for these operand fields."""
    ins = BY_MNEMONIC[mnemonic]
    raw = insns.encode(mnemonic, **f)
    ipa = int.from_bytes(raw[:2], "big")
    ipb = int.from_bytes(raw[2:6], "big") if ins.ilen == 6 else int.from_bytes(raw[2:4], "big") << 16
    return Decoded(addr=0x1000, index=ins.index, opcode=ins.opcode, ilen=ins.ilen,
                   ipa=ipa, ipb=ipb, **f)


def write_dma_tables(mem, ptes: dict[int, int], rtt: int = RTT, stt: int = STT, pt: int = PT,
                     iova: int = SDMA) -> int:
    """Region-third -> segment -> page table for the segment holding ``iova``, every
    other entry invalid; ``ptes`` maps a page of that segment to its PTE.  The IOTA."""
    for i in range(2048):
        struct.pack_into(">Q", mem, rtt + 8 * i, RTE_INVALID)
        struct.pack_into(">Q", mem, stt + 8 * i, STE_INVALID)
    for i in range(256):
        struct.pack_into(">Q", mem, pt + 8 * i, PTE_INVALID)
    struct.pack_into(">Q", mem, rtt + 8 * ((iova >> 31) & 0x7FF), stt | RTE_VALID)
    struct.pack_into(">Q", mem, stt + 8 * ((iova >> 20) & 0x7FF), pt)
    for k, pte in ptes.items():
        struct.pack_into(">Q", mem, pt + 8 * k, pte)
    return rtt | 0x804


def new_guest() -> SimpleGuest:
    g = SimpleGuest(MEM)
    w = g.mem
    write_dma_tables(w, {k: (FRAMES + 0x1000 * k) | (PROT if k == 3 else 0) for k in range(8)})
    for k in range(NPAGES):
        w[FRAMES + 0x1000 * k:FRAMES + 0x1000 * k + 16] = bytes([k]) * 16
    for i in range(256):
        w[BLOCK + i] = i
    return g


# --- the instructions, as guest actions ---------------------------------------

def handle(kind: str, idx: int) -> int:
    return {"enabled": ENABLE | EMUL | idx, "disabled": EMUL | idx,
            "stale": ENABLE | EMUL | 0x01000000 | idx, "nosuch": ENABLE | EMUL | 0x77,
            "raw": ENABLE | idx, "vfio": ENABLE | 0x00010000 | idx}[kind]


def clp_set(g, fh: int, oc: int) -> Decoded:
    g.mem[LPCB:LPCB + 64] = bytes(64)
    struct.pack_into(">HHIQIHBBII", g.mem, LPCB, 32, 5, 0, 0, fh, 0, oc, 1, 0, 0)
    struct.pack_into(">H", g.mem, LPCB + 32, 4096 - 32)
    g.set_gpr(2, LPCB)
    return decoded("CLP", r2=2)


def clp_list(g) -> Decoded:
    g.mem[LPCB:LPCB + 64] = bytes(64)
    struct.pack_into(">HH", g.mem, LPCB, 32, 2)
    struct.pack_into(">H", g.mem, LPCB + 32, 4096 - 32)
    g.set_gpr(2, LPCB)
    return decoded("CLP", r2=2)


def load_store(g, mn: str, fh: int, pcias: int, length: int, offset: int, data: int,
               r1: int = 1, r2: int = 2) -> Decoded:
    g.set_gpr(r2, (fh << 32) | (pcias << 16) | length)
    g.set_gpr((r2 + 1) & 15, offset)
    if mn == "PCISTG":
        g.set_gpr(r1, data)
    return decoded(mn, r1=r1, r2=r2)


def pcistb(g, fh: int, pcias: int, length: int, offset: int, addr: int) -> Decoded:
    g.set_gpr(6, (fh << 32) | (pcias << 16) | length)
    g.set_gpr(7, offset)
    g.set_gpr(8, addr)
    return decoded("PCISTB", r1=6, r3=7, b2=8, d2=0)


def rpcit(g, fh: int, start: int, length: int, r2: int = 2) -> Decoded:
    g.set_gpr(1, fh << 32)
    g.set_gpr(r2, start)
    g.set_gpr((r2 + 1) & 15, length)
    return decoded("RPCIT", r1=1, r2=r2)


def fib(g, pba=SDMA, pal=SDMA + NPAGES * 0x1000 - 1, iota=RTT | 0x800 | 0x4, data=0,
        aibv=0, aisb=0, fmb=0) -> None:
    g.mem[FIB:FIB + 80] = bytes(80)
    struct.pack_into(">B7xB7xQQQI4xQQQ4xI", g.mem, FIB, 0, 0, pba, pal, iota, data, aibv, aisb,
                     fmb, 0)


def mpcifc(g, fh: int, oc: int, dmaas: int = 0, addr: int = FIB) -> Decoded:
    g.set_gpr(1, (fh << 32) | (dmaas << 16) | oc)
    g.set_gpr(9, addr)
    return decoded("MPCIFC", r1=1, b2=9, d2=0)


def stpcifc(g, fh: int, dmaas: int = 0) -> Decoded:
    g.set_gpr(1, (fh << 32) | (dmaas << 16))
    g.set_gpr(9, FIB + 0x100)
    return decoded("STPCIFC", r1=1, b2=9, d2=0)


def sic(g, mode: int, isc: int) -> Decoded:
    g.set_gpr(1, mode)
    g.set_gpr(3, isc << 27)
    return decoded("SIC", r1=1, r3=3, b2=0, d2=0)


# --- random guest actions ----------------------------------------------------

HANDLES = st.sampled_from(["enabled"] * 6 + ["disabled", "stale", "nosuch", "raw", "vfio"])
IDX = st.sampled_from([0, 0, 1])
PCIAS = st.sampled_from([0, 1, 2, 4, 4, 15, 15, 3, 7])
OFFSETS = st.sampled_from([0, 2, 4, 8, 0x10, 0x14, 0x100, 0x3FF8, 0x4000, 0xFFC])
MPCIFC_OCS = st.sampled_from([4, 4, 5, 6, 7, 7, 9, 2, 3, 10, 0x55])
PAGE = st.integers(0, NPAGES - 1)

_RPCIT = st.tuples(st.just("rpcit"), HANDLES, IDX,
                   st.sampled_from([-2, -1, NPAGES, NPAGES + 2]) | st.integers(0, NPAGES - 1),
                   st.sampled_from([0x1000, 0x2000, 0x4000, 0x10000, 0x100000, 0]),
                   st.sampled_from([2, 2, 2, 3]))
_PTE = st.tuples(st.just("pte"), PAGE, st.sampled_from(["valid", "invalid", "prot", "zero", "other"]))
_DMA = st.tuples(st.just("dma"), IDX, st.integers(-1, NPAGES), st.booleans())

_RESET = st.tuples(st.just("mpcifc"), st.just("enabled"), IDX, st.sampled_from([7, 9]), st.just(0),
                   st.just("good"))
_LS = st.tuples(st.just("pcilg"), HANDLES, IDX, PCIAS, st.integers(0, 9), OFFSETS,
                st.sampled_from([2, 2, 4, 3]))

# a strategy listed twice is drawn twice as often
action = st.one_of(
    _RPCIT, _RPCIT, _PTE, _DMA, _RESET, _LS,
    st.tuples(st.just("pcistg"), HANDLES, IDX, PCIAS, st.integers(0, 9), OFFSETS,
              st.integers(0, (1 << 64) - 1)),
    st.tuples(st.just("pcistb"), HANDLES, IDX, PCIAS, st.sampled_from([8, 16, 32, 24, 12, 136]),
              st.sampled_from([0, 8, 4, 0xFF0]), st.sampled_from([BLOCK, BLOCK + 4, MEM - 8])),
    st.tuples(st.just("mpcifc"), HANDLES, IDX, MPCIFC_OCS, st.sampled_from([0, 0, 0, 1]),
              st.sampled_from(["good", "good", "badiota", "badwindow", "fmb", "fmbkey"])),
    st.tuples(st.just("stpcifc"), HANDLES, IDX, st.sampled_from([0, 0, 1])),
    st.tuples(st.just("clp"), st.sampled_from(["enable", "disable", "list"]), IDX),
    st.tuples(st.just("sic"), st.sampled_from([0, 1, 2]), st.integers(0, 7)),
    _PTE,
    st.tuples(st.just("ste"), st.sampled_from(["valid", "invalid", "zero", "badtype"])),
    _DMA,
    st.tuples(st.just("problem"), _LS | _RPCIT),
)


def perform(m, g, act):
    """Apply one action to a machine and its guest; what the guest observed comes back."""
    kind = act[0]
    if kind == "pcilg" or kind == "pcistg":
        _, hk, idx, pcias, length, off, x = act
        if kind == "pcilg":
            d = load_store(g, "PCILG", handle(hk, idx), pcias, length, off, 0, r1=1, r2=x)
        else:
            d = load_store(g, "PCISTG", handle(hk, idx), pcias, length, off, x)
    elif kind == "pcistb":
        _, hk, idx, pcias, length, off, addr = act
        d = pcistb(g, handle(hk, idx), pcias, length, off, addr)
    elif kind == "rpcit":
        _, hk, idx, page, length, r2 = act
        d = rpcit(g, handle(hk, idx), SDMA + page * 0x1000, length, r2)
    elif kind == "mpcifc":
        _, hk, idx, oc, dmaas, how = act
        if how == "badiota":
            fib(g, iota=RTT | 0x4)
        elif how == "badwindow":
            fib(g, pba=0x1000, pal=0x2000)
        elif how == "fmb":
            fib(g, fmb=FMB)
        elif how == "fmbkey":
            fib(g, fmb=FMB | 3)
        else:
            fib(g, data=(3 << 28) | (8 << 16), aibv=FMB + 0x100, aisb=FMB + 0x200)
        d = mpcifc(g, handle(hk, idx), oc, dmaas)
    elif kind == "stpcifc":
        _, hk, idx, dmaas = act
        d = stpcifc(g, handle(hk, idx), dmaas)
    elif kind == "clp":
        _, what, idx = act
        if what == "list":
            d = clp_list(g)
        elif what == "enable":
            d = clp_set(g, handle("disabled", idx), 0)
        else:
            d = clp_set(g, handle("enabled", idx), 1)
    elif kind == "sic":
        d = sic(g, act[1], act[2])
    elif kind == "pte":
        _, k, how = act
        val = {"valid": FRAMES + 0x1000 * k, "invalid": PTE_INVALID, "prot": (FRAMES + 0x1000 * k) | PROT,
               "zero": 0, "other": FRAMES + 0x1000 * ((k + 5) % NPAGES)}[how]
        struct.pack_into(">Q", g.mem, PT + 8 * k, val)
        return ("mem",)
    elif kind == "ste":
        val = {"valid": PT, "invalid": STE_INVALID, "zero": 0, "badtype": PT | 0x4}[act[1]]
        struct.pack_into(">Q", g.mem, STT + 8 * ((SDMA >> 20) & 0x7FF), val)
        return ("mem",)
    elif kind == "dma":
        _, idx, page, write = act
        fn = m.bus.functions[idx]
        iova = SDMA + page * 0x1000 + 8
        if write:
            r = fn.device.dma.write(iova, b"\xa5" * 8)
        else:
            r = fn.device.dma.read(iova, 8)
        return ("dma", repr(r))
    elif kind == "problem":
        # one instruction in problem state, then back to supervisor state
        g.problem_state = True
        try:
            return perform(m, g, act[1])
        finally:
            g.problem_state = False
    else:
        raise AssertionError(kind)
    out = m.execute(d, g)
    return ("insn", out.mnemonic, out.completion.cc, out.completion.pgm, tuple(g.gprs),
            out.decision.route.value)


_SKIP = {"dma", "handler", "bus", "fn"}


def deep_state(obj, depth: int = 5):
    """A device model's whole state as plain values (its DMA port and callbacks left out)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if depth == 0 or callable(obj) and not hasattr(obj, "__dict__"):
        return type(obj).__name__
    if isinstance(obj, (list, tuple)):
        return tuple(deep_state(v, depth - 1) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return tuple(sorted(repr(v) for v in obj))
    if isinstance(obj, dict):
        return tuple(sorted((repr(k), deep_state(v, depth - 1)) for k, v in obj.items()))
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += [n for n in getattr(cls, "__slots__", ()) if n not in names]
    return (type(obj).__name__,) + tuple(
        (n, deep_state(getattr(obj, n, None), depth - 1)) for n in sorted(names)
        if n not in _SKIP and not n.startswith("__") and not callable(getattr(obj, n, None)))


def function_state(fn) -> tuple:
    return (fn.fh, fn.state, fn.ioat_enabled, fn.pba, fn.pal, fn.iota,
            tuple(sorted((k, v.translated_addr, v.perm) for k, v in fn.iotlb.items())),
            fn.irq_registered, fn.isc, fn.noi, fn.aibv, fn.aibvo, fn.aisb, fn.aisbo, fn.sum,
            fn.fmb_addr, tuple(fn.counters), fn.fmb_sample, deep_state(fn.device))


def machine_state(m, g) -> tuple:
    """Everything the guest can observe after a run (device state included)."""
    bus = m.bus
    return (tuple(g.gprs), bytes(g.mem), g.problem_state,
            tuple(function_state(fn) for fn in bus.functions),
            tuple(bus.events), tuple(bus.adapter_interrupts), tuple(sorted(bus.ais_single)))


def domain_matches_iotlb(m) -> bool:
    """Passthrough: the host IOMMU domain holds exactly the translations the device may use."""
    for hf, fn in ((e.hf, e.fn) for e in m._hf.values()):
        want = {k: (v.translated_addr, bool(v.perm & 2)) for k, v in fn.iotlb.items()}
        have = {k: (v.frame, v.writable) for k, v in hf.domain.entries.items()}
        if want != have:
            return False
    return True


# --- the world's own checks ----------------------------------------------------

def test_world_tables_translate():
    from firmware_model.dma import table_walk
    g = new_guest()
    w = table_walk(g, RTT | 0x804, SDMA + 0x2000)
    assert (w.error, w.translated_addr, w.perm) == (0, FRAMES + 0x2000, 3)
    assert table_walk(g, RTT | 0x804, SDMA + 0x3000).perm == 1          # protected
    assert table_walk(g, RTT | 0x804, SDMA + 0x9000).perm == 0          # invalid


def test_world_builders_encode_operands():
    g = new_guest()
    d = pcistb(g, 0x80020000, 4, 32, 0, BLOCK)
    assert (d.r1, d.r3, d.b2, d.ipa >> 8) == (6, 7, 8, 0xEB)
    assert d.ipb & 0xFF == 0xD0
    d = load_store(g, "PCILG", 0x80020000, 15, 4, 0, 0)
    assert d.ipa == 0xB9D2 and (d.ipb >> 16) == 0x12
