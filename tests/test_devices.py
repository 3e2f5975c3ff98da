"""Unit tests of the PCI device models: registry, properties, virtqueues, DMA.

Facts the assertions rest on come from QEMU 7.2 runs (tests/data/devdump_*,
see test_devices_dump.py) and from QEMU's sources as cited in the models.
"""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from firmware_model.device import DmaErrorKind
from firmware_model.devices import DEVICE_KINDS, DeviceConfigError, make_device
from firmware_model.devices.bar import size_memop
from firmware_model.devices.virtio import (
    F_ACCESS_PLATFORM, F_RING_EVENT_IDX, F_VERSION_1, S_DRIVER_OK, S_FEATURES_OK,
    S_NEEDS_RESET,
)
from test_devices_dump import SDMA, FakeFunction

MODERN_IOMMU = (("disable-legacy", "on"), ("iommu_platform", "on"))


def _bs(v: int, n: int) -> int:
    return int.from_bytes((v & ((1 << (8 * n)) - 1)).to_bytes(n, "little"), "big")


class Driver:
    """A minimal virtio 1.x driver over the modern BAR (little-endian values)."""

    RING, BUF = 0x10000, 0x20000

    def __init__(self, dev, memory_size: int = 0x100000):
        self.dev = dev
        self.mem = bytearray(memory_size)
        self.port = FakeFunction(self.mem, dev.dma_translated)
        dev.dma = self.port
        self.base = SDMA if dev.dma_translated else 0
        if dev.dma_translated:
            self.port.ioat = True
            self.port.pba, self.port.pal = SDMA, SDMA + (4 << 20) - 1
        self.avail_idx = 0
        self.next_desc = 0
        self.qsz = 8

    # registers
    def w(self, off: int, n: int, v: int) -> None:
        assert self.dev.bar_write(4, off, n, _bs(v, n))

    def r(self, off: int, n: int) -> int:
        return _bs(self.dev.bar_read(4, off, n), n)

    def cfg_w(self, off: int, n: int, v: int) -> None:
        self.dev.config_write(off, n, v)

    # guest memory and translations
    def put(self, pa: int, n: int, v: int) -> None:
        self.mem[pa:pa + n] = v.to_bytes(n, "little")

    def get(self, pa: int, n: int) -> int:
        return int.from_bytes(self.mem[pa:pa + n], "little")

    def iova(self, pa: int) -> int:
        return self.base + pa

    def map(self, pa: int, npages: int = 1, ro: bool = False, refresh: bool = True) -> None:
        for i in range(npages):
            iova = self.iova(pa) + 0x1000 * i
            self.port.tables[iova] = (pa + 0x1000 * i, ro)
            if refresh:
                self.port.rpcit(iova, 0x1000)

    def setup(self, q: int = 0, features_hi: int | None = None, master: bool = True) -> None:
        self.mem[self.RING:self.RING + 0x2000] = bytes(0x2000)
        self.avail_idx = self.next_desc = 0
        if self.dev.dma_translated:
            self.map(self.RING, 2)
        if master:
            self.cfg_w(4, 2, 0x6)
        self.w(0x14, 1, 0)
        self.w(0x14, 1, 3)
        hi = features_hi if features_hi is not None else (
            3 if self.dev.dma_translated else 1)
        self.w(0x08, 4, 0)
        self.w(0x0C, 4, 0)
        self.w(0x08, 4, 1)
        self.w(0x0C, 4, hi)
        self.w(0x14, 1, 0xB)
        self.w(0x16, 2, q)
        self.w(0x18, 2, self.qsz)
        self.w(0x20, 8, self.iova(self.RING))
        self.w(0x28, 8, self.iova(self.RING + 16 * self.qsz))
        self.w(0x30, 8, self.iova(self.RING + 0x1000))
        self.w(0x1C, 2, 1)
        self.w(0x14, 1, 0xF)
        self.q = q

    def desc(self, addr: int, length: int, flags: int) -> int:
        slot = self.next_desc % self.qsz
        self.next_desc += 1
        d = self.RING + 16 * slot
        self.put(d, 8, addr)
        self.put(d + 8, 4, length)
        self.put(d + 12, 2, flags)
        self.put(d + 14, 2, 0)
        return slot

    def link(self, a: int, b: int) -> None:
        d = self.RING + 16 * a
        self.put(d + 12, 2, self.get(d + 12, 2) | 1)
        self.put(d + 14, 2, b)

    def publish(self, head: int) -> None:
        avail = self.RING + 16 * self.qsz
        self.put(avail + 4 + 2 * (self.avail_idx % self.qsz), 2, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.put(avail + 2, 2, self.avail_idx)

    def kick(self) -> None:
        mult = self.dev.notify_mult
        assert self.dev.bar_write(4, 0x3000 + mult * self.q, 2, _bs(self.q, 2))

    def used_idx(self) -> int:
        return self.get(self.RING + 0x1000 + 2, 2)

    def used(self, i: int) -> tuple[int, int]:
        e = self.RING + 0x1000 + 4 + 8 * (i % self.qsz)
        return self.get(e, 4), self.get(e + 4, 4)


# -- registry and bad input ---------------------------------------------------

def test_unknown_device_names_it_and_lists_the_supported_ones():
    with pytest.raises(DeviceConfigError) as e:
        make_device("virtio-foo-pci", ())
    msg = str(e.value)
    assert "\n" not in msg and "virtio-foo-pci" in msg
    for kind in ("virtio-rng-pci", "virtio-net-pci", "memdev"):
        assert kind in msg


@pytest.mark.parametrize("kind", ["virtio-rng-pci", "virtio-net-pci", "memdev"])
def test_unknown_property_names_it_and_lists_the_supported_ones(kind):
    with pytest.raises(DeviceConfigError) as e:
        make_device(kind, (("foo", "1"),))
    msg = str(e.value)
    assert "\n" not in msg and "'foo'" in msg and kind in msg
    for p in DEVICE_KINDS[kind].props:
        assert p.name in msg


@pytest.mark.parametrize("props, field", [
    ((("iommu_platform", "on"),), "iommu_platform"),
    ((("disable-legacy", "on"), ("disable-modern", "on")), "disable-modern"),
    ((("iommu_platform", "maybe"),), "iommu_platform"),
    ((("vectors", "many"),), "vectors"),
    ((("vectors", "0"),), "vectors"),
])
def test_bad_combinations_and_values_are_one_line_errors(props, field):
    with pytest.raises(DeviceConfigError) as e:
        make_device("virtio-rng-pci", props)
    assert "\n" not in str(e.value) and field in str(e.value)


def test_iommu_platform_on_a_transitional_device_is_qemus_error():
    with pytest.raises(DeviceConfigError, match="supported by neither legacy nor transitional"):
        make_device("virtio-net-pci", {"iommu_platform": "on"})


@pytest.mark.parametrize("size", ["128", "300", "2048"])
def test_net_queue_size_must_be_a_power_of_two_in_range(size):
    with pytest.raises(DeviceConfigError, match="rx_queue_size"):
        make_device("virtio-net-pci", {"rx_queue_size": size})


def test_props_as_dict_or_pairs_and_the_last_repeat_wins():
    a = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    b = make_device("virtio-rng-pci", (("disable-legacy", "off"), ("disable-legacy", "on")))
    assert a.device_id == b.device_id == 0x1044


def test_memdev_is_registered():
    d = make_device("memdev", (("shape", "virtio-rng"),))
    assert d.kind == "memdev" and d.bar_size(4) == 0x4000


def test_every_kind_documents_its_defaults():
    for kind in DEVICE_KINDS.values():
        assert kind.props and all(p.help for p in kind.props)


# -- properties ---------------------------------------------------------------

def test_disable_legacy_gives_the_modern_id_and_no_io_bar():
    t = make_device("virtio-rng-pci", ())
    m = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    assert (t.device_id, t.config_read(8, 1), t.config_read(0x2E, 2)) == (0x1005, 0, 4)
    assert (m.device_id, m.config_read(8, 1), m.config_read(0x2E, 2)) == (0x1044, 1, 0x1100)
    assert t.bar_size(0) == 32 and m.bar_size(0) == 0
    assert m.config_read(0x10, 4) == 0
    assert m.bar_read(0, 0, 4) is None


def test_disable_modern_leaves_only_legacy_and_msix():
    d = make_device("virtio-rng-pci", {"disable-modern": "on"})
    assert d.bar_size(4) == 0 and d.bar_size(0) == 32
    caps, pos = [], d.config_read(0x34, 1)
    while pos:
        caps.append(d.config_read(pos, 1))
        pos = d.config_read(pos + 1, 1)
    assert caps == [0x11]
    # no VERSION_1 offered: the legacy feature word is all the device has
    assert not d.host_features >> F_VERSION_1 & 1


def test_iommu_platform_offers_and_requires_access_platform():
    d = make_device("virtio-rng-pci", MODERN_IOMMU)
    assert d.dma_translated
    drv = Driver(d)
    drv.w(0, 4, 1)
    assert drv.r(4, 4) >> (F_ACCESS_PLATFORM - 32) & 1
    drv.setup(features_hi=1)                   # VERSION_1 without ACCESS_PLATFORM
    assert not drv.r(0x14, 1) & S_FEATURES_OK
    drv.setup()
    assert drv.r(0x14, 1) & S_FEATURES_OK
    plain = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    assert not plain.dma_translated and not plain.host_features >> F_ACCESS_PLATFORM & 1


@pytest.mark.parametrize("n", ["0", "2049"])
def test_msix_is_mandatory_on_zpci(n):
    with pytest.raises(DeviceConfigError, match="MSI-X support is mandatory"):
        make_device("virtio-net-pci", {"vectors": n})


def test_vectors_sets_the_table_size():
    d = make_device("virtio-net-pci", {"vectors": "9"})
    assert d.config_read(d.msix.cap + 2, 2) == 8
    assert d.bar_read(1, 9 * 16 - 4, 4) is not None and d.bar_read(1, 9 * 16, 4) is None
    assert d.bar_read(1, 0x800, 8) == 0 and d.bar_read(1, 0x808, 4) is None


def test_page_per_vq_spreads_the_notify_region():
    d = make_device("virtio-rng-pci", {"page-per-vq": "on"})
    assert d.notify_mult == 0x1000 and d.bar_size(4) == 8 << 20
    notify_cap = 0x70
    assert d.config_read(notify_cap + 16, 4) == 0x1000


def test_feature_properties_change_the_offered_bits():
    on = make_device("virtio-rng-pci", ())
    off = make_device("virtio-rng-pci", {"event_idx": "off"})
    assert on.host_features >> F_RING_EVENT_IDX & 1 and not off.host_features >> F_RING_EVENT_IDX & 1


def test_net_mac_default_counts_nics_of_one_machine_and_explicit_mac_wins():
    ctx: dict = {}
    a = make_device("virtio-net-pci", (), context=ctx)
    b = make_device("virtio-net-pci", (), context=ctx)
    c = make_device("virtio-net-pci", {"mac": "02:00:00:00:00:01"}, context=ctx)
    assert a.mac.hex() == "525400123456" and b.mac.hex() == "525400123457"
    assert c.get_config()[:6].hex() == "020000000001"
    with pytest.raises(DeviceConfigError, match="mac"):
        make_device("virtio-net-pci", {"mac": "zz"})


def test_net_host_mtu_adds_the_mtu_field():
    d = make_device("virtio-net-pci", (("disable-legacy", "on"), ("host_mtu", "1400")))
    assert d.host_features >> 3 & 1 and len(d.get_config()) == 12
    assert d.bar_read(4, 0x200A, 2) == int.from_bytes((1400).to_bytes(2, "big"), "big")


def test_rom_bar_follows_romfile_and_rombar():
    assert make_device("virtio-net-pci", ()).cfg.rom_size >= 0x10000
    assert make_device("virtio-net-pci", {"romfile": ""}).cfg.rom_size == 0
    assert make_device("virtio-net-pci", {"rombar": "0"}).cfg.rom_size == 0
    d = make_device("virtio-rng-pci", ())
    d.config_write(0x30, 4, 0xFFFFFFFF)
    assert d.config_read(0x30, 4) == 0


# -- BAR access rules -----------------------------------------------------------

@given(off=st.integers(0, 0x3F), length=st.integers(1, 8))
def test_common_config_rejects_exactly_the_unaligned_accesses(off, length):
    d = make_device("virtio-rng-pci", ())
    size = size_memop(length)
    got = d.bar_read(4, off, length)
    assert (got is None) == bool(off % size)


@given(off=st.integers(0, 0xFFF), length=st.integers(1, 8))
def test_msix_bar_accepts_only_aligned_4_and_8_byte_accesses_inside_table_or_pba(off, length):
    d = make_device("virtio-net-pci", ())
    size = size_memop(length)
    inside = off + length <= 4 * 16 or (0x800 <= off and off + length <= 0x808)
    ok = inside and size >= 4 and not off % size
    assert (d.bar_read(1, off, length) is not None) == ok


@given(off=st.integers(0xA4, 0xFC).map(lambda x: x & ~3), value=st.integers(0, 0xFFFFFFFF))
def test_config_space_after_the_capabilities_is_plain_storage(off, value):
    d = make_device("virtio-rng-pci", ())
    d.config_write(off, 4, value)
    assert d.config_read(off, 4) == value


def test_command_register_write_mask_and_readonly_ids():
    d = make_device("virtio-rng-pci", ())
    d.config_write(0, 4, 0)
    d.config_write(4, 2, 0xFFFF)
    assert d.config_read(0, 4) == 0x10051AF4 and d.config_read(4, 2) == 0x0507


# -- virtqueue processing ---------------------------------------------------------

def test_rng_fills_the_buffers_of_a_chain_and_reports_the_length():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"}, seed=7)
    drv = Driver(d)
    drv.setup()
    a = drv.desc(drv.BUF, 8, 2)
    b = drv.desc(drv.BUF + 0x100, 24, 2)
    drv.link(a, b)
    drv.publish(a)
    drv.kick()
    assert drv.used_idx() == 1 and drv.used(0) == (a, 32)
    first, second = bytes(drv.mem[drv.BUF:drv.BUF + 8]), bytes(drv.mem[drv.BUF + 0x100:drv.BUF + 0x118])
    assert any(first) and any(second)
    assert not any(drv.mem[drv.BUF + 8:drv.BUF + 0x100]) and not any(drv.mem[drv.BUF + 0x118:drv.BUF + 0x200])
    # the same seed gives the same bytes
    d2 = make_device("virtio-rng-pci", {"disable-legacy": "on"}, seed=7)
    drv2 = Driver(d2)
    drv2.setup()
    drv2.publish(drv2.desc(drv2.BUF, 32, 2))
    drv2.kick()
    assert bytes(drv2.mem[drv2.BUF:drv2.BUF + 32]) == first + second


@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=4))
def test_rng_writes_exactly_the_offered_bytes(lengths):
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    slots = [drv.desc(drv.BUF + 0x400 * i, n, 2) for i, n in enumerate(lengths)]
    for a, b in zip(slots, slots[1:]):
        drv.link(a, b)
    drv.mem[drv.BUF:drv.BUF + 0x1000] = b"\xee" * 0x1000
    drv.publish(slots[0])
    drv.kick()
    assert drv.used(0) == (slots[0], sum(lengths))
    for i, n in enumerate(lengths):
        base = drv.BUF + 0x400 * i
        assert bytes(drv.mem[base + n:base + 0x400]) == b"\xee" * (0x400 - n)


