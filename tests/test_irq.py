"""zPCI adapter interruptions: indicator bits, the FLIC, routes per policy, the CPU, the report."""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from test_semantics_common import FIB, Probe
import test_props_world as w
from _helpers import ROOT, emulate

from firmware_model.arch import FnState
from firmware_model.irq import IRQ_NOTE, Flic, IoInterruption
from firmware_model.irq_routes import FORWARDING, AenView, IrqReason, IrqRoute, irq_route
from firmware_model.policy import POLICY_NAMES

AIBV, AISB = 0x50000, 0x50400
AREA = 0x120                       # bytes checked around each vector (2047 + 63 bits fit)


def bit_bytes(bit: int, size: int = AREA) -> bytes:
    """Independent statement of the numbering: bit 0 is the MSB of byte 0."""
    out = bytearray(size)
    out[bit // 8] = 1 << (7 - bit % 8)
    return bytes(out)


def registered(isc=3, noi=8, aibvo=0, aisbo=0, aibv=AIBV, aisb=AISB, sum=1):
    p = Probe()
    efh = p.enable()
    p.write_fib(isc=isc, noi=noi, aibvo=aibvo, sum=sum, aisbo=aisbo, aibv=aibv, aisb=aisb)
    c, _ = p.mpcifc((efh << 32) | 2, FIB)
    assert c.cc == 0
    return p


def msi(p, vec):
    p.dev.dma.msi(p.fn.group.msia, vec)


# --- indicator bits (QEMU 7.2's s390_msi_ctrl_write) ----------------------------

@given(st.integers(0, 63), st.integers(0, 63), st.integers(0, 0x7FF), st.integers(0, 7))
def test_vector_and_summary_bits_msb_first(aibvo, aisbo, vec, isc):
    p = registered(isc=isc, noi=0x800, aibvo=aibvo, aisbo=aisbo)
    msi(p, vec)
    assert p.mem(AIBV, AREA) == bit_bytes(aibvo + vec)
    assert p.mem(AISB, 8) == bit_bytes(aisbo, 8)
    irq = p.bus.flic.dequeue_io(0xFF << 24)
    assert irq == IoInterruption(0, 0, 0, 0x80000000 | isc << 27)
    assert p.bus.flic.dequeue_io(0xFF << 24) is None


def test_upper_data_bits_are_not_the_vector():
    p = registered(aibvo=3)
    msi(p, 0xABC00 | 5)                        # the vector is data & 0x7ff
    assert p.mem(AIBV, AREA) == bit_bytes(3 + (0xABC05 & 0x7FF))


def test_summary_byte_not_bit_decides():
    p = registered(aisbo=9)
    p.poke(AISB + 1, b"\x01")                  # another bit of the same summary byte
    msi(p, 0)
    assert p.mem(AISB + 1, 1) == b"\x41" and not p.bus.flic.pending
    p = registered(aisbo=9)
    p.poke(AISB, b"\xff")                      # a neighbouring byte does not count
    msi(p, 0)
    assert p.bus.flic.pending


def test_qemu_sets_bits_beyond_noi_and_without_sum():
    p = registered(noi=1, aibvo=0, sum=0)
    msi(p, 4)
    assert p.mem(AIBV, 1) == b"\x08" and p.mem(AISB, 1) == b"\x80" and p.bus.flic.pending


def test_unregistered_function_writes_at_absolute_zero_and_raises_nothing():
    p = Probe()
    p.enable()
    p.poke(0, bytes(8))
    msi(p, 1)
    # QEMU's zeroed routes: vector bit 1 and summary bit 0 both in absolute byte 0,
    # so the summary byte is never found zero
    assert p.mem(0, 1) == b"\xc0" and not p.bus.flic.pending


@pytest.mark.parametrize("state", [FnState.BLOCKED, FnState.ERROR, FnState.DISABLED])
def test_only_an_enabled_function_takes_its_msi(state):
    p = registered()
    p.fn.state = state
    msi(p, 0)
    assert p.mem(AIBV, 8) == bytes(8) and p.mem(AISB, 8) == bytes(8) and not p.bus.flic.pending


# --- the FLIC --------------------------------------------------------------------

def test_flic_lowest_enabled_isc_first_newest_first():
    f = Flic()
    a, b, c = (IoInterruption(0, 0, n, 0x80000000 | isc << 27) for n, isc in ((1, 5), (2, 5), (3, 6)))
    for irq in (a, b, c):
        f.inject_io(irq)
    assert not f.has_io(0) and f.dequeue_io(0) is None
    only6 = (0x80 >> 6) << 24
    assert f.has_io(only6) and f.dequeue_io(only6) is c and not f.has_io(only6)
    assert f.dequeue_io(0xFF << 24) is b           # QEMU inserts at the head of the list
    assert f.dequeue_io(0xFF << 24) is a
    assert not f.pending and f.delivered == 3
    assert f.dequeue_io(0xFF << 24) is None


def test_flic_lower_isc_goes_first_whatever_the_queueing_order():
    f = Flic()
    for isc in (6, 2, 7, 0):
        f.inject_io(IoInterruption.adapter(isc))
    assert [f.dequeue_io(0xFF << 24).isc for _ in range(4)] == [0, 2, 6, 7]


def test_flic_ignores_cr6_bits_outside_the_isc_mask_and_resets():
    f = Flic()
    f.inject_io(IoInterruption.adapter(0))
    assert not f.has_io(0x00FFFFFF | (0xFF << 32))   # CR6 bits 32-39 only
    f.reset()
    assert not f.pending and f.dequeue_io(0xFF << 24) is None


def test_bus_reset_clears_pending_and_sic_state():
    p = registered(isc=2)
    p.setr(r1=1, r3=2 << 27)
    p.run("SIC", r1=1, r3=3)
    msi(p, 0)
    assert p.bus.flic.pending and p.bus.ais_pending
    p.bus.reset()
    assert not p.bus.flic.pending and not p.bus.ais_single and not p.bus.ais_pending


# --- routes (accounting; the guest sees the same under every policy) ------------

def test_forwarding_table_names_every_policy():
    assert set(FORWARDING) == set(POLICY_NAMES)
    assert not FORWARDING["intercept-all"] and FORWARDING["linux-6.0"]


@pytest.mark.parametrize("policy,passthrough,registered_,gisa,aen,idle,route,reason", [
    ("linux-6.0", True, False, 1, AenView(True), False, IrqRoute.NONE, IrqReason.UNREGISTERED),
    ("linux-6.0", False, True, 1, None, False, IrqRoute.USERSPACE, IrqReason.EMULATED),
    ("intercept-all", True, True, 1, AenView(True), False, IrqRoute.KVM, IrqReason.NO_FORWARDING),
    ("linux-6.0", True, True, 0, None, False, IrqRoute.KVM, IrqReason.NO_GISA),
    ("linux-6.0", True, True, 1, None, False, IrqRoute.KVM, IrqReason.NO_AEN),
    ("ioat-assist", True, True, 1, AenView(False), False, IrqRoute.KVM, IrqReason.AEN_HOST),
    ("linux-6.0", True, True, 1, AenView(True), True, IrqRoute.GISA_ALERT, IrqReason.VCPU_IDLE),
    ("firmware-rpcit", True, True, 1, AenView(True), False, IrqRoute.FIRMWARE, IrqReason.FORWARDED),
])
def test_route_table(policy, passthrough, registered_, gisa, aen, idle, route, reason):
    assert irq_route(policy, passthrough, registered_, gisa, aen, idle) == (route, reason)


def world(policy="linux-6.0", assume="passthrough"):
    """A Machine whose function 0 registered interruptions (ISC 3, noi 8) through MPCIFC."""
    m = w.machine(policy, assume)
    g = w.new_guest()
    for a in [("clp", "list", 0), ("clp", "enable", 0), ("mpcifc", "enabled", 0, 2, 0, "good")]:
        w.perform(m, g, a)
    fn = m.bus.functions[0]
    assert fn.irq_registered and fn.isc == 3 and fn.noi == 8
    return m, g, fn


def host_function(m, fn):
    """The host's record of a passed-through function (same fid)."""
    (hf,) = [hf for hf in m.host.functions if hf.fid == fn.fid]
    return hf


def fire(fn, vec=1):
    fn.device.dma.msi(fn.group.msia, vec)


def routes(m, policy):
    return {r: n for r, n in m.stats()["interrupts"]["policies"][policy]["routes"].items() if n}


def test_passthrough_forwarded_under_linux_6_0_injected_by_kvm_before():
    m, g, fn = world()
    hf = host_function(m, fn)
    assert hf.aen is not None and hf.aen.assist            # QEMU's REG_AEN, forwarding assist on
    fire(fn)
    st_ = m.stats()["interrupts"]
    assert st_["events"] == 1 and st_["raised"] == 1
    for p in POLICY_NAMES:
        want = {"firmware": 1} if FORWARDING[p] else {"kvm": 1}
        assert routes(m, p) == want
        assert st_["policies"][p]["skip_host"] == want.get("firmware", 0)
    assert st_["functions"][f"{fn.fid:#x}"]["linux-6.0"] == {"firmware": 1}


def test_host_flag_idle_vcpu_no_gisa_and_no_aen_need_the_host():
    m, g, fn = world()
    hf = host_function(m, fn)
    hf.aen = dataclasses.replace(hf.aen, assist=False)       # KVM_S390_ZPCIOP_REGAEN_HOST
    fire(fn)
    assert routes(m, "linux-6.0") == {"kvm": 1}
    hf.aen = dataclasses.replace(hf.aen, assist=True)
    m.bus.flic.vcpu_idle = True
    fire(fn)
    m.bus.flic.vcpu_idle = False
    hf.aen = None
    fire(fn)
    reasons = m.stats()["interrupts"]["policies"]["linux-6.0"]["reasons"]
    assert reasons == {"aen-host": 1, "vcpu-idle": 1, "no-aen": 1}
    assert m.stats()["interrupts"]["policies"]["linux-6.0"]["skip_host"] == 0


def test_emulated_devices_are_injected_by_qemu():
    m, g, fn = world(assume="as-given")
    fire(fn)
    for p in POLICY_NAMES:
        assert routes(m, p) == {"userspace": 1}


def test_deregistered_function_has_no_route_and_reset_stats_clears():
    m, g, fn = world()
    w.perform(m, g, ("mpcifc", "enabled", 0, 3, 0, "good"))
    assert not fn.irq_registered and host_function(m, fn).aen is None
    fire(fn)
    assert routes(m, "linux-6.0") == {"none": 1}
    m.reset_stats()
    assert m.stats()["interrupts"]["events"] == 0


def test_suppression_and_beyond_noi_are_counted():
    m, g, fn = world()
    fire(fn, 1)
    fire(fn, 9)                       # summary byte still set; vector 9 >= noi 8
    w.perform(m, g, ("sic", 1, 3))    # single mode on ISC 3
    m.bus.memory.write(fn.aisb, bytes(8))
    fire(fn, 1)
    m.bus.memory.write(fn.aisb, bytes(8))
    fire(fn, 1)                       # single mode: suppressed
    s = m.stats()["interrupts"]
    assert (s["events"], s["raised"], s["suppressed"], s["beyond_noi"]) == (
        4, 2, {"summary": 1, "ais": 1}, 1)


def test_routes_do_not_change_what_the_guest_sees():
    seen = []
    for p in POLICY_NAMES:
        m, g, fn = world(p)
        for vec in (0, 1, 1, 7):
            fire(fn, vec)
            m.bus.memory.write(fn.aisb, bytes(8))
        flic = m.bus.flic
        seen.append((bytes(g.mem), [list(q) for q in flic.io], flic.pending))
    assert all(s == seen[0] for s in seen[1:])


# --- the CPU: a guest that takes them ---------------------------------------------

def test_boot_delivers_every_raised_interruption():
    programs = json.loads((ROOT / "traces/guests/programs.json").read_text())
    result, out = emulate(ROOT / "traces/guests/build/wl_irq.elf", programs["wl_irq"])
    assert result.exit_code == 0, result.message
    text = out.decode()
    assert "I loop requests=32 interruptions=32 summary=32 vectors=32" in text
    assert "word=98000000" in text                         # adapter interruption, ISC 3
    irq = result.stats["model"]["interrupts"]
    assert irq["delivered"] == irq["raised"] > 32
    assert irq["suppressed"] == {"summary": 1, "ais": 1} and irq["beyond_noi"] == 1
    assert irq["policies"]["linux-6.0"]["skip_host"] == irq["events"]
    assert irq["policies"]["intercept-all"]["routes"]["kvm"] == irq["events"]


def test_enabled_wait_without_anything_pending_still_stops(tmp_path):
    # an I/O-enabled wait with CR6 = 0 and nothing pending: QEMU would wait forever
    from emulator.cpu.machine import Halt, UcMachine
    from emulator.cpu import lowcore as lc
    flic = Flic()
    m = UcMachine(1 << 20, lambda d, g: None, lambda b: None, flic=flic)
    assert m.irq.flic is flic                              # the bus's FLIC is the CPU's
    psw = lc.psw_bytes(lc.PSW_MASK_IO | lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0x2000)
    m.uc.mem_write(0xF00, psw)
    m.uc.mem_write(0x800, bytes.fromhex("b2b20f00"))      # LPSWE 0xf00
    halt = m.run(0x800)
    assert isinstance(halt, Halt) and halt.exit_code == 1 and "enabled wait" in halt.message
    # with an interruption pending for an ISC CR6 does not enable, the same
    flic.inject_io(IoInterruption.adapter(3))
    halt = m.run(0x800)
    assert "enabled wait" in halt.message and flic.pending


# --- the report column ----------------------------------------------------------------

def test_report_counts_interrupts_from_the_recording(tmp_path):
    from emulator.report import CostModel, run_report
    from emulator.report_irq import recorded_interrupts
    irq_trace, plain = ROOT / "traces/wl_irq.zpt", ROOT / "traces/probe.zpt"
    note = recorded_interrupts(irq_trace)
    assert note is not None and note["events"] > 0 and recorded_interrupts(plain) is None
    lines = []
    rep = run_report([str(irq_trace), str(plain)], str(tmp_path), CostModel(), printer=lines.append)
    rows = {(r["workload"], r["policy"]): r for r in rep["summary"]}
    for p in POLICY_NAMES:
        r = rows[("wl_irq", p)]
        assert r["interrupts"] == note["events"]
        assert r["interrupts_skip_host"] == note["policies"][p]["skip_host"]
        assert rows[("probe", p)]["interrupts_skip_host"] is None
    assert rows[("wl_irq", "linux-6.0")]["interrupts_skip_host"] == note["events"]
    assert rows[("wl_irq", "intercept-all")]["interrupts_skip_host"] == 0
    table = "\n".join(lines)
    assert "irq skip host" in table and f"{note['events']}/{note['events']}" in table
    import csv
    with open(tmp_path / "report.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    for row in csv_rows:       # every row of a workload and policy carries its interrupts
        if row["workload"] == "wl_irq":
            assert row["interrupts"] == str(note["events"])
            assert row["interrupts_skip_host"] == str(note["policies"][row["policy"]]["skip_host"])
        else:
            assert row["interrupts"] == row["interrupts_skip_host"] == "-"
    assert {r["workload"] for r in csv_rows} == {"wl_irq", "probe"}
    rep = run_report([str(irq_trace)], None, CostModel(), assume="as-recorded", printer=lambda s: None)
    assert all(r["interrupts_skip_host"] == 0 for r in rep["summary"])


def test_note_kind_is_what_boot_writes(tmp_path):
    from emulator.trace.reader import TraceReader
    from emulator.trace.format import Note
    with TraceReader(ROOT / "traces/wl_irq.zpt") as rd:
        kinds = [rec.kind for rec in rd if isinstance(rec, Note)]
    assert kinds == [IRQ_NOTE]


def test_lpswe_enabling_io_takes_the_pending_interruption_at_once():
    from emulator.cpu.machine import UcMachine
    from emulator.cpu import lowcore as lc
    from emulator.cpu.native import REG_CR0
    flic = Flic()
    m = UcMachine(1 << 20, lambda d, g: None, lambda b: None, flic=flic)
    m.uc.mem_write(0xF00, lc.psw_bytes(lc.PSW_MASK_IO | lc.IPL_PSW_MASK, 0x3000))
    m.uc.mem_write(0xF10, lc.psw_bytes(lc.PSW_MASK_WAIT | lc.IPL_PSW_MASK, 0xFFF))
    m.uc.mem_write(lc.IO_NEW_PSW, lc.psw_bytes(lc.IPL_PSW_MASK, 0x4000))
    m.uc.mem_write(0x4000, bytes.fromhex("b2b20f10"))         # handler: quiesce
    m.uc.mem_write(0x800, bytes.fromhex("b2b20f00"))          # LPSWE to an I/O-enabled PSW
    flic.inject_io(IoInterruption.adapter(3))
    flic.inject_io(IoInterruption.adapter(5))
    m.uc.reg_write(REG_CR0 + 6, (0x80 >> 5) << 24)            # only ISC 5 enabled
    halt = m.run(0x800)
    assert halt.exit_code == 0, halt.message
    assert m.read(0xB8, 12) == bytes(8) + (0x80000000 | 5 << 27).to_bytes(4, "big")
    old = m.read(lc.IO_OLD_PSW, 16)
    assert int.from_bytes(old[8:], "big") == 0x3000 and old[0] & 0x02     # nothing ran at 0x3000
    assert flic.pending == 0x80 >> 3 and flic.delivered == 1
