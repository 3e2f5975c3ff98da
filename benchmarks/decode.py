"""Decoder throughput on realistic s390x code, against capstone in the same run.

The stream is the executable sections of the s390x libraries of the cross
toolchain (/usr/s390x-linux-gnu/lib), plus the bundled guests, repeated to at
least --mib MiB; without those, the decoder tests' sample
(tests/data/decode_sample.c) compiled with s390x-linux-gnu-gcc -O2.  Printed: instructions per second and GB/s of the
native walk (batch decode, count with per-index counts, count only), and the
ratio against capstone's disasm_lite lengths-only walk, which is timed on a
slice of the same stream and compared by rate (the output says so).

    .venv/bin/python benchmarks/decode.py [--mib 64] [--capstone-kib 1024] [--repeat 5]
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.decode import count_insns, decode_buffer  # noqa: E402
from emulator.elfio import executable_regions  # noqa: E402
from emulator.errors import UserError  # noqa: E402


def library_code() -> tuple[list[bytes], list[str]]:
    texts, names, seen = [], [], set()
    candidates = sorted(glob.glob("/usr/s390x-linux-gnu/lib/*.so*"))
    candidates += sorted(glob.glob(str(ROOT / "traces/guests/build/*.elf")))
    for path in candidates:
        real = os.path.realpath(path)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        try:
            regions = executable_regions(real)
        except UserError:
            continue        # linker scripts named *.so, foreign files
        texts += [r.data for r in regions]
        names.append(os.path.basename(real))
    return texts, names


def compiled_code() -> tuple[list[bytes], list[str]]:
    gcc = shutil.which("s390x-linux-gnu-gcc")
    if gcc is None:
        return [], []
    sources = [ROOT / "tests/data/decode_sample.c"]
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            out = Path(tmp) / (src.stem + ".elf")
            subprocess.run([gcc, "-O2", "-ffreestanding", "-nostdlib", "-static", "-o", str(out),
                            str(src)], check=True, capture_output=True)
            texts += [r.data for r in executable_regions(out)]
    return texts, [s.name for s in sources]


def best_of(repeat: int, fn):
    fn()    # warm-up: first touch of the output, caches, clock ramp-up
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def capstone_rate(data: bytes, repeat: int) -> tuple[float, int] | None:
    try:
        import capstone
    except ImportError:
        return None
    md = capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)
    md.skipdata = True

    def ilc_skip(buffer, size, offset, _ud):
        first = buffer[offset]
        first = first[0] if isinstance(first, bytes) else first
        return (2, 4, 4, 6)[first >> 6]

    # capstone knows no zPCI instruction; the ILC skip keeps it in sync (unicorn-notes Q5).
    md.skipdata_setup = (".insn", ilc_skip, None)

    def walk():
        n = 0
        for _ in md.disasm_lite(data, 0):
            n += 1
        return n

    secs, n = best_of(repeat, walk)
    return n / secs, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="stream size in MiB (default 64)")
    ap.add_argument("--capstone-kib", type=int, default=1024,
                    help="slice capstone walks, in KiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up, best kept (default 5)")
    args = ap.parse_args()

    texts, names = library_code()
    if not texts:
        texts, names = compiled_code()
    if not texts:
        print("decode benchmark: no s390x code (install libc6-s390x-cross or gcc-s390x-linux-gnu)",
              file=sys.stderr)
        return 1
    unit = b"".join(texts)
    want = args.mib << 20
    stream = unit * (want // len(unit) + 1)
    print(f"stream: {len(stream) / 2**20:.1f} MiB = {len(unit) / 2**20:.2f} MiB of text from "
          f"{len(names)} files ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}), repeated")

    rows = []
    secs, res = best_of(args.repeat, lambda: decode_buffer(stream))
    rows.append(("decode_buffer (records + counts)", secs, res.total))
    print(f"  {res.total} instructions, {res.nzpci} zPCI, "
          f"{len(stream) / res.total:.2f} bytes/instruction")
    secs, c = best_of(args.repeat, lambda: count_insns(stream))
    rows.append(("count_insns (per-index counts)", secs, c.total))
    secs, c0 = best_of(args.repeat, lambda: count_insns(stream, per_index=False))
    rows.append(("count_insns (total only)", secs, c0.total))
    assert res.total == c.total == c0.total

    for label, secs, n in rows:
        print(f"{label:<34} {n / secs / 1e6:8.1f} M insn/s  {len(stream) / secs / 1e9:6.2f} GB/s"
              f"  ({secs * 1e3:.1f} ms, best of {args.repeat})")

    slice_ = stream[:args.capstone_kib << 10]
    cs = capstone_rate(slice_, args.repeat)
    if cs is None:
        print("capstone not installed: no ratio")
        return 0
    cs_rate, cs_n = cs
    ours_slice, r = best_of(args.repeat, lambda: decode_buffer(slice_))
    print(f"capstone disasm_lite (lengths only) {cs_rate / 1e6:8.2f} M insn/s  "
          f"{len(slice_) / (cs_n / cs_rate) / 1e9:6.3f} GB/s"
          f"  (measured on the first {len(slice_) >> 10} KiB, {cs_n} instructions, "
          f"scaled by rate)")
    full_rate = rows[0][2] / rows[0][1]
    print(f"ratio decode_buffer/capstone: {full_rate / cs_rate:.0f}x over the full stream, "
          f"{r.total / ours_slice / cs_rate:.0f}x on the same slice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
