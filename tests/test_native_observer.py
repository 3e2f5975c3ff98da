"""WorkloadObserver counts a native workload run in constant memory.

A native Linux workload (``blk-large``) executes over a million zPCI
instructions; the observer must count them per phase and into the FMB
cross-check window without keeping a record per instruction.  These tests
run it on a bare-metal guest under ``zpci-emu boot`` (its counts against the
run's own statistics) and on a synthetic stream (the window against
``linux.crosscheck`` of the same events as recorder records, and memory).
"""
from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

from emulator import qemu_args as qa
from emulator.capture.linux import crosscheck
from emulator.capture.native import MARK_LINE, WorkloadObserver
from emulator.cpu import boot
from firmware_model.insns import BY_MNEMONIC
from firmware_model.outcome import Completion

GUEST = "traces/guests/build/wl_rng_strict.elf"
STATS = {"f": {"Load operations": 0, "Store operations": 1, "Store block operations": 0,
               "Refresh operations": 2}}
FH = 0x80020000 << 32          # a function handle in a register's high word


def test_observer_counts_every_instruction_of_a_boot():
    obs = WorkloadObserver()
    args = qa.parse(["-kernel", GUEST, "-device", "zpci,uid=1,fid=1,target=r0",
                     "-device", "virtio-rng-pci,id=r0,disable-legacy=on,iommu_platform=on"])
    res = boot.run(args, out=obs, observe=obs.wrap)
    assert res.exit_code == 0, res.message
    assert obs.events == res.stats["zpci_instructions"] > 100
    # no mark line: every instruction is in the phase before the first mark
    assert obs.phase_counts(None) == res.stats["zpci"]
    assert obs.records == []


class _Guest:
    def __init__(self, gprs, fib=b""):
        self.gprs, self.fib = gprs, fib

    def gpr(self, r):
        return self.gprs[r]

    def read(self, addr, n):
        return self.fib[:n]


def _decoded(name, r1, r2):
    return SimpleNamespace(index=BY_MNEMONIC[name].index, insn=SimpleNamespace(mnemonic=name),
                           r1=r1, r2=r2, d2=0, b2=0, x2=0)


def _stream():
    """(mark label | (insn, r1 value, r2 value, fmb, cc)) of a small workload."""
    fib = bytes(64) + (0).to_bytes(8, "big") + bytes(8)
    return ["stats-reset", ("MPCIFC", FH | 0x0A, 0, fib, 0), "workload",
            ("PCISTG", 0, FH, None, 0), ("RPCIT", FH, 0, None, 0), ("RPCIT", FH, 0, None, 0),
            ("RPCIT", FH, 0, None, 3), ("PCILG", 0, FH | 1 << 32, None, 0), "quiesce", "stats-read",
            ("RPCIT", FH, 0, None, 0)]


def _feed(obs, stream, repeat=1):
    """Feeds the stream, each instruction of the workload phase ``repeat`` times."""
    handler = obs.wrap(lambda d, g: SimpleNamespace(mnemonic=d.insn.mnemonic,
                                                    completion=Completion(cc=g.cc)))
    phase = None
    for item in stream:
        if isinstance(item, str):
            obs.write(f"{MARK_LINE}{item}\n".encode())
            phase = item
            continue
        name, v1, v2, fib, cc = item
        g = _Guest([0, v1, v2] + [0] * 13, fib or b"")
        g.cc = cc
        for _ in range(repeat if phase == "workload" else 1):
            handler(_decoded(name, 1, 2), g)


def test_window_agrees_with_the_recorders_crosscheck():
    obs = WorkloadObserver()
    _feed(obs, _stream())
    recs = []
    for item in _stream():
        if isinstance(item, str):
            recs.append({"kind": "mark", "label": item})
        else:
            name, v1, v2, fib, cc = item
            gr = ["%x" % x for x in [0, v1, v2] + [0] * 13]
            rec = {"insn": name, "cc": cc, "gr_before": gr, "operands": {"r1": 1, "r2": 2}}
            if fib:
                rec["mem_before"] = fib.hex()
            recs.append(rec)
    assert obs.window.rows(STATS, ["f"]) == crosscheck(recs, STATS, ["f"])
    [row] = obs.window.rows(STATS, ["f"])
    assert row["ok"], row
    assert obs.phase_counts("workload") == {"PCISTG": 1, "RPCIT": 3, "PCILG": 1}
    assert [r["label"] for r in obs.records] == ["stats-reset", "workload", "quiesce", "stats-read"]
    assert obs.phase_seconds("workload", "quiesce") >= 0


def test_memory_does_not_grow_with_the_instructions():
    def peak(repeat):
        obs = WorkloadObserver()
        tracemalloc.start()
        _feed(obs, _stream(), repeat)
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert obs.events == 5 * repeat + 2
        return top
    small, large = peak(100), peak(50_000)
    assert large < small + 64 * 1024, (small, large)
    [row] = WorkloadObserver().window.rows(STATS, ["f"])
    assert not row["ok"]


def test_console_is_bounded_to_its_last_bytes():
    obs = WorkloadObserver(console_limit=1000)
    for i in range(100):
        obs.write(f"line {i:04d} {'x' * 40}\n".encode())
    assert len(obs.console) == 1000
    assert obs.console.endswith(b"line 0099 " + b"x" * 40 + b"\n")
