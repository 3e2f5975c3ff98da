"""zpci-emu boot's QEMU command line beyond -device: -global, -object, -netdev,
-machine, a zpci device whose target is no device, and ``boot --help``.

Nothing that changes the guest may be ignored: each option is applied, or
refused with one line naming it.  Where QEMU 7.2 is installed the same
command lines run under both programs and the guests' output is compared.
"""
import pytest

from _helpers import emulate, run_cli
from conftest import needs_qemu
import _normalise as normalise
from emulator import qemu_args
from emulator.capture.qemu import GUESTS_DIR, run_qemu
from emulator.errors import UserError
from firmware_model.config import FunctionSpec
from firmware_model.devices import DEVICE_KINDS

PROBE = GUESTS_DIR / "build" / "probe.elf"
RNG = GUESTS_DIR / "build" / "rng.elf"


def parse(*argv):
    return qemu_args.parse(["-kernel", "k.elf", *argv])


def refused(*argv) -> str:
    with pytest.raises(UserError) as e:
        parse(*argv)
    assert e.value.exit_code == 2
    text = str(e.value)
    assert "\n" not in text
    return text


# ---- -global

@pytest.mark.parametrize("spelling", ["virtio-pci.disable-legacy=on",
                                      "driver=virtio-pci,property=disable-legacy,value=on"])
def test_global_sets_a_default_for_every_device_of_the_type(spelling):
    a = parse("-global", spelling, "-device", "virtio-rng-pci,id=a",
              "-device", "virtio-net-pci,id=b,disable-legacy=off")
    rng, net = a.config.functions
    assert rng.props == (("disable-legacy", "on"),)
    # the device's own property wins over the global, as in QEMU
    assert dict(net.props)["disable-legacy"] == "off"


def test_global_levels_follow_qemus_types():
    # the virtio device (virtio-rng-device) has max-bytes, the PCI proxy has vectors;
    # proxy type names reach every property (the proxy aliases its virtio device's)
    a = parse("-global", "virtio-rng-device.max-bytes=5", "-global", "pci-device.vectors=3",
              "-device", "virtio-rng-pci,id=a")
    assert dict(a.config.functions[0].props) == {"max-bytes": "5", "vectors": "3"}
    assert "vectors" in refused("-global", "virtio-device.vectors=3", "-device", "virtio-rng-pci")
    # a global of a type no device on the command line is: nothing to apply, as in QEMU
    assert parse("-global", "virtio-blk-device.serial=x",
                 "-device", "virtio-rng-pci").config.functions[0].props == ()


def test_global_for_an_unmodelled_property_or_type_is_refused():
    text = refused("-global", "virtio-pci.x-pcie-lnksta-dllla=off", "-device", "virtio-rng-pci")
    assert "-global virtio-pci.x-pcie-lnksta-dllla=off" in text and "not modelled" in text
    text = refused("-global", "s390-ipl.iplbext_migration=off")
    assert "s390-ipl" in text and "not modelled" in text
    for known in qemu_args.global_types():
        assert known in text                           # the refusal lists what applies
    # backends are wired on -device, not by a global
    assert "drive" in refused("-global", "virtio-blk-pci.drive=d", "-device", "virtio-blk-pci")
    assert "required" in refused("-global", "virtio-pci")


def test_global_types_cover_every_virtio_model():
    types = qemu_args.global_types()
    for kind in DEVICE_KINDS:
        if kind.startswith("virtio-"):
            for t in (kind, "virtio-pci", "pci-device", "virtio-device",
                      kind.removesuffix("-pci") + "-device"):
                assert kind in types[t]


def test_zpci_globals_reach_given_and_automatic_zpci_devices():
    a = parse("-global", "zpci.uid=7", "-device", "virtio-rng-pci,id=a")
    assert a.config.functions[0].uid == 7
    a = parse("-global", "zpci.fid=9", "-device", "zpci,target=a", "-device", "virtio-rng-pci,id=a")
    assert a.config.functions[0].fid == 9
    # two automatic zpci devices with the same global fid clash, as in QEMU
    assert "fid 3 already in use" in refused("-global", "zpci.fid=3", "-device", "virtio-rng-pci",
                                             "-device", "virtio-net-pci")


