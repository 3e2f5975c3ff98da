"""virtio-blk-pci: the model's configuration, features and requests, and ``-drive``.

The register-level and request-level facts are QEMU 7.2's own output
(tests/data/devdump_qemu_blk*.txt, compared line for line in
test_devices_dump.py); these tests pin the same facts at the API and cover
what a golden run cannot show (the image afterwards, files, bad input).
"""
from __future__ import annotations

import pytest

from emulator import qemu_args
from emulator.errors import UserError
from firmware_model.device import DmaErrorKind
from firmware_model.devices import DEVICE_KINDS, DeviceConfigError, make_device
from firmware_model.devices.virtio import F_ACCESS_PLATFORM, F_VERSION_1, S_FEATURES_OK
from firmware_model.devices.virtio_blk import (
    BLK_F_CONFIG_WCE, BLK_F_MQ, BLK_F_RO, BLK_F_SCSI, BLK_F_WCE, F_ANY_LAYOUT, S_IOERR, S_OK,
    S_UNSUPP, T_FLUSH, T_GET_ID, T_IN, T_OUT, BlockImage,
)
from test_devices import MODERN_IOMMU, Driver

MIB = 1 << 20


def pattern(size: int = MIB) -> bytearray:
    img = bytearray(size)
    for s in range(size // 512):
        img[512 * s:512 * s + 8] = s.to_bytes(8, "big")
    return img


def blk(props=(), image: BlockImage | None = None):
    image = image if image is not None else BlockImage(pattern())
    return make_device("virtio-blk-pci", tuple(props) + (("drive", "d0"),),
                       context={"drives": {"d0": image}})


# -- configuration and features ------------------------------------------------------

def test_pci_identity_and_layout_are_qemus():
    t, m = blk(), blk((("disable-legacy", "on"),))
    assert (t.device_id, t.config_read(0x2E, 2), t.config_read(0x0A, 2)) == (0x1001, 2, 0x0100)
    assert (m.device_id, m.config_read(8, 1), m.config_read(0x2E, 2)) == (0x1042, 1, 0x1100)
    # 24 bytes of legacy registers + 57 of configuration: a 128-byte I/O BAR
    assert t.bar_size(0) == 128 and t.bar_size(1) == 4096 and t.bar_size(4) == 16384
    assert t.msix.n == 2 and t.cfg.rom_size == 0


def test_config_fields_default():
    d = blk((("disable-legacy", "on"),))
    d.guest_features = 1 << F_VERSION_1           # little-endian configuration
    c = d.get_config()
    le = lambda off, n: int.from_bytes(c[off:off + n], "little")   # noqa: E731
    assert len(c) == 57
    assert le(0, 8) == MIB // 512 and le(8, 4) == 0 and le(12, 4) == 254
    assert (le(16, 2), c[18], c[19]) == (2, 16, 63)          # no MBR: 16 heads, 63 sectors
    assert le(20, 4) == 512 and c[24] == 0 and c[32] == 1 and le(34, 2) == 1
    assert (le(36, 4), le(40, 4), le(44, 4)) == (0x3FFFFF, 1, 1)
    assert (le(48, 4), le(52, 4), c[56]) == (0x3FFFFF, 1, 1)


def test_config_shrinks_with_discard_and_write_zeroes():
    assert len(blk((("write-zeroes", "off"),)).get_config()) == 48
    assert len(blk((("write-zeroes", "off"), ("discard", "off"))).get_config()) == 36


def test_block_sizes_and_geometry():
    d = blk((("logical_block_size", "4096"), ("physical_block_size", "16384"),
             ("min_io_size", "8192"), ("opt_io_size", "65536")))
    c = d.get_config()
    assert int.from_bytes(c[20:24], "big") == 4096 and c[24] == 2
    assert int.from_bytes(c[26:28], "big") == 2 and int.from_bytes(c[28:32], "big") == 16
    # capacity / 16 / 63 is no multiple of 4096: the sector count is masked to whole blocks
    assert c[19] == 63 & ~7
    mbr = pattern()
    mbr[0x1BE + 5], mbr[0x1BE + 6] = 3, 32
    mbr[0x1BE + 12:0x1BE + 16] = (100).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    g = blk(image=BlockImage(mbr)).get_config()
    assert (int.from_bytes(g[16:18], "big"), g[18], g[19]) == (2048 // 128, 4, 32)


def test_default_features():
    d = blk()
    assert d.host_features & 0xFFFF == 0x6E54
    assert not d.host_features >> BLK_F_RO & 1 and not d.host_features >> BLK_F_MQ & 1
    ro = blk(image=BlockImage(pattern(), readonly=True))
    assert ro.host_features >> BLK_F_RO & 1
    mq = blk((("num-queues", "3"),))
    assert mq.host_features >> BLK_F_MQ & 1 and len(mq.vqs) == 3 and mq.msix.n == 4
    legacy = blk((("disable-modern", "on"),))
    assert legacy.host_features >> BLK_F_SCSI & 1 and not legacy.host_features >> F_ANY_LAYOUT & 1
    wt = blk((("x-enable-wce-if-config-wce", "off"),), BlockImage(pattern(), write_cache=False))
    assert not wt.host_features >> BLK_F_WCE & 1


def test_negotiation_and_the_write_cache():
    img = BlockImage(pattern())
    d = blk(MODERN_IOMMU, img)
    drv = Driver(d)
    drv.w(0, 4, 1)
    assert drv.r(4, 4) >> (F_ACCESS_PLATFORM - 32) & 1
    drv.setup(features_hi=1)                      # without ACCESS_PLATFORM: refused
    assert not drv.r(0x14, 1) & S_FEATURES_OK
    drv.setup()                                   # VERSION_1 + ACCESS_PLATFORM, no WCE: writethrough
    assert drv.r(0x14, 1) == 0xF and not img.write_cache
    assert d.bar_read(4, 0x2020, 1) == 0          # wce byte
    drv.w(0x14, 1, 0)                             # reset: the drive's own cache mode again
    assert img.write_cache
    # the driver sets wce through the configuration
    d.bar_write(4, 0x2020, 1, 0)
    assert not img.write_cache
    assert d.host_features >> BLK_F_CONFIG_WCE & 1


# -- requests over DMA ------------------------------------------------------------------

class BlkDriver(Driver):
    HDR, DATA, STATUS = 0x20000, 0x21000, 0x22FF0

    def request(self, rtype: int, sector: int = 0, data: bytes | int = 0) -> tuple[int, int]:
        """One request; data: bytes for the device to read, or a length to fill."""
        self.put(self.HDR, 4, rtype)
        self.put(self.HDR + 4, 4, 0)
        self.put(self.HDR + 8, 8, sector)
        self.mem[self.STATUS] = 0xEE
        a = last = self.desc(self.iova(self.HDR), 16, 0)
        if isinstance(data, bytes) and data:
            self.mem[self.DATA:self.DATA + len(data)] = data
            d = self.desc(self.iova(self.DATA), len(data), 0)
            self.link(last, d)
            last = d
        elif isinstance(data, int) and data:
            d = self.desc(self.iova(self.DATA), data, 2)
            self.link(last, d)
            last = d
        s = self.desc(self.iova(self.STATUS), 1, 2)
        self.link(last, s)
        before = self.used_idx()
        self.publish(a)
        self.kick()
        assert self.used_idx() == (before + 1) & 0xFFFF
        head, length = self.used(before)
        assert head == a
        return self.mem[self.STATUS], length


def translated(props=(), image=None) -> tuple[BlkDriver, BlockImage]:
    image = image if image is not None else BlockImage(pattern())
    d = blk(MODERN_IOMMU + tuple(props), image)
    drv = BlkDriver(d)
    drv.map(drv.HDR, 3)                          # header, data and status pages, refreshed
    drv.setup()
    return drv, image


def test_round_trip_in_out_flush_get_id_through_refreshed_translations():
    drv, img = translated((("serial", "SN-0123"),))
    data = bytes(range(256)) * 4
    assert drv.request(T_OUT, 5, data) == (S_OK, 1)
    assert img.mem[5 * 512:7 * 512] == data
    assert drv.request(T_IN, 5, 1024) == (S_OK, 1025)
    assert bytes(drv.mem[drv.DATA:drv.DATA + 1024]) == data
    assert drv.request(T_IN, 9, 512) == (S_OK, 513)
    assert int.from_bytes(drv.mem[drv.DATA:drv.DATA + 8], "big") == 9
    assert drv.request(T_FLUSH) == (S_OK, 1) and img.flushes == 1
    drv.mem[drv.DATA:drv.DATA + 20] = b"\xff" * 20
    assert drv.request(T_GET_ID, 0, 20) == (S_OK, 21)
    assert bytes(drv.mem[drv.DATA:drv.DATA + 9]) == b"SN-0123\0\xff"
    assert not drv.dev.errors and not drv.dev.dma_errors


def test_data_buffer_without_a_refreshed_translation_is_a_dma_error():
    drv, img = translated()
    drv.map(0x40000, refresh=False)
    drv.put(drv.HDR, 4, T_IN)
    drv.put(drv.HDR + 8, 8, 0)
    a = drv.desc(drv.iova(drv.HDR), 16, 0)
    d = drv.desc(drv.iova(0x40000), 512, 2)
    s = drv.desc(drv.iova(drv.STATUS), 1, 2)
    drv.link(a, d)
    drv.link(d, s)
    drv.publish(a)
    drv.kick()
    assert drv.dev.dma_errors[0].kind is DmaErrorKind.UNMAPPED and drv.port.error
    assert not any(drv.mem[0x40000:0x40200])


def test_read_only_drive_fails_writes_with_ioerr():
    img = BlockImage(pattern(), readonly=True)
    drv, _ = translated(image=img)
    assert drv.request(T_OUT, 3, b"\x5a" * 512) == (S_IOERR, 1)
    assert img.mem[3 * 512:3 * 512 + 8] == (3).to_bytes(8, "big")
    assert drv.request(13, 0, (3).to_bytes(8, "little") + (1).to_bytes(4, "little") + bytes(4)) \
        == (S_IOERR, 1)                           # write-zeroes fails too
    assert drv.request(T_IN, 3, 512) == (S_OK, 513)


@pytest.mark.parametrize("sector, length", [(2048, 512), (2047, 1024), (1 << 63, 512), (0, 100)])
def test_out_of_range_or_partial_sectors_are_ioerr(sector, length):
    drv, _ = translated()
    assert drv.request(T_IN, sector, length) == (S_IOERR, length + 1)
    assert drv.request(T_OUT, sector, b"\1" * length)[0] == S_IOERR


def test_logical_block_size_sets_the_alignment():
    drv, _ = translated((("logical_block_size", "4096"), ("physical_block_size", "4096")))
    assert drv.request(T_IN, 0, 512)[0] == S_IOERR
    assert drv.request(T_IN, 1, 4096)[0] == S_IOERR
    assert drv.request(T_IN, 8, 4096)[0] == S_OK


@pytest.mark.parametrize("rtype", [0x20, 10, 12, 3 << 8])
def test_unsupported_types_are_unsupp(rtype):
    drv, _ = translated()
    assert drv.request(rtype)[0] == S_UNSUPP


def test_scsi_commands_fail():
    drv, _ = translated()
    assert drv.request(2)[0] == S_IOERR           # without the SCSI buffers


def test_missing_header_is_a_virtio_error():
    drv, _ = translated()
    drv.publish(drv.desc(drv.iova(drv.HDR), 8, 0))
    drv.kick()
    assert drv.dev.errors == ["virtio-blk missing headers"] and drv.dev.broken


def test_file_backed_drive_reads_and_writes_the_file(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(pattern()))
    d = make_device("virtio-blk-pci", MODERN_IOMMU + (("drive", "d0"), ("x-drive-file", str(path))))
    drv = BlkDriver(d)
    drv.map(drv.HDR, 3)
    drv.setup()
    assert drv.request(T_OUT, 1, b"\xab" * 512) == (S_OK, 1)
    d.image.close()
    assert path.read_bytes()[512:1024] == b"\xab" * 512
    snap = make_device("virtio-blk-pci", (("drive", "d0"), ("x-drive-file", str(path)),
                                          ("x-drive-snapshot", "on")))
    assert snap.image.mem is not None and snap.image.write(0, b"x") and path.read_bytes()[0] == 0


# -- properties and errors -----------------------------------------------------------------

@pytest.mark.parametrize("props, field", [
    ((), "drive property not set"),
    ((("drive", "nope"),), "can't find value 'nope'"),
    ((("drive", "d0"), ("queue-size", "100")), "queue-size"),
    ((("drive", "d0"), ("queue-size", "2")), "queue-size"),
    ((("drive", "d0"), ("num-queues", "0")), "num-queues"),
    ((("drive", "d0"), ("logical_block_size", "4096")), "logical_block_size > physical"),
    ((("drive", "d0"), ("logical_block_size", "1000")), "logical_block_size"),
    ((("drive", "d0"), ("min_io_size", "100")), "min_io_size"),
    ((("drive", "d0"), ("heads", "300"), ("cyls", "1"), ("secs", "1")), "heads"),
    ((("drive", "d0"), ("max-discard-sectors", "0")), "max-discard-sectors"),
    ((("drive", "d0"), ("config-wce", "maybe")), "config-wce"),
    ((("drive", "d0"), ("iommu_platform", "on")), "iommu_platform"),
    ((("drive", "d0"), ("colour", "red")), "'colour' not supported"),
    ((("drive", "d0"), ("x-drive-file", "/nonexistent/disk.raw")), "could not open"),
])
def test_bad_properties_are_one_line_errors(props, field):
    drives = {} if ("x-drive-file", "/nonexistent/disk.raw") in props else {
        "d0": BlockImage(pattern())}
    if ("x-drive-file", "/nonexistent/disk.raw") in props:
        props = tuple(p for p in props if p[0] != "drive") + (("drive", "other"),)
    with pytest.raises(DeviceConfigError) as e:
        make_device("virtio-blk-pci", props, context={"drives": drives})
    assert "\n" not in str(e.value) and field in str(e.value)


def test_registry_lists_the_blk_device_with_documented_properties():
    kind = DEVICE_KINDS["virtio-blk-pci"]
    assert {"drive", "serial", "num-queues", "queue-size", "config-wce", "discard",
            "write-zeroes", "logical_block_size", "vectors"} <= set(kind.prop_names())
    assert all(p.help for p in kind.props)


# -- -drive on the boot command line ----------------------------------------------------------

def parse(*argv):
    return qemu_args.parse(["-kernel", "k.elf", *argv])


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "a,b.raw"
    path.write_bytes(bytes(MIB))
    return str(path)


def test_drive_is_connected_to_the_device(image):
    esc = image.replace(",", ",,")
    a = parse("-drive", f"file={esc},if=none,id=d0,format=raw,readonly=on,cache=writethrough",
              "-device", "zpci,uid=1,fid=1,target=b0", "-device", "virtio-blk-pci,id=b0,drive=d0")
    (fn,) = a.config.functions
    assert fn.props == (("drive", "d0"), ("x-drive-file", image), ("x-drive-readonly", "on"),
                        ("x-drive-wce", "off"))
    assert a.drives["d0"].readonly and not a.drives["d0"].write_cache
    # the device string the boot command builds from carries the backend, commas escaped
    kind, props = qemu_args.split_device(a.device_strings[-1])
    assert kind == "virtio-blk-pci" and ("x-drive-file", image) in props
    dev = make_device(kind, tuple(p for p in props if p[0] != "id"))
    assert dev.image.readonly and dev.host_features >> BLK_F_RO & 1


def test_boot_builds_a_machine_with_the_drive(image):
    from emulator.cpu.boot import build_firmware
    a = parse("-drive", f"file={image.replace(',', ',,')},if=none,id=d0,format=raw",
              "-device", "virtio-blk-pci,id=b0,drive=d0")
    fw = build_firmware(a, "linux-6.0")
    (fn,) = fw.bus.functions
    assert fn.device.kind == "virtio-blk-pci" and fn.device.image.size == MIB


@pytest.mark.parametrize("drive, device, needle", [
    ("file=F,if=none,id=d0,format=raw", "virtio-blk-pci,drive=d1", "drive=d1: no -drive with id=d1"),
    ("file=/nonexistent.raw,if=none,id=d0,format=raw", "virtio-blk-pci,drive=d0", "file=/nonexistent.raw"),
    ("file=F,if=none,id=d0,format=qcow2", "virtio-blk-pci,drive=d0", "format=qcow2"),
    ("file=F,if=virtio,id=d0,format=raw", "virtio-blk-pci,drive=d0", "if=virtio"),
    ("file=F,id=d0,format=raw", "virtio-blk-pci,drive=d0", "if=ide"),
    ("file=F,if=none,format=raw", "virtio-blk-pci,drive=d0", "id:"),
    ("if=none,id=d0,format=raw", "virtio-blk-pci,drive=d0", "file:"),
    ("file=F,if=none,id=d0,format=raw,colour=red", "virtio-blk-pci,drive=d0", "'colour'"),
    ("file=F,if=none,id=d0,format=raw,readonly=maybe", "virtio-blk-pci,drive=d0", "readonly=maybe"),
    ("file=F,if=none,id=d0,format=raw,cache=fast", "virtio-blk-pci,drive=d0", "cache=fast"),
    ("file=F,if=none,id=d0,format=raw", "virtio-blk-pci,drive=d0,x-drive-file=/x", "x-drive-file"),
])
def test_bad_drive_arguments_name_the_field(image, drive, device, needle):
    with pytest.raises(UserError) as e:
        parse("-drive", drive.replace("file=F", f"file={image.replace(',', ',,')}"),
              "-device", device)
    msg = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in msg and needle in msg


def test_a_drive_is_used_once_and_ids_are_unique(image):
    d = f"file={image.replace(',', ',,')},if=none,id=d0,format=raw"
    with pytest.raises(UserError, match="already in use"):
        parse("-drive", d, "-device", "virtio-blk-pci,drive=d0", "-device", "virtio-blk-pci,drive=d0")
    with pytest.raises(UserError, match="duplicate drive id"):
        parse("-drive", d, "-drive", d)


def test_qcow2_without_format_is_refused(tmp_path):
    path = tmp_path / "q.img"
    path.write_bytes(b"QFI\xfb" + bytes(1020))
    with pytest.raises(UserError, match="qcow2"):
        parse("-drive", f"file={path},if=none,id=d0", "-device", "virtio-blk-pci,drive=d0")


def test_drive_without_device_is_just_a_backend(image):
    a = parse("-drive", f"file={image.replace(',', ',,')},if=none,id=d0,format=raw")
    assert a.config.functions == () and "d0" in a.drives
