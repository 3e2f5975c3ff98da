"""The privileged instructions of zpci-emu boot against QEMU 7.2, instruction by instruction.

benchmarks/guests/privprobe.c prints what a guest sees of STIDP, STFL,
STFLE, STAP, STPX, the control registers, EPSW, STOSM/STNSM, SIGP, SVC, an
operation exception, SCLP write-event-mask / read-SCP-info, a SERVC
specification exception and the service-signal external interruption.  Both runs must print the same bytes.
"""
import importlib.util
import io
from pathlib import Path

import pytest

from conftest import needs_cross, needs_qemu
from emulator import boot, qemu_args
from emulator.errors import UserError
from emulator.qemu_oracle import base_args, run_qemu

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("guest_build", ROOT / "benchmarks/guests/build.py")
guest_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guest_build)


@pytest.fixture(scope="module")
def privprobe(tmp_path_factory):
    return guest_build.privprobe(tmp_path_factory.mktemp("privprobe"))


def emulate(elf, extra=()):
    out = io.BytesIO()
    args = qemu_args.parse([*base_args(), "-kernel", str(elf), *extra])
    result = boot.run(args, out)
    return result, out.getvalue()


@needs_cross
@needs_qemu
def test_privileged_instructions_match_qemu(privprobe):
    q = run_qemu(privprobe, [], timeout=60)
    assert q.exit_code == 0 and not q.timed_out
    result, out = emulate(privprobe)
    assert result.exit_code == 0, result.message
    assert out == q.stdout
    assert b"PRIVPROBE done" in out
    assert b"EXT_CODE 2401\n" in out and b"EXT_COUNT 01\n" in out   # the service signal
    # the probe reached each emulated instruction at least once
    assert {"STIDP", "STFL", "STFLE", "EPSW", "STOSM", "STNSM", "SIGP", "STCTG", "SERVC",
            "LPSWE"} <= set(result.stats["privileged"])


@needs_cross
def test_privprobe_program_interruptions_counted(privprobe):
    result, out = emulate(privprobe)
    # two operation exceptions (the 4 zero bytes) and the SERVC specification exception
    assert result.stats["program_interruptions"] == {"0x01": 2, "0x06": 1}
    assert b"PGM_WORD 00020001\n" in out and b"SERVC_LOW pgm=00040006\n" in out


@pytest.fixture(scope="module")
def listprobe(tmp_path_factory):
    return guest_build.listprobe(tmp_path_factory.mktemp("listprobe"))


LIST_CONFIGS = {
    # automatic zpci devices (fid/uid chosen by QEMU) between explicit ones
    "mixed": ["-device", "virtio-rng-pci,id=a", "-device", "zpci,uid=7,fid=3,target=b",
              "-device", "virtio-rng-pci,id=b", "-device", "virtio-net-pci,id=c",
              "-device", "zpci,fid=9,target=d", "-device", "virtio-rng-pci,id=d,disable-legacy=on"],
    # a zpci device is listed where it was plugged, before its PCI device came
    "zpci-first": ["-device", "zpci,uid=1,target=x", "-device", "virtio-rng-pci,id=a",
                   "-device", "virtio-rng-pci,id=x", "-device", "zpci,uid=3,fid=0x10,target=y",
                   "-device", "virtio-net-pci,id=y"],
    "none": [],
}


@needs_cross
@needs_qemu
@pytest.mark.parametrize("config", sorted(LIST_CONFIGS))
def test_clp_list_order_fids_uids_handles_match_qemu(listprobe, config):
    extra = LIST_CONFIGS[config]
    q = run_qemu(listprobe, extra, timeout=60)
    assert q.exit_code == 0 and not q.timed_out
    result, out = emulate(listprobe, extra)
    assert result.exit_code == 0, result.message
    assert out == q.stdout
    assert out.count(b"FN device=") == sum(1 for a in extra if a.startswith("virtio-"))


@needs_qemu
def test_uid_taken_by_an_automatic_function_is_refused_like_qemu(listprobe):
    extra = ["-device", "zpci,uid=1,target=x", "-device", "virtio-rng-pci,id=a",
             "-device", "virtio-rng-pci,id=x", "-device", "zpci,uid=2,target=y",
             "-device", "virtio-net-pci,id=y"]
    q = run_qemu(listprobe, extra, timeout=60)
    assert q.exit_code != 0 and b"zpci,uid=2,target=y: uid 2 already in use" in q.stderr
    with pytest.raises(UserError) as e:
        qemu_args.parse([*base_args(), "-kernel", str(listprobe), *extra])
    assert e.value.exit_code == 2
    assert str(e.value) == "-device zpci,uid=2,target=y: uid 2 already in use"


@needs_cross
@needs_qemu
@pytest.mark.parametrize("memory", [None, "64", "1G"])
def test_memory_size_as_qemu_reports_it(privprobe, memory):
    """READ SCP INFO's storage fields, with QEMU's default RAM when -m is absent."""
    import subprocess
    from emulator.qemu_oracle import find_qemu
    args = [a for a in base_args() if a not in ("-m", "256M")]
    if memory:
        args += ["-m", memory]
    q = subprocess.run([find_qemu(), *args, "-kernel", str(privprobe)], capture_output=True,
                       timeout=60)
    assert q.returncode == 0
    out = io.BytesIO()
    result = boot.run(qemu_args.parse([*args, "-kernel", str(privprobe)]), out)
    assert result.exit_code == 0
    pick = [ln for ln in q.stdout.splitlines() if ln.startswith(b"RSCPI rn")]
    assert len(pick) == 2
    assert [ln for ln in out.getvalue().splitlines() if ln.startswith(b"RSCPI rn")] == pick