# ---- -object, -netdev

def test_rng_backend_is_wired_or_refused():
    a = parse("-object", "rng-random,id=r,filename=/dev/urandom", "-object", "rng-builtin,id=b",
              "-device", "virtio-rng-pci,id=x,rng=r", "-device", "virtio-rng-pci,id=y,rng=b")
    assert set(a.rngs) == {"r", "b"} and a.rngs["r"].filename == "/dev/urandom"
    x, y = a.config.functions
    # rng-builtin is the model's default backend; rng-random is looked up by id
    assert y.props == ()
    if "rng" in DEVICE_KINDS["virtio-rng-pci"].prop_names():
        assert dict(x.props) == {"rng": "r"}
        backend = a.device_context()["rng_backends"]["r"]
        assert len(backend(16)) == 16
    else:
        # a model without backends draws from its PRNG: indistinguishable from urandom
        assert x.props == () and "rng_backends" not in a.device_context()
    assert "Device 'nope' not found" in refused("-device", "virtio-rng-pci,rng=nope")
    assert "Parameter 'id' is missing" in refused("-object", "rng-random,filename=/dev/urandom")
    assert "Duplicate ID" in refused("-object", "rng-builtin,id=r", "-object", "rng-builtin,id=r")
    assert "Could not open" in refused("-object", "rng-random,id=r,filename=/nonexistent/x")
    assert "memory-backend-ram" in refused("-object", "memory-backend-ram,id=m,size=1M")
    assert "rng-egd" in refused("-object", "rng-egd,id=r,chardev=c")


def test_rng_random_file_feeds_the_device_or_is_refused(tmp_path):
    f = tmp_path / "bytes"
    f.write_bytes(bytes(range(64)))
    argv = ("-object", f"rng-random,id=r,filename={f}", "-device", "virtio-rng-pci,rng=r")
    if "rng" in DEVICE_KINDS["virtio-rng-pci"].prop_names():
        a = parse(*argv)
        assert dict(a.config.functions[0].props) == {"rng": "r"}
        assert a.device_context()["rng_backends"]["r"](8) == bytes(range(8))
    else:
        # the model would draw from its PRNG, not from the file: refused, not ignored
        assert "cannot read" in refused(*argv)


def test_netdev_is_a_peer_that_is_never_connected():
    a = parse("-netdev", "user,id=n0,hostfwd=tcp::2222-:22", "-device", "virtio-net-pci,netdev=n0")
    assert set(a.netdevs) == {"n0"} and a.warnings == []
    assert a.device_context()["netdevs"] == {"n0"}
    props = dict(a.config.functions[0].props)
    if "netdev" in DEVICE_KINDS["virtio-net-pci"].prop_names():
        assert props == {"netdev": "n0"}
    else:
        assert props == {}
    assert parse("-netdev", "user,id=n1").warnings == ["netdev n1 has no peer"]
    assert "can't find value 'n9'" in refused("-device", "virtio-net-pci,netdev=n9")
    assert "in use" in refused("-netdev", "user,id=n", "-device", "virtio-net-pci,netdev=n",
                               "-device", "virtio-net-pci,netdev=n")
    assert "tap" in refused("-netdev", "tap,id=t")
    assert "Parameter 'id' is missing" in refused("-netdev", "user")


# ---- -machine, a dangling zpci target

def test_machine_types_and_properties():
    parse("-machine", "s390-ccw-virtio,accel=tcg", "-M", "s390-ccw-virtio-7.2", "-machine",
          "accel=tcg,dump-guest-core=off", "-machine", "type=s390-ccw-virtio")
    assert "s390-ccw-virtio-2.10" in refused("-machine", "s390-ccw-virtio-2.10")
    for prop in ("kernel=x", "append=y", "memory=1G", "loadparm=X", "aes-key-wrap=off"):
        assert prop.split("=")[0] in refused("-machine", f"s390-ccw-virtio,{prop}")


