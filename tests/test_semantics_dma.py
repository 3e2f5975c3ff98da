"""RPCIT, the guest's I/O translation tables, the IOTLB, device DMA and MSI delivery."""
from __future__ import annotations

import struct
import time

from hypothesis import given, strategies as st

from test_semantics_common import FIB, Probe

from firmware_model.arch import FnState, Pec, Pgm
from firmware_model.device import DmaErrorKind
from firmware_model.dma import DirectDma, Perm, table_walk

SDMA = 0x100000000
RTT, STT, PTT, FRAME = 0x2C000, 0x30000, 0x34000, 0x35000


def q64(v):
    return struct.pack(">Q", v)


def setup(pal_span=0xFFFFF, map_frame=FRAME, iova=SDMA):
    """Enabled function, tables mapping iova -> map_frame, IOAT registered on [sdma, sdma+span]."""
    p = Probe()
    efh = p.enable()
    iota = p.build_tables(iova, RTT, STT, PTT, map_frame)
    p.write_fib(pba=SDMA, pal=SDMA + pal_span, iota=iota)
    c, _ = p.mpcifc((efh << 32) | 4, FIB)
    assert c.cc == 0
    return p, efh, iota


def rpcit(p, efh, start, length):
    return p.rpcit(efh << 32, start, length)


# -- the table walk -----------------------------------------------------------

def test_walk_valid_page_and_invalid_levels():
    p, efh, iota = setup()
    w = table_walk(p.guest, iota, SDMA + 0x123)
    assert (w.error, w.iova, w.translated_addr, w.length, w.perm) == (0, SDMA, FRAME, 4096, Perm.RW)
    w = table_walk(p.guest, iota, SDMA + 0x1000)             # PTE invalid bit
    assert (w.error, w.length, w.perm) == (0, 4096, Perm.NONE)
    w = table_walk(p.guest, iota, SDMA + (1 << 20))          # STE invalid
    assert (w.error, w.length, w.perm) == (0, 1 << 20, Perm.NONE)
    w = table_walk(p.guest, iota, SDMA + (1 << 31))          # RTE invalid
    assert (w.error, w.length, w.perm) == (0, 1 << 31, Perm.NONE)


def test_walk_quirks_zero_entries_and_frame_zero():
    p, efh, iota = setup()
    p.poke(PTT + 8, q64(0))                                   # all-zero PTE: error, not "invalid"
    assert table_walk(p.guest, iota, SDMA + 0x1000).error == Pec.INVALTE
    p.poke(PTT + 8, q64(0x200))                               # valid PTE for frame 0: no origin
    assert table_walk(p.guest, iota, SDMA + 0x1000).error == Pec.TT
    p.poke(RTT + 8 * 3, q64(STT | 0x4 | 0x1))                 # region-third length 1
    assert table_walk(p.guest, iota, SDMA + (1 << 31)).error == Pec.INVALTL
    p.poke(RTT + 8 * 3, q64(STT | 0x8 | 0x3))                 # wrong table type
    assert table_walk(p.guest, iota, SDMA + (1 << 31)).error == Pec.TT
    p.poke(RTT + 8 * 3, q64(STT | 0x4 | 0x3 | 0x40))          # table offset non-zero
    assert table_walk(p.guest, iota, SDMA + (1 << 31)).error == Pec.INVALTL
    # tables outside guest storage read as zero: INVALTE
    assert table_walk(p.guest, (1 << 40) | 0x804, SDMA).error == Pec.INVALTE


