"""Device properties from untrusted input, device memory, backends and the BAR fast path.

Property values come from a -device string or a trace header: each must end
in a device or in one clean DeviceConfigError (a ValueError) naming the
property, never in MemoryError, OverflowError or TypeError, and no value may
make a small input cost memory.  The BAR access ops (devices/bar.py) are
checked against a fresh resolution of every access and against the
regions' own callbacks.  The virtio benchmark guest is checked against QEMU.
"""
from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st

from _helpers import emulate, guest_build
from conftest import needs_cross, needs_qemu
from firmware_model.device import PciDevice
from firmware_model.devices import DEVICE_KINDS, DeviceConfigError, make_device
from firmware_model.devices.memdev import BarSpec, MemDevice
from firmware_model.devices.props import parse_int
from firmware_model.devices.sparse import PAGE, SparseBytes
from firmware_model.devices.virtio_blk import BlockImage
from firmware_model.devices.virtio_rng import FileRng, SeededRng
from test_devices import Driver

TIB = 1 << 40

# values that have broken parsers: huge, negative, other bases, other scripts,
# separators, empties, and words the boolean and enum properties take
_TRICKY = ["", "-1", "0", "1", "2", "3", "010", "+5", "0x", "0x10", "0X1F", "99999",
           "0x10000", "0xffffffff", "4294967296", str(TIB), str(1 << 63), str(1 << 64),
           "-0x8000000000000000", "9" * 40, "1_000", " 5", "5 ", "1e3", "٣", "\x00", "abc",
           "on", "off", "auto", "yes", "n", "52:54:00:12:34:56", "52:54:00:12:34", "256",
           "1024", "512", "4096", "virtio-rng", "efi-virtio.rom"]
_VALUES = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12),
                    st.integers(min_value=-(1 << 70), max_value=1 << 70).map(str),
                    st.integers(min_value=0, max_value=64).map(lambda n: hex(1 << n)))


def _make(kind: str, props: dict):
    context = {"drives": {"d0": BlockImage(bytes(8192))}}
    if kind == "virtio-blk-pci":
        props = {"drive": "d0", **props}
    return make_device(kind, props, context=context)


@pytest.mark.parametrize("kind", sorted(DEVICE_KINDS))
@given(data=st.data())
def test_any_property_values_give_a_device_or_one_clean_error(kind, data):
    names = [p.name for p in DEVICE_KINDS[kind].props
             if not p.name.startswith("x-drive")]          # set by zpci-emu boot, not by users
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    props = {name: data.draw(_VALUES, label=name) for name in chosen}
    tracemalloc.start()
    try:
        dev = _make(kind, props)
    except DeviceConfigError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(kind)
        # the error names a property it was given or one they combine with
        assert any(name in msg for name in DEVICE_KINDS[kind].prop_names())
    else:
        assert isinstance(dev, PciDevice)
        for bar in range(6):                 # every BAR answers without allocating it
            if dev.bar_size(bar):
                dev.bar_read(bar, dev.bar_size(bar) - 8, 4)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 10 << 20


@pytest.mark.parametrize("kind, props, words", [
    ("virtio-rng-pci", {"vectors": "99999"}, ["vectors", "MSI-X", "1..2048"]),
    ("virtio-rng-pci", {"vectors": "-1"}, ["vectors", "uint32_t", "0..4294967295"]),
    ("virtio-rng-pci", {"vectors": "4294967296"}, ["vectors", "uint32_t"]),
    ("virtio-rng-pci", {"vectors": "1_0"}, ["vectors", "expects an integer"]),
    ("virtio-net-pci", {"host_mtu": "70000"}, ["host_mtu", "uint16_t", "0..65535"]),
    ("virtio-net-pci", {"rx_queue_size": "99999999"}, ["rx_queue_size", "uint16_t"]),
    ("memdev", {"vendor": "0x10000"}, ["vendor", "uint16_t", "0..65535"]),
    ("memdev", {"device": "-1"}, ["device", "uint16_t"]),
    ("memdev", {"bar0": "3000"}, ["bar0", "power of 2"]),
    ("memdev", {"bar1": str(1 << 64)}, ["bar1", "uint64_t"]),
    ("memdev", {"shape": "virtio-blk"}, ["shape", "virtio-rng"]),
])
def test_out_of_range_values_name_the_property_and_the_range(kind, props, words):
    with pytest.raises(DeviceConfigError) as e:
        make_device(kind, props)
    for w in words:
        assert w in str(e.value)


