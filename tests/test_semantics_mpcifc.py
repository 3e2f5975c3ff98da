"""MPCIFC, STPCIFC, the FIB and the function measurement block."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from test_semantics_common import FIB, Probe, be32, be64

from firmware_model.arch import FnState, Pec, Pgm
from firmware_model.fib import Fib

SDMA = 0x100000000
IOTA = 0x2C000 | 0x804
FMB = 0x60000


def enabled():
    p = Probe()
    return p, p.enable()


def mp(p, efh, oc, dmaas=0, fiba=FIB, **fib):
    if fib:
        p.write_fib(fiba, **fib)
    c, reg = p.mpcifc((efh << 32) | (dmaas << 16) | oc, fiba)
    return c, reg


def status(reg):
    return (reg >> 24) & 0xFF


def stored_fib(p, efh, fiba=FIB):
    c, reg = p.stpcifc(efh << 32, fiba)
    return c, reg, Fib.unpack(p.mem(fiba, 80))


# -- FIB -----------------------------------------------------------------------

@given(st.binary(min_size=80, max_size=80))
def test_fib_unpack_pack_keeps_every_defined_field(raw):
    fib = Fib.unpack(raw)
    again = Fib.unpack(fib.pack())
    assert again == fib
    out = fib.pack()
    for lo, hi in ((0, 1), (8, 9), (16, 40), (48, 72), (76, 80)):
        assert out[lo:hi] == raw[lo:hi]
    # the interruption word keeps its defined fields, reserved bits read as zero
    assert be32(out, 40) == be32(raw, 40) & 0x7FFF3FBF
    assert out[1:8] == bytes(7) and out[9:16] == bytes(7) and out[44:48] == bytes(4)


# -- common checks ----------------------------------------------------------------

def test_mpcifc_check_order():
    p, efh = enabled()
    c, _ = p.mpcifc((0x1234 << 32) | 0x55, FIB + 4)             # unaligned beats unknown fh
    assert c.pgm == Pgm.SPECIFICATION
    assert mp(p, 0x00020000, 4)[0].cc == 3                          # stale (disabled) handle
    p.setr(r4=(efh << 32) | 4, r6=len(p.guest.mem) - 8)
    assert p.run("MPCIFC", r1=4, b2=6).pgm == Pgm.ADDRESSING        # FIB past storage
    c, _ = mp(p, efh, 4, fmt=1, pba=SDMA, pal=SDMA, iota=IOTA)
    assert c.pgm == Pgm.OPERAND                                     # format before oc
    for oc in (0, 1, 8, 11, 16, 17, 0xFF):
        assert mp(p, efh, oc, dmaas=1)[0].pgm == Pgm.OPERAND


@pytest.mark.parametrize("state", [FnState.RESERVED, FnState.STANDBY, FnState.DISABLED,
                                   FnState.PERMANENT_ERROR])
def test_mpcifc_unusable_states_are_cc3(state):
    p, efh = enabled()
    p.fn.state = state
    assert mp(p, efh, 7)[0].cc == 3


# -- IOAT ------------------------------------------------------------------------

@given(pba=st.integers(0, 1 << 58), span=st.integers(0, 1 << 58),
       dt=st.integers(0, 7), t=st.booleans())
def test_reg_ioat_validation(pba, span, dt, t):
    p, efh = enabled()
    pal = pba + span
    iota = 0x2C000 | (dt << 2) | (0x800 if t else 0)
    c, reg = mp(p, efh, 4, pba=pba, pal=pal, iota=iota)
    a, b = pba & ~0xFFF, pal | 0xFFF
    ok = a <= b and a >= SDMA and b <= 0x01FFFFFFFFFFFFFF and dt == 1 and t
    if ok:
        assert c.cc == 0 and (p.fn.pba, p.fn.pal, p.fn.iota) == (a, b, iota)
    else:
        assert c.pgm == Pgm.OPERAND and not p.fn.ioat_enabled and status(reg) == 0


def test_ioat_sequence_and_dmaas_statuses():
    p, efh = enabled()
    good = dict(pba=SDMA, pal=SDMA + 0xFFFFF, iota=IOTA)
    assert status(mp(p, efh, 4, dmaas=2, **good)[1]) == 28
    assert status(mp(p, efh, 5)[1]) == 24
    assert status(mp(p, efh, 6)[1]) == 24
    assert mp(p, efh, 4, **good)[0].cc == 0
    assert status(mp(p, efh, 4, **good)[1]) == 24
    assert status(mp(p, efh, 5, dmaas=1)[1]) == 28
    p.fn.iotlb[SDMA] = "stale"
    assert mp(p, efh, 6, pba=SDMA + 0x2000, pal=SDMA + 0x2FFF, iota=IOTA)[0].cc == 0
    assert (p.fn.pba, p.fn.pal, p.fn.iotlb) == (SDMA + 0x2000, SDMA + 0x2FFF, {})
    # re-register with a bad FIB: the old IOAT is gone, operand exception
    assert mp(p, efh, 6, pba=0, pal=0xFFF, iota=IOTA)[0].pgm == Pgm.OPERAND
    assert not p.fn.ioat_enabled and p.fn.iota == 0
    assert status(mp(p, efh, 5)[1]) == 24


def test_reg_ioat_window_may_reach_sdma_and_edma_exactly():
    p, efh = enabled()
    c, _ = mp(p, efh, 4, pba=SDMA, pal=0x01FFFFFFFFFFF000, iota=IOTA)
    assert c.cc == 0 and p.fn.pal == 0x01FFFFFFFFFFFFFF
    q, e = enabled()
    assert mp(q, e, 4, pba=SDMA - 1, pal=SDMA, iota=IOTA)[0].pgm == Pgm.OPERAND


# -- interrupts --------------------------------------------------------------------

def test_interrupt_registration_round_trip_through_stpcifc():
    p, efh = enabled()
    irq = dict(isc=5, noi=33, aibvo=7, sum=1, aisbo=40, aibv=0x51000, aisb=0x52000)
    assert mp(p, efh, 2, **irq)[0].cc == 0
    assert status(mp(p, efh, 2, **irq)[1]) == 24
    _, _, fib = stored_fib(p, efh)
    assert (fib.isc, fib.noi, fib.aibvo, fib.sum, fib.aisbo, fib.aibv, fib.aisb) == tuple(irq.values())
    assert mp(p, efh, 3)[0].cc == 0
    assert status(mp(p, efh, 3)[1]) == 24
    _, _, fib = stored_fib(p, efh)
    assert fib == Fib(fc=0x80)


def test_interpreted_function_uses_the_aen_hooks():
    p, efh = enabled()
    p.fn.interp = True
    assert status(mp(p, efh, 2, isc=1)[1]) == 24                   # default hook: failure
    calls = []

    class Host(type(p.handler)):
        def reg_aen(self, fn, fib):
            calls.append(("reg", fib.isc))
            return True

        def dereg_aen(self, fn):
            calls.append(("dereg",))
            return True

    p.handler = Host(p.bus)
    assert mp(p, efh, 2, isc=1)[0].cc == 0 and mp(p, efh, 3)[0].cc == 0
    assert calls == [("reg", 1), ("dereg",)] and not p.fn.irq_registered


# -- error recovery state machine ---------------------------------------------------

@given(st.lists(st.sampled_from([7, 9, "err", "blk"]), max_size=12))
def test_reset_error_and_reset_block_state_machine(ops):
    p, efh = enabled()
    model = FnState.ENABLED
    for op in ops:
        if op == "err":
            p.fn.state = model = FnState.ERROR
            continue
        if op == "blk":
            p.fn.state = model = FnState.BLOCKED
            continue
        c, reg = mp(p, efh, op)
        if op == 7 and model in (FnState.ERROR, FnState.BLOCKED):
            model, want = FnState.ENABLED, 0
        elif op == 9 and model is FnState.ERROR:
            model, want = FnState.BLOCKED, 0
        else:
            want = 1
        assert c.cc == want and p.fn.state is model
        if want:
            assert status(reg) == 24


# -- STPCIFC ------------------------------------------------------------------------

def test_stpcifc_function_controls_per_state():
    p, efh = enabled()
    for state, fc in ((FnState.ENABLED, 0x80), (FnState.BLOCKED, 0xC0), (FnState.ERROR, 0xE0)):
        p.fn.state = state
        c, _, fib = stored_fib(p, efh)
        assert c.cc == 0 and fib.fc == fc
    p.fn.state = FnState.ENABLED
    mp(p, efh, 4, pba=SDMA + 0x10, pal=SDMA + 0x10, iota=IOTA)
    _, _, fib = stored_fib(p, efh)
    assert (fib.fc, fib.pba, fib.pal, fib.iota) == (0x90, SDMA, SDMA + 0xFFF, IOTA)
    p.fn.state = FnState.PERMANENT_ERROR
    c, reg = p.stpcifc(efh << 32, FIB)
    assert (c.cc, status(reg)) == (1, 8)


def test_stpcifc_looks_up_by_index_only():
    p, efh = enabled()
    p.poke(FIB, b"\xaa" * 88)
    c, reg = p.stpcifc((efh & 0x7FFFFFFF) << 32, FIB)      # no enable bit: found, bit 0 set in R1
    assert c.cc == 0 and reg == ((efh & 0x7FFFFFFF) << 32) | (1 << 63)
    assert p.mem(FIB, 88) == Fib(fc=0x80).pack() + b"\xaa" * 8
    c, reg = p.stpcifc((efh ^ 0x00FF0000) << 32, FIB)     # other SHM bits: same index
    assert c.cc == 0
    assert p.stpcifc(0x80020001 << 32, FIB)[0].cc == 3


def test_stpcifc_disabled_function():
    p = Probe()
    fh = p.fn.fh
    p.poke(FIB, b"\xaa" * 80)
    assert p.stpcifc(((fh | 0x80000000) << 32), FIB)[0].cc == 3
    c, reg = p.stpcifc(fh << 32, FIB)
    assert c.cc == 0 and p.mem(FIB, 80) == bytes(80) and reg == fh << 32


def test_stpcifc_dmaas_first_then_alignment_then_storage():
    p, efh = enabled()
    c, reg = p.stpcifc((0x1234 << 32) | (3 << 16), FIB + 1)
    assert (c.cc, status(reg)) == (1, 28)
    assert p.stpcifc(efh << 32, FIB + 4)[0].pgm == Pgm.SPECIFICATION
    assert p.stpcifc(efh << 32, len(p.guest.mem) - 40)[0].pgm == Pgm.ADDRESSING


# -- measurement ----------------------------------------------------------------------

def fmb(p):
    raw = p.mem(FMB, 48)
    return be32(raw, 4), be64(raw, 8), [be64(raw, 16 + 8 * i) for i in range(4)]


def test_set_measure_stores_the_block_and_keeps_it_current():
    p, efh = enabled()
    p.pcilg((efh << 32) | (15 << 16) | 4, 0)                  # counted before measurement
    p.poke(FMB, b"\xee" * 64)
    assert mp(p, efh, 10, fmb_addr=FMB)[0].cc == 0
    assert fmb(p) == (0, 0, [1, 0, 0, 0])
    assert p.mem(FMB, 4) == b"\xee" * 4                      # format word untouched, as QEMU
    assert p.mem(FMB + 48, 16) == b"\xee" * 16
    p.pcistg(0, (efh << 32) | (4 << 16) | 4, 0)
    p.pcilg((efh << 32) | (15 << 16) | 4, 0)
    assert fmb(p) == (2, 0, [2, 1, 0, 0])
    p.bus.tod = lambda: 0x1234
    p.pcistg(0, (efh << 32) | (4 << 16) | 4, 0)
    assert fmb(p) == (3, 0x2468, [2, 2, 0, 0])
    _, _, fib = stored_fib(p, efh)
    assert fib.fmb_addr == FMB


def test_set_measure_stop_and_key_error_clear_the_counters():
    p, efh = enabled()
    mp(p, efh, 10, fmb_addr=FMB)
    p.pcilg((efh << 32) | (15 << 16) | 4, 0)
    assert mp(p, efh, 10, fmb_addr=0)[0].cc == 0
    assert p.fn.counters == [0, 0, 0, 0] and p.fn.fmb_addr == 0
    p.pcilg((efh << 32) | (15 << 16) | 4, 0)
    p.setr(r4=(efh << 32) | 10 | (0x77 << 24))
    p.write_fib(fmb_addr=FMB | 3)
    c = p.run("MPCIFC", r1=4, b2=6)
    assert c.cc == 1 and p.gpr(4) == (efh << 32) | 10 | (0x77 << 24)    # no status stored
    assert p.bus.events[-1].pec == Pec.FMBPRO and p.fn.counters == [0, 0, 0, 0]


def test_fmb_outside_storage_raises_fmba_and_stops_measurement():
    p, efh = enabled()
    end = len(p.guest.mem)
    assert mp(p, efh, 10, fmb_addr=end - 16)[0].cc == 0
    assert p.bus.events[-1].pec == Pec.FMBA and p.fn.fmb_addr == 0
    # QEMU's piecewise stores: last_update (with U bit) fits and stays written
    assert p.mem(end - 8, 8) == struct.pack(">Q", 1)