def test_walk_protection_and_1m_frames():
    p, efh, iota = setup()
    p.poke(PTT, q64(FRAME | 0x200))
    assert table_walk(p.guest, iota, SDMA).perm == Perm.RO
    p.poke(PTT, q64(FRAME))
    # QEMU keeps the IOTA's protection bit in the table origin: the region-third
    # table is read 0x200 bytes further on, where this entry is invalid ...
    assert table_walk(p.guest, iota | 0x200, SDMA).perm == Perm.NONE
    p.poke(RTT + 0x200 + 8 * 2, q64(STT | 0x7))
    # ... and a valid entry there makes the whole translation read-only
    w = table_walk(p.guest, iota | 0x200, SDMA)
    assert (w.translated_addr, w.perm) == (FRAME, Perm.RO)
    p.poke(STT + 8, q64(0x200000 | 0x400))                    # FC: 1 MiB frame at 2 MiB
    w = table_walk(p.guest, iota, SDMA + (1 << 20) + 0x5432)
    assert (w.translated_addr, w.length, w.perm) == (0x205000, 1 << 20, Perm.RW)


# -- RPCIT --------------------------------------------------------------------

def test_rpcit_maps_and_unmaps_pages_of_the_iotlb():
    p, efh, iota = setup()
    c, _ = rpcit(p, efh, SDMA, 0x1000)
    assert c.cc == 0 and set(p.fn.iotlb) == {SDMA}
    assert p.fn.iotlb[SDMA].translated_addr == FRAME and p.fn.counters[3] == 1
    p.poke(PTT, q64(FRAME | 0x400))                          # guest invalidates, then refreshes
    c, _ = rpcit(p, efh, SDMA, 0x1000)
    assert c.cc == 0 and p.fn.iotlb == {}


class _TranslatedView:
    """A vCPU's view whose logical addresses are not absolute, as under DAT
    with a mapping other than the identity: logical addr is absolute
    addr + shift."""

    def __init__(self, storage, shift):
        self.absolute, self.shift, self.problem_state = storage, shift, False

    def gpr(self, r):
        return self.absolute.gpr(r)

    def set_gpr(self, r, v):
        self.absolute.set_gpr(r, v)

    def read(self, addr, size):
        return self.absolute.read(addr + self.shift, size)

    def write(self, addr, data):
        return self.absolute.write(addr + self.shift, data)


def test_rpcit_walks_the_tables_in_absolute_storage_not_the_operand_view():
    """The IOTA and its tables are absolute: what the CPU's translation puts
    at those addresses (zeros here, an INVALTE if walked) plays no part."""
    p, efh, iota = setup()
    p.guest = _TranslatedView(p.guest, 0x40000)
    c, _ = rpcit(p, efh, SDMA, 0x1000)
    assert c.cc == 0 and p.fn.iotlb[SDMA].translated_addr == FRAME


def test_a_recording_of_rpcit_holds_the_absolute_table_reads():
    from firmware_model.guest import RecordingGuest
    p, efh, iota = setup()
    rec = p.guest = RecordingGuest(_TranslatedView(p.guest, 0x40000))
    c, _ = rpcit(p, efh, SDMA, 0x1000)
    assert c.cc == 0
    entries = [RTT + 8 * ((SDMA >> 31) & 0x7FF), STT + 8 * ((SDMA >> 20) & 0x7FF), PTT]
    assert [a for a, _ in rec.reads] == entries
    assert rec.reads[-1][1] == q64(FRAME)


def test_rpcit_over_a_1m_frame_maps_every_page_from_the_start_page():
    p, efh, iota = setup(pal_span=(4 << 20) - 1)
    p.poke(STT + 8, q64(0x200000 | 0x400))
    c, _ = rpcit(p, efh, SDMA + (1 << 20) + 0x3000, 0x1000)
    assert c.cc == 0
    # QEMU maps from the start page to start + 1 MiB, clipped at the range end
    assert sorted(p.fn.iotlb) == [SDMA + (1 << 20) + 0x3000]
    c, _ = rpcit(p, efh, SDMA + (1 << 20), 1 << 20)
    assert len(p.fn.iotlb) == 256
    assert p.fn.iotlb[SDMA + (1 << 20) + 0xFF000].translated_addr == 0x2FF000


