"""A guest-like instruction sequence recorded through the model, for the replay tests.

``record_scenario`` plays what a Linux guest does with one virtio-rng
function (CLP list/query/enable, IOAT registration, config and BAR loads,
doorbells, translation refreshes against real DMA tables, SIC, disable) on a
Machine, and writes every instruction as a trace event through
ModelRecorder.  It is a test fixture, not a bundled workload.
"""
import struct

from emulator.trace.format import FunctionInfo, SourceKind, StreamKind, TraceHeader
from emulator.trace.record import ModelRecorder
from emulator.trace.writer import TraceWriter
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.guest import SimpleGuest
from firmware_model.insns import encode
from firmware_model.machine import Machine

MEM = 4 << 20
CLP_BLK = 0x10000
FIB = 0x12000
RTO, STO, PTO = 0x20000, 0x24000, 0x28000       # 16K-aligned region/segment tables, 2K page table
SDMA = 0x100000000
CONFIG = MachineConfig(memory=MEM, functions=(
    FunctionSpec("virtio-rng-pci", (("disable-legacy", "on"),), fid=1, uid=1),))


def header(stream=StreamKind.FULL) -> TraceHeader:
    return TraceHeader(SourceKind.SYNTHETIC, stream, MEM,
                       (FunctionInfo(1, 1, "virtio-rng-pci", props=(("disable-legacy", "on"),)),),
                       workload="scenario")


def _clp(rec, g, cmd, body: bytes, rsp_len: int, addr=0x4000):
    blk = bytearray(0x1000)
    struct.pack_into(">HH", blk, 0, 32, cmd)
    blk[16:16 + len(body)] = body
    struct.pack_into(">H", blk, 32, rsp_len)
    g.write(CLP_BLK, bytes(blk))
    g.set_gpr(2, CLP_BLK)
    rec.execute(encode("CLP", r1=1, r2=2, m4=2), addr)
    return g.read(CLP_BLK + 32, rsp_len)


def _tables(g):
    g.write(RTO, struct.pack(">Q", 0x20) * 2048)
    g.write(STO, struct.pack(">Q", 0x20) * 2048)
    g.write(PTO, struct.pack(">Q", 0x400) * 256)
    g.write(RTO + ((SDMA >> 31) & 0x7FF) * 8, struct.pack(">Q", STO | 0x4 | 0x3))
    g.write(STO + ((SDMA >> 20) & 0x7FF) * 8, struct.pack(">Q", PTO))


def _map(g, page: int, frame: int):
    g.write(PTO + ((page >> 12) & 0xFF) * 8, struct.pack(">Q", frame))


def _ioat_fib(g):
    """The FIB of MPCIFC register IOAT: a 1 GiB window at SDMA over the tables at RTO."""
    fib = bytearray(80)
    struct.pack_into(">QQQ", fib, 16, SDMA, SDMA + 0x3FFFFFFF, RTO | 0x804)
    g.write(FIB, bytes(fib))


def record_scenario(path, rounds: int = 3, compress: bool = True, stream=StreamKind.FULL,
                    policy: str = "linux-6.0", assume: str = "as-given") -> int:
    """Write the trace; returns the number of events."""
    g = SimpleGuest(MEM)
    m = Machine(CONFIG, policy, assume)
    with TraceWriter(path, header(stream), compress=compress) as w:
        rec = ModelRecorder(w, m, g, blocks=stream is StreamKind.FULL)
        rsp = _clp(rec, g, 2, b"", 32 + 16 * 4)                         # LIST PCI
        fh = struct.unpack_from(">I", rsp, 32 + 12)[0]
        _clp(rec, g, 3, struct.pack(">I", fh), 256, addr=0x4010)       # QUERY PCI FN
        rsp = _clp(rec, g, 5, struct.pack(">IHBB", fh, 0, 0, 1), 32, addr=0x4020)  # enable
        fh = struct.unpack_from(">I", rsp, 16)[0]
        w.mark("enabled")
        # config space: vendor/device, command register
        g.set_gpr(2, fh << 32 | 0xF << 16 | 4)
        g.set_gpr(3, 0)
        rec.execute(encode("PCILG", r1=1, r2=2), 0x5000)
        g.set_gpr(2, fh << 32 | 0xF << 16 | 2)
        g.set_gpr(3, 4)
        g.set_gpr(1, 0x0600)
        rec.execute(encode("PCISTG", r1=1, r2=2), 0x5010)
        # IOAT registration (MPCIFC oc 4) against real tables
        _tables(g)
        _ioat_fib(g)
        g.set_gpr(1, fh << 32 | 4)
        g.set_gpr(11, FIB)
        rec.execute(encode("MPCIFC", r1=1, b2=11), 0x5020)
        g.set_gpr(1, 0)
        g.set_gpr(3, 3 << 27)
        rec.execute(encode("SIC", r1=1, r3=3), 0x5030)
        w.mark("traffic")
        for i in range(rounds):
            page = SDMA + (i % 8) * 0x1000
            _map(g, page, 0x200000 + i * 0x1000)
            g.set_gpr(1, fh << 32)
            g.set_gpr(8, page)
            g.set_gpr(9, 0x1000)
            rec.execute(encode("RPCIT", r1=1, r2=8), 0x5100)
            g.set_gpr(2, fh << 32 | 4 << 16 | 2)                     # BAR4 doorbell
            g.set_gpr(3, 0x3000)
            g.set_gpr(1, i & 0xFFFF)
            rec.execute(encode("PCISTG", r1=1, r2=2), 0x5110)
            g.set_gpr(2, fh << 32 | 4 << 16 | 1)                     # ISR read
            g.set_gpr(3, 0x1000)
            rec.execute(encode("PCILG", r1=1, r2=2), 0x5120)
            g.set_gpr(2, 0xDEAD0000 << 32 | 0xF << 16 | 4)           # a stale handle: cc 3
            rec.execute(encode("PCILG", r1=1, r2=2), 0x5130)
        rsp = _clp(rec, g, 5, struct.pack(">IHBB", fh, 0, 1, 0), 32, addr=0x4030)  # disable
        fh = struct.unpack_from(">I", rsp, 16)[0]
        g.set_gpr(2, (fh | 0x80000000) << 32 | 0xF << 16 | 4)          # load after disable: cc 3
        rec.execute(encode("PCILG", r1=1, r2=2), 0x5140)
        return w.events