def test_dangling_zpci_takes_a_handle_index_as_in_qemu():
    from firmware_model.machine import Machine
    a = parse("-device", "zpci,uid=5,fid=5,target=nothere", "-device", "zpci,uid=1,fid=1,target=r0",
              "-device", "virtio-rng-pci,id=r0")
    m = Machine(a.config, policy="intercept-all", assume="as-given")
    (fn,) = m.bus.functions
    assert (fn.fid, fn.uid, fn.idx) == (1, 1, 1)


# ---- boot --help

def test_boot_help_lists_policies_defaults_and_every_accepted_option():
    from emulator.qemu_args import DEFAULT_POLICY
    from emulator.cpu.machine import DEFAULT_MAX_INSNS
    from firmware_model.policy import POLICY_NAMES
    r = run_cli("boot", "--help")
    assert r.returncode == 0 and r.stderr == ""
    text = r.stdout
    words = text.replace(",", " ").replace(":", " ").split()
    for name in POLICY_NAMES:
        assert name in words
    assert f"(default: {DEFAULT_POLICY})" in text
    assert f"(default: {DEFAULT_MAX_INSNS})" in text
    for option in [*qemu_args.QEMU_OPTIONS, *qemu_args.IGNORED_WITH_VALUE,
                   *qemu_args.IGNORED_FLAGS, *qemu_args.OWN_WITH_VALUE]:
        assert option in words, option
    for kind in DEVICE_KINDS:
        if kind != "memdev":
            assert kind in words
    # what -netdev does not do is said where -netdev is described
    netdev = text[text.index("  -netdev"):text.index("  -global")]
    assert "never connected" in netdev.lower().replace("\n      ", " ")


# ---- the same command lines under QEMU 7.2

def _compare(elf, extra, max_insns="4e9"):
    q = run_qemu(elf, extra, timeout=120)
    assert not q.timed_out and q.exit_code == 0, q.stderr.decode(errors="replace")[-500:]
    result, out = emulate(elf, extra, max_insns)
    expected, _ = normalise.normalise_qemu(q.stdout.decode("ascii", errors="replace"))
    got = out.decode("ascii", errors="replace")
    assert result.exit_code == 0, result.message
    assert expected == got, "\n".join(normalise.diff_lines(expected, got))
    return got


@needs_qemu
def test_global_changes_the_guest_as_in_qemu():
    got = _compare(RNG, ["-global", "virtio-pci.disable-legacy=on",
                         "-global", "virtio-device.iommu_platform=on",
                         "-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"])
    assert "device=1044" in got and "dma=iommu" in got


@needs_qemu
def test_dangling_zpci_target_gives_qemus_handles():
    got = _compare(PROBE, ["-device", "zpci,uid=5,fid=5,target=nothere",
                           "-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"])
    assert "fh=00020001" in got


@needs_qemu
@pytest.mark.parametrize("backend", ["rng-builtin,id=b", "rng-random,id=b,filename=/dev/urandom"])
def test_rng_backend_runs_as_in_qemu(backend):
    _compare(RNG, ["-object", backend, "-device", "zpci,uid=1,fid=1,target=r0",
                   "-device", "virtio-rng-pci,id=r0,disable-legacy=on,iommu_platform=on,rng=b"])


@needs_qemu
def test_netdev_wiring_runs_as_in_qemu():
    got = _compare(PROBE, ["-netdev", "user,id=n0", "-device", "zpci,uid=1,fid=1,target=r0",
                           "-device", "virtio-net-pci,id=r0,netdev=n0"])
    assert "device=1000" in got


def test_global_iommu_platform_on_a_transitional_device_is_refused_as_in_qemu():
    # QEMU 7.2: "VIRTIO_F_IOMMU_PLATFORM was supported by neither legacy nor transitional device"
    r = run_cli("boot", "-kernel", PROBE, "-global", "virtio-pci.iommu_platform=on",
                "-device", "virtio-rng-pci,id=r0")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "neither legacy nor transitional" in r.stderr and "virtio-rng-pci" in r.stderr
