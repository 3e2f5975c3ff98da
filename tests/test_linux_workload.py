"""The ``rng`` and ``blk-strict`` capture workloads run natively under ``zpci-emu boot``.

Same kernel, initramfs (busybox, the virtio modules, the workload's /init),
command line and devices as ``capture --workload rng`` gives QEMU.  The
virtio-rng queue's completions arrive as adapter interruptions (MSI-X write,
AIBV/AISB bits, the FLIC, an I/O interruption delivered to the kernel), so
reading /dev/hwrng finishing proves that path end to end.  The guest's own
measurement-block counters are compared with the model's zPCI instructions
exactly as the QEMU capture compares them with its trace (linux.crosscheck).
The Debian packages come into the private cache as for test_linux_boot.py; a
machine that cannot get them fails this test (it does not skip).
"""
from __future__ import annotations

import pytest

from emulator.capture import native
from emulator.capture.workloads import PHASES, WORKLOADS


@pytest.fixture(scope="module")
def rng(tmp_path_factory):
    return native.run_workload("rng", tmp_path_factory.mktemp("rng"))


def test_rng_workload_reads_hwrng_through_adapter_interruptions(rng):
    assert rng.result.exit_code == 0, rng.result.message
    lines = rng.console_lines
    assert "rng: 1 KiB read" in lines
    assert [r["label"] for r in rng.observer.records if r.get("kind") == "mark"] == PHASES
    irq = rng.result.stats["model"]["interrupts"]
    assert irq["raised"] > 0 and irq["delivered"] > 0
    assert rng.result.stats["privileged"].get("TPI", 0) > 0


def test_user_space_runs_without_operation_exceptions(rng):
    # busybox's libc picks VSTRS (vector enhancements 2) when STFLE offers it
    assert not any("User process fault" in l for l in rng.console_lines)


def test_guest_fmb_counters_match_the_models_instructions(rng):
    fn = WORKLOADS["rng"].functions[0]
    assert set(rng.stats) == {fn}
    [row] = rng.crosscheck
    assert row["ok"], row
    c = row["counters"]
    # the workload itself notified the queue and mapped its buffers
    work = rng.observer.phase_counts("workload")
    assert work.get("PCISTG", 0) > 0 and work.get("RPCIT", 0) > 0
    assert c["Store operations"]["guest"] >= work["PCISTG"]
    assert c["Refresh operations"]["guest"] >= work["RPCIT"]
    # the block's last update carries the guest's clock (QEMU: its virtual clock)
    assert any(l.startswith("Last update TOD:") and l.split(":")[1].strip() not in ("", "0")
               for l in rng.console_lines)


@pytest.fixture(scope="module")
def blk(tmp_path_factory):
    return native.run_workload("blk-strict", tmp_path_factory.mktemp("blk"))


def test_blk_strict_workload_writes_reads_back_and_counters_match(blk):
    """virtio-blk on an 8 MiB image with s390_iommu=strict: one RPCIT per
    unmap, thousands in the workload, each counted by the guest's FMB."""
    assert blk.result.exit_code == 0, blk.result.message
    assert "blk: 256 KiB written and read back OK" in blk.console_lines
    [row] = blk.crosscheck
    assert row["ok"], row
    work = blk.observer.phase_counts("workload")
    assert row["counters"]["Refresh operations"]["guest"] >= work["RPCIT"] > 1000
    irq = blk.result.stats["model"]["interrupts"]
    assert irq["delivered"] == irq["raised"] >= work["PCISTG"] // 2