OPS = ("load", "store", "rpcit", "stale", "sic", "disable", "enable", "dereg_ioat", "reg_ioat",
       "load_disabled", "load_odd", "rpcit_odd", "load_problem", "rpcit_problem")
PROBLEM = 1 << 48          # PSW bit 15: problem state


def record_ops(path, ops, compress=False) -> int:
    """Enable the function, then run ``ops`` (names from OPS) in order."""
    g = SimpleGuest(MEM)
    m = Machine(CONFIG, "linux-6.0", "as-given")
    with TraceWriter(path, header(StreamKind.ZPCI_ONLY), compress=compress) as w:
        rec = ModelRecorder(w, m, g)
        rsp = _clp(rec, g, 2, b"", 32 + 16 * 4)
        fh0 = struct.unpack_from(">I", rsp, 32 + 12)[0]
        rsp = _clp(rec, g, 5, struct.pack(">IHBB", fh0, 0, 0, 1), 32)
        fh = struct.unpack_from(">I", rsp, 16)[0]
        _tables(g)
        for i, op in enumerate(ops):
            if op.endswith("_problem"):
                rec.pswm |= PROBLEM
                op = op[:-len("_problem")]
            if op == "load_odd":             # odd R2: specification exception, wherever served
                g.set_gpr(3, fh << 32 | 0xF << 16 | 4)
                rec.execute(encode("PCILG", r1=1, r2=3), 0x5150)
            elif op == "rpcit_odd":
                g.set_gpr(1, fh << 32)
                rec.execute(encode("RPCIT", r1=1, r2=9), 0x5160)
            elif op == "load":
                g.set_gpr(2, fh << 32 | 0xF << 16 | 4)
                g.set_gpr(3, 0)
                rec.execute(encode("PCILG", r1=1, r2=2), 0x5000)
            elif op == "store":
                g.set_gpr(2, fh << 32 | 4 << 16 | 2)
                g.set_gpr(3, 0x3000)
                rec.execute(encode("PCISTG", r1=1, r2=2), 0x5010)
            elif op == "rpcit":
                _map(g, SDMA, 0x200000)
                g.set_gpr(1, fh << 32)
                g.set_gpr(8, SDMA)
                g.set_gpr(9, 0x1000)
                rec.execute(encode("RPCIT", r1=1, r2=8), 0x5100)
            elif op == "stale":
                g.set_gpr(2, (fh ^ 0x1) << 32 | 0xF << 16 | 4)
                rec.execute(encode("PCILG", r1=1, r2=2), 0x5130)
            elif op == "load_disabled":
                g.set_gpr(2, fh0 << 32 | 0xF << 16 | 4)
                rec.execute(encode("PCILG", r1=1, r2=2), 0x5140)
            elif op == "sic":
                g.set_gpr(1, 0)
                g.set_gpr(3, 3 << 27)
                rec.execute(encode("SIC", r1=1, r3=3), 0x5030)
            elif op in ("disable", "enable"):
                oc = 1 if op == "disable" else 0
                rsp = _clp(rec, g, 5, struct.pack(">IHBB", fh, 0, oc, 0 if oc else 1), 32)
                if struct.unpack_from(">H", rsp, 2)[0] == 0x10:
                    fh = struct.unpack_from(">I", rsp, 16)[0]
            elif op in ("reg_ioat", "dereg_ioat"):
                _ioat_fib(g)
                g.set_gpr(1, fh << 32 | (4 if op == "reg_ioat" else 5))
                g.set_gpr(11, FIB)
                rec.execute(encode("MPCIFC", r1=1, b2=11), 0x5020)
            rec.pswm &= ~PROBLEM
        return w.events
