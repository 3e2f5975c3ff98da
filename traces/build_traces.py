#!/usr/bin/env python3
"""Record the bundled guest programs into traces/<name>.zpt with ``zpci-emu boot --trace``.

    .venv/bin/python traces/build_traces.py                # every workload below
    .venv/bin/python traces/build_traces.py wl_ism probe   # some of them

Each program (traces/guests/build/<name>.elf, built by ``make guests``) boots
with the device arguments traces/guests/programs.json gives it, under the
firmware model's default policy, and the run is written as a full-stream
trace (code blocks, their execution order, every zPCI instruction).  The
trace is then replayed with --check under both --assume modes; a mismatch
or an unchecked event is printed and makes the script fail, so a committed
trace is always one the model reproduces.  Run it again whenever a guest,
the boot path or the firmware model changes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "traces"
GUESTS = TRACES / "guests"
WORKLOADS = ("probe", "wl_rng_strict", "wl_rng_lazy", "wl_doorbell", "wl_ism", "wl_irq")


def zpci_emu(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, **kw)


def record(name: str, programs: dict) -> Path:
    elf = GUESTS / "build" / f"{name}.elf"
    if not elf.exists():
        raise SystemExit(f"{elf}: missing (run `make guests`)")
    dst = TRACES / f"{name}.zpt"
    # written in place: the header keeps the command line, which should name the real file
    r = zpci_emu("boot", "-kernel", str(elf.relative_to(ROOT)), *programs[name],
                 "--trace", str(dst.relative_to(ROOT)))
    if r.returncode != 0:
        dst.unlink(missing_ok=True)
        raise SystemExit(f"{name}: boot failed ({r.returncode}): {r.stderr.strip()}")
    return dst


def check(path: Path) -> bool:
    ok = True
    for assume in ("as-recorded", "passthrough"):
        r = zpci_emu("replay", "--check", "--json", "--assume", assume, str(path.relative_to(ROOT)))
        if r.returncode not in (0, 1):
            print(f"  replay failed: {r.stderr.strip()}")
            return False
        (res,) = json.loads(r.stdout)
        c = res["check"]
        print(f"  --assume {assume}: {res['events']} events, {c['passed']} passed, "
              f"{c['mismatched']} mismatched, {sum(c['unchecked'].values())} unchecked {c['unchecked'] or ''}")
        for m in res.get("mismatches", [])[:20]:
            print(f"    seq {m['seq']} {m['mnemonic']} @{m['addr']:x} [{m['policy']}]: {m['what']}")
        ok &= c["mismatched"] == 0 and not c["unchecked"]
    return ok


def main(argv: list[str]) -> int:
    programs = json.loads((GUESTS / "programs.json").read_text())
    names = argv or list(WORKLOADS)
    bad = []
    for name in names:
        if name not in programs:
            raise SystemExit(f"{name}: not in {GUESTS / 'programs.json'}")
        path = record(name, programs)
        st = zpci_emu("trace", "stats", str(path.relative_to(ROOT))).stdout.splitlines()
        print(f"{path.relative_to(ROOT)} ({path.stat().st_size} bytes): " + (st[1].strip() if len(st) > 1 else ""))
        if not check(path):
            bad.append(name)
    if bad:
        print(f"replay --check did not reproduce: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
