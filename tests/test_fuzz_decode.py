"""Fuzzing the C decoder through its cffi API and through ``zpci-emu decode``.

The API: any bytes at any base address that leaves room for them, including
the top of the 64-bit space, must walk without a crash and with records that
stay inside the buffer; bases that leave no room are a ValueError, never a
wrapped address.  The command: random files (raw, or mutated ELFs) decode or
fail with one line, and the listing has one line per zPCI instruction.
"""
from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _contract import assert_contract, run_cli_forked
from _helpers import ROOT
from emulator.decode import (
    ADDR_LIMIT, TRUNCATED, count_insns, decode_buffer, decode_one, insn_length)
from emulator.errors import UserError

PROBE_ELF = ROOT / "traces/guests/build/probe.elf"


@st.composite
def buffer_and_base(draw):
    buf = draw(st.binary(max_size=600) | st.lists(
        st.sampled_from([b"\xb9\xd2\x00\x12", b"\xeb\x23\x40\x00\x00\xd0", b"\x07\x07",
                         b"\xe3\x00", b"\xb9"]), max_size=80).map(b"".join))
    room = ADDR_LIMIT - len(buf)
    base = draw(st.integers(0, room) | st.integers(max(0, room - 64), room))
    return buf, base


@settings(max_examples=300)
@given(case=buffer_and_base())
def test_decode_buffer_any_bytes_any_base(case):
    buf, base = case
    res = decode_buffer(buf, base)
    end = base + len(buf)
    assert res.nzpci == sum(res.counts) <= res.total
    for i in range(len(res)):
        r = res[i]
        assert base <= r.addr and r.addr + r.ilen <= end and r.ilen in (4, 6)
    if res.truncated:
        assert base <= res.trunc_addr < end
        first = buf[res.trunc_addr - base]
        assert 0 < res.trunc_bytes == end - res.trunc_addr < insn_length(first)
    c = count_insns(buf, base)
    assert (c.total, c.counts) == (res.total, res.counts)


@settings(max_examples=200)
@given(case=buffer_and_base(), lo=st.integers(0, 700), span=st.integers(0, 700))
def test_count_insns_any_range(case, lo, span):
    buf, base = case
    if base + lo >= ADDR_LIMIT:
        return
    c = count_insns(buf, base, base + lo, base + lo + span)
    assert c.total <= len(buf) // 2 + 1 and c.stop >= base + min(lo, len(buf))


@settings(max_examples=200)
@given(buf=st.binary(max_size=8), addr=st.integers(0, ADDR_LIMIT - 1))
def test_decode_one_any_bytes(buf, addr):
    d = decode_one(buf, addr, zpci_only=False)
    if not buf:
        assert d is None
        return
    assert d.ilen == insn_length(buf[0])
    assert bool(d.flags & TRUNCATED) == (len(buf) < d.ilen)


@given(buf=st.binary(min_size=1, max_size=64), past=st.integers(1, 1 << 70))
def test_base_without_room_is_a_value_error(buf, past):
    with pytest.raises(ValueError):
        decode_buffer(buf, ADDR_LIMIT - len(buf) + past)


# --------------------------------------------------------------------------- the command

@functools.lru_cache(maxsize=None)
def _elf() -> bytes:
    return PROBE_ELF.read_bytes()


@settings(max_examples=25)
@given(raw=st.binary(max_size=2000), base=st.none() | st.integers(0, ADDR_LIMIT - 1))
def test_decode_command_on_random_files(tmp_path_factory, raw, base):
    d = tmp_path_factory.mktemp("raw")
    (d / "blob").write_bytes(raw)
    argv = ["decode", "--raw", "blob"] + ([] if base is None else ["--base", hex(base)])
    run = run_cli_forked(argv, d)
    fits = base is None or base + len(raw) <= ADDR_LIMIT
    assert_contract(run, 0 if fits else 1)
    if fits:
        want = len(decode_buffer(raw, base or 0))
        assert run.stdout.decode().count("\n") == want


@settings(max_examples=40)
@given(flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), min_size=1,
                      max_size=6))
def test_mutated_elf_decodes_or_fails_in_one_line(tmp_path_factory, flips):
    """Bytes flipped in the ELF header and program headers (the first 2 KiB) and in
    the section header table (the last 2 KiB), through the decoder's and the
    loader's ELF readers in process."""
    from emulator.cpu.elf_load import parse
    from emulator.elfio import executable_regions
    raw = bytearray(_elf())
    for at, x in flips:
        i = at if at < 2048 else len(raw) - 4096 + at
        raw[i] ^= x
    p = tmp_path_factory.mktemp("elf") / "m.elf"
    p.write_bytes(bytes(raw))
    for read in (executable_regions, lambda path: parse(bytes(raw), 128 << 20, str(path))):
        try:
            read(p)
        except UserError as exc:
            assert "\n" not in str(exc) and str(p) in str(exc)