def test_integers_parse_as_qemus_option_visitor_does():
    # qemu-system-s390x 7.2 accepts vectors=010 (octal), +5 and 0x10; it
    # refuses 1_0 and 0x ("Parameter 'vectors' expects integer")
    assert [parse_int(t) for t in ("010", "+5", "0x10", "0", "-7", "0X1f")] == [8, 5, 16, 0, -7, 31]
    for text in ("1_0", "0x", " 5", "5 ", "٣", "1e3", "", "08", "--1"):
        assert parse_int(text) is None, text
    dev = make_device("virtio-rng-pci", {"vectors": "010"})
    assert dev.msix.n == 8


def test_device_ids_past_16_bits_are_refused_by_the_constructor_a_replay_uses():
    for ids in ((0x10000, 0), (0, -1), (-5, 0x1000)):
        with pytest.raises(ValueError, match="outside"):
            MemDevice(*ids)
    for size in (0, 3, -4096, 1 << 64):
        with pytest.raises(ValueError, match="power of 2"):
            MemDevice(bars={0: BarSpec(size)})


def test_a_terabyte_bar_costs_nothing_until_written():
    tracemalloc.start()
    dev = make_device("memdev", {"bar0": str(TIB), "bar2": hex(1 << 63)})
    assert dev.bar_size(0) == TIB
    assert dev.bar_write(0, TIB - 8, 8, 0x1122334455667788)
    assert dev.bar_read(0, TIB - 8, 8) == 0x1122334455667788
    assert dev.bar_read(0, TIB // 2, 8) == 0
    assert dev.bar_write(2, (1 << 62) + 3, 1, 0xAB) and dev.bar_read(2, (1 << 62) + 3, 1) == 0xAB
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 << 20
    assert len(dev.mem[0].pages) == 1
    dev.reset()
    assert dev.bar_read(0, TIB - 8, 8) == 0 and not dev.mem[0].pages


def test_a_terabyte_blank_drive_costs_what_is_written():
    tracemalloc.start()
    image = BlockImage.blank(TIB)
    assert image.write(TIB - 512, b"\x5a" * 512) and image.read(TIB - 512, 4) == b"\x5a" * 4
    assert image.read(0, 512) == bytes(512)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 << 20


def test_a_snapshot_drive_reads_the_file_and_keeps_writes_in_memory(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(bytes(range(256)) * 64)
    dev = make_device("virtio-blk-pci", {"drive": "d", "x-drive-file": str(path),
                                         "x-drive-snapshot": "on"})
    image = dev.image
    assert image.read(4094, 4) == bytes([254, 255, 0, 1])
    assert image.write(4095, b"xy") and image.read(4094, 4) == b"\xfexy\x01"
    assert path.read_bytes()[4095] == 255          # the file is untouched
    assert len(image.mem.pages) == 2               # the write crossed one page boundary


@given(st.integers(1, 3 * PAGE),
       st.lists(st.tuples(st.integers(-16, 3 * PAGE + 16), st.binary(max_size=PAGE + 10)),
                max_size=12))
def test_sparse_bytes_behave_as_a_fixed_size_bytearray(size, writes):
    base = bytes((i * 7) & 0xFF for i in range(size))
    sparse = SparseBytes(size, base=lambda off, n: base[off:off + n])
    plain = bytearray(base)
    for off, data in writes:
        sparse.write(off, data)
        lo, hi = max(off, 0), min(off + len(data), size)
        if lo < hi:
            plain[lo:hi] = data[lo - off:hi - off]
    assert len(sparse) == size
    assert sparse[:] == bytes(plain)
    assert sparse[size // 3:size // 2 + 5] == bytes(plain[size // 3:size // 2 + 5])
    assert sparse[size - 1] == plain[size - 1] and sparse[-1] == plain[-1]
    sparse[0] = plain[0] = 0x42
    sparse[size // 2:size // 2 + 3] = plain[size // 2:size // 2 + 3] = b"abc"[:len(sparse[size // 2:size // 2 + 3])]
    assert sparse[:] == bytes(plain)
    with pytest.raises(ValueError):
        sparse[0:1] = b"too long"
    sparse.clear()
    assert sparse[:] == base


# -- entropy backends and netdev peers ---------------------------------------

def _entropy(dev, n: int = 24) -> bytes:
    """What a modern driver gets for one n-byte device-writable buffer."""
    d = Driver(dev)
    d.setup()
    d.publish(d.desc(d.BUF, n, 2))
    d.kick()
    assert d.used_idx() == 1
    return bytes(d.mem[d.BUF:d.BUF + n])


def test_the_rng_backend_named_by_rng_fills_the_buffers():
    asked = []

    def backend(n):
        asked.append(n)
        return b"\xa5" * n

    dev = make_device("virtio-rng-pci", {"rng": "r0", "disable-legacy": "on"},
                      context={"rng_backends": {"r0": backend}})
    assert _entropy(dev) == b"\xa5" * 24 and sum(asked) == 24


def test_short_and_long_backend_answers_are_cut_or_padded():
    short = make_device("virtio-rng-pci", {"rng": "r", "disable-legacy": "on"},
                        context={"rng_backends": {"r": lambda n: b"\x01\x02"}})
    assert _entropy(short, 8) == b"\x01\x02" + bytes(6)
    long = make_device("virtio-rng-pci", {"rng": "r", "disable-legacy": "on"},
                       context={"rng_backends": {"r": lambda n: b"\x03" * (n + 9)}})
    assert _entropy(long, 8) == b"\x03" * 8


def test_without_a_backend_the_seeded_default_stays():
    plain = _entropy(make_device("virtio-rng-pci", {"disable-legacy": "on"}))
    named = _entropy(make_device("virtio-rng-pci", {"rng": "r", "disable-legacy": "on"}))
    assert plain == named == SeededRng(0)(24)


def test_an_unknown_rng_id_is_qemus_error():
    with pytest.raises(DeviceConfigError, match="Device 'nosuch' not found"):
        make_device("virtio-rng-pci", {"rng": "nosuch"}, context={"rng_backends": {}})


def test_file_rng_reads_the_file_and_refuses_a_missing_one(tmp_path):
    path = tmp_path / "entropy"
    path.write_bytes(b"0123456789")
    backend = FileRng(str(path))
    assert backend(4) == b"0123" and backend(10) == b"456789"
    backend.close()
    with pytest.raises(OSError):
        FileRng(str(tmp_path / "absent"))


def test_netdev_names_a_listed_peer_once_and_changes_nothing_the_guest_sees():
    context = {"netdevs": {"n0", "n1"}}
    with_peer = make_device("virtio-net-pci", {"netdev": "n0"}, context=context)
    without = make_device("virtio-net-pci", {})
    assert bytes(with_peer.cfg.data) == bytes(without.cfg.data)
    assert with_peer.get_config() == without.get_config()
    with pytest.raises(DeviceConfigError, match="can't take value 'n0', it's in use"):
        make_device("virtio-net-pci", {"netdev": "n0"}, context=context)
    with pytest.raises(DeviceConfigError, match="can't find value 'n9'"):
        make_device("virtio-net-pci", {"netdev": "n9"}, context=context)
    make_device("virtio-net-pci", {"netdev": "n1"}, context=context)
    make_device("virtio-net-pci", {"netdev": "any"})       # a replay lists no netdevs


# -- the BAR access ops -------------------------------------------------------

_OFFSETS = [0, 4, 8, 12, 16, 20, 28, 0x7F8, 0x800, 0x804, 0x808, 0xFFC, 0x1000, 0x14, 0x16,
            0x18, 0x1A, 0x1C, 0x20, 0x2000, 0x3000, 0x3004, 0x3FFC, 0x4000]
_ACCESS = st.one_of(
    st.tuples(st.just("read"), st.sampled_from([0, 1, 2, 4]), st.sampled_from(_OFFSETS),
              st.integers(1, 8), st.just(0)),
    st.tuples(st.just("write"), st.sampled_from([0, 1, 2, 4]), st.sampled_from(_OFFSETS),
              st.integers(1, 8), st.integers(0, (1 << 64) - 1)),
    # MSI-X control (enable, mask all) and a vector the device fires
    st.tuples(st.just("ctrl"), st.just(0), st.just(0), st.just(0), st.sampled_from([0, 0x80, 0xC0, 0x40])),
    st.tuples(st.just("fire"), st.just(0), st.just(0), st.just(0), st.integers(0, 2)),
)


def _replay_accesses(dev, accesses, fresh: bool):
    sent = []
    dev.msix.send = lambda addr, data: sent.append((addr, data))
    seen = []
    for what, bar, off, length, value in accesses:
        if fresh:                                  # resolve every access anew
            dev.bars._reads.clear()
            dev.bars._writes.clear()
        if what == "read":
            seen.append(dev.bar_read(bar, off, length))
        elif what == "write":
            seen.append(dev.bar_write(bar, off, length, value & ((1 << (8 * length)) - 1)))
        elif what == "ctrl":
            dev.config_write(dev.msix.cap + 3, 1, value)
        else:
            dev.msix.vector_use(value)
            dev.msix.notify(value)
    return seen, sent, bytes(dev.msix.table), bytes(dev.msix.pba), bytes(dev.cfg.data)


@settings(max_examples=100)          # three devices per example
@given(st.lists(_ACCESS, max_size=40))
def test_cached_access_ops_do_what_a_fresh_dispatch_through_the_callbacks_does(accesses):
    cached = make_device("virtio-rng-pci", {})
    fresh = make_device("virtio-rng-pci", {})
    callbacks = make_device("virtio-rng-pci", {})
    for sub in callbacks.msix.bar.subregions:      # the MSI-X regions without memory ops
        sub.region.read_op = sub.region.write_op = None
    a = _replay_accesses(cached, accesses, fresh=False)
    assert a == _replay_accesses(fresh, accesses, fresh=True)
    assert a == _replay_accesses(callbacks, accesses, fresh=True)


def test_the_op_cache_is_bounded():
    from firmware_model.devices.bar import OP_CACHE_LIMIT
    dev = make_device("memdev", {"shape": "virtio-rng"})
    rng = make_device("virtio-rng-pci", {})
    for off in range(0, 4 * OP_CACHE_LIMIT * 4, 4):
        rng.bar_read(4, off, 4)
    assert len(rng.bars._reads) <= OP_CACHE_LIMIT
    assert dev.bar_read(4, 0, 4) == 0


# -- the benchmark's virtio mix is what QEMU does -----------------------------

@needs_cross
@needs_qemu
def test_the_virtio_benchmark_guest_prints_what_it_prints_under_qemu(tmp_path):
    from emulator.capture.qemu import run_qemu
    elf = guest_build.bench_virtio(tmp_path, 300)
    devices = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]
    q = run_qemu(elf, devices, timeout=60)
    assert q.exit_code == 0 and not q.timed_out
    result, out = emulate(elf, devices)
    assert result.exit_code == 0, result.message
    assert out == q.stdout and b"BENCH virtio bad=0000000000000000\n" in out
    # three zPCI instructions per iteration: config PCILG, table PCISTG, table PCILG
    assert result.stats["zpci"]["PCILG"] == 600 and result.stats["zpci"]["PCISTG"] == 300


# -- the same properties from a trace header ----------------------------------

@pytest.mark.parametrize("props, ok", [
    ((("bar0", str(TIB)),), True),                 # replays, without allocating the BAR
    ((("vendor", "0x12345"),), False),             # one line naming the property
    ((("bar0", str(1 << 64)),), False),
])
def test_a_trace_header_with_huge_device_properties_replays_or_is_refused(
        tmp_path, monkeypatch, props, ok):
    import dataclasses

    import test_replay_scenario
    from emulator.errors import UserError
    from emulator.replay import replay
    recorded = test_replay_scenario.header

    def header(kind):
        hdr = recorded(kind)
        fn = dataclasses.replace(hdr.functions[0], kind="memdev", props=props)
        return dataclasses.replace(hdr, functions=(fn,) + tuple(hdr.functions[1:]))

    monkeypatch.setattr(test_replay_scenario, "header", header)
    path = tmp_path / "t.zpt"
    test_replay_scenario.record_ops(path, ["load", "store"] * 4)
    tracemalloc.start()
    try:
        if ok:
            (r,) = replay([path])
            assert r.events > 0
        else:
            with pytest.raises(UserError) as e:
                replay([path])
            assert "\n" not in str(e.value) and props[0][0] in str(e.value)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 10 << 20
