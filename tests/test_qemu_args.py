"""emulator.qemu_args: the qemu-system-s390x part of `zpci-emu boot`."""
import pytest

from emulator import qemu_args
from emulator.errors import UserError
from firmware_model.config import FunctionSpec


def parse(*argv):
    return qemu_args.parse(["-kernel", "k.elf", *argv])


def test_memory_sizes():
    assert parse().config.memory == 128 << 20          # QEMU's s390-ccw-virtio default
    assert parse("-m", "256").config.memory == 256 << 20
    assert parse("-m", "256M").config.memory == 256 << 20
    assert parse("-m", "1G").config.memory == 1 << 30
    assert parse("-m", "size=512M").config.memory == 512 << 20
    # a long digit string is too large, not a float overflow or int()'s digit limit
    for bad in ("lots", "0", "1536K", "-5", "9" * 400, "9" * 5000, "2T"):
        with pytest.raises(UserError) as e:
            parse("-m", bad)
        assert e.value.exit_code == 2 and "-m" in str(e.value)


def test_zpci_then_device_keeps_given_ids_in_plug_order():
    a = parse("-device", "zpci,uid=5,fid=0x10,target=b", "-device", "zpci,uid=1,fid=2,target=a",
              "-device", "virtio-rng-pci,id=a", "-device", "virtio-net-pci,id=b,mac=52:54:00:00:00:01")
    fns = a.config.functions
    assert [f.target for f in fns] == ["b", "a"]                 # zpci order, not device order
    assert fns[0] == FunctionSpec("virtio-net-pci", (("mac", "52:54:00:00:00:01"),), 0x10, 5, "b")
    assert fns[1] == FunctionSpec("virtio-rng-pci", (), 2, 1, "a")


def test_device_without_zpci_gets_automatic_function_at_its_position():
    a = parse("-device", "virtio-rng-pci,id=x,disable-legacy=on,iommu_platform=on",
              "-device", "zpci,uid=3,target=y", "-device", "virtio-rng-pci,id=y")
    fns = a.config.functions
    assert [(f.target, f.uid, f.fid) for f in fns] == [("x", None, None), ("y", 3, None)]
    assert fns[0].props == (("disable-legacy", "on"), ("iommu_platform", "on"))


def test_zpci_after_its_device_is_rejected_like_qemu():
    with pytest.raises(UserError) as e:
        parse("-device", "virtio-rng-pci,id=x", "-device", "zpci,target=x")
    assert e.value.exit_code == 2 and "already has an associated zpci device" in str(e.value)


@pytest.mark.parametrize("dev,needle", [
    ("zpci,uid=1,fid=1", "target must be defined"),
    ("zpci,uid=1,colour=red,target=a", "no property 'colour'"),
    ("zpci,uid=0x10000,target=a", "uid"),
    ("zpci,fid=zz,target=a", "fid"),
    (",id=a", "no device kind"),
])
def test_bad_zpci_strings_name_the_device(dev, needle):
    with pytest.raises(UserError) as e:
        parse("-device", dev)
    assert e.value.exit_code == 2
    assert needle in str(e.value) and dev in str(e.value)


def test_duplicate_explicit_ids():
    with pytest.raises(UserError, match="uid 1 already in use"):
        parse("-device", "zpci,uid=1,target=a", "-device", "zpci,uid=1,target=b")
    with pytest.raises(UserError, match="fid 7 already in use"):
        parse("-device", "zpci,fid=7,target=a", "-device", "zpci,fid=7,target=b")


def test_zpci_without_its_device_keeps_its_ids_and_index():
    # QEMU keeps it RESERVED (never listed), but it took uid 1, fid 0 and index 0
    a = parse("-device", "zpci,target=nothing", "-device", "virtio-rng-pci,id=r")
    assert a.config.functions == (FunctionSpec(None, (), 0, 1, "nothing"),
                                  FunctionSpec("virtio-rng-pci", (), 1, 2, "r"))


def test_ignored_qemu_options_and_console_rules():
    a = parse("-nodefaults", "-nographic", "-machine", "s390-ccw-virtio,accel=tcg",
              "-cpu", "qemu", "-chardev", "stdio,id=con0", "-device", "sclpconsole,chardev=con0",
              "-no-reboot")
    assert a.console and a.config.functions == () and a.warnings == []
    assert "-cpu max" in parse("-cpu", "max").warnings[0]
    assert not parse("-nodefaults").console        # nothing would print in QEMU either
    assert parse().console


def test_own_options_and_escaped_commas():
    a = parse("--policy", "ioat-assist", "--max-insns", "2e6", "--stats=s.json", "--trace", "t.zt")
    assert (a.policy, a.max_insns, a.stats, a.trace) == ("ioat-assist", 2_000_000, "s.json", "t.zt")
    assert parse("--max-insns", str((1 << 64) - 1)).max_insns == (1 << 64) - 1
    assert parse("--max-insns", "0x100").max_insns == 256
    assert parse("--max-insns", "1.5e3").max_insns == 1500
    assert parse("-m", "0.5G").config.memory == 512 << 20
    kind, props = qemu_args.split_device("virtio-net-pci,id=n,romfile=a,,b,x")
    assert kind == "virtio-net-pci" and props == [("id", "n"), ("romfile", "a,b"), ("x", "on")]


@pytest.mark.parametrize("argv,needle", [
    ([], "no -kernel"),
    (["-kernel"], "needs a value"),
    (["-kernel", "k", "-bogus"], "unsupported option -bogus"),
    (["-kernel", "k", "stray"], "unexpected argument"),
    (["-kernel", "k", "-smp", "2"], "one CPU"),
    (["-kernel", "k", "--max-insns", "-3"], "positive"),
    (["-kernel", "k", "--max-insns", "0.5"], "whole number"),
    (["-kernel", "k", "--max-console", "1.5"], "whole number"),
    (["-kernel", "k", "--max-console", "0"], "positive"),
    (["-kernel", "k", "--max-console", "lots"], "wants a number"),
    (["-kernel", "k", "--max-console", "1", "--max-console", "2"], "more than once"),
    # beyond the uint64_t counter of cbits/trap.c, and a float's range
    (["-kernel", "k", "--max-insns", str(1 << 64)], "more than"),
    (["-kernel", "k", "--max-insns", "1e30"], "more than"),
    (["-kernel", "k", "--max-insns", "1e400"], "more than"),
    (["-kernel", "k", "--max-insns", "1e99999999999999999999"], "--max-insns"),
    (["-kernel", "k", "--max-insns", "1e"], "wants a number"),
])
def test_usage_errors(argv, needle):
    with pytest.raises(UserError) as e:
        qemu_args.parse(argv)
    assert e.value.exit_code == 2 and needle in str(e.value)
