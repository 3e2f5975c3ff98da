"""CLP (Call Logical Processor) commands on an LPCB image, as QEMU 7.2's clp_service_call.

``execute`` works on a copy of the guest's request+response block (the
caller reads it from and writes it back to guest memory).  QEMU fills only
the fields it knows and leaves every other byte as the guest wrote it, so
this does the same; it writes into an 8 KiB buffer like QEMU's stack buffer,
of which the caller stores back only req_len + res_len bytes.
"""
from __future__ import annotations

import struct

from .arch import (
    CLP_FH_LIST_ENTRY_SIZE, CLP_FHLIST_MASK_CONFIG, CLP_MASK_FMT, CLP_REQ_QPCIG_MASK_PFGID,
    ClpCmd, ClpRsp, FH_MASK_ENABLE, FH_MASK_INDEX, FH_MASK_SHM, FnState, LIST_PCI_HDR_LEN,
    PCI_BAR_COUNT, PCI_MAX_FUNCTIONS, SetPciFnOc, UID_CHECKING_ENABLED,
)

CLP_BUFFER_SIZE = 8192
REQ_LEN_MIN, REQ_LEN_MAX = 16, 8184
RES_LEN_MIN, RES_LEN_MAX = 8, 8176

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def lengths_valid(req_len: int, res_len: int | None = None) -> bool:
    """QEMU's operand-exception checks on the two block lengths."""
    if not REQ_LEN_MIN <= req_len <= REQ_LEN_MAX or req_len % 8:
        return False
    if res_len is None:
        return True
    if not RES_LEN_MIN <= res_len <= RES_LEN_MAX or res_len % 8:
        return False
    return req_len + res_len <= CLP_BUFFER_SIZE


def _ctz(v: int) -> int:
    return (v & -v).bit_length() - 1 if v else 0


def execute(bus, buf: bytearray, req_len: int) -> int:
    """Run the command in ``buf`` (request at 0, response at req_len); returns the cc."""
    if req_len != 32:
        _U16.pack_into(buf, req_len + 2, ClpRsp.LEN)
        return 0
    cmd = _U16.unpack_from(buf, 2)[0]
    if cmd == ClpCmd.LIST_PCI:
        return list_pci(bus, buf)
    rsp = 32
    if cmd == ClpCmd.SET_PCI_FN:
        code = set_pci_fn(bus, buf, rsp)
    elif cmd == ClpCmd.QUERY_PCI_FN:
        code = query_pci_fn(bus, buf, rsp)
    elif cmd == ClpCmd.QUERY_PCI_FNGRP:
        code = query_pci_fngrp(bus, buf, rsp)
    else:
        code = ClpRsp.CMD
    _U16.pack_into(buf, rsp + 2, code)
    return 0


def list_pci(bus, buf: bytearray) -> int:
    rsp = 32
    cc = 0
    code = ClpRsp.OK
    fmt = _U32.unpack_from(buf, 4)[0]
    if _U16.unpack_from(buf, 0)[0] != 32:
        code = ClpRsp.LEN
    elif fmt & CLP_MASK_FMT:
        code = ClpRsp.FMT
    elif fmt & ~CLP_MASK_FMT or _U64.unpack_from(buf, 8)[0]:
        code = ClpRsp.RESNOT0
    else:
        token = _U64.unpack_from(buf, 16)[0]
        if token:
            # QEMU passes the 64-bit token to a uint32_t index lookup
            fn = bus.find_by_idx(token & 0xFFFFFFFF)
            if fn is None:
                code = ClpRsp.LISTPCI_BADRT
        else:
            fn = bus.next_avail(None)
        initial_l2 = _U16.unpack_from(buf, rsp)[0]
        if code != ClpRsp.OK:
            pass
        elif initial_l2 < 48:
            code = ClpRsp.K8
        elif (initial_l2 - LIST_PCI_HDR_LEN) % CLP_FH_LIST_ENTRY_SIZE:
            code = ClpRsp.LEN
            cc = 3
        else:
            struct.pack_into(">IQ", buf, rsp + 4, 0, 0)
            struct.pack_into(">IHBB", buf, rsp + 24, FH_MASK_SHM, PCI_MAX_FUNCTIONS,
                             UID_CHECKING_ENABLED, CLP_FH_LIST_ENTRY_SIZE)
            g_l2 = LIST_PCI_HDR_LEN
            entry = rsp + LIST_PCI_HDR_LEN
            while g_l2 < initial_l2 and fn is not None:
                dev = fn.device
                struct.pack_into(">HHIII", buf, entry,
                                 dev.config_read(2, 2) or 0, dev.config_read(0, 2) or 0,
                                 0 if fn.state is FnState.STANDBY else CLP_FHLIST_MASK_CONFIG,
                                 fn.fid, fn.fh)
                g_l2 += CLP_FH_LIST_ENTRY_SIZE
                entry += CLP_FH_LIST_ENTRY_SIZE
                fn = bus.next_avail(fn)
            _U64.pack_into(buf, rsp + 16, 0 if fn is None else fn.fh & FH_MASK_INDEX)
            _U16.pack_into(buf, rsp, g_l2)
    _U16.pack_into(buf, rsp + 2, code)
    return cc


