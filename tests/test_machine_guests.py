"""End to end: the project's bare-metal guests booted under every policy.

The guest's console output must not depend on the policy (transparency at
the level a guest program can observe), the paths under test must really be
taken, and the per-policy accounting of one run must not depend on which
policy was active (one run accounts every policy).
"""
import json
from pathlib import Path

import pytest

from _helpers import ROOT, run_cli
from firmware_model.policy import POLICY_NAMES

GUESTS = ROOT / "traces" / "guests" / "build"
RNG = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]
RNG_IOMMU = ["-device", "zpci,uid=1,fid=1,target=r0",
             "-device", "virtio-rng-pci,id=r0,disable-legacy=on,iommu_platform=on"]

CASES = {
    "wl_rng_lazy": RNG_IOMMU,      # RPCIT-heavy: the kvm and firmware RPCIT paths
    "wl_doorbell": RNG,            # PCISTG doorbells
    "probe": RNG,                  # every instruction, valid and invalid
}


def boot(elf: Path, devices: list[str], policy: str, tmp: Path):
    stats = tmp / f"{elf.stem}-{policy}.json"
    r = run_cli("boot", "-kernel", elf, *devices, "--policy", policy, "--stats", stats, timeout=300)
    return r, json.loads(stats.read_text())["model"]


@pytest.mark.parametrize("guest", sorted(CASES))
def test_guest_sees_the_same_under_every_policy(guest, tmp_path):
    elf = GUESTS / f"{guest}.elf"
    assert elf.is_file(), f"{elf} missing: the guests' ELFs are committed (make guests)"
    runs = {p: boot(elf, CASES[guest], p, tmp_path) for p in POLICY_NAMES}
    ref_out = runs["intercept-all"][0]
    assert ref_out.returncode == 0, ref_out.stderr[-2000:]
    for p, (r, model) in runs.items():
        assert r.returncode == 0 and r.stdout == ref_out.stdout, p
        # the accounting of every policy is the same whichever policy ran
        assert model["policies"] == runs["intercept-all"][1]["policies"], p
    active = {p: model["active"]["router"] for p, (_, model) in runs.items()}
    assert active["intercept-all"]["firmware"] == active["intercept-all"]["kvm_handled"] == 0
    assert active["linux-6.0"]["firmware"] > 0
    if guest == "wl_rng_lazy":
        assert active["ioat-assist"]["kvm_handled"] > 0
        assert active["firmware-rpcit"]["firmware"] > active["linux-6.0"]["firmware"]
        pol = runs["intercept-all"][1]["policies"]
        assert pol["ioat-assist"]["exit_userspace"] < pol["linux-6.0"]["exit_userspace"]