def test_rng_leaves_device_readable_buffers_alone():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    drv.publish(drv.desc(drv.BUF, 16, 0))
    drv.kick()
    assert drv.used_idx() == 0 and not d.errors


def test_legacy_driver_uses_big_endian_rings_on_s390x():
    d = make_device("virtio-rng-pci", ())
    mem = bytearray(0x100000)
    d.dma = FakeFunction(mem, False)
    d.config_write(4, 2, 0x6)
    io = lambda off, n, v: d.bar_write(0, off, n, _bs(v, n))   # noqa: E731
    io(18, 1, 3)
    io(14, 2, 0)
    io(8, 4, 0x10)                      # ring at 0x10000
    io(18, 1, 7)
    desc, avail, used = 0x10000, 0x10000 + 8 * 16, 0x11000
    mem[desc:desc + 16] = (0x20000).to_bytes(8, "big") + (16).to_bytes(4, "big") + (2).to_bytes(2, "big") + bytes(2)
    mem[avail + 4:avail + 6] = (0).to_bytes(2, "big")
    mem[avail + 2:avail + 4] = (1).to_bytes(2, "big")
    io(16, 2, 0)
    assert int.from_bytes(mem[used + 2:used + 4], "big") == 1
    assert int.from_bytes(mem[used + 8:used + 12], "big") == 16
    assert any(mem[0x20000:0x20010])