def set_pci_fn(bus, buf: bytearray, rsp: int) -> int:
    fn = bus.find_by_fh(_U32.unpack_from(buf, 16)[0])
    if fn is None:
        return ClpRsp.SETPCIFN_FH
    oc, ndas = buf[22], buf[23]
    if oc == SetPciFnOc.ENABLE:
        if ndas == 0:
            return ClpRsp.SETPCIFN_DMAAS
        if ndas > 1:
            return ClpRsp.SETPCIFN_RES
        if fn.fh & FH_MASK_ENABLE:
            return ClpRsp.SETPCIFN_FHOP
        if fn.interp:
            # an interpreted function re-reads its host handle (it may change while disabled)
            host_fh = bus.host_fh(fn) if bus.host_fh is not None else None
            if host_fh is None:
                return ClpRsp.SETPCIFN_FH
            fn.fh = host_fh             # QEMU stores it before looking at the enable bit
            if not host_fh & FH_MASK_ENABLE:
                return ClpRsp.SETPCIFN_FH
        fn.fh |= FH_MASK_ENABLE
        fn.state = FnState.ENABLED
    elif oc == SetPciFnOc.DISABLE:
        if not fn.fh & FH_MASK_ENABLE:
            return ClpRsp.SETPCIFN_FHOP
        # resets the zpci device (IOAT, interrupts, measurement), not the PCI device
        fn.reset()
        fn.fh &= ~FH_MASK_ENABLE
        fn.state = FnState.DISABLED
    else:
        return ClpRsp.SETPCIFN_FHOP
    _U32.pack_into(buf, rsp + 16, fn.fh)
    return ClpRsp.OK


def query_pci_fn(bus, buf: bytearray, rsp: int) -> int:
    fn = bus.find_by_fh(_U32.unpack_from(buf, 16)[0])
    if fn is None:
        return ClpRsp.SETPCIFN_FH
    _U64.pack_into(buf, rsp + 64, fn.sdma)
    _U64.pack_into(buf, rsp + 72, fn.edma)
    _U16.pack_into(buf, rsp + 30, fn.pchid)
    _U16.pack_into(buf, rsp + 16, fn.vfn)
    buf[rsp + 18] = fn.flags
    buf[rsp + 19] = fn.group.pfgid
    buf[rsp + 63] = fn.pft
    buf[rsp + 62] = fn.fmbl
    _U32.pack_into(buf, rsp + 20, fn.fid)
    _U32.pack_into(buf, rsp + 124, fn.uid)
    buf[rsp + 56:rsp + 60] = fn.pfip
    buf[rsp + 128:rsp + 192] = fn.util_str
    dev = fn.device
    for i in range(PCI_BAR_COUNT):
        _U32.pack_into(buf, rsp + 32 + 4 * i, dev.config_read(0x10 + 4 * i, 4) or 0)
        buf[rsp + 24 + i] = _ctz(fn.bar_sizes[i])
    return ClpRsp.OK


def query_pci_fngrp(bus, buf: bytearray, rsp: int) -> int:
    group = bus.groups.get(_U32.unpack_from(buf, 16)[0] & CLP_REQ_QPCIG_MASK_PFGID)
    if group is None:
        return ClpRsp.QUERYPCIFG_PFGID
    buf[rsp + 19] = group.fr
    _U64.pack_into(buf, rsp + 32, group.dasm)
    _U64.pack_into(buf, rsp + 40, group.msia)
    _U16.pack_into(buf, rsp + 22, group.mui)
    _U16.pack_into(buf, rsp + 16, group.noi)
    _U16.pack_into(buf, rsp + 20, group.maxstbl)
    buf[rsp + 18] = group.version
    buf[rsp + 24] = group.dtsm
    return ClpRsp.OK