@given(page=st.integers(0, 255), npages=st.integers(1, 300))
def test_rpcit_range_refresh_matches_page_table(page, npages):
    p, efh, iota = setup()
    # map every even page of the first page table to frame 0x40000 + page * 4K
    for i in range(0, 256, 2):
        p.poke(PTT + 8 * i, q64(0x40000 + i * 0x1000))
    c, reg = rpcit(p, efh, SDMA + page * 0x1000, npages * 0x1000)
    assert c.cc == 0
    last = page + npages
    want = {SDMA + i * 0x1000 for i in range(page, min(last, 256)) if i % 2 == 0}
    assert set(p.fn.iotlb) == want
    assert all(p.fn.iotlb[k].translated_addr == 0x40000 + (k - SDMA) for k in want)


def test_rpcit_error_moves_function_to_error_state_with_event():
    p, efh, iota = setup()
    p.poke(PTT + 8, q64(0))
    c, reg = rpcit(p, efh, SDMA, 0x3000)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 8) and p.fn.state is FnState.ERROR
    assert p.bus.events[-1].pec == Pec.INVALTE and p.bus.events[-1].faddr == SDMA + 0x1000
    assert set(p.fn.iotlb) == {SDMA}                  # the page before the error stays mapped
    c, reg = rpcit(p, efh, SDMA, 0x1000)              # error state: status 40, no walk
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 40)
    assert p.fn.counters[3] == 0


def test_rpcit_state_and_handle_checks():
    p = Probe()
    fh = p.fn.fh
    assert rpcit(p, fh, SDMA, 0x1000)[0].cc == 3                   # disabled
    efh = p.enable()
    assert rpcit(p, fh, SDMA, 0x1000)[0].cc == 3                   # old handle
    p.setr(r3=0)
    assert p.run("RPCIT", r1=4, r2=3).pgm == Pgm.SPECIFICATION
    p.fn.state = FnState.PERMANENT_ERROR
    assert rpcit(p, efh, SDMA, 0x1000)[0].cc == 3


def test_rpcit_dma_budget_exhaustion_reports_insufficient_resources():
    p, efh, iota = setup()
    for i in range(4):
        p.poke(PTT + 8 * i, q64(0x40000 + i * 0x1000))
    p.fn.dma_avail = 2
    c, reg = rpcit(p, efh, SDMA, 0x4000)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 16) and len(p.fn.iotlb) == 2
    assert p.fn.state is FnState.ENABLED


def test_rpcit_huge_range_over_invalid_tables_finishes():
    p, efh, iota = setup(pal_span=(1 << 56))
    p.poke(RTT + 16, q64(0x27))                               # nothing valid at all
    t = time.perf_counter()
    c, _ = rpcit(p, efh, SDMA, 1 << 55)
    assert c.cc == 0 and time.perf_counter() - t < 2.0


# -- device DMA through the IOTLB ------------------------------------------------

def test_device_dma_uses_only_what_rpcit_installed():
    p, efh, iota = setup()
    dma = p.dev.dma
    err = dma.read(SDMA, 4)
    assert err.kind is DmaErrorKind.UNMAPPED and p.fn.state is FnState.ERROR
    assert p.bus.events[-1].pec == Pec.TPROTE
    p.fn.state = FnState.ENABLED
    rpcit(p, efh, SDMA, 0x1000)
    assert dma.write(SDMA + 8, b"hello") is None
    assert p.mem(FRAME + 8, 5) == b"hello" and dma.read(SDMA + 8, 5) == b"hello"


def test_device_dma_errors():
    p, efh, iota = setup()
    dma = p.dev.dma
    assert dma.read(0x1000, 4).kind is DmaErrorKind.OUT_OF_RANGE
    assert p.bus.events[-1].pec == Pec.OORANGE and p.fn.state is FnState.ERROR
    assert dma.read(SDMA, 4).kind is DmaErrorKind.NO_IOAT       # error state: no translation
    p.fn.state = FnState.ENABLED
    p.poke(PTT, q64(FRAME | 0x200))
    rpcit(p, efh, SDMA, 0x1000)
    assert dma.read(SDMA, 4) == bytes(4)
    assert dma.write(SDMA, b"x").kind is DmaErrorKind.PROTECTED