def test_indirect_descriptors_are_followed():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    table = 0x30000
    drv.mem[table:table + 32] = ((drv.BUF).to_bytes(8, "little") + (4).to_bytes(4, "little")
                                 + (2 | 1).to_bytes(2, "little") + (1).to_bytes(2, "little")
                                 + (drv.BUF + 16).to_bytes(8, "little") + (12).to_bytes(4, "little")
                                 + (2).to_bytes(2, "little") + bytes(2))
    drv.publish(drv.desc(table, 32, 4))
    drv.kick()
    assert drv.used(0)[1] == 16


def test_event_idx_negotiated_publishes_avail_event():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.w(0x14, 1, 3)
    drv.setup()
    # renegotiate with EVENT_IDX (bit 29)
    drv.w(0x14, 1, 0)
    drv.w(0x14, 1, 3)
    drv.w(0x08, 4, 0)
    drv.w(0x0C, 4, 1 << 29)
    drv.w(0x08, 4, 1)
    drv.w(0x0C, 4, 1)
    drv.w(0x14, 1, 0xB)
    drv.w(0x16, 2, 0)
    drv.w(0x18, 2, 8)
    drv.w(0x20, 8, drv.RING)
    drv.w(0x28, 8, drv.RING + 128)
    drv.w(0x30, 8, drv.RING + 0x1000)
    drv.w(0x1C, 2, 1)
    drv.w(0x14, 1, 0xF)
    assert d.has_feature(F_RING_EVENT_IDX)
    drv.publish(drv.desc(drv.BUF, 8, 2))
    drv.kick()
    assert drv.get(drv.RING + 0x1000 + 4 + 8 * 8, 2) == 1      # avail_event = next index


