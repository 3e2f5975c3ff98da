"""Debian's stock s390x kernel boots natively under `zpci-emu boot` to a busybox /init.

The kernel and busybox come from Debian's archive into the private cache,
as `capture` fetches them; a machine that cannot get them fails this test
(it does not skip).  One boot (~3 G guest instructions) is shared by the
tests of this file.
"""
from __future__ import annotations

import io

import pytest

from emulator import qemu_args
from emulator.capture import native
from emulator.cpu import boot

MEMORY = "512"


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    files = native.fetch()
    tmp = tmp_path_factory.mktemp("linux")
    initrd = native.marker_initrd(files.busybox, tmp / "initrd.gz",
                                  ("uname -r", "mount -t sysfs sysfs /sys",
                                   "ls /sys/bus/pci/devices"))
    args = qemu_args.parse(["-kernel", str(files.vmlinuz), "-initrd", str(initrd),
                            "-append", native.APPEND, "-m", MEMORY, "-nographic",
                            "-device", "zpci,uid=1,fid=1,target=r0",
                            "-device", "virtio-rng-pci,id=r0", "--trace", str(tmp / "boot.zpt")])
    out = io.BytesIO()
    result = boot.run(args, out=out, argv_text="zpci-emu boot ...")
    return files, result, out.getvalue().decode("utf-8", "replace"), tmp / "boot.zpt"


def test_kernel_reaches_init_and_powers_off(booted):
    files, result, console, _ = booted
    assert result.exit_code == 0, result.message
    lines = console.splitlines()
    assert native.INIT_MARKER in lines
    assert files.release in lines                     # uname -r, run by the guest's busybox


def test_the_zpci_function_is_listed_enabled_and_probed_through_the_model(booted):
    _, result, console, _ = booted
    z = result.stats["zpci"]
    assert z["CLP"] >= 2 and z["MPCIFC"] >= 1 and z["PCILG"] > 0
    # Linux names the function's bus after its UID (uid 1)
    assert "0001:00:00.0" in console
    assert result.stats["model"]["policies"]["intercept-all"]["routes"]["userspace"] > 0


def test_the_clock_and_interruptions_ran_in_the_boot(booted):
    _, result, _, _ = booted
    s = result.stats
    assert s["instructions"] > 2_000_000_000            # decompressor and kernel
    assert s["privileged"]["SERVC"] > 0 and s["privileged"]["LPSWE"] > 0
    # user space came up: page faults (0x10/0x11) were delivered
    assert int(s["program_interruptions"].get("0x11", 0)) > 0


def test_boot_trace_of_a_kernel_holds_its_zpci_events(booted):
    """``--trace`` of a supervisor-state kernel: zPCI events only (code runs
    at virtual addresses the block recorder cannot read), as a capture, and
    replay --check reproduces every one."""
    from emulator.replay.run import replay
    from emulator.trace.text import stats
    _, result, _, trace = booted
    st = stats(trace)
    assert (st["source"], st["stream"]) == ("capture", "zpci-only")
    assert st["by_mnemonic"] == result.stats["zpci"]
    bad = []
    [res] = replay([trace], check=True, progress=False, on_mismatch=bad.append)
    assert not bad and res.checked == res.passed == st["events"] > 0


def test_a_stop_names_the_kernel_function(booted):
    """The one line a stopped kernel boot ends with names the kallsyms function."""
    from emulator.capture import kernel as K
    from emulator.cpu.symbols import function_at
    files, _, _, _ = booted
    syms = {s.name: s.addr for s in K.kallsyms(K.extract_image(files.vmlinuz.read_bytes()))}
    assert function_at(files.vmlinuz, syms["start_kernel"] + 0x10) == "start_kernel+0x10"
    args = qemu_args.parse(["-kernel", str(files.vmlinuz), "-append", native.APPEND,
                            "-m", MEMORY, "-nographic", "--max-insns", "2100000000"])
    result = boot.run(args, out=io.BytesIO())
    assert result.exit_code == 1 and "\n" not in result.message
    assert "--max-insns" in result.message and "+0x" in result.message.rsplit(" in ", 1)[1]
