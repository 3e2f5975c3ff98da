"""Replay speed and memory: events/s per core and peak RSS at 1M and 10M events; speed-up on workers.

    .venv/bin/python benchmarks/replay.py [--source TRACE] [--sizes 1000000,10000000]
        [--workers 1,2] [--seed 1] [--corpus-traces 24] [--large 4000000]

The big traces repeat the event mix of a real recorded trace (default: the
bundled trace with the most events, e.g. traces/linux/blk-strict.zpt, a
Linux guest under QEMU) with fresh sequence numbers, written compressed to a
temporary directory.  Each size is replayed in a fresh child process under
every policy (the report's mode), which prints its CPU time and its peak
resident memory; the parent prints rates and ratios.  The same process also
replays the source trace once with the full model on every event
(``fast=False``), to show what the decision cache buys and that the counts
agree.

Then, on one corpus (benchmarks/corpus.py: many traces, and one large trace
with a seek index), the serial replay (1 worker: a fresh process, as
``zpci-emu replay`` runs) against ``--workers N`` (a dask.distributed
LocalCluster of N single-threaded processes, started and warmed up outside
the timing, whose start-up is printed apart): events/s by wall time, the
speed-up as the ratio of wall times, the busiest worker's CPU time (its
ratio to the serial CPU time: the speed-up with a free core per worker) and
the workers' peak RSS, and whether every result equals the serial one.  Wall-time ratios mean something
only on an otherwise idle machine: the load average is printed before and
after.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import build, event_count, make_corpus, sources  # noqa: E402


def child(paths: list[str]) -> None:
    """Replay ``paths`` in this fresh process under every policy: time, memory, the results."""
    from emulator.replay import replay
    import emulator.decode, firmware_model.devices, firmware_model.machine  # noqa: F401,E401 - imports out of the timing
    t0, c0 = time.perf_counter(), time.process_time()
    rs = replay(paths, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"events": sum(r.events for r in rs), "wall": wall, "cpu": cpu,
                      "full_model_events": sum(r.full_model_events for r in rs),
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "exits": {p: rs[0].exits(p) for p in rs[0].policies},
                      "results": [r.to_json() for r in rs]}))


def serial(paths: list) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, paths)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="trace whose event mix is repeated")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--workers", default="1,2",
                    help="worker counts for the corpus and the split trace ('' skips them); 1 is "
                         "the serial replay in one process, as `zpci-emu replay` runs by default")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (benchmarks/corpus.py)")
    ap.add_argument("--corpus-traces", type=int, default=24)
    ap.add_argument("--corpus-events", default="20000,80000")
    ap.add_argument("--large", type=int, default=4_000_000, help="events of the split trace")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return 0
    if a.sizes:
        rc = sizes_part(a)
        if rc:
            return rc
    if a.workers:
        workers_part(a)
    return 0


def sizes_part(a) -> int:
    if a.source:
        src = Path(a.source)
    else:
        cands = sources()
        if not cands:
            print("no bundled traces (traces/*.zpt, traces/linux/*.zpt); pass --source")
            return 1
        src = max(cands, key=event_count)
    from emulator.replay import replay
    t0 = time.process_time()
    (full,) = replay([src], fast=False, progress=False)
    full_cpu = time.process_time() - t0
    t0 = time.process_time()
    (fast,) = replay([src], progress=False)
    fast_cpu = time.process_time() - t0
    same = fast.routes == full.routes
    print(f"source {src} ({full.events} events, mix: "
          + ", ".join(f"{m} {n}" for m, n in sorted(full.by_mnemonic.items())) + ")")
    print(f"  full model on every event: {full.events / full_cpu:,.0f} events/s/core; "
          f"cached: {fast.events / fast_cpu:,.0f} events/s/core; counts identical: {same}",
          flush=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zpci-bench-") as tmp:
        for n in sizes:
            p = Path(tmp) / f"mix-{n}.zpt"
            t0 = time.perf_counter()
            build(src, p, n)
            gen = time.perf_counter() - t0
            r = serial([p])
            rows.append((n, os.path.getsize(p), gen, r))
            p.unlink()
    print(f"{'events':>11} {'file MB':>8} {'cpu s':>7} {'events/s/core':>14} {'peak RSS MB':>12} "
          f"{'full-model events':>18}")
    for n, size, gen, r in rows:
        assert r["events"] == n
        print(f"{n:>11,} {size / 1e6:>8.1f} {r['cpu']:>7.2f} {n / r['cpu']:>14,.0f} "
              f"{r['maxrss_kb'] / 1024:>12.1f} {r['full_model_events']:>18,}")
    if len(rows) > 1:
        (n0, _, _, r0), (n1, _, _, r1) = rows[0], rows[-1]
        print(f"ratio {n1 // n0}x events: peak RSS x{r1['maxrss_kb'] / r0['maxrss_kb']:.2f}, "
              f"rate x{(n1 / r1['cpu']) / (n0 / r0['cpu']):.2f}; "
              f"cached vs full model x{(n1 / r1['cpu']) / (full.events / full_cpu):.0f}")
    return 0


def workers_part(a) -> None:
    """Events/s on 1, 2 and N workers for the same corpus and for one trace split at its
    seek points; every parallel result must equal the serial one."""
    from emulator.replay import parallel
    counts = [int(w) for w in a.workers.split(",")]
    lo, hi = (int(x) for x in a.corpus_events.split(","))
    print(f"\nload average before: {os.getloadavg()[0]:.2f} (2 cores shared; wall times need an idle machine)")
    with tempfile.TemporaryDirectory(prefix="zpci-bench-") as tmp:
        t0 = time.perf_counter()
        many, big = make_corpus(Path(tmp), a.seed, a.corpus_traces, (lo, hi), a.large)
        print(f"corpus: {len(many)} traces, {a.large:,}-event split trace, built in "
              f"{time.perf_counter() - t0:.1f} s (seed {a.seed})", flush=True)
        runs = {"corpus": many, "split": [big]}
        base = {name: serial(paths) for name, paths in runs.items()}
        rows = []
        for w in counts:
            if w == 1:
                for name in runs:
                    b = base[name]
                    rows.append((name, 1, b["events"], b["wall"], b["cpu"], b["maxrss_kb"], True, 0.0))
                continue
            t0 = time.perf_counter()
            with parallel.Executor(workers=w) as ex:
                # imports on the workers out of the timing, as in the serial child
                ex.client.run(lambda: __import__("emulator.replay.parallel") and None)
                start = time.perf_counter() - t0
                ex.client.run(_reset_peak)
                for name, paths in runs.items():
                    c0 = ex.client.run(time.process_time)
                    t1 = time.perf_counter()
                    rs = parallel.replay(paths, ex)
                    wall = time.perf_counter() - t1
                    c1 = ex.client.run(time.process_time)
                    busiest = max(c1[k] - c0[k] for k in c1)
                    print(f"  {name} on {w} workers: worker CPU s "
                          + ", ".join(f"{c1[k] - c0[k]:.2f}" for k in sorted(c1)), flush=True)
                    rss = max(ex.client.run(_peak_rss_kb).values())
                    same = [r.to_json() for r in rs] == base[name]["results"]
                    rows.append((name, w, sum(r.events for r in rs), wall, busiest, rss, same, start))
        # cpu s: the busiest worker's CPU time; its ratio to the serial CPU time is the
        # speed-up the split allows with a core per worker (robust to other load)
        print(f"{'run':>7} {'workers':>7} {'events':>11} {'wall s':>7} {'events/s':>11} "
              f"{'speed-up':>8} {'cpu s':>7} {'cpu ratio':>9} {'worker RSS MB':>13} "
              f"{'identical':>9} {'cluster start s':>15}")
        for name, w, n, wall, cpu, rss, same, start in rows:
            b = base[name]
            print(f"{name:>7} {w:>7} {n:>11,} {wall:>7.2f} {n / wall:>11,.0f} "
                  f"{b['wall'] / wall:>7.2f}x {cpu:>7.2f} {b['cpu'] / cpu:>8.2f}x {rss / 1024:>13.1f} "
                  f"{str(same):>9} {start:>15.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _peak_rss_kb() -> int:
    """Peak resident memory since the last _reset_peak (Linux VmHWM; else the process's)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so a worker's peak is this run's
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