def test_msi_sets_vector_and_summary_bits_and_raises_once():
    p, efh, iota = setup()
    aibv, aisb = 0x50000, 0x50100
    p.write_fib(isc=3, noi=8, aibvo=4, sum=1, aisbo=9, aibv=aibv, aisb=aisb)
    assert p.mpcifc((efh << 32) | 2, FIB)[0].cc == 0
    msia = p.fn.group.msia
    p.dev.dma.msi(msia, 5)
    # bit aibvo + vector = 9 -> byte 1, mask 0x40; summary bit 9 -> byte 1, mask 0x40
    assert p.mem(aibv, 2) == b"\x00\x40" and p.mem(aisb, 2) == b"\x00\x40"
    assert p.bus.adapter_interrupts == [3]
    p.dev.dma.msi(msia, 6)
    assert p.mem(aibv, 2) == b"\x00\x60" and p.bus.adapter_interrupts == [3]
    p.fn.state = FnState.BLOCKED
    p.dev.dma.msi(msia, 0)
    assert p.mem(aibv, 1) == b"\x00"


def test_sic_single_mode_suppresses_repeated_adapter_interrupts():
    p, efh, iota = setup()
    p.write_fib(isc=2, noi=8, aibv=0x50000, aisb=0x50100)
    p.mpcifc((efh << 32) | 2, FIB)
    p.setr(r1=1, r3=2 << 27)
    assert p.run("SIC", r1=1, r3=3).cc is None
    for _ in range(2):
        p.poke(0x50100, b"\x00")
        p.dev.dma.msi(p.fn.group.msia, 0)
    assert p.bus.adapter_interrupts == [2]
    p.setr(r1=0)
    p.run("SIC", r1=1, r3=3)
    p.poke(0x50100, b"\x00")
    p.dev.dma.msi(p.fn.group.msia, 0)
    assert p.bus.adapter_interrupts == [2, 2]
    p.setr(r1=4)
    assert p.run("SIC", r1=1, r3=3).pgm == Pgm.OPERAND


def test_direct_dma_port_goes_to_absolute_storage():
    p = Probe(dma=lambda fn, bus: DirectDma(fn))
    assert p.dev.dma.write(0x7000, b"abc") is None and p.mem(0x7000, 3) == b"abc"
    assert p.dev.dma.read(len(p.guest.mem), 1).kind is DmaErrorKind.ADDRESSING


def test_rpcit_range_check_boundaries_are_inclusive_like_qemu():
    p, efh, iota = setup()
    # end == pba and start == pal are still in range (QEMU: end < pba || start > pal)
    assert rpcit(p, efh, SDMA - 0x1000, 0x1000)[0].cc == 0
    assert rpcit(p, efh, SDMA + 0xFFFFF, 0x1000)[0].cc == 0
    assert p.fn.state is FnState.ENABLED and p.bus.events == []
    c, reg = rpcit(p, efh, SDMA - 0x2000, 0x1000)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 8) and p.bus.events[-1].pec == Pec.OORANGE
    p.fn.state = FnState.ENABLED
    c, reg = rpcit(p, efh, SDMA + 0x100000, 0x1000)
    assert (c.cc, (reg >> 24) & 0xFF) == (1, 8) and p.bus.events[-1].faddr == SDMA + 0x100000


def test_msi_page_reached_by_plain_dma_writes_unless_the_iommu_window_covers_it():
    p, efh, iota = setup()
    p.write_fib(isc=1, noi=4, aibv=0x50000, aisb=0x50100)
    p.mpcifc((efh << 32) | 2, FIB)
    msia = p.fn.group.msia
    assert p.dev.dma.write(msia + 0x10, (3).to_bytes(4, "little")) is None
    assert p.mem(0x50000, 1) == b"\x10" and p.dev.dma.read(msia, 4) == b"\xff" * 4
    # a window reaching over msia: the IOMMU region was added later and wins
    p.fn.pal = msia + 0xFFF
    err = p.dev.dma.write(msia, b"\x00\x00\x00\x00")
    assert err.kind is DmaErrorKind.UNMAPPED and p.fn.state is FnState.ERROR