def test_zero_sized_buffer_is_a_virtio_error_with_needs_reset():
    d = make_device("virtio-net-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup(q=1)
    drv.publish(drv.desc(drv.BUF, 0, 0))
    drv.kick()
    assert d.errors == ["virtio: zero sized buffers are not allowed"]
    assert drv.r(0x14, 1) == S_NEEDS_RESET | 0xF and drv.r(0x15, 1) == 1
    assert d.bar_read(4, 0x1000, 1) == 3
    # broken: later kicks do nothing until a reset
    drv.publish(drv.desc(drv.BUF, 20, 0))
    drv.kick()
    assert drv.used_idx() == 0
    drv.setup(q=1)
    assert not d.broken and drv.r(0x14, 1) == 0xF


def test_net_transmits_into_the_void_and_returns_buffers_with_length_zero():
    d = make_device("virtio-net-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup(q=1)
    drv.mem[drv.BUF:drv.BUF + 74] = bytes(12) + bytes(range(62))
    drv.publish(drv.desc(drv.BUF, 74, 0))
    drv.kick()
    assert drv.used(0) == (0, 0) and list(d.tx_frames) == [bytes(range(62))]


def test_net_ctrl_queue_answers_rx_mode_commands():
    d = make_device("virtio-net-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup(q=2)
    drv.mem[drv.BUF:drv.BUF + 3] = bytes((0, 0, 1))         # RX class, PROMISC, on
    drv.mem[drv.BUF + 0x100] = 0xFF
    a = drv.desc(drv.BUF, 3, 0)
    b = drv.desc(drv.BUF + 0x100, 1, 2)
    drv.link(a, b)
    drv.publish(a)
    drv.kick()
    assert drv.used(0) == (a, 1) and drv.mem[drv.BUF + 0x100] == 0


# -- DMA: translations, errors, bus master ---------------------------------------------

def test_dma_uses_only_refreshed_translations():
    d = make_device("virtio-rng-pci", MODERN_IOMMU)
    drv = Driver(d)
    drv.setup()
    drv.map(drv.BUF, refresh=False)          # valid in the guest's table, never refreshed
    drv.publish(drv.desc(drv.iova(drv.BUF), 16, 2))
    drv.kick()
    assert not any(drv.mem[drv.BUF:drv.BUF + 16])
    assert d.dma_errors and d.dma_errors[0].kind is DmaErrorKind.UNMAPPED
    assert drv.port.error                    # the zPCI function is in the error state
    # QEMU: the next ring read fails too, avail idx reads 0 -> virtio_error
    assert d.errors == ["Guest moved used index from 1 to 0"]
    # after reset-error and RPCIT the same buffer works
    drv.port.error = False
    drv.port.rpcit(drv.iova(drv.BUF), 0x1000)
    drv.setup()
    drv.publish(drv.desc(drv.iova(drv.BUF), 16, 2))
    drv.kick()
    assert any(drv.mem[drv.BUF:drv.BUF + 16]) and drv.used(0) == (0, 16)


def test_dma_write_to_a_read_only_translation_fails():
    d = make_device("virtio-rng-pci", MODERN_IOMMU)
    drv = Driver(d)
    drv.setup()
    drv.map(drv.BUF, ro=True)
    drv.publish(drv.desc(drv.iova(drv.BUF), 16, 2))
    drv.kick()
    assert not any(drv.mem[drv.BUF:drv.BUF + 16])
    assert d.dma_errors[0].kind is DmaErrorKind.PROTECTED


def test_untranslated_dma_beyond_memory_is_dropped_but_completed():
    d = make_device("virtio-rng-pci", ())
    drv = Driver(d)
    drv.setup()
    drv.publish(drv.desc(0x2000000, 16, 2))
    drv.kick()
    assert drv.used(0) == (0, 16) and d.dma_errors[0].kind is DmaErrorKind.ADDRESSING
    assert not d.errors


def test_bus_master_gates_translated_dma_only():
    t = make_device("virtio-rng-pci", MODERN_IOMMU)
    drv = Driver(t)
    drv.map(drv.BUF)
    drv.mem[drv.BUF] = 0x5A
    t.config_write(4, 2, 0x2)
    assert t.dma_read(drv.iova(drv.BUF), 1) == b"\0"
    t.config_write(4, 2, 0x6)
    assert t.dma_read(drv.iova(drv.BUF), 1) == b"\x5a"
    # without iommu_platform QEMU's virtio reaches guest memory directly
    u = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    du = Driver(u)
    du.mem[du.BUF] = 0x5A
    u.config_write(4, 2, 0x2)
    assert u.dma_read(du.BUF, 1) == b"\x5a"


def test_clearing_bus_master_drops_driver_ok_and_stops_the_device():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    d.config_write(4, 2, 0x2)
    assert drv.r(0x14, 1) == 0xB
    drv.publish(drv.desc(drv.BUF, 16, 2))
    drv.kick()
    assert drv.used_idx() == 0
    d.config_write(4, 2, 0x6)
    drv.w(0x14, 1, 0xF)                      # DRIVER_OK again: the pending buffer is served
    assert drv.used_idx() == 1


def test_msix_delivers_through_the_bus_master_space_and_pends_when_masked():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    drv.w(0x1A, 2, 1)                        # queue 0 -> vector 1
    assert drv.r(0x1A, 2) == 1
    e = 16
    d.bar_write(1, e, 8, _bs(0xFE00_0000_0000_0000, 8))
    d.bar_write(1, e + 8, 4, _bs(0x21, 4))
    cap = d.msix.cap
    d.config_write(cap + 3, 1, 0x80)         # MSI-X enable
    drv.publish(drv.desc(drv.BUF, 8, 2))
    drv.kick()
    assert drv.port.msis == [] and d.bar_read(1, 0x800, 4) == _bs(0b10, 4)    # masked: pending
    d.bar_write(1, e + 12, 4, 0)             # unmask: the pending message goes out
    assert drv.port.msis == [(0xFE00_0000_0000_0000, 0x21)]
    assert d.bar_read(1, 0x800, 4) == 0
    d.config_write(4, 2, 0x6 & ~0x4)         # bus master off: no MSI
    d.config_write(4, 2, 0x6)
    drv.w(0x14, 1, 0xF)
    drv.publish(drv.desc(drv.BUF, 8, 2))
    d.config_write(4, 2, 0x2)
    d.msix.notify(1)
    assert len(drv.port.msis) == 1


def test_pci_reset_restores_config_and_virtio_state():
    d = make_device("virtio-rng-pci", {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup()
    d.config_write(0x3C, 1, 0x55)
    d.reset()
    assert d.config_read(4, 2) == 0 and d.config_read(0x3C, 1) == 0
    assert drv.r(0x14, 1) == 0 and not d.status & S_DRIVER_OK
    assert d.bar_read(1, 12, 4) == _bs(1, 4)         # every vector masked again


@given(table=st.binary(min_size=16 * 8, max_size=16 * 8),
       heads=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4),
       kind=st.sampled_from(["virtio-rng-pci", "virtio-net-pci"]))
def test_arbitrary_rings_end_in_completions_or_a_virtio_error(table, heads, kind):
    """Garbage descriptors (loops, bad next, zero lengths) never hang or crash the model."""
    d = make_device(kind, {"disable-legacy": "on"})
    drv = Driver(d)
    drv.setup(q=0 if kind == "virtio-rng-pci" else 1)
    drv.mem[drv.RING:drv.RING + len(table)] = table
    for h in heads:
        drv.publish(h)
    drv.kick()
    done = drv.used_idx()
    assert done <= len(heads)
    assert done == len(heads) or d.errors or drv.used_idx() == 0
    if d.errors:
        assert drv.r(0x14, 1) & S_NEEDS_RESET


# -- PCISTB's block check (pcistb_service_call, before the source is fetched) ----

def test_block_check_wants_one_region_for_the_whole_block():
    d = make_device("virtio-rng-pci", ())     # 2 vectors: table 0..0x1f, PBA 0x800..0x807
    assert d.bar_block_valid(1, 0, 16) and d.bar_block_valid(1, 0, 32)
    assert not d.bar_block_valid(1, 0, 64)    # past the table: the container's own ops refuse
    assert not d.bar_block_valid(1, 0x10, 32)
    assert not d.bar_block_valid(1, 0x800, 16)    # the PBA holds one doubleword
    assert not d.bar_block_valid(1, 0x400, 16)    # between table and PBA
    assert d.bar_block_valid(4, 0, 128) and d.bar_block_valid(4, 0x3000, 128)
    assert not d.bar_block_valid(4, 0xFF8, 16)    # common config into the ISR region
    assert d.bar_block_valid(0, 0, 16)        # the legacy I/O BAR is one region, no sub-regions
    assert not d.bar_block_valid(2, 0, 16)    # no such BAR
    m = make_device("virtio-net-pci", {"disable-modern": "on"})
    assert not m.bar_block_valid(4, 0, 16)


@given(off=st.integers(0, 0x1FF).map(lambda x: x * 8), n=st.integers(2, 16))
def test_block_check_agrees_with_the_msix_bar_layout(off, n):
    d = make_device("virtio-net-pci", ())      # 4 vectors: table 0..0x3f, PBA 0x800..0x807
    length = 8 * n
    in_table = off + length <= 4 * 16
    assert d.bar_block_valid(1, off, length) == in_table
    if in_table:                               # and then every doubleword store is taken
        assert all(d.bar_write(1, off + i, 8, 0) for i in range(0, length, 8))


@given(kind=st.sampled_from(["virtio-rng-pci", "virtio-net-pci"]), bar=st.sampled_from([0, 1, 2, 4]),
       off=st.integers(0, 0x3FFF), length=st.integers(1, 8))
def test_access_check_is_what_a_load_would_find(kind, bar, off, length):
    # trace replay's device wrapper asks bar_access_valid (emulator/replay/standins.py); it must not guess
    d = make_device(kind, ())
    assert d.bar_access_valid(bar, off, length, True) == (d.bar_read(bar, off, length) is not None)
