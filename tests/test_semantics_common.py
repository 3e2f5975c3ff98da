"""Shared harness for the semantics tests: a bus with one virtio-rng-shaped memdev
function and a SimpleGuest, driven instruction by instruction like the QEMU probe."""
from __future__ import annotations

import struct

from firmware_model.devices.memdev import MemDevice
from firmware_model.function import ZpciBus
from firmware_model.guest import SimpleGuest
from firmware_model.insns import BY_MNEMONIC, Decoded
from firmware_model.outcome import Completion
from firmware_model.userspace import UserspaceHandler

LPCB = 0x38000
FIB = 0x36000
BLK = 0x36100


def be16(b, o):
    return struct.unpack_from(">H", b, o)[0]


def be32(b, o):
    return struct.unpack_from(">I", b, o)[0]


def be64(b, o):
    return struct.unpack_from(">Q", b, o)[0]


class Probe:
    """One VM: bus, handler, guest; helpers issue instructions as the probe guest does."""

    def __init__(self, mem: int = 1 << 20, device=None, **plug):
        self.bus = ZpciBus()
        self.dev = device if device is not None else MemDevice.virtio_rng_shaped()
        plug.setdefault("fid", 1)
        plug.setdefault("uid", 1)
        self.fn = self.bus.plug(self.dev, **plug)
        self.guest = SimpleGuest(mem)
        self.bus.memory = self.guest
        self.handler = UserspaceHandler(self.bus)

    # -- raw access
    def gpr(self, r):
        return self.guest.gpr(r)

    def setr(self, **regs):
        for name, v in regs.items():
            self.guest.set_gpr(int(name[1:]), v)

    def mem(self, addr, size):
        return self.guest.read(addr, size)

    def poke(self, addr, data):
        assert self.guest.write(addr, data)

    def run(self, mnemonic, **fields) -> Completion:
        ins = BY_MNEMONIC[mnemonic]
        d = Decoded(index=ins.index, opcode=ins.opcode, ilen=ins.ilen, **fields)
        return self.handler.execute(d, self.guest)

    # -- the probe's wrappers (registers as main.c uses them)
    def pcilg(self, req, off, r1=5, r2=2, data=0xDEADBEEFDEADBEEF):
        self.setr(**{f"r{r1}": data, f"r{r2}": req, f"r{r2 + 1}": off})
        c = self.run("PCILG", r1=r1, r2=r2)
        return c, self.gpr(r2), self.gpr(r1)

    def pcistg(self, data, req, off, r1=5, r2=2):
        self.setr(**{f"r{r1}": data, f"r{r2}": req, f"r{r2 + 1}": off})
        c = self.run("PCISTG", r1=r1, r2=r2)
        return c, self.gpr(r2)

    def pcistb(self, req, off, addr, r1=4, r3=5, b2=6):
        self.setr(**{f"r{r1}": req, f"r{r3}": off, f"r{b2}": addr})
        c = self.run("PCISTB", r1=r1, r3=r3, b2=b2, d2=0)
        return c, self.gpr(r1)

    def rpcit(self, r1v, start, length, r1=4, r2=2):
        self.setr(**{f"r{r1}": r1v, f"r{r2}": start, f"r{r2 + 1}": length})
        c = self.run("RPCIT", r1=r1, r2=r2)
        return c, self.gpr(r1)

    def mpcifc(self, r1v, fiba, r1=4, b2=6):
        self.setr(**{f"r{r1}": r1v, f"r{b2}": fiba})
        c = self.run("MPCIFC", r1=r1, b2=b2, d2=0)
        return c, self.gpr(r1)

    def stpcifc(self, r1v, fiba, r1=4, b2=6):
        self.setr(**{f"r{r1}": r1v, f"r{b2}": fiba})
        c = self.run("STPCIFC", r1=r1, b2=b2, d2=0)
        return c, self.gpr(r1)

    def clp(self, addr=LPCB, r2=7):
        self.setr(**{f"r{r2}": addr})
        return self.run("CLP", r1=1, r2=r2)

    def clp_cmd(self, cmd, body: bytes = b"", req_len=32, rsp_len=4096 - 32, addr=LPCB):
        blk = bytearray(8192)
        struct.pack_into(">HH", blk, 0, req_len, cmd)
        blk[16:16 + len(body)] = body
        struct.pack_into(">H", blk, req_len, rsp_len)
        self.poke(addr, bytes(blk))
        c = self.clp(addr)
        return c, self.mem(addr, 8192)

    def enable(self, fh=None):
        fh = self.fn.fh if fh is None else fh
        c, blk = self.clp_cmd(5, struct.pack(">IHBB", fh, 0, 0, 1))
        assert c.cc == 0 and be16(blk, 34) == 0x10
        return be32(blk, 48)

    def disable(self, fh=None):
        fh = self.fn.fh if fh is None else fh
        c, blk = self.clp_cmd(5, struct.pack(">IHBB", fh, 0, 1, 0))
        return be16(blk, 34)

    def write_fib(self, addr=FIB, **fields):
        from firmware_model.fib import Fib
        self.poke(addr, Fib(**fields).pack())

    def build_tables(self, iova, rtt=0x2C000, stt=0x30000, ptt=0x34000, frame=0x35000):
        """Region-third -> segment -> page tables mapping one page iova -> frame."""
        self.poke(rtt, struct.pack(">Q", 0x27) * 2048)
        self.poke(stt, struct.pack(">Q", 0x20) * 2048)
        self.poke(ptt, struct.pack(">Q", 0x400) * 256)
        self.poke(rtt + 8 * ((iova >> 31) & 0x7FF), struct.pack(">Q", stt | 0x7))
        self.poke(stt + 8 * ((iova >> 20) & 0x7FF), struct.pack(">Q", ptt))
        self.poke(ptt + 8 * ((iova >> 12) & 0xFF), struct.pack(">Q", frame))
        return rtt | 0x804


def test_probe_harness_plugs_one_disabled_function():
    p = Probe()
    assert p.fn.fh == 0x00020000 and p.fn.fid == 1 and p.fn.uid == 1
    assert p.bus.find_by_fh(0x00020000) is p.fn
    assert p.bus.find_by_fh(0x80020000) is None
