"""devdump (traces/guests/devdump.c) on the device models vs QEMU 7.2, line for line.

Golden files tests/data/devdump_qemu_<variant>.txt are QEMU's console output
for the committed ELF (regenerate with ``.venv/bin/python tests/test_devices_dump.py``;
``test_golden_file_is_what_qemu_prints_now`` checks they still are).

``model_dump(kind, props)`` performs every load and store the guest program
does, in the same order, against a device model built by ``make_device``,
and prints the same lines.  Loads and stores go through the real PCILG /
PCISTG address-space dispatch of the userspace handler
(``firmware_model.semantics.pci_load`` / ``pci_store``: QEMU's length checks
and zPCI's config-space byte swap); the function state, its IOTLB, the
adapter-interruption indicators and guest memory are a small stand-in
(``FakeFunction``) with QEMU's rules, so this comparison isolates the device
models from the bus implementation.

Lines the bus decides (F: CLP LIST, S: STPCIFC / MPCIFC results) are not
produced; ``device_lines`` filters them out of QEMU's output.
"""
from __future__ import annotations

from firmware_model.device import DmaError, DmaErrorKind, DmaPort
from firmware_model.devices import make_device
from firmware_model.semantics import Fault, pci_load, pci_store

POISON = 0xDEADBEEFDEADBEEF
CFG = 15
OPERAND_CODE = 0x15

# devdump.c's guest layout, in the stand-in's memory
RING = 0x10000            # two pages: descriptors + avail, used at +0x1000
BUFPAGE = 0x20000
RDONLY_PAGE = 0x30000
MEMORY_SIZE = 256 << 20
SDMA = 0x1_0000_0000
DMA_WINDOW_SIZE = 4 * 256 * 4096
QSZ = 8
MSIA = 0xFE00_0000_0000_0000     # the group's MSI address (CLP QUERY PCI FUNCTION GROUP)
LRING = 0x40000           # the legacy driver's ring (4 pages)
USED_OFF = 4096           # struct vring_mem: used ring on the second page


def device_lines(text: str) -> list[str]:
    """QEMU's dump without the lines that depend on the bus, not the device."""
    return [ln for ln in text.splitlines()
            if ln[:2] not in ("F ", "S ") and not ln.startswith("DEVDUMP")]


