"""The ``rng`` and ``blk-strict`` capture workloads run natively under ``zpci-emu boot``
(``capture --engine native``): each run writes its trace, which is checked here
as a capture and against the bundled QEMU capture of the same workload.

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

from pathlib import Path

import pytest

from emulator.capture import linux, native
from emulator.capture.workloads import PHASES, WORKLOADS

ROOT = Path(__file__).resolve().parents[1]


def _capture(tmp_path_factory, name):
    out = tmp_path_factory.mktemp(name) / f"{name}.zpt"
    return out, native.capture(name, out, log=lambda m: None)


@pytest.fixture(scope="module")
def rng_capture(tmp_path_factory):
    return _capture(tmp_path_factory, "rng")


@pytest.fixture(scope="module")
def rng(rng_capture):
    return rng_capture[1].run


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
def blk_capture(tmp_path_factory):
    return _capture(tmp_path_factory, "blk-strict")


@pytest.fixture(scope="module")
def blk(blk_capture):
    return blk_capture[1].run


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


# -- the traces (capture --engine native) ----------------------------------------------

@pytest.fixture(params=["rng", "blk-strict"])
def captured(request):
    return request.getfixturevalue({"rng": "rng_capture", "blk-strict": "blk_capture"}[request.param])


def _records(path):
    from emulator.trace.reader import read_all
    return read_all(path)


def test_native_trace_is_a_capture_with_marks_and_notes(captured):
    from emulator.trace.format import Event, Mark, Note, SourceKind, StreamKind
    path, cap = captured
    w = WORKLOADS[path.stem]
    h, recs = _records(path)
    assert (h.source, h.stream, h.memory) == (SourceKind.CAPTURE, StreamKind.ZPCI_ONLY, 0)
    assert h.workload == f"linux-{w.name}" and h.detail.startswith("zpci-emu boot ")
    extra = dict(h.extra)
    assert extra["engine"] == "native" and extra["fmb_crosscheck"] == "match"
    assert extra["kernel_package"].startswith(linux.DEFAULT_KERNEL + " ")
    assert float(extra["capture_seconds"]) > 0
    # the devices' properties as the machine got them, as the QEMU capture states them
    want = {int(dict(linux.split_device(z)[1])["fid"]): linux.device_props(d) for z, d in w.devices}
    assert {f.fid: (f.kind, f.props) for f in h.functions} == want
    assert [r.label for r in recs if isinstance(r, Mark)] == PHASES
    notes = {r.kind: r.data for r in recs if isinstance(r, Note)}
    assert {"fmb_stats", "fmb_crosscheck", "capture_info"} <= set(notes)
    assert notes["fmb_crosscheck"]["ok"] is True
    assert notes["capture_info"]["engine"] == "native"
    events = [r for r in recs if isinstance(r, Event)]
    assert len(events) == cap.events == cap.run.result.stats["zpci_instructions"]
    assert len(events) == sum(sum(c.values()) for c in cap.run.observer.counts.values())


def test_native_events_hold_the_guests_psw_and_the_instructions_operands(captured):
    from emulator.trace.format import Event, EventFlag
    path, _ = captured
    _, recs = _records(path)
    events = [r for r in recs if isinstance(r, Event)]
    fibs = set()
    for ev in events:
        assert ev.flags & (EventFlag.PSW | EventFlag.CC | EventFlag.PGM_KNOWN) == \
            EventFlag.PSW | EventFlag.CC | EventFlag.PGM_KNOWN
        # the kernel's own PSW: supervisor state, DAT on, 64-bit
        assert not (ev.pswm_before >> 48) & 1 and ev.pswm_before >> 58 & 1
        assert ev.pswm_before & 0x180000000 == 0x180000000
        assert ev.cc == (ev.pswm_after >> 44) & 3
        if ev.mnemonic == "RPCIT":
            # the table entries the walk read, each 8 bytes at an absolute address
            assert ev.flags & EventFlag.DMA_TABLES and ev.reads
            assert all(len(d) == 8 for _, d in ev.reads)
        if ev.mnemonic == "MPCIFC":
            [(addr, fib)] = ev.reads
            assert len(fib) == 80 and not ev.writes
            fibs.add(int.from_bytes(fib[64:72], "big"))
        if ev.mnemonic == "PCISTG":
            # the device's DMA and interruption indicators are not the instruction's
            assert not ev.reads and not ev.writes
    # no FMB store of the model is in the trace (the firmware makes it, not the instruction)
    fmbs = fibs - {0}
    assert fmbs
    assert not any(f <= a < f + 64 for ev in events for a, _ in ev.writes for f in fmbs)


def test_native_trace_replays_with_no_mismatch(captured):
    from emulator.replay.run import replay
    path, cap = captured
    bad = []
    [res] = replay([path], check=True, progress=False, on_mismatch=bad.append)
    assert not bad, bad[:5]
    assert res.checked == res.passed == cap.events and not sum(res.unchecked.values())


# Phases whose zPCI instructions per mnemonic are the same in every run, on
# either engine (docs/linux-native.md says why).  Quiesce is not: it lasts
# until the next FMB store, which QEMU makes from a 4 s timer and the model
# at every counted instruction, and a virtio-rng refill may fall into it.
DETERMINISTIC = ("", "modules", "stats-reset")


def _by_phase(path) -> dict:
    """{phase: {mnemonic: count}} of a trace, and {phase: pages its RPCITs refreshed}."""
    from collections import Counter

    from emulator.trace.format import Event, Mark
    from emulator.trace.reader import TraceReader
    counts, pages = {}, Counter()
    phase = ""
    with TraceReader(path) as rd:
        for r in rd:
            if isinstance(r, Mark):
                phase = r.label
            elif isinstance(r, Event):
                counts.setdefault(phase, Counter())[r.mnemonic] += 1
                if r.mnemonic == "RPCIT":
                    length = dict(r.regs_in)[((r.insn[3] & 15) + 1) & 15]
                    pages[phase] += length >> 12
    return counts, pages


def test_counts_per_phase_and_mnemonic_equal_the_qemu_capture(captured):
    """The bundled QEMU capture of the same workload, phase by phase.  In the
    workload phase the number of RPCITs depends on how many of dd's buffer
    pages the guest happened to get physically adjacent (two adjacent pages
    are one DMA segment: one RPCIT of 8 KiB); the pages they refresh do not."""
    path, cap = captured
    qemu, qemu_pages = _by_phase(ROOT / "traces" / "linux" / path.name)
    ours, our_pages = _by_phase(path)
    for phase in DETERMINISTIC:
        assert cap.run.observer.phase_counts(phase or None) == ours.get(phase, {})
        assert ours.get(phase, {}) == qemu.get(phase, {}), phase
    work, qwork = dict(ours["workload"]), dict(qemu["workload"])
    assert work.pop("RPCIT") <= our_pages["workload"] == qemu_pages["workload"] > 0
    qwork.pop("RPCIT")
    assert work == qwork
