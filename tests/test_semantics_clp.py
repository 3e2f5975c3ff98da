"""CLP: LIST PCI, QUERY PCI FN, QUERY PCI FNGRP, SET PCI FN, and the block checks."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from test_semantics_common import LPCB, Probe, be16, be32, be64

from firmware_model.arch import ClpRsp, FnState, Pgm
from firmware_model.devices.memdev import MemDevice
from firmware_model.function import FunctionGroup


def multi(n=3, **kw):
    p = Probe(**kw)
    extra = [p.bus.plug(MemDevice(device_id=0x1000 + i)) for i in range(n - 1)]
    return p, [p.fn] + extra


def list_pci(p, token=0, rsp_len=4096 - 32, fmt=0, reserved=0):
    body = struct.pack(">Q", token)
    blk = bytearray(8192)
    struct.pack_into(">HHIQ", blk, 0, 32, 2, fmt, reserved)
    blk[16:24] = body
    struct.pack_into(">H", blk, 32, rsp_len)
    p.poke(LPCB, bytes(blk))
    c = p.clp()
    return c, p.mem(LPCB, 8192)


def entries(blk):
    n = (be16(blk, 32) - 32) // 16
    return [struct.unpack_from(">HHIII", blk, 64 + 16 * i) for i in range(n)]


def test_list_reports_functions_in_plug_order_with_qemu_identifiers():
    p, fns = multi(3)
    c, blk = list_pci(p)
    assert c.cc == 0 and be16(blk, 34) == ClpRsp.OK
    # fid: 1 given, then lowest free from 0; uid 1 given, then from 2; fh = index | SHM_EMUL
    assert entries(blk) == [(0x1005, 0x1AF4, 0x80000000, 1, 0x00020000),
                            (0x1000, 0x1AF4, 0x80000000, 0, 0x00020001),
                            (0x1001, 0x1AF4, 0x80000000, 2, 0x00020002)]
    assert [f.uid for f in fns] == [1, 2, 3]
    assert be64(blk, 48) == 0 and be32(blk, 56) == 0x00FF0000 and be16(blk, 60) == 4096
    assert blk[62] == 1 and blk[63] == 16


def test_list_pages_with_the_next_index_as_resume_token():
    p, fns = multi(3)
    c, blk = list_pci(p, rsp_len=48)
    assert [e[4] for e in entries(blk)] == [0x20000] and be64(blk, 48) == 1
    c, blk = list_pci(p, token=1, rsp_len=48)
    assert [e[4] for e in entries(blk)] == [0x20001] and be64(blk, 48) == 2
    # QEMU looks the token up as a 32-bit index
    c, blk = list_pci(p, token=(1 << 32) | 2, rsp_len=64)
    assert [e[4] for e in entries(blk)] == [0x20002] and be64(blk, 48) == 0
    c, blk = list_pci(p, token=7)
    assert be16(blk, 34) == ClpRsp.LISTPCI_BADRT and c.cc == 0


def test_list_skips_reserved_and_flags_standby_unconfigured():
    p, fns = multi(3)
    fns[1].state = FnState.RESERVED
    fns[2].state = FnState.STANDBY
    _, blk = list_pci(p)
    assert [(e[2], e[4]) for e in entries(blk)] == [(0x80000000, 0x20000), (0, 0x20002)]


def test_list_header_checks_in_qemu_order():
    p = Probe()
    assert be16(list_pci(p, fmt=0x10000000, rsp_len=40)[1], 34) == ClpRsp.FMT
    assert be16(list_pci(p, fmt=1, rsp_len=40)[1], 34) == ClpRsp.RESNOT0
    assert be16(list_pci(p, reserved=1)[1], 34) == ClpRsp.RESNOT0
    assert be16(list_pci(p, token=9, rsp_len=40)[1], 34) == ClpRsp.LISTPCI_BADRT
    c, blk = list_pci(p, rsp_len=40)
    assert (c.cc, be16(blk, 34)) == (0, ClpRsp.K8)
    c, blk = list_pci(p, rsp_len=56)
    assert (c.cc, be16(blk, 34)) == (3, ClpRsp.LEN)


@given(req_len=st.integers(0, 0x2100), res_len=st.integers(0, 0x2100))
def test_block_lengths_operand_exception_rule(req_len, res_len):
    p = Probe()
    blk = bytearray(0x4400)
    struct.pack_into(">HH", blk, 0, req_len, 2)
    if req_len + 2 <= len(blk):
        struct.pack_into(">H", blk, req_len, res_len)
    p.poke(LPCB, bytes(blk))
    c = p.clp()
    ok = (16 <= req_len <= 8184 and req_len % 8 == 0 and 8 <= res_len <= 8176
          and res_len % 8 == 0 and req_len + res_len <= 8192)
    if not ok:
        assert c.pgm == Pgm.OPERAND and p.mem(LPCB, 0x4400) == bytes(blk)
    else:
        assert c.cc == 0
        if req_len != 32:
            assert be16(p.mem(LPCB, 0x4400), req_len + 2) == ClpRsp.LEN
        # nothing past the two blocks is written
        assert p.mem(LPCB + req_len + res_len, 64) == bytes(blk[req_len + res_len:req_len + res_len + 64])


def test_lpcb_outside_storage_is_an_addressing_exception():
    p = Probe()
    end = len(p.guest.mem)
    p.setr(r7=end - 2)
    assert p.run("CLP", r2=7).pgm == Pgm.ADDRESSING
    # header readable, response block past the end
    blk = struct.pack(">HH", 32, 2) + bytes(28) + struct.pack(">H", 4064)
    p.poke(end - 40, blk[:40])
    p.setr(r7=end - 40)
    assert p.run("CLP", r2=7).pgm == Pgm.ADDRESSING


def test_query_fn_fills_known_fields_and_keeps_the_rest():
    p = Probe()
    blk = bytearray(b"\x5a" * 8192)
    struct.pack_into(">HHIQI", blk, 0, 32, 3, 0, 0, p.fn.fh)
    struct.pack_into(">H", blk, 32, 0xFE0)
    p.poke(LPCB, bytes(blk))
    assert p.clp().cc == 0
    out = p.mem(LPCB, 8192)
    r = out[32:]
    assert be16(r, 0) == 0xFE0 and be16(r, 2) == ClpRsp.OK
    assert r[4:16] == b"\x5a" * 12                    # fmt/reserved left as they were
    assert (be16(r, 16), r[18], r[19], be32(r, 20)) == (0, 0, 0xFF, 1)
    assert list(r[24:30]) == [5, 12, 0, 0, 14, 0] and be16(r, 30) == 0
    assert [be32(r, 32 + 4 * i) for i in range(6)] == [1, 0, 0, 0, 0x0C, 0]
    assert r[60:62] == b"\x5a\x5a" and r[62] == 0 and r[63] == 0
    assert (be64(r, 64), be64(r, 72)) == (0x100000000, 0x01FFFFFFFFFFFFFF)
    assert r[80:124] == b"\x5a" * 44 and be32(r, 124) == 1 and r[128:192] == bytes(64)


def test_query_fn_and_set_with_unknown_handle():
    p = Probe()
    _, blk = p.clp_cmd(3, struct.pack(">I", 0x80020000))
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FH
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", 0x00020005, 0, 0, 1))
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FH


def test_query_group_masks_the_pfgid_and_knows_only_registered_groups():
    p = Probe()
    _, blk = p.clp_cmd(4, struct.pack(">I", 0xABCDEFFF))
    assert be16(blk, 34) == ClpRsp.OK and be16(blk, 52) == 128 and be64(blk, 72) == 0xFE00000000000000
    _, blk = p.clp_cmd(4, struct.pack(">I", 0x10))
    assert be16(blk, 34) == ClpRsp.QUERYPCIFG_PFGID
    p.bus.plug(MemDevice(), group=FunctionGroup(pfgid=0x10, maxstbl=0x1000, mui=100))
    _, blk = p.clp_cmd(4, struct.pack(">I", 0x10))
    assert be16(blk, 34) == ClpRsp.OK and be16(blk, 52) == 0x1000 and be16(blk, 54) == 100


def test_set_pci_fn_response_codes():
    p = Probe()
    fh = p.fn.fh
    for oc, ndas, code in ((0, 0, ClpRsp.SETPCIFN_DMAAS), (0, 2, ClpRsp.SETPCIFN_RES),
                           (1, 0, ClpRsp.SETPCIFN_FHOP), (2, 1, ClpRsp.SETPCIFN_FHOP),
                           (3, 1, ClpRsp.SETPCIFN_FHOP)):
        _, blk = p.clp_cmd(5, struct.pack(">IHBB", fh, 0, oc, ndas))
        assert be16(blk, 34) == code, (oc, ndas)
    assert p.fn.state is FnState.DISABLED
    efh = p.enable()
    assert efh == fh | 0x80000000 and p.fn.state is FnState.ENABLED
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", efh, 0, 0, 1))
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FHOP
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", fh, 0, 0, 1))      # old handle is gone
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FH


def test_disable_resets_the_zpci_state_but_not_the_pci_device():
    p = Probe()
    efh = p.enable()
    fn = p.fn
    fn.ioat_enabled, fn.iota, fn.irq_registered, fn.fmb_addr = True, 0x804, True, 0x1000
    fn.counters[0] = 5
    fn.state = FnState.ERROR
    p.dev.mem[1][0] = 0x42
    assert p.disable(efh) == ClpRsp.OK
    assert (fn.fh, fn.state, fn.ioat_enabled, fn.iota, fn.irq_registered, fn.fmb_addr,
            fn.counters) == (0x20000, FnState.DISABLED, False, 0, False, 0, [0, 0, 0, 0])
    assert p.dev.mem[1][0] == 0x42


def test_unknown_command_and_request_length_not_32():
    p = Probe()
    _, blk = p.clp_cmd(1)
    assert be16(blk, 34) == ClpRsp.CMD
    c, blk = p.clp_cmd(2, req_len=24, rsp_len=64)
    assert c.cc == 0 and be16(blk, 26) == ClpRsp.LEN


def test_enable_of_an_interpreted_function_takes_the_host_handle():
    p = Probe(shm=0)
    fn = p.fn
    fn.interp = True
    assert fn.fh == 0
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", 0, 0, 0, 1))
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FH and fn.state is FnState.DISABLED
    p.bus.host_fh = lambda f: 0x05000000                # host handle not enabled
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", 0, 0, 0, 1))
    assert be16(blk, 34) == ClpRsp.SETPCIFN_FH and fn.fh == 0x05000000
    p.bus.host_fh = lambda f: 0x85000000
    _, blk = p.clp_cmd(5, struct.pack(">IHBB", 0x05000000, 0, 0, 1))
    assert be16(blk, 34) == ClpRsp.OK and be32(blk, 48) == 0x85000000
    assert fn.state is FnState.ENABLED


@pytest.mark.parametrize("req_len,res_len,operand", [
    (16, 8, False), (8, 8, True), (24, 0, True), (32, 8176, True), (32, 8160, False),
    (8184, 8, False), (8184, 16, True), (8176, 16, False), (8184, 0, True), (40, 4, True),
    (32, 12, True)])
def test_block_length_boundaries(req_len, res_len, operand):
    p = Probe()
    blk = bytearray(8200)
    struct.pack_into(">HH", blk, 0, req_len, 2)
    struct.pack_into(">H", blk, req_len, res_len)
    p.poke(LPCB, bytes(blk))
    c = p.clp()
    assert (c.pgm == Pgm.OPERAND) if operand else (c.cc is not None)