class FakeFunction(DmaPort):
    """A zPCI function as far as device DMA sees it (s390_translate_iommu).

    Untranslated: straight to guest memory.  Translated: only what RPCIT put
    in the IOTLB; an error moves the function to the error state (and blocks
    loads and stores) except for IOVAs above pal, which lie outside QEMU's
    IOMMU region and are simply unassigned.
    """

    def __init__(self, memory: bytearray, translated: bool):
        self.mem = memory
        self.translated = translated
        self.error = False
        self.ioat = False
        self.pba = self.pal = 0
        self.tables: dict[int, tuple[int, bool]] = {}   # the guest's PTEs: page -> (frame, ro)
        self.iotlb: dict[int, tuple[int, bool]] = {}
        self.msis: list[tuple[int, int]] = []
        self.aibv: bytearray | None = None      # set by MPCIFC register-interruptions
        self.aisb = bytearray(8)

    def _phys(self, addr: int, size: int) -> bool:
        return addr + size <= len(self.mem)

    def _translate(self, iova: int, write: bool) -> int | DmaError:
        if not self.translated:
            return iova
        if self.error or not self.ioat:
            return DmaError(DmaErrorKind.NO_IOAT, iova)
        if iova > self.pal:
            return DmaError(DmaErrorKind.OUT_OF_RANGE, iova)
        if iova < self.pba:
            self.error = True
            return DmaError(DmaErrorKind.OUT_OF_RANGE, iova)
        entry = self.iotlb.get(iova & ~0xFFF)
        if entry is None:
            self.error = True
            return DmaError(DmaErrorKind.UNMAPPED, iova)
        if write and entry[1]:
            self.error = True
            return DmaError(DmaErrorKind.PROTECTED, iova)
        return entry[0] + (iova & 0xFFF)

    def read(self, iova: int, size: int):
        pa = self._translate(iova, False)
        if isinstance(pa, DmaError):
            return pa
        if not self._phys(pa, size):
            return DmaError(DmaErrorKind.ADDRESSING, iova)
        return bytes(self.mem[pa:pa + size])

    def write(self, iova: int, data: bytes):
        pa = self._translate(iova, True)
        if isinstance(pa, DmaError):
            return pa
        if not self._phys(pa, len(data)):
            return DmaError(DmaErrorKind.ADDRESSING, iova)
        self.mem[pa:pa + len(data)] = data
        return None

    def msi(self, address: int, data: int) -> None:
        # s390_msi_ctrl_write: vector -> AIBV bit (MSB first), then the summary bit
        self.msis.append((address, data))
        if address != MSIA or self.error or self.aibv is None:
            return
        vec = data & 0x7FF
        self.aibv[vec // 8] |= 0x80 >> (vec % 8)
        self.aisb[0] |= 0x80

    def rpcit(self, start: int, length: int) -> None:
        for page in range(start & ~0xFFF, start + length, 0x1000):
            if page in self.tables:
                self.iotlb[page] = self.tables[page]
            else:
                self.iotlb.pop(page, None)


def _h(v: int, digits: int) -> str:
    return format(v & ((1 << (4 * digits)) - 1), f"0{digits}x") if digits else ""


def _bswap(v: int, n: int) -> int:
    return int.from_bytes((v & ((1 << (8 * n)) - 1)).to_bytes(n, "little"), "big")


class _Fn:
    """What pci_load/pci_store need of a zPCI function."""
    def __init__(self, device):
        self.device = device
        self.bar_sizes = tuple(device.bar_size(i) for i in range(6))


class DevdumpDriver:
    def __init__(self, device, fnum: int = 0):
        self.dev = device
        self.fn = _Fn(device)
        self.fnum = fnum
        self.out: list[str] = []
        self.line = ""
        self.pgm = 0
        self.cc = 0
        self.mem = bytearray(0x100000)
        self.port = FakeFunction(self.mem, device.dma_translated)
        device.dma = self.port

    # -- console
    def puts(self, s: str) -> None:
        self.line += s
        if s.endswith("\n"):
            self.out.append(self.line[:-1])
            self.line = ""

    def head(self, kind: str) -> None:
        self.puts(f"{kind} {self.fnum:x} ")

    def tok(self, v: int, n: int) -> str:
        if self.pgm:
            return "pgm" + _h(self.pgm, 2)
        if self.cc:
            return "cc" + _h(self.cc, 1)
        return _h(v, 2 * n)

    # -- PCILG / PCISTG
    def ld(self, space: int, off: int, n: int) -> int:
        self.pgm = self.cc = 0
        if self.port.error:
            self.cc = 1                     # function in the error state: blocked
            return POISON
        r = pci_load(self.fn, space, off, n)
        if isinstance(r, Fault):
            if r is Fault.OPERAND:
                self.pgm = OPERAND_CODE
            else:
                self.cc = 1
            return POISON
        return r

    def st(self, space: int, off: int, n: int, v: int) -> None:
        self.pgm = self.cc = 0
        if self.port.error:
            self.cc = 1
            return
        r = pci_store(self.fn, space, off, n, v)
        if isinstance(r, Fault):
            if r is Fault.OPERAND:
                self.pgm = OPERAND_CODE
            else:
                self.cc = 1

    def cfg32(self, off: int) -> int:
        return _bswap(self.ld(CFG, off, 4), 4)

    def cfg8(self, off: int) -> int:
        return self.ld(CFG, off, 1) & 0xFF

    def bar_le(self, bar: int, off: int, n: int) -> int:
        return _bswap(self.ld(bar, off, n), n)

    def bar_st_le(self, bar: int, off: int, n: int, v: int) -> None:
        self.st(bar, off, n, _bswap(v, n))

    def reg(self, bar: int, off: int, n: int, name: str) -> None:
        v = self.ld(bar, off, n)
        self.head("B")
        self.puts(f"b{bar:x}+{_h(off, 4)} l{n:x} {name} = {self.tok(v, n)}\n")

    def wreg(self, bar: int, off: int, n: int, leval: int, name: str) -> None:
        self.bar_st_le(bar, off, n, leval)
        self.head("B")
        self.puts(f"b{bar:x}+{_h(off, 4)} l{n:x} {name} <- {_h(leval, 2 * n)} : {self.tok(0, 0)}\n")

    def matrix(self, bar: int, base: int) -> None:
        for n in range(1, 9):
            self.head("M")
            toks = []
            for o in range(0, 9 - n):
                v = self.ld(bar, base + o, n)
                toks.append(self.tok(v, n))
            self.puts(f"b{bar:x}+{_h(base, 4)} l{n:x}: {' '.join(toks)}\n")

    # -- sections of devdump.c
    def query(self) -> None:
        for b in range(6):
            size = self.dev.bar_size(b)
            log2 = (size & -size).bit_length() - 1 if size else 0
            self.head("Q")
            self.puts(f"bar{b:x}={_h(self.dev.config_read(0x10 + 4 * b, 4) or 0, 8)} "
                      f"size={_h(log2, 2)}\n")

    def dump_config(self) -> None:
        for off in range(0, 0x100, 16):
            toks = []
            for i in range(0, 16, 4):
                v = self.ld(CFG, off + i, 4)
                toks.append(self.tok(v, 4))
            self.head("C")
            self.puts(f"{_h(off, 4)}: {' '.join(toks)}\n")
        odd = [(0x00, 1), (0x01, 1), (0x02, 2), (0x03, 1), (0x06, 2), (0x08, 1),
               (0x0e, 1), (0x2c, 2), (0x2e, 2), (0x34, 1), (0x3d, 1), (0x3e, 2),
               (0x03, 2), (0x01, 4), (0xfe, 2), (0xff, 1), (0x100, 4), (0x104, 4),
               (0x200, 1), (0xffc, 4), (0x1000, 4), (0x1004, 1)]
        for off, n in odd:
            v = self.ld(CFG, off, n)
            self.head("X")
            self.puts(f"cfg+{_h(off, 4)} l{n:x} = {self.tok(v, n)}\n")

    def dump_wmask(self) -> None:
        for off in range(0, 0x100, 4):
            old = self.ld(CFG, off, 4)
            self.head("W")
            self.puts(f"{_h(off, 4)}: {self.tok(old, 4)}")
            self.st(CFG, off, 4, 0xFFFFFFFF)
            ones = self.ld(CFG, off, 4)
            self.puts(f" {self.tok(ones, 4)}")
            self.st(CFG, off, 4, old)
            back = self.ld(CFG, off, 4)
            self.puts(f" {self.tok(back, 4)}\n")

    def walk_caps(self) -> None:
        self.vc = {t: None for t in range(1, 6)}
        self.msix = None
        pos = self.cfg8(0x34) & 0xFC
        guard = 0
        while pos and guard < 48:
            cid, nxt = self.cfg8(pos), self.cfg8(pos + 1) & 0xFC
            if cid == 0x09:
                t = self.cfg8(pos + 3)
                if 1 <= t <= 5:
                    mult = self.cfg32(pos + 16) if t == 2 else 0
                    self.vc[t] = dict(pos=pos, bar=self.cfg8(pos + 4), off=self.cfg32(pos + 8),
                                      len=self.cfg32(pos + 12), mult=mult)
            elif cid == 0x11:
                n = ((self.cfg32(pos) >> 16) & 0x7FF) + 1
                t, p = self.cfg32(pos + 4), self.cfg32(pos + 8)
                self.msix = dict(pos=pos, n=n, tbar=t & 7, toff=t & ~7, pbar=p & 7, poff=p & ~7)
            pos = nxt
            guard += 1

    def dump_msix(self) -> None:
        m = self.msix
        if m is None:
            return
        tb, pb, toff, poff, n = m["tbar"], m["pbar"], m["toff"], m["poff"], m["n"]
        for v in range(n):
            e = toff + 16 * v
            self.reg(tb, e + 0, 4, "msix.addr_lo")
            self.reg(tb, e + 4, 4, "msix.addr_hi")
            self.reg(tb, e + 8, 4, "msix.data")
            self.reg(tb, e + 12, 4, "msix.ctrl")
            self.reg(tb, e + 0, 8, "msix.addr")
            self.reg(tb, e + 8, 8, "msix.data_ctrl")
        self.reg(tb, toff + 16 * n, 4, "msix.after_table")
        self.reg(pb, poff, 4, "pba.0")
        self.reg(pb, poff + 4, 4, "pba.4")
        self.reg(pb, poff, 8, "pba.0_8")
        self.reg(pb, poff + 8, 4, "pba.after")
        self.reg(pb, poff - 4, 4, "pba.before")
        self.matrix(tb, toff)
        self.matrix(tb, toff + 8)
        self.matrix(pb, poff)
        e = toff + 16 * (n - 1)
        self.wreg(tb, e + 0, 4, 0x12345678, "msix.addr_lo")
        self.reg(tb, e + 0, 4, "msix.addr_lo")
        self.wreg(tb, e + 4, 4, 0x9abcdef0, "msix.addr_hi")
        self.reg(tb, e + 0, 8, "msix.addr")
        self.wreg(tb, e + 8, 4, 0xffffffff, "msix.data")
        self.wreg(tb, e + 12, 4, 0xfffffffe, "msix.ctrl")
        self.reg(tb, e + 8, 8, "msix.data_ctrl")
        self.wreg(tb, e + 8, 2, 0xbeef, "msix.data")
        self.wreg(tb, e + 10, 1, 0x55, "msix.data")
        self.reg(tb, e + 8, 4, "msix.data")
        self.wreg(tb, e + 8, 8, 0x0000000100000000, "msix.data_ctrl")
        self.reg(tb, e + 8, 8, "msix.data_ctrl")
        self.wreg(tb, e + 0, 8, 0, "msix.addr")
        self.reg(tb, e + 0, 8, "msix.addr")
        self.wreg(pb, poff, 4, 0xffffffff, "pba.0")
        self.reg(pb, poff, 4, "pba.0")

    def dump_legacy(self, size: int) -> None:
        r, w = self.reg, self.wreg
        r(0, 0, 4, "host_features")
        r(0, 4, 4, "guest_features")
        r(0, 8, 4, "queue_pfn")
        r(0, 12, 2, "queue_num")
        r(0, 14, 2, "queue_sel")
        r(0, 16, 2, "queue_notify")
        r(0, 18, 1, "status")
        r(0, 19, 1, "isr")
        r(0, 20, 2, "config_vector")
        r(0, 22, 2, "queue_vector")
        for o in range(20, size):
            r(0, o, 1, "dev")
        r(0, size, 1, "beyond")
        for o in range(0, size, 8):
            self.matrix(0, o)
        for q in range(4):
            w(0, 14, 2, q, "queue_sel")
            r(0, 12, 2, "queue_num")
            r(0, 8, 4, "queue_pfn")
            r(0, 22, 2, "queue_vector")
        w(0, 14, 2, 0, "queue_sel")
        w(0, 20, 2, 0, "config_vector")
        r(0, 20, 2, "config_vector")
        w(0, 20, 2, 0x7ff, "config_vector")
        r(0, 20, 2, "config_vector")
        w(0, 22, 2, 1, "queue_vector")
        r(0, 22, 2, "queue_vector")
        w(0, 22, 2, 0xffff, "queue_vector")
        r(0, 22, 2, "queue_vector")
        w(0, 20, 2, 0xffff, "config_vector")
        w(0, 4, 4, 0xffffffff, "guest_features")
        r(0, 4, 4, "guest_features")
        w(0, 18, 1, 1, "status")
        r(0, 18, 1, "status")
        w(0, 18, 1, 0, "status")
        r(0, 18, 1, "status")
        r(0, 4, 4, "guest_features")

    def common_fields(self, b: int, c: int) -> None:
        for off, n, name in ((0x00, 4, "dfselect"), (0x04, 4, "df"), (0x08, 4, "gfselect"),
                             (0x0c, 4, "gf"), (0x10, 2, "msix_config"), (0x12, 2, "num_queues"),
                             (0x14, 1, "status"), (0x15, 1, "config_generation"),
                             (0x16, 2, "queue_select"), (0x18, 2, "queue_size"),
                             (0x1a, 2, "queue_msix_vector"), (0x1c, 2, "queue_enable"),
                             (0x1e, 2, "queue_notify_off"), (0x20, 4, "queue_desc_lo"),
                             (0x24, 4, "queue_desc_hi"), (0x28, 4, "queue_avail_lo"),
                             (0x2c, 4, "queue_avail_hi"), (0x30, 4, "queue_used_lo"),
                             (0x34, 4, "queue_used_hi"), (0x38, 4, "after")):
            self.reg(b, c + off, n, name)

    def dump_modern(self) -> None:
        cc = self.vc[1]
        if cc is None:
            return
        b, c = cc["bar"], cc["off"]
        r, w = self.reg, self.wreg
        self.common_fields(b, c)
        for sel in range(3):
            w(b, c + 0x00, 4, sel, "dfselect")
            r(b, c + 0x04, 4, "df")
        w(b, c + 0x00, 4, 0, "dfselect")
        for sel in range(3):
            w(b, c + 0x08, 4, sel, "gfselect")
            r(b, c + 0x0c, 4, "gf")
        w(b, c + 0x08, 4, 0, "gfselect")
        nq = self.bar_le(b, c + 0x12, 2)
        q = 0
        while q <= nq and q < 8:
            w(b, c + 0x16, 2, q, "queue_select")
            r(b, c + 0x18, 2, "queue_size")
            r(b, c + 0x1a, 2, "queue_msix_vector")
            r(b, c + 0x1c, 2, "queue_enable")
            r(b, c + 0x1e, 2, "queue_notify_off")
            q += 1
        w(b, c + 0x16, 2, 0x400, "queue_select")
        r(b, c + 0x16, 2, "queue_select")
        w(b, c + 0x16, 2, 0, "queue_select")
        w(b, c + 0x20, 4, 0x11223344, "queue_desc_lo")
        w(b, c + 0x24, 4, 0x55667788, "queue_desc_hi")
        w(b, c + 0x28, 4, 0x99aabbcc, "queue_avail_lo")
        w(b, c + 0x34, 4, 0xddeeff00, "queue_used_hi")
        r(b, c + 0x20, 8, "queue_desc")
        r(b, c + 0x28, 8, "queue_avail")
        r(b, c + 0x30, 8, "queue_used")
        w(b, c + 0x20, 8, 0, "queue_desc")
        r(b, c + 0x20, 8, "queue_desc")
        for size in (0x40, 0x0, 0x1000, 0x100):
            w(b, c + 0x18, 2, size, "queue_size")
            r(b, c + 0x18, 2, "queue_size")
        msix_n = self.msix["n"] if self.msix else 0
        w(b, c + 0x10, 2, 0, "msix_config")
        r(b, c + 0x10, 2, "msix_config")
        w(b, c + 0x10, 2, msix_n, "msix_config")
        r(b, c + 0x10, 2, "msix_config")
        w(b, c + 0x1a, 2, 1, "queue_msix_vector")
        r(b, c + 0x1a, 2, "queue_msix_vector")
        w(b, c + 0x1a, 2, 0xffff, "queue_msix_vector")
        r(b, c + 0x1a, 2, "queue_msix_vector")
        w(b, c + 0x10, 2, 0xffff, "msix_config")
        w(b, c + 0x14, 1, 3, "status")
        r(b, c + 0x14, 1, "status")
        w(b, c + 0x14, 1, 0, "status")
        r(b, c + 0x14, 1, "status")
        w(b, c + 0x00, 1, 1, "dfselect")
        r(b, c + 0x00, 4, "dfselect")
        w(b, c + 0x01, 1, 1, "dfselect+1")
        r(b, c + 0x00, 4, "dfselect")
        w(b, c + 0x00, 8, 0x100000000, "dfselect_df")
        r(b, c + 0x00, 4, "dfselect")
        w(b, c + 0x00, 4, 0, "dfselect")
        for o in range(0, 0x40, 8):
            self.matrix(b, c + o)
        r(b, c + 0xffc, 4, "common_end")
        r(b, c + 0xffc, 8, "common_xend")
        isr = self.vc[3]
        if isr is not None:
            r(isr["bar"], isr["off"], 1, "isr")
            r(isr["bar"], isr["off"] + 1, 1, "isr+1")
            r(isr["bar"], isr["off"], 4, "isr")
            self.matrix(isr["bar"], isr["off"])
            w(isr["bar"], isr["off"], 1, 1, "isr")
            r(isr["bar"], isr["off"], 1, "isr")
        dv = self.vc[4]
        if dv is not None:
            for o in range(0x20):
                r(dv["bar"], dv["off"] + o, 1, "dev")
            for o in range(0, 0x10, 2):
                r(dv["bar"], dv["off"] + o, 2, "dev")
            for o in range(0, 0x10, 4):
                r(dv["bar"], dv["off"] + o, 4, "dev")
            self.matrix(dv["bar"], dv["off"])
            self.matrix(dv["bar"], dv["off"] + 8)
        nt = self.vc[2]
        if nt is not None:
            r(nt["bar"], nt["off"], 2, "notify")
            r(nt["bar"], nt["off"] + nt["len"] - 4, 4, "notify_end")
            self.matrix(nt["bar"], nt["off"])
        pc = self.vc[5]
        if pc is not None:
            p = pc["pos"]
            self.st(CFG, p + 4, 1, b)
            self.st(CFG, p + 8, 4, _bswap(c + 0x12, 4))
            self.st(CFG, p + 12, 4, _bswap(2, 4))
            v = self.ld(CFG, p + 16, 4)
            self.head("X")
            self.puts(f"pcicfg num_queues l4 = {self.tok(v, 4)}\n")
            self.st(CFG, p + 12, 4, _bswap(4, 4))
            self.st(CFG, p + 8, 4, _bswap(c, 4))
            self.st(CFG, p + 16, 4, _bswap(1, 4))
            v = self.ld(CFG, p + 16, 2)
            self.head("X")
            self.puts(f"pcicfg dfselect<-1 l2 = {self.tok(v, 2)}\n")
            r(b, c, 4, "dfselect")
            w(b, c, 4, 0, "dfselect")
            self.st(CFG, p + 8, 4, 0)
            self.st(CFG, p + 12, 4, 0)
            self.st(CFG, p + 16, 4, 0)
            self.st(CFG, p + 4, 1, 0)

    # -- the driver run ------------------------------------------------------
    def dmaaddr(self, pa: int) -> int:
        if not self.translated:
            return pa
        if RING <= pa < RING + 0x2000:
            return SDMA + (pa - RING)
        if BUFPAGE <= pa < BUFPAGE + 0x1000:
            return SDMA + 0x2000 + (pa - BUFPAGE)
        return SDMA + 0x3000 + (pa - RDONLY_PAGE)

    def put(self, pa: int, n: int, v: int) -> None:
        self.mem[pa:pa + n] = v.to_bytes(n, "little")

    def get(self, pa: int, n: int) -> int:
        return int.from_bytes(self.mem[pa:pa + n], "little")

    def add_desc(self, addr: int, length: int, flags: int) -> int:
        slot = self.next_desc % QSZ
        self.next_desc += 1
        d = RING + 16 * slot
        self.put(d, 8, addr)
        self.put(d + 8, 4, length)
        self.put(d + 12, 2, flags)
        self.put(d + 14, 2, 0)
        return slot

    def chain(self, a: int, b: int) -> None:
        d = RING + 16 * a
        self.put(d + 12, 2, self.get(d + 12, 2) | 1)
        self.put(d + 14, 2, b)

    def publish(self, head: int) -> None:
        avail = RING + QSZ * 16
        self.put(avail + 4 + 2 * (self.avail_idx % QSZ), 2, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.put(avail + 2, 2, self.avail_idx)

    def post(self, addr: int, length: int, flags: int) -> None:
        self.publish(self.add_desc(addr, length, flags))

    def used_line(self, what: str, buf: int | None, n: int) -> None:
        used = RING + USED_OFF
        idx = self.get(used + 2, 2)
        self.head("E")
        s = f"{what} used_idx={_h(idx, 4)}"
        if idx != self.used_seen:
            slot = ((idx - 1) & 0xFFFF) % QSZ
            s += f" id={_h(self.get(used + 4 + 8 * slot, 4), 4)} len={_h(self.get(used + 8 + 8 * slot, 4), 8)}"
        if buf is not None:
            s += f" written={int(any(self.mem[buf:buf + n]))}"
        self.puts(s + "\n")
        self.used_seen = idx

    def notify(self, q: int) -> None:
        nt = self.vc[2]
        self.st(nt["bar"], nt["off"] + q * nt["mult"], 2, _bswap(q, 2))

    def setup_queue(self, q: int, want_platform: bool) -> None:
        b, c = self.vc[1]["bar"], self.vc[1]["off"]
        self.mem[RING:RING + 0x2000] = bytes(0x2000)
        self.avail_idx = self.used_seen = self.next_desc = 0
        st, ld = self.bar_st_le, self.bar_le
        st(b, c + 0x14, 1, 0)
        if self.verbose and want_platform:
            st(b, c + 0x14, 1, 3)
            st(b, c + 0x08, 4, 1)
            st(b, c + 0x0c, 4, 1)
            st(b, c + 0x14, 1, 0xb)
            self.head("E")
            self.puts(f"version1_only status={_h(ld(b, c + 0x14, 1), 2)}\n")
            st(b, c + 0x14, 1, 0)
        st(b, c + 0x14, 1, 3)
        st(b, c + 0x08, 4, 0)
        st(b, c + 0x0c, 4, 0)
        st(b, c + 0x08, 4, 1)
        st(b, c + 0x0c, 4, 3 if want_platform else 1)
        st(b, c + 0x14, 1, 0xb)
        if self.verbose:
            self.head("E")
            self.puts(f"features_ok status={_h(ld(b, c + 0x14, 1), 2)}\n")
        st(b, c + 0x16, 2, q)
        st(b, c + 0x18, 2, QSZ)
        st(b, c + 0x20, 8, self.dmaaddr(RING))
        st(b, c + 0x28, 8, self.dmaaddr(RING + QSZ * 16))
        st(b, c + 0x30, 8, self.dmaaddr(RING + USED_OFF))
        st(b, c + 0x1c, 2, 1)
        st(b, c + 0x14, 1, 0xf)
        if self.verbose:
            self.head("E")
            self.puts(f"driver_ok status={_h(ld(b, c + 0x14, 1), 2)} "
                      f"q_enable={_h(ld(b, c + 0x1c, 2), 4)}\n")

    def isr_line(self) -> None:
        v = self.ld(self.vc[3]["bar"], self.vc[3]["off"], 1)
        s = f"isr={self.tok(v, 1)}"
        v = self.ld(self.vc[1]["bar"], self.vc[1]["off"] + 0x14, 1)
        s += f" status={self.tok(v, 1)}"
        v = self.ld(self.vc[1]["bar"], self.vc[1]["off"] + 0x15, 1)
        s += f" gen={self.tok(v, 1)}"
        self.head("E")
        self.puts(s + "\n")

    def set_master(self, on: bool) -> None:
        self.st(CFG, 4, 2, _bswap(0x0006 if on else 0x0002, 2))

    def reset_error(self) -> None:
        self.port.error = False

    def run_case(self, name: str, addr: int, length: int, flags: int,
                 buf: int | None, n: int) -> None:
        self.setup_queue(self.q, self.translated)
        if buf is not None:
            self.mem[buf:buf + n] = bytes(n)
        self.post(addr, length, flags)
        self.notify(self.q)
        self.used_line(name, buf, n)
        if self.translated:
            self.reset_error()
        self.isr_line()

    def probe_access_platform(self, label: str, pages: dict[int, int]) -> None:
        """Is ACCESS_PLATFORM offered?  Print it; if so, register the DMA window and
        refresh the first three pages of the translations ``pages`` (IOVA -> frame)."""
        b, c = self.vc[1]["bar"], self.vc[1]["off"]
        self.bar_st_le(b, c, 4, 1)
        self.translated = bool((self.bar_le(b, c + 4, 4) >> 1) & 1)
        self.bar_st_le(b, c, 4, 0)
        self.head("E")
        self.puts(f"{label}={int(self.translated)}\n")
        port = self.port
        if self.translated:
            port.tables = {iova: (frame, False) for iova, frame in pages.items()}
            port.ioat, port.pba, port.pal = True, SDMA, SDMA + DMA_WINDOW_SIZE - 1
            port.rpcit(SDMA, 0x3000)

    def run_driver(self) -> None:
        dev_id = self.dev.device_id
        rng = dev_id in (0x1005, 0x1044)
        net = dev_id in (0x1000, 0x1041)
        if not (rng or net) or None in (self.vc[1], self.vc[2], self.vc[3]):
            return
        b, c = self.vc[1]["bar"], self.vc[1]["off"]
        self.probe_access_platform("access_platform", {
            SDMA: RING, SDMA + 0x1000: RING + 0x1000, SDMA + 0x2000: BUFPAGE,
            SDMA + 0x3000: RDONLY_PAGE})
        port = self.port
        self.set_master(True)
        q = self.q = 0 if rng else 1
        wr = 2 if rng else 0
        self.verbose = True
        self.setup_queue(q, self.translated)
        self.verbose = False
        self.mem[BUFPAGE:BUFPAGE + 0x1000] = bytes(0x1000)
        if net:
            self.mem[BUFPAGE:BUFPAGE + 74] = bytes(range(74))
        self.post(self.dmaaddr(BUFPAGE), 64 if rng else 74, wr)
        self.notify(q)
        self.used_line("good", BUFPAGE if rng else None, 64)
        self.isr_line()
        self.isr_line()
        self.mem[BUFPAGE:BUFPAGE + 0x100] = bytes(0x100)
        a = self.add_desc(self.dmaaddr(BUFPAGE), 8 if rng else 12, wr)
        b2 = self.add_desc(self.dmaaddr(BUFPAGE + 0x100), 24 if rng else 60, wr)
        self.chain(a, b2)
        self.publish(a)
        self.notify(q)
        self.used_line("chain", BUFPAGE if rng else None, 0x200)
        self.isr_line()
        self.run_case("wrong_direction", self.dmaaddr(BUFPAGE), 16, 0 if rng else 2,
                      BUFPAGE if rng else None, 16)
        self.run_case("zero_length", self.dmaaddr(BUFPAGE), 0, wr, None, 0)
        if self.translated:
            self.run_case("not_refreshed", self.dmaaddr(RDONLY_PAGE), 16, wr,
                          RDONLY_PAGE if rng else None, 16)
            port.tables[SDMA + 0x3000] = (RDONLY_PAGE, True)
            port.rpcit(SDMA + 0x3000, 0x1000)
            self.run_case("protected", self.dmaaddr(RDONLY_PAGE), 16, wr,
                          RDONLY_PAGE if rng else None, 16)
            self.run_case("out_of_range", SDMA + DMA_WINDOW_SIZE + 0x1000, 16, wr, None, 0)
            self.setup_queue(q, self.translated)
            del port.tables[SDMA]
            port.rpcit(SDMA, 0x1000)
            self.post(self.dmaaddr(BUFPAGE), 16, wr)
            self.notify(q)
            self.used_line("ring_unmapped", BUFPAGE if rng else None, 16)
            self.reset_error()
            self.isr_line()
            port.tables[SDMA] = (RING, False)
            port.rpcit(SDMA, 0x1000)
        else:
            self.run_case("beyond_memory", 0x20000000, 16, wr, None, 0)
        self.setup_queue(q, self.translated)
        self.set_master(False)
        self.isr_line()
        self.mem[BUFPAGE:BUFPAGE + 16] = bytes(16)
        self.post(self.dmaaddr(BUFPAGE), 16, wr)
        self.notify(q)
        self.used_line("no_master", BUFPAGE if rng else None, 16)
        self.isr_line()
        self.set_master(True)
        self.notify(q)
        self.used_line("master_again", BUFPAGE if rng else None, 16)
        self.bar_st_le(b, c + 0x14, 1, 0xf)
        self.used_line("driver_ok_again", BUFPAGE if rng else None, 16)
        self.notify(q)
        self.used_line("notify_again", BUFPAGE if rng else None, 16)
        self.isr_line()
        self.bar_st_le(b, c + 0x14, 1, 0)
        self.isr_line()
        self.common_fields(b, c)
        self.set_master(False)
        if self.translated:
            port.ioat = False

    # -- virtio-blk requests ----------------------------------------------------
    def blk_req(self, name: str, rtype: int, sector: int, dlen: int, data_in: bool) -> None:
        hdr, data, status = BUFPAGE, BUFPAGE + 0x100, BUFPAGE + 0xFF0
        self.put(hdr, 4, rtype)
        self.put(hdr + 4, 4, 0)
        self.put(hdr + 8, 8, sector & 0xFFFFFFFFFFFFFFFF)
        self.mem[status] = 0xEE
        a = last = self.add_desc(self.dmaaddr(hdr), 16, 0)
        if dlen:
            d = self.add_desc(self.dmaaddr(data), dlen, 2 if data_in else 0)
            self.chain(last, d)
            last = d
        st = self.add_desc(self.dmaaddr(status), 1, 2)
        self.chain(last, st)
        self.publish(a)
        self.notify(self.q)
        self.used_line(name, None, 0)
        self.head("E")
        self.puts(f"{name} status={_h(self.mem[status], 2)} head={_h(self.get(data, 8), 16)} "
                  f"sum={_h(sum(self.mem[data:data + dlen]), 8)}\n")

    def blk_fill(self, n: int, v: int) -> None:
        self.mem[BUFPAGE + 0x100:BUFPAGE + 0x100 + n] = bytes([v]) * n

    def blk_dwz(self, sector: int, num: int, flags: int) -> None:
        self.put(BUFPAGE + 0x100, 8, sector & 0xFFFFFFFFFFFFFFFF)
        self.put(BUFPAGE + 0x108, 4, num)
        self.put(BUFPAGE + 0x10C, 4, flags)

    def run_blk(self) -> None:
        if self.dev.device_id not in (0x1001, 0x1042) or None in (self.vc[1], self.vc[2], self.vc[3]):
            return
        b, c = self.vc[1]["bar"], self.vc[1]["off"]
        self.probe_access_platform("blk access_platform", {
            SDMA: RING, SDMA + 0x1000: RING + 0x1000, SDMA + 0x2000: BUFPAGE})
        port = self.port
        self.set_master(True)
        self.q = 0
        self.verbose = True
        self.setup_queue(0, self.translated)
        self.verbose = False
        dv = self.vc[4]
        cap = self.bar_le(dv["bar"], dv["off"], 4) | self.bar_le(dv["bar"], dv["off"] + 4, 4) << 32
        self.head("E")
        self.puts(f"capacity={_h(cap, 16)}\n")
        req, fill, dwz = self.blk_req, self.blk_fill, self.blk_dwz
        fill(0x400, 0)
        req("get_id", 8, 0, 20, True)
        fill(0x400, 0)
        req("get_id_short", 8, 0, 4, True)
        fill(0x400, 0)
        req("read0", 0, 0, 512, True)
        fill(0x400, 0)
        req("read7", 0, 7, 1024, True)
        fill(0x200, 0x5A)
        req("write3", 1, 3, 512, False)
        fill(0x400, 0)
        req("read3", 0, 3, 512, True)
        req("flush", 4, 0, 0, False)
        fill(0x400, 0)
        req("beyond", 0, cap, 512, True)
        req("last", 0, cap - 2, 1024, True)
        fill(0x400, 0)
        req("partial", 0, 0, 100, True)
        req("sector_one", 0, 1, 1024, True)
        req("scsi_cmd", 2, 0, 0, False)
        req("lifetime", 10, 0, 0, False)
        req("unknown", 0x20, 0, 0, False)
        dwz(0, 8, 0)
        req("discard", 11, 0, 16, False)
        dwz(0, 8, 1)
        req("discard_unmap", 11, 0, 16, False)
        dwz(3, 1, 0)
        req("write_zeroes", 13, 0, 16, False)
        fill(0x400, 0)
        req("read3_again", 0, 3, 512, True)
        dwz(3, 1, 2)
        req("wz_bad_flag", 13, 0, 16, False)
        dwz(cap, 1, 0)
        req("wz_beyond", 13, 0, 16, False)
        req("dwz_in", 12, 0, 16, True)
        self.isr_line()
        self.bar_st_le(b, c + 0x14, 1, 0)
        self.set_master(False)
        if self.translated:
            port.ioat = False

    # -- legacy driver and MSI-X delivery -------------------------------------
    def run_legacy(self) -> None:
        dev_id = self.dev.device_id
        if dev_id not in (0x1005, 0x1000):
            return
        rng = dev_id == 0x1005
        q = 0 if rng else 1
        st, ld = self.bar_st_le, self.bar_le
        st(0, 18, 1, 0)
        st(0, 18, 1, 3)
        self.reg(0, 4, 4, "guest_features")
        cmd = self.ld(CFG, 4, 2)
        self.head("L")
        self.puts(f"command after ACK|DRIVER = {self.tok(cmd, 2)}\n")
        st(0, 4, 4, 0)
        st(0, 14, 2, q)
        num = ld(0, 12, 2)
        self.mem[LRING:LRING + 0x4000] = bytes(0x4000)
        desc, avail = LRING, LRING + 16 * num
        used = LRING + (((16 * num + 4 + 2 * num) + 4095) & ~4095)
        st(0, 8, 4, LRING >> 12)
        self.head("L")
        self.puts(f"queue_pfn_is_ring={int(ld(0, 8, 4) == LRING >> 12)}\n")
        st(0, 18, 1, 7)
        self.mem[BUFPAGE:BUFPAGE + 0x1000] = bytes(0x1000)
        if not rng:
            self.mem[BUFPAGE:BUFPAGE + 70] = bytes(range(70))
        be = lambda a, n, v: self.mem.__setitem__(slice(a, a + n), v.to_bytes(n, "big"))  # noqa: E731
        be(desc, 8, BUFPAGE)
        be(desc + 8, 4, 32 if rng else 70)
        be(desc + 12, 2, 2 if rng else 0)
        be(avail + 4, 2, 0)
        be(avail + 2, 2, 1)
        st(0, 16, 2, q)
        g = lambda a, n: int.from_bytes(self.mem[a:a + n], "big")  # noqa: E731
        s = f"used_idx={_h(g(used + 2, 2), 4)} id={_h(g(used + 4, 4), 4)} len={_h(g(used + 8, 4), 8)}"
        if rng:
            s += f" written={int(any(self.mem[BUFPAGE:BUFPAGE + 32]))}"
        self.head("L")
        self.puts(s + "\n")
        self.reg(0, 19, 1, "isr")
        self.reg(0, 19, 1, "isr")
        m = self.msix
        if m is not None:
            self.st(CFG, m["pos"] + 3, 1, 0x80)
            self.head("L")
            self.puts("msix enabled\n")
            r, w = self.reg, self.wreg
            r(0, 20, 2, "config_vector")
            r(0, 22, 2, "queue_vector")
            w(0, 20, 2, 0, "config_vector")
            r(0, 20, 2, "config_vector")
            w(0, 22, 2, 1, "queue_vector")
            r(0, 22, 2, "queue_vector")
            w(0, 22, 2, 0x40, "queue_vector")
            r(0, 22, 2, "queue_vector")
            for o in range(24, 32):
                r(0, o, 1, "dev")
            r(0, 24, 4, "dev")
            w(0, 20, 2, 0xffff, "config_vector")
            self.st(CFG, m["pos"] + 3, 1, 0)
            self.head("L")
            self.puts("msix disabled\n")
            r(0, 20, 2, "dev")
        st(0, 8, 4, 0)
        self.reg(0, 18, 1, "status")
        self.reg(0, 8, 4, "queue_pfn")
        self.set_master(False)

    def ind_line(self, what: str) -> None:
        m = self.msix
        pba = self.ld(m["pbar"], m["poff"], 4)
        self.head("I")
        self.puts(f"{what} aibv={_h(self.port.aibv[0], 2)} aisb={_h(self.port.aisb[0], 2)} "
                  f"pba={self.tok(pba, 4)}\n")

    def run_msi(self) -> None:
        if self.dev.device_id not in (0x1005, 0x1044) or self.msix is None or self.vc[1] is None:
            return
        b, c = self.vc[1]["bar"], self.vc[1]["off"]
        m = self.msix
        tb, toff, pos = m["tbar"], m["toff"], m["pos"]
        port = self.port
        port.aibv = bytearray(8)
        port.aisb = bytearray(8)
        if self.translated:
            port.ioat = True
            port.tables[SDMA] = (RING, False)
            port.rpcit(SDMA, 0x3000)
        self.set_master(True)
        self.setup_queue(0, self.translated)
        self.bar_st_le(tb, toff, 8, MSIA)
        self.bar_st_le(tb, toff + 8, 4, 0)
        self.wreg(b, c + 0x16, 2, 0, "queue_select")
        self.wreg(b, c + 0x1a, 2, 0, "queue_msix_vector")
        self.reg(b, c + 0x1a, 2, "queue_msix_vector")
        self.st(CFG, pos + 3, 1, 0x80)
        self.ind_line("enabled_masked")
        self.post(self.dmaaddr(BUFPAGE), 16, 2)
        self.notify(0)
        self.used_line("msi_masked", None, 0)
        self.ind_line("after_masked")
        self.bar_st_le(tb, toff + 12, 4, 0)
        self.ind_line("after_unmask")
        port.aibv[0] = port.aisb[0] = 0
        self.post(self.dmaaddr(BUFPAGE), 16, 2)
        self.notify(0)
        self.used_line("msi_unmasked", None, 0)
        self.ind_line("after_unmasked")
        self.reg(self.vc[3]["bar"], self.vc[3]["off"], 1, "isr")
        port.aibv[0] = port.aisb[0] = 0
        self.st(CFG, pos + 3, 1, 0xC0)
        self.post(self.dmaaddr(BUFPAGE), 16, 2)
        self.notify(0)
        self.used_line("msi_function_masked", None, 0)
        self.ind_line("after_function_masked")
        self.st(CFG, pos + 3, 1, 0x80)
        self.ind_line("after_function_unmask")
        port.aibv[0] = port.aisb[0] = 0
        self.set_master(False)
        self.bar_st_le(b, c + 0x14, 1, 0xF)
        self.set_master(False)
        self.ind_line("no_master")
        self.set_master(True)
        self.bar_st_le(b, c + 0x14, 1, 0)
        self.st(CFG, pos + 3, 1, 0)
        self.set_master(False)
        port.aibv = None
        port.ioat = False

    def run(self) -> list[str]:
        self.query()
        self.dump_config()
        self.dump_wmask()
        self.walk_caps()
        self.dump_msix()
        if self.dev.bar_size(0):
            self.dump_legacy(self.dev.bar_size(0))
        self.dump_modern()
        self.translated = self.dev.dma_translated
        self.run_driver()
        self.run_blk()
        if self.dev.bar_size(0):
            self.run_legacy()
        self.run_msi()
        return self.out


def model_dump(kind: str, props=()) -> list[str]:
    return DevdumpDriver(make_device(kind, props)).run()


def model_dump_machine(devices: list[str]) -> list[str]:
    """Several functions in plug order; one make_device context, as one machine has."""
    context: dict = {}
    out: list[str] = []
    for n, dev in enumerate(devices):
        kind, props = _kind_props(dev)
        out += DevdumpDriver(make_device(kind, props, context=context), fnum=n).run()
    return out


# ---------------------------------------------------------------- the tests

import difflib  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from conftest import CROSS_GCC, needs_qemu  # noqa: E402
from emulator.capture.qemu import run_qemu  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data"
ELF = pathlib.Path(__file__).parent.parent / "traces" / "guests" / "build" / "devdump.elf"

# golden name -> the -device string of the QEMU run (model: the same kind and properties)
DEVICES = {
    "rng": "virtio-rng-pci",
    "rng_modern_iommu": "virtio-rng-pci,disable-legacy=on,iommu_platform=on",
    "net": "virtio-net-pci",
    "net_modern_iommu": "virtio-net-pci,disable-legacy=on,iommu_platform=on",
    # one property or a few at a time, each against QEMU
    "rng_vectors9": "virtio-rng-pci,vectors=9",
    "rng_page_per_vq": "virtio-rng-pci,disable-legacy=on,page-per-vq=on",
    "rng_max_bytes": "virtio-rng-pci,disable-legacy=on,max-bytes=40",
    "net_legacy_only": "virtio-net-pci,disable-modern=on",
    "net_mtu_nostatus": "virtio-net-pci,disable-legacy=on,status=off,host_mtu=9000",
    "net_norom_mac": "virtio-net-pci,romfile=,mac=02:00:00:00:00:01,event_idx=off",
    "net_ioeventfd_off": "virtio-net-pci,ioeventfd=off",
    "net_queues": "virtio-net-pci,rx_queue_size=1024,tx_queue_size=512,ctrl_vq=off,"
                  "queue_reset=off,indirect_desc=off",
    "net_features_off": "virtio-net-pci,mrg_rxbuf=off,status=off,gso=off,csum=off,"
                        "guest_csum=on,ctrl_rx=off,any_layout=off,notify_on_empty=off",
}


# virtio-blk: golden name -> (-device string, -drive options after the file, image)
BLK_DEVICES = {
    "blk": ("virtio-blk-pci", "", "pattern"),
    "blk_modern_iommu": ("virtio-blk-pci,disable-legacy=on,iommu_platform=on,serial=SN-0123",
                         "", "pattern"),
    "blk_props": ("virtio-blk-pci,num-queues=3,queue-size=64,serial=ABCDEFGHIJKLMNOPQRSTUVWXYZ,"
                  "config-wce=off,discard=off,logical_block_size=4096,physical_block_size=16384,"
                  "min_io_size=8192,opt_io_size=65536,vectors=3", "", "pattern"),
    "blk_ro_writethrough": ("virtio-blk-pci,disable-legacy=on,x-enable-wce-if-config-wce=off,"
                            "seg-max-adjust=off,cyls=100,heads=4,secs=32,max-discard-sectors=1000",
                            ",readonly=on,cache=writethrough", "mbr"),
    "blk_legacy_only": ("virtio-blk-pci,disable-modern=on,write-zeroes=off,"
                        "discard_granularity=65536", "", "mbr"),
}
BLK_IMAGE_SIZE = 4 << 20


def blk_image(kind: str) -> bytes:
    """The golden runs' raw images: each 512-byte sector starts with its number
    (big-endian); "mbr" adds a partition table whose first entry ends at head 3,
    sector 32, so QEMU guesses a 4-head, 32-sector geometry."""
    img = bytearray(BLK_IMAGE_SIZE)
    for sector in range(BLK_IMAGE_SIZE // 512):
        img[512 * sector:512 * sector + 8] = sector.to_bytes(8, "big")
    if kind == "mbr":
        e = 0x1BE
        img[e + 5], img[e + 6] = 3, 32
        img[e + 12:e + 16] = (4000).to_bytes(4, "little")
        img[510:512] = b"\x55\xaa"
    return bytes(img)


def _drive_flags(opts: str) -> tuple[bool, bool]:
    """(readonly, write cache) of a golden run's -drive options."""
    fields = dict(f.split("=", 1) for f in opts.split(",") if f)
    return (fields.get("readonly") == "on",
            fields.get("cache", "writeback") not in ("writethrough", "directsync"))


def model_dump_blk(name: str) -> list[str]:
    from firmware_model.devices.virtio_blk import BlockImage
    device, opts, image = BLK_DEVICES[name]
    kind, props = _kind_props(device)
    readonly, wce = _drive_flags(opts)
    drives = {"d0": BlockImage(blk_image(image), readonly=readonly, write_cache=wce)}
    dev = make_device(kind, props + (("drive", "d0"),), context={"drives": drives})
    return DevdumpDriver(dev).run()


def qemu_devdump_blk(name: str) -> str:
    """A golden blk run: a fresh image file each time (the run writes to it)."""
    import tempfile
    device, opts, image = BLK_DEVICES[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "disk.raw"
        path.write_bytes(blk_image(image))
        return qemu_devdump(f"{device},drive=d0",
                            extra=["-drive", f"file={path},if=none,id=d0,format=raw{opts}"])


def _kind_props(device: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    kind, *rest = device.split(",")
    return kind, tuple(tuple(p.split("=", 1)) for p in rest)


VARIANTS = {name: (dev, *_kind_props(dev)) for name, dev in DEVICES.items()}

# several functions in one machine (default MACs count up, CLP LIST order)
MACHINES = {
    "two_nics_and_rng": ["virtio-net-pci", "virtio-rng-pci,disable-legacy=on,iommu_platform=on",
                         "virtio-net-pci,disable-legacy=on"],
}


def qemu_devdump(device: str | list[str], extra: list[str] = ()) -> str:
    """The golden files' recipe: docs/qemu-oracle.md's command line, a function per device."""
    devices = [device] if isinstance(device, str) else device
    args = list(extra)
    for n, dev in enumerate(devices):
        args += ["-device", f"zpci,uid={n + 1},fid={n + 1},target=vpci{n}",
                 "-device", f"{dev},id=vpci{n}"]
    q = run_qemu(ELF, args, timeout=120)
    assert q.exit_code == 0 and not q.timed_out, q.stderr.decode(errors="replace")[-2000:]
    return q.stdout.decode()


def _diff(want: list[str], got: list[str]) -> str:
    return "\n".join(list(difflib.unified_diff(want, got, "qemu", "model", lineterm="", n=1))[:80])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_model_dump_matches_qemu_line_for_line(name):
    """Every register devdump reads, through the userspace PCILG/PCISTG dispatch."""
    _, kind, props = VARIANTS[name]
    want = device_lines((DATA / f"devdump_qemu_{name}.txt").read_text())
    assert len(want) > 250, "golden file truncated"
    got = model_dump(kind, props)
    assert got == want, _diff(want, got)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_model_dump_of_a_machine_matches_qemu(name):
    want = device_lines((DATA / f"devdump_qemu_{name}.txt").read_text())
    got = model_dump_machine(MACHINES[name])
    assert got == want, _diff(want, got)


@pytest.mark.parametrize("name", sorted(BLK_DEVICES))
def test_model_dump_of_virtio_blk_matches_qemu(name):
    """Registers, configuration and one request of each kind against QEMU's run."""
    want = device_lines((DATA / f"devdump_qemu_{name}.txt").read_text())
    assert len(want) > 250, "golden file truncated"
    got = model_dump_blk(name)
    assert got == want, _diff(want, got)


@pytest.mark.parametrize("name", sorted(VARIANTS) + sorted(MACHINES) + sorted(BLK_DEVICES))
def test_golden_file_is_a_complete_qemu_run(name):
    text = (DATA / f"devdump_qemu_{name}.txt").read_text()
    lines = text.splitlines()
    assert lines[0] == "DEVDUMP start"
    assert lines[-1].startswith("DEVDUMP done")
    assert "FAIL" not in text and "FATAL" not in text


def _devdump_elf() -> pathlib.Path:
    if not ELF.exists():
        if CROSS_GCC is None:
            pytest.skip("traces/guests/build/devdump.elf not built and s390x-linux-gnu-gcc "
                        "not installed (apt-get install gcc-s390x-linux-gnu)")
        subprocess.run(["make", "-s", "-C", str(ELF.parent.parent), "build/devdump.elf"],
                       check=True, capture_output=True, timeout=300)
    return ELF


@needs_qemu
@pytest.mark.parametrize("name", ["rng_modern_iommu", "net"])
def test_golden_file_is_what_qemu_prints_now(name):
    """The golden files are QEMU's output for devdump.c, not edited text."""
    _devdump_elf()
    device = VARIANTS[name][0]
    got = qemu_devdump(device).splitlines()
    want = (DATA / f"devdump_qemu_{name}.txt").read_text().splitlines()
    assert got == want, _diff(want, got)


@needs_qemu
@pytest.mark.parametrize("name", ["blk_modern_iommu", "blk_ro_writethrough"])
def test_blk_golden_file_is_what_qemu_prints_now(name):
    _devdump_elf()
    got = qemu_devdump_blk(name).splitlines()
    want = (DATA / f"devdump_qemu_{name}.txt").read_text().splitlines()
    assert got == want, _diff(want, got)


def test_dump_comparison_detects_a_wrong_register():
    """The comparison can fail: a model with one wrong feature bit differs from QEMU."""
    want = device_lines((DATA / "devdump_qemu_rng.txt").read_text())
    dev = make_device("virtio-rng-pci", (("event_idx", "off"),))
    got = DevdumpDriver(dev).run()
    assert got != want
    diff = [a for a, b in zip(want, got) if a != b]
    assert any("host_features" in ln or " df = " in ln for ln in diff)


if __name__ == "__main__":      # regenerate the golden files from QEMU
    for _name, _devices in [*((n, v[0]) for n, v in VARIANTS.items()), *MACHINES.items()]:
        (DATA / f"devdump_qemu_{_name}.txt").write_text(qemu_devdump(_devices))
        print("wrote", DATA / f"devdump_qemu_{_name}.txt")
    for _name in BLK_DEVICES:
        (DATA / f"devdump_qemu_{_name}.txt").write_text(qemu_devdump_blk(_name))
        print("wrote", DATA / f"devdump_qemu_{_name}.txt")
