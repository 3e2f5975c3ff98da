"""PCILG / PCISTG / PCISTB: QEMU 7.2's checks, in its order, and their effects."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from test_semantics_common import BLK, Probe

from firmware_model.arch import FnState, Pgm
from firmware_model.devices.memdev import BarSpec, MemDevice

DEAD = 0xDEADBEEFDEADBEEF


def enabled_probe(**kw):
    p = Probe(**kw)
    efh = p.enable()
    return p, efh


def req(fh, pcias, length):
    return (fh << 32) | (pcias << 16) | length


# -- order of checks ----------------------------------------------------------

def test_problem_state_beats_every_other_check():
    p, efh = enabled_probe()
    p.guest.problem_state = True
    c, reg, val = p.pcilg(req(efh, 15, 4), 0, r2=3)        # odd R2 too
    assert c.pgm == Pgm.PRIVILEGED and val == DEAD
    for mn in ("PCISTG", "PCISTB", "RPCIT", "MPCIFC", "STPCIFC", "CLP", "SIC"):
        assert p.run(mn, r1=2, r2=3, r3=4).pgm == Pgm.PRIVILEGED


def test_odd_r2_is_a_specification_exception_before_the_handle_is_looked_at():
    p = Probe()
    p.setr(r3=req(0x12345678, 99, 4))
    assert p.run("PCILG", r1=5, r2=3).pgm == Pgm.SPECIFICATION
    assert p.run("PCISTG", r1=5, r2=3).pgm == Pgm.SPECIFICATION
    assert p.gpr(3) == req(0x12345678, 99, 4)


def test_handle_without_enable_bit_is_cc3_even_if_it_names_the_function():
    p, efh = enabled_probe()
    c, reg, val = p.pcilg(req(efh & 0x7FFFFFFF, 15, 4), 0)
    assert (c.cc, reg, val) == (3, req(efh & 0x7FFFFFFF, 15, 4), DEAD)


def test_stale_instance_bits_do_not_match():
    p, efh = enabled_probe()
    c, _, _ = p.pcilg(req(efh | 0x01000000, 15, 4), 0)
    assert c.cc == 3


@pytest.mark.parametrize("state", [FnState.ERROR, FnState.PERMANENT_ERROR])
def test_error_states_give_cc1_status_blocked_before_the_pcias_is_checked(state):
    p, efh = enabled_probe()
    p.fn.state = state
    c, reg, val = p.pcilg(req(efh, 7, 0), 0)                # bad PCIAS and length too
    assert (c.cc, reg, val) == (1, req(efh, 7, 0) | (12 << 24), DEAD)
    c, reg = p.pcistg(1, req(efh, 4, 4) | (0xAB << 24), 0)
    assert (c.cc, reg) == (1, req(efh, 4, 4) | (12 << 24))      # only bits 32-39 replaced
    c, reg = p.pcistb(req(efh, 1, 3), 5, BLK + 1)
    assert (c.cc, reg) == (1, req(efh, 1, 3) | (12 << 24))


def test_blocked_state_still_loads():
    p, efh = enabled_probe()
    p.fn.state = FnState.BLOCKED
    c, _, val = p.pcilg(req(efh, 15, 2), 0)
    assert (c.cc, val) == (0, 0xF41A)


# -- config space -----------------------------------------------------------

def test_config_reads_are_byte_swapped_right_aligned():
    p, efh = enabled_probe()
    assert p.pcilg(req(efh, 15, 1), 1)[2] == 0x1A
    assert p.pcilg(req(efh, 15, 2), 2)[2] == 0x0510
    assert p.pcilg(req(efh, 15, 4), 0)[2] == 0xF41A0510


def test_config_read_past_the_config_space_returns_all_ones_unswapped_for_one_byte():
    p, efh = enabled_probe()
    assert p.pcilg(req(efh, 15, 4), 0x100)[2] == 0xFFFFFFFF
    assert p.pcilg(req(efh, 15, 2), 0xFFE)[2] == 0xFFFF
    # QEMU widens the 32-bit ~0 and does not mask it for a 1-byte access
    assert p.pcilg(req(efh, 15, 1), 0x1000)[2] == 0xFFFFFFFF


def test_config_offset_is_truncated_to_32_bits():
    p, efh = enabled_probe()
    assert p.pcilg(req(efh, 15, 2), (1 << 32) | 2)[2] == 0x0510


def test_config_store_swaps_and_respects_write_mask():
    p, efh = enabled_probe()
    c, _ = p.pcistg(0xFFFF, req(efh, 15, 2), 4)
    assert c.cc == 0
    assert p.dev.config_read(4, 2) == 0x0547
    assert p.pcistg(0x11, req(efh, 15, 1), 0x200)[0].cc == 0      # dropped, still cc 0
    assert p.fn.counters == [0, 2, 0, 0]


@given(length=st.integers(0, 15), offset=st.integers(0, 0x1FF))
def test_config_length_rule(length, offset):
    p, efh = enabled_probe()
    c, reg, val = p.pcilg(req(efh, 15, length), offset)
    ok = length in (1, 2, 4) and length <= 4 - (offset & 3)
    assert (c.pgm is None) == ok
    if not ok:
        assert c.pgm == Pgm.OPERAND and val == DEAD and p.fn.counters[0] == 0
    else:
        assert c.cc == 0 and p.fn.counters[0] == 1


# -- BARs ---------------------------------------------------------------------

def bar_reference(spec: BarSpec | None, length, offset):
    """Independent statement of the rules: ('as'|'operand'|'ok')."""
    if spec is None:
        return "as"
    if not length or length > 8 - (offset & 7):
        return "operand"
    if not spec.min_access <= length <= spec.max_access:
        return "operand"
    if not spec.unaligned and offset % length:
        return "operand"
    windows = spec.windows or ((0, spec.size),)
    if not any(lo <= offset and offset + length <= lo + n for lo, n in windows):
        return "operand"
    return "ok"


@given(pcias=st.integers(0, 15), length=st.integers(0, 15),
       offset=st.one_of(st.integers(0, 0x4010), st.integers(0, (1 << 64) - 1),
                        st.sampled_from([0, 4, 0x18, 0x1C, 0x20, 0x7FC, 0x800, 0x804, 0x808])))
def test_pcilg_outcome_matches_reference_rules(pcias, length, offset):
    p, efh = enabled_probe()
    c, reg, val = p.pcilg(req(efh, pcias, length), offset)
    if pcias == 15:
        return                                   # config space: see above
    expect = bar_reference(p.dev.bars.get(pcias), length, offset) if pcias <= 5 else "as"
    if expect == "as":
        assert (c.cc, (reg >> 24) & 0xFF, val) == (1, 20, DEAD)
    elif expect == "operand":
        assert c.pgm == Pgm.OPERAND and val == DEAD and reg == req(efh, pcias, length)
    else:
        assert c.cc == 0 and val == 0 and reg == req(efh, pcias, length)


@given(length=st.sampled_from([1, 2, 4, 8]), data=st.integers(0, (1 << 64) - 1),
       slot=st.integers(0, 511))
def test_bar_store_then_load_round_trips_rightmost_bytes(length, data, slot):
    p, efh = enabled_probe()
    offset = slot * 8
    c, _ = p.pcistg(data, req(efh, 4, length), offset)
    assert c.cc == 0
    c, _, val = p.pcilg(req(efh, 4, length), offset)
    assert val == data & ((1 << (8 * length)) - 1)
    # big-endian access: the first byte in storage is the most significant
    assert p.dev.mem[4][offset] == (data >> (8 * (length - 1))) & 0xFF


def test_empty_bar_is_an_invalid_address_space_not_a_crash():
    p, efh = enabled_probe()
    assert p.fn.bar_size(2) == 0
    c, reg, _ = p.pcilg(req(efh, 2, 4), 0)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 20)
    c, reg = p.pcistg(0, req(efh, 2, 0), 0)                 # before the length check
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 20)
    c, reg = p.pcistb(req(efh, 3, 16), 0, BLK)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 20)


# -- PCISTB -------------------------------------------------------------------

def pcistb_reference(length, offset, gaddr, maxstbl=128):
    if offset % 8 or length <= 8 or length % 8 or length > maxstbl:
        return "spec"
    if (offset & 0xFFF) + length > 0x1000 or gaddr & 7:
        return "spec"
    return "ok"


@given(length=st.integers(0, 0x1FFF), offset=st.integers(0, 0x3FFF),
       gaddr=st.integers(BLK - 16, BLK + 16))
def test_pcistb_specification_rules(length, offset, gaddr):
    p, efh = enabled_probe()
    c, reg = p.pcistb(req(efh, 4, length), offset, gaddr)
    expect = pcistb_reference(length, offset, gaddr)
    if expect == "spec":
        assert c.pgm == Pgm.SPECIFICATION
    else:
        assert c.cc == 0 and p.fn.counters[2] == 1
        assert bytes(p.dev.mem[4][offset:offset + length]) == p.mem(gaddr, length)


def test_pcistb_length_field_is_13_bits_and_maxstbl_comes_from_the_group():
    p, efh = enabled_probe()
    c, _ = p.pcistb(req(efh, 4, 0x2000 | 16), 0, BLK)        # bit 0x2000 ignored
    assert c.cc == 0
    assert p.pcistb(req(efh, 4, 136), 0, BLK)[0].pgm == Pgm.SPECIFICATION


def test_pcistb_operand_exception_before_reading_guest_storage_and_no_partial_write():
    p, efh = enabled_probe()
    far = len(p.guest.mem) + 0x1000
    # a valid BAR range with an unreadable source: addressing exception
    c, _ = p.pcistb(req(efh, 4, 16), 0xFF0, far)
    assert c.pgm == Pgm.ADDRESSING
    # a BAR that refuses 8-byte accesses: operand exception, found before the source is read
    q = Probe(device=MemDevice(bars={0: BarSpec(4096, max_access=4)}))
    e = q.enable()
    c, _ = q.pcistb(req(e, 0, 16), 0, far)
    assert c.pgm == Pgm.OPERAND and q.fn.counters[2] == 0
    q.poke(BLK, b"\x77" * 16)
    c, _ = q.pcistb(req(e, 0, 16), 0, BLK)
    assert c.pgm == Pgm.OPERAND and bytes(q.dev.mem[0][:16]) == bytes(16)


def test_pcistb_on_a_virtio_model_checks_the_block_before_the_source():
    # QEMU 7.2 (SEMPROBE's PCISTB_FAR lines): a block the MSI-X table holds reaches the
    # source fetch; one running past the table is refused first
    from firmware_model.devices import make_device
    p, efh = enabled_probe(device=make_device("virtio-rng-pci", ()))
    far = len(p.guest.mem) + 0x1000
    assert p.pcistb(req(efh, 1, 16), 0, far)[0].pgm == Pgm.ADDRESSING
    assert p.pcistb(req(efh, 1, 64), 0, far)[0].pgm == Pgm.OPERAND
    p.poke(BLK, bytes(range(64)))
    assert p.pcistb(req(efh, 1, 64), 0, BLK)[0].pgm == Pgm.OPERAND
    assert p.dev.bar_read(1, 0, 8) == 0 and p.fn.counters[2] == 0    # nothing stored
    assert p.pcistb(req(efh, 1, 32), 0, BLK)[0].cc == 0 and p.fn.counters[2] == 1


def test_pcistb_uses_the_base_register_and_displacement():
    p, efh = enabled_probe()
    p.poke(BLK, bytes(range(32)))
    p.setr(r4=req(efh, 4, 16), r5=0x100, r6=BLK - 0x10)
    c = p.run("PCISTB", r1=4, r3=5, b2=6, d2=0x10)
    assert c.cc == 0 and bytes(p.dev.mem[4][0x100:0x110]) == bytes(range(16))
    p.setr(r4=req(efh, 4, 16))
    c = p.run("PCISTB", r1=4, r3=5, b2=0, d2=BLK)           # base 0 = no register
    assert c.cc == 0


def test_counters_count_only_completed_accesses():
    p, efh = enabled_probe()
    p.pcilg(req(efh, 15, 4), 0)
    p.pcilg(req(efh, 15, 3), 0)
    p.pcistg(0, req(efh, 4, 4), 0)
    p.pcistg(0, req(efh, 9, 4), 0)
    p.pcistb(req(efh, 4, 16), 0, BLK)
    p.pcistb(req(efh, 4, 8), 0, BLK)
    assert p.fn.counters == [1, 1, 1, 0]


def test_msix_shaped_bar_refuses_accesses_between_its_windows():
    p, efh = enabled_probe()
    assert p.pcilg(req(efh, 1, 4), 0x1C)[0].cc == 0
    assert p.pcilg(req(efh, 1, 4), 0x20)[0].pgm == Pgm.OPERAND
    assert p.pcilg(req(efh, 1, 8), 0x800)[0].cc == 0
    assert p.pcistb(req(efh, 1, 40), 0, BLK)[0].pgm == Pgm.OPERAND


@pytest.mark.parametrize("offset,length,ok", [
    (0xFF8, 16, False), (0xF80, 128, True), (0xF88, 128, False), (0x1FF0, 16, True),
    (0x2FF8, 16, False), (0x3F80, 128, True)])
def test_pcistb_must_not_cross_a_4k_boundary_of_the_bar_offset(offset, length, ok):
    p, efh = enabled_probe()
    c, _ = p.pcistb(req(efh, 4, length), offset, BLK)
    assert (c.cc == 0) if ok else (c.pgm == Pgm.SPECIFICATION)


# -- accesses resolved once (semantics.load_op / store_op) ------------------------

_VIRTIO_ACCESSES = st.lists(st.tuples(
    st.sampled_from(["PCILG", "PCISTG"]),
    st.sampled_from([15, 1, 4]),                  # config space, the MSI-X BAR, the modern BAR
    st.sampled_from([0, 2, 4, 8, 0x10, 0x18, 0x1C, 0x40, 0x800, 0x1000]),
    st.sampled_from([1, 2, 3, 4, 8]),
    st.integers(0, (1 << 64) - 1)), min_size=1, max_size=40)


@given(accesses=_VIRTIO_ACCESSES)
def test_resolved_accesses_answer_what_a_fresh_resolution_does(accesses):
    # one function of a real device model, its accesses repeated and interleaved
    # with stores: each load gives what resolving it afresh (pci_load, which
    # keeps nothing) gives at that moment, so no op holds a value or goes stale
    import test_props_world as w
    from firmware_model.semantics import pci_load

    m = w.machine("linux-6.0", config=w.CONFIG_VIRTIO)
    g = w.new_guest()
    for a in [("clp", "list", 0), ("clp", "enable", 0)]:
        w.perform(m, g, a)
    fn = m.bus.functions[0]
    fh = w.handle("enabled", 0)
    for mn, pcias, offset, length, data in accesses * 2:
        want = pci_load(fn, pcias, offset, length) if mn == "PCILG" else None
        out = m.execute(w.load_store(g, mn, fh, pcias, length, offset, data), g)
        if mn == "PCILG" and out.completion.cc == 0:
            assert g.gpr(1) == want
    assert fn.load_ops or fn.store_ops


def test_the_resolved_accesses_of_a_function_are_bounded():
    from firmware_model.semantics import OP_CACHE_LIMIT
    p, efh = enabled_probe()
    for offset in range(0, 4 * (OP_CACHE_LIMIT + 10), 4):
        c, _, _ = p.pcilg(req(efh, 4, 4), offset % 0x4000 + (offset // 0x4000 << 20))
        assert len(p.fn.load_ops) <= OP_CACHE_LIMIT
    # still answering after the cache started over
    c, _ = p.pcistg(0x11223344, req(efh, 4, 4), 8)
    assert c.cc == 0 and p.pcilg(req(efh, 4, 4), 8)[2] == 0x11223344
