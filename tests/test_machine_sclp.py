"""zpci-emu boot hands SCLP (de)configure to the Machine, so the host's records follow.

The CPU is replaced by a stand-in that keeps what boot.run gives it, so no
guest has to issue SERVC: the callbacks SCLP would call are called directly.
"""
import pytest

from emulator.cpu import boot
from emulator import qemu_args
from emulator.capture.qemu import base_args

import test_props_world as w

PROBE = w.__file__.rsplit("/", 2)[0] + "/traces/guests/build/probe.elf"
FID = 5


class _Stop(Exception):
    pass


@pytest.fixture
def wired(monkeypatch):
    """(Machine, pci_configure, pci_deconfigure) as boot.run builds and wires them."""
    made = {}
    build = boot.build_firmware

    def build_firmware(args, policy):
        made["fw"] = build(args, policy)
        return made["fw"]

    def cpu(*args, **kwargs):
        made.update(kwargs)
        raise _Stop

    monkeypatch.setattr(boot, "build_firmware", build_firmware)
    monkeypatch.setattr(boot, "UcMachine", cpu)
    args = qemu_args.parse([*base_args(), "-kernel", PROBE,
                            "-device", f"zpci,uid=1,fid={FID},target=r0",
                            "-device", "virtio-rng-pci,id=r0,disable-legacy=on,iommu_platform=on"])
    with pytest.raises(_Stop):
        boot.run(args, out=None)
    return made["fw"], made["pci_configure"], made["pci_deconfigure"]


def test_sclp_deconfigure_from_boot_releases_the_host_records(wired):
    m, configure, deconfigure = wired
    g = w.new_guest()
    for a in [("clp", "list", 0), ("clp", "enable", 0), ("mpcifc", "enabled", 0, 4, 0, "good"),
              ("rpcit", "enabled", 0, 0, 0x2000, 2)]:
        w.perform(m, g, a)
    hf, fn = (m._hf[0].hf, m._hf[0].fn)
    assert fn.fid == FID
    assert hf.ioat is not None and len(hf.domain.entries) == 2      # the guest's RPCIT, mirrored
    assert deconfigure(FID) == 0x0020
    # the guest's registration went with the function, and so did the host's
    assert not fn.ioat_enabled
    assert hf.ioat is None and not hf.domain.entries
    assert w.domain_matches_iotlb(m)
    assert deconfigure(FID) == 0x0120                                # already in standby
    assert configure(FID) == 0x0020
    assert configure(FID) == 0x0120
    assert deconfigure(0x77) == 0x09F0                               # no such function
    # the host handle is the guest's with the marker swapped, as resync keeps it
    assert hf.fh == fn.fh ^ w.EMUL