def test_dma_above_pal_is_unassigned_not_an_error():
    # QEMU's IOMMU region spans [0, pal] (s390_pci_iommu_enable: size pal + 1); above it
    # the bus-master space has nothing, so the access fails without touching the function
    p, efh, iota = setup()
    rpcit(p, efh, SDMA, 0x1000)
    dma = p.dev.dma
    above = SDMA + 0x100000                         # pal = SDMA + 0xFFFFF
    assert dma.read(above, 4).kind is DmaErrorKind.OUT_OF_RANGE
    assert dma.write(above + 0x5000, b"x").kind is DmaErrorKind.OUT_OF_RANGE
    assert p.fn.state is FnState.ENABLED and p.bus.events == []
    assert dma.read(SDMA, 4) == bytes(4)             # the window still translates
    # pal itself lies inside the region: unrefreshed, so a translation error
    assert dma.read(SDMA + 0xFFFFF, 1).kind is DmaErrorKind.UNMAPPED
    assert p.bus.events[-1].pec == Pec.TPROTE and p.fn.state is FnState.ERROR
    # below pba is inside the region too: out of range, with the error
    p.fn.state = FnState.ENABLED
    assert dma.read(SDMA - 0x1000, 4).kind is DmaErrorKind.OUT_OF_RANGE
    assert p.bus.events[-1].pec == Pec.OORANGE and p.fn.state is FnState.ERROR


def test_plug_picks_the_dma_port_from_the_device():
    from firmware_model.devices import make_device
    from firmware_model.devices.memdev import MemDevice
    from firmware_model.dma import TranslatedDma
    from firmware_model.function import ZpciBus
    bus = ZpciBus()
    legacy = bus.plug(make_device("virtio-rng-pci", ())).device
    modern = bus.plug(make_device("virtio-net-pci", {"disable-legacy": "on"})).device
    iommu = bus.plug(make_device("virtio-rng-pci", {"disable-legacy": "on",
                                                    "iommu_platform": "on"})).device
    plain = bus.plug(MemDevice()).device             # no dma_translated: translated
    assert type(legacy.dma) is DirectDma and type(modern.dma) is DirectDma
    assert type(iommu.dma) is TranslatedDma and type(plain.dma) is TranslatedDma


def test_untranslated_device_dma_reaches_storage_without_an_ioat():
    from firmware_model.devices import make_device
    p = Probe(device=make_device("virtio-rng-pci", ()))
    p.enable()
    assert not p.fn.ioat_enabled
    p.poke(0x7000, b"\x00" * 4)
    p.dev.dma_write(0x7000, b"abcd")
    assert p.mem(0x7000, 4) == b"abcd" and p.dev.dma_read(0x7001, 2) == b"bc"
    assert p.bus.events == [] and p.dev.dma_errors == []


def test_direct_dma_msi_goes_through_the_bus_master_space():
    # msi_send_message stores into the bus-master space whatever the device's own DMA uses
    p = Probe(dma=lambda fn, bus: DirectDma(fn))
    efh = p.enable()
    p.write_fib(isc=1, noi=4, aibv=0x50000, aisb=0x50100)
    assert p.mpcifc((efh << 32) | 2, FIB)[0].cc == 0
    msia = p.fn.group.msia
    p.dev.dma.msi(0x3000, 2)                          # no IOAT: nothing there
    assert p.mem(0x50000, 1) == b"\x00" and p.bus.events == []
    p.dev.dma.msi(msia, 2)
    assert p.mem(0x50000, 1) == b"\x20" and p.bus.adapter_interrupts == [1]
    iota = p.build_tables(SDMA, RTT, STT, PTT, FRAME)
    p.write_fib(pba=SDMA, pal=SDMA + 0xFFFFF, iota=iota)
    assert p.mpcifc((efh << 32) | 4, FIB)[0].cc == 0
    p.dev.dma.msi(0x3000, 2)                          # inside [0, pal] below pba: an error
    assert p.bus.events[-1].pec == Pec.OORANGE and p.fn.state is FnState.ERROR
