"""Speed of `zpci-emu boot`, with every baseline measured in the same run.

Builds benchmarks/guests/bench.c three times with the s390x cross compiler:
bench_zpci (PCILG config reads in a loop), bench_virtio (the mix a virtio
driver issues: PCILG of config space, PCISTG and PCILG of an MSI-X table
entry through its BAR) and bench_plain (a memory checksum, no zPCI); each
marks the end of its loop with bench_done.  Prints
  * for each zPCI mix, zPCI instructions per second end to end with the full
    firmware model, and with a constant-answer model (the cost of the trap
    path alone);
  * the guest's plain-code speed under `zpci-emu boot` as a ratio to unicorn
    running the same code with no hooks at all;
  * the wall time of each ELF under qemu-system-s390x and under the
    `zpci-emu boot` command, as a ratio, next to the lower bound of any tool
    built on Python and unicorn: the interpreter with unicorn imported plus
    unicorn running the ELF's own code with no hook and no model at all.
The load average at the start is printed too: on a shared machine it
explains run-to-run spread, and every ratio is measured in the same run.
Usage: python benchmarks/boot.py [--zpci-loops N] [--virtio-loops N] [--plain-loops N] [--repeat N]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, UC_PROT_ALL, Uc  # noqa: E402
from unicorn.s390x_const import UC_S390X_REG_PSWM  # noqa: E402

from emulator.cpu import boot, elf_load
from emulator import qemu_args  # noqa: E402
from emulator.cpu.machine import UcMachine  # noqa: E402
from emulator.capture.qemu import base_args, find_qemu  # noqa: E402
from firmware_model.insns import BY_MNEMONIC  # noqa: E402
from firmware_model.outcome import Completion, Decision, Outcome, Route  # noqa: E402

_spec = importlib.util.spec_from_file_location("guest_build", ROOT / "benchmarks/guests/build.py")
guest_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guest_build)

DEVICES = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]
MEMORY = 256 << 20


def best(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def symbol(elf: Path, name: str) -> int:
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            if sym.name == name:
                return sym["st_value"]
    raise KeyError(name)


def run_full(elf: Path):
    args = qemu_args.parse([*base_args(), "-kernel", str(elf), *DEVICES])
    result = boot.run(args, io.BytesIO())
    assert result.exit_code == 0, result.message
    return result.stats


def run_uc(elf: Path, model, patch=None):
    """`elf` under a UcMachine whose zPCI instructions go to `model`; its stats.

    `patch(machine)` runs after the load, before the guest starts."""
    m = UcMachine(MEMORY, model, lambda b: None)
    img = elf_load.load(elf, MEMORY)
    m.load(img)
    if patch is not None:
        patch(m)
    halt = m.run(img.entry)
    assert halt.exit_code == 0, halt.message
    return m.stats


def run_null_model(elf: Path):
    """The trap path with a model that answers every PCILG and PCISTG with cc 0.

    The guest's set-up (CLP: find and enable the function) still goes to the
    full firmware model, so the guest reaches its loop whatever it checks on
    the way; only the loop's PCILGs and PCISTGs skip the model.
    """
    args = qemu_args.parse([*base_args(), "-kernel", str(elf), *DEVICES])
    full = boot.build_firmware(args, qemu_args.DEFAULT_POLICY).execute
    answers = {BY_MNEMONIC[m].index: Outcome(m, Completion(cc=0), Decision(Route.FIRMWARE, "bench"))
               for m in ("PCILG", "PCISTG")}

    def model(d, g):
        answer = answers.get(d.index)
        return answer if answer is not None else full(d, g)

    return run_uc(elf, model)


def run_trap_floor(elf: Path, in_c: bool):
    """The floor of trapping: every zPCI instruction trapped by unicorn and
    answered with cc 0, either in C (no Python call) or by one bare Python
    call that returns the resume code (the least a trap path that calls the
    Python model once per zPCI instruction can cost); no model either way.

    The guest's CLP then finds no function and its PCILGs do nothing, but the
    loop still takes all its iterations, so it traps as often as the real run.
    """
    from emulator._native import lib
    resume = lib.TRAP_RESUME_CC | 0

    def patch(m):
        if in_c:
            m.t.fixed_zpci_result = resume
        else:
            m._on_zpci = lambda site: resume     # the machine's zPCI callable, replaced

    return run_uc(elf, lambda d, g: None, patch)


def run_raw_unicorn(elf: Path, stop_at: int):
    """Unicorn with no hook of any kind, from the entry to `stop_at`."""
    img = elf_load.load(elf, MEMORY)
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, MEMORY, UC_PROT_ALL)
    for seg in img.segments:
        uc.mem_write(seg.addr, seg.data)
    uc.reg_write(UC_S390X_REG_PSWM, 0x0000000180000000)
    uc.emu_start(img.entry, stop_at)


def run_emulated_to(elf: Path, stop_at: int):
    """The same span under UcMachine (counting block hook and trap hooks installed)."""
    def patch(m):
        # stop where the raw run stops: a disabled-wait PSW loaded there
        m.uc.mem_write(stop_at, bytes.fromhex("b2b20000"))      # lpswe 0 -> PSW at 0
        m.uc.mem_write(0, bytes.fromhex("0002000180000000") + (0xFFF).to_bytes(8, "big"))

    return run_uc(elf, lambda d, g: None, patch)


def wall(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, timeout=600)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode()[-300:]}")
    return dt, p.stdout


def measure_mix(mix: str, elf: Path, repeat: int) -> tuple[int, float]:
    """Prints the rates of one zPCI mix, full model against null model;
    returns its zPCI count and the null model's time."""
    t_full = t_null = cpu_full = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        t, stats = best(lambda: run_full(elf), 1)
        cpu_full = min(cpu_full, time.process_time() - c0)
        t_full = min(t_full, t)
        t, null_stats = best(lambda: run_null_model(elf), 1)
        t_null = min(t_null, t)
    n_zpci = stats["zpci_instructions"]
    # both runs must have done the same guest work, or the ratio means nothing
    assert sum(null_stats.zpci) == n_zpci, (sum(null_stats.zpci), n_zpci)
    print(f"{mix}:")
    # the process's CPU time too: on a loaded machine it shows the tool's
    # own cost where the wall time also counts the waits for a core
    print(f"  end to end, full model    : {n_zpci} zPCI insns ({stats['instructions']} total) "
          f"in {t_full:.3f} s = {n_zpci / t_full:,.0f} zPCI insns/s (aim >= 500,000); "
          f"CPU time {cpu_full:.3f} s = {n_zpci / cpu_full:,.0f}/s")
    print(f"  trap path, null model     : {n_zpci / t_null:,.0f} zPCI insns/s "
          f"(full model / null model time = {t_full / t_null:.2f})")
    print(f"  per zPCI instruction      : {t_full / n_zpci * 1e6:.2f} us end to end = "
          f"{t_null / n_zpci * 1e6:.2f} us trap path and guest code + "
          f"{(t_full - t_null) / n_zpci * 1e6:.2f} us firmware model "
          f"({(t_full - t_null) / t_full:.0%} of the time)")
    return n_zpci, t_null


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zpci-loops", type=int, default=200_000)
    ap.add_argument("--virtio-loops", type=int, default=70_000)
    ap.add_argument("--plain-loops", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    if not guest_build.have_compiler():
        print("benchmarks/boot.py: s390x-linux-gnu-gcc not installed; nothing measured")
        return 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load:
        print(f"load average at start       : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        zelf = guest_build.bench_zpci(Path(tmp), opts.zpci_loops)
        velf = guest_build.bench_virtio(Path(tmp), opts.virtio_loops)
        pelf = guest_build.bench_plain(Path(tmp), opts.plain_loops)
        stop = symbol(pelf, "bench_done")

        n_zpci, t_null = measure_mix("PCILG config reads (bench_zpci)", zelf, opts.repeat)
        measure_mix("virtio driver mix: config PCILG, MSI-X table PCISTG + PCILG (bench_virtio)",
                    velf, opts.repeat)

        # interleaved, so a load change on the machine hits both sides alike
        t_raw = t_emu = float("inf")
        for _ in range(opts.repeat):
            t_raw = min(t_raw, best(lambda: run_raw_unicorn(pelf, stop), 1)[0])
            t, pstats = best(lambda: run_emulated_to(pelf, stop), 1)
            t_emu = min(t_emu, t)
        print(f"plain code                  : {pstats.insns} guest insns; unicorn without hooks "
              f"{t_raw:.3f} s ({pstats.insns / t_raw / 1e6:.0f} M/s), zpci-emu {t_emu:.3f} s "
              f"({pstats.insns / t_emu / 1e6:.0f} M/s): ratio {t_raw / t_emu:.2f} (aim >= 0.5)")

        if shutil.which("qemu-system-s390x") is None:
            print("qemu-system-s390x not installed: no QEMU comparison")
            return 0
        qemu = find_qemu()
        cli = [sys.executable, "-m", "emulator.cli", "boot"]
        # What every tool on Python and unicorn pays before its own first
        # line runs; QEMU's whole run is compared with it below.
        t_import = min(wall([sys.executable, "-c", "import unicorn"])[0]
                       for _ in range(opts.repeat))
        for name, elf in (("bench_zpci", zelf), ("bench_virtio", velf), ("bench_plain", pelf)):
            args = [*base_args(), "-kernel", str(elf), *DEVICES]
            tq = te = float("inf")
            for _ in range(opts.repeat):
                t, outq = best(lambda: wall([qemu, *args]), 1)
                tq = min(tq, t)
                t, oute = best(lambda: wall([*cli, *args]), 1)
                te = min(te, t)
            same = "same output" if outq[1] == oute[1] else "OUTPUT DIFFERS"
            print(f"{name:<12} wall time      : qemu-system-s390x {tq:.3f} s, zpci-emu boot "
                  f"{te:.3f} s: qemu/zpci-emu = {tq / te:.2f} (> 1 means faster than QEMU; "
                  f"{same})")
            # Lower bounds: the same guest work with everything of ours that
            # is not unavoidable taken away; a bound above QEMU's wall time
            # means no tool of that shape can be faster than QEMU on this ELF.
            if name == "bench_zpci":
                t_c, fstats = best(lambda: run_trap_floor(elf, True), opts.repeat)
                t_py, pstats_ = best(lambda: run_trap_floor(elf, False), opts.repeat)
                for st in (fstats, pstats_):
                    assert sum(st.zpci) == n_zpci, (sum(st.zpci), n_zpci)
                bounds = [("zPCI trapped, UcMachine's callback, model answering a constant",
                           t_null),
                          ("zPCI trapped, one bare Python call each", t_py),
                          ("zPCI trapped, answered in C with no Python", t_c)]
            elif name == "bench_virtio":
                bounds = []
            else:
                t_bare = best(lambda: run_raw_unicorn(elf, symbol(elf, "bench_done")),
                              opts.repeat)[0]
                bounds = [("no zPCI, unicorn with no hook at all", t_bare)]
            for what, t_run in bounds:
                bound = t_import + t_run
                print(f"{'':<12} lower bound    : {what}: {t_import:.3f} s interpreter + "
                      f"import unicorn + {t_run:.3f} s run = {bound:.3f} s, qemu/bound = "
                      f"{tq / bound:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
