"""Replay speed and memory: events/s per core and peak RSS at 1M and 10M events; speed-up on workers.

    .venv/bin/python benchmarks/replay.py [--source TRACE] [--sizes 1000000,10000000]
        [--workers 1,2,4] [--seed 1] [--corpus-traces 24] [--large 4000000]

The big traces repeat the event mix of a real recorded trace (default: the
bundled trace with the most events, e.g. traces/linux/blk-strict.zpt, a
Linux guest under QEMU) with fresh sequence numbers, written compressed to a
temporary directory.  Each size is replayed in a fresh child process under
every policy (the report's mode), which prints its CPU time and its peak
resident memory; the parent prints rates and ratios.  The same process also
replays the source trace once with the full model on every event
(``fast=False``), to show what the decision cache buys and that the counts
agree.

Then, on one corpus (benchmarks/corpus.py: many traces, and two large traces
with a seek index: ``split`` repeats the whole recording, so its configuration
events recur all along; ``split-io`` is a long I/O workload as it would be
recorded, the recording once and then its workload phase repeated), the serial replay (1 worker: a fresh process, as
``zpci-emu replay`` runs, with the workers' allocator settings) against
``--workers N`` (a dask.distributed LocalCluster of N single-threaded
processes, started and warmed up outside the timing, whose start-up is
printed apart): events/s by wall time; the speed-up as the ratio of wall
times; the busiest worker's CPU time and its ratio to the serial CPU time
(the speed-up with a free core per worker: robust to other load); the
overhead (all CPU of the parallel run, this process's client, scheduler and
nannies included, over the serial CPU); each worker's peak RSS; and whether
every result equals the serial one.  Last, ``zpci-emu replay`` end to end on
each run, serial and with ``--workers`` (start-up of the cluster included).
Wall-time ratios mean something only on an otherwise idle machine: the load
average is printed before and after.
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
from dataclasses import dataclass
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


def serial(paths: list, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, paths)],
                         capture_output=True, text=True, check=True,
                         env=None if env is None else {**os.environ, **env})
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="trace whose event mix is repeated")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--workers", default="1,2,4",
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
    # The serial baseline gets the allocator settings the workers get (parallel.DASK_CONFIG):
    # the speed-up then measures the parallel replay, not glibc's mmap threshold.
    env = {k.rsplit(".", 1)[1]: str(v) for k, v in parallel.DASK_CONFIG.items()
           if k.startswith("distributed.nanny.pre-spawn-environ.")}
    print(f"\nload average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(wall-time ratios need an otherwise idle machine; the CPU ratios less so)")
    with tempfile.TemporaryDirectory(prefix="zpci-bench-") as tmp:
        t0 = time.perf_counter()
        many, big = make_corpus(Path(tmp), a.seed, a.corpus_traces, (lo, hi), a.large)
        # a long workload's trace: its configuration once at the start, then I/O
        _, long = make_corpus(Path(tmp) / "long", a.seed, 0, (lo, hi), a.large,
                              large_phase="workload")
        print(f"corpus: {len(many)} traces, {a.large:,}-event split traces (split: the whole "
              f"recording repeated, configuration every repeat; split-io: it once, then its "
              f"workload phase repeated), built in {time.perf_counter() - t0:.1f} s "
              f"(seed {a.seed})", flush=True)
        runs = {"corpus": many, "split": [big], "split-io": [long]}
        base = {name: serial(paths, env) for name, paths in runs.items()}
        rows = []
        for w in counts:
            if w == 1:
                for name in runs:
                    b = base[name]
                    rows.append(Row(name, 1, b["events"], b["wall"], b["cpu"], b["cpu"], 0.0,
                                    [b["maxrss_kb"]], True, 0.0))
                continue
            rows += on_workers(parallel, w, runs, base)
        print_rows(rows, base)
        for w in (w for w in counts if w > 1):
            end_to_end(runs, w)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def end_to_end(runs: dict, w: int) -> None:
    """What a user waits for: ``zpci-emu replay`` serial and with ``--workers``, process start,
    imports and the cluster's start-up included."""
    for name, paths in runs.items():
        walls = []
        for extra in ([], ["--workers", str(w)]):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "emulator.cli", "replay", "--json", *extra,
                            *map(str, paths)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
        print(f"end to end, {name}: `zpci-emu replay` {walls[0]:.2f} s, with --workers {w} "
              f"{walls[1]:.2f} s (cluster start-up included): {walls[0] / walls[1]:.2f}x", flush=True)


@dataclass
class Row:
    run: str
    workers: int
    events: int
    wall: float
    busiest: float           # CPU s of the busiest worker (serial: the process's)
    workers_cpu: float       # CPU s of all workers together
    main_cpu: float          # CPU s of this process: the client, the scheduler and the nannies
    rss_kb: list             # each worker's peak RSS during the run
    identical: bool
    start: float             # s to start the cluster and import on the workers (not in wall)


def on_workers(parallel, w: int, runs: dict, base: dict) -> list:
    """Each run on a fresh LocalCluster of ``w`` workers, started and warmed up outside the timing."""
    rows = []
    t0 = time.perf_counter()
    with parallel.Executor(workers=w) as ex:
        # imports on the workers out of the timing, as in the serial child
        ex.client.run(_warm)
        start = time.perf_counter() - t0
        for name, paths in runs.items():
            ex.client.run(_reset_peak)
            c0, m0 = ex.client.run(time.process_time), time.process_time()
            t1 = time.perf_counter()
            rs = parallel.replay(paths, ex)
            wall = time.perf_counter() - t1
            c1, m1 = ex.client.run(time.process_time), time.process_time()
            cpu = [c1[k] - c0[k] for k in sorted(c1)]
            rss = [v for _, v in sorted(ex.client.run(_peak_rss_kb).items())]
            print(f"  {name} on {w} workers: worker CPU s " + ", ".join(f"{c:.2f}" for c in cpu)
                  + f"; this process {m1 - m0:.2f}; worker peak RSS MB "
                  + ", ".join(f"{r / 1024:.1f}" for r in rss), flush=True)
            same = [r.to_json() for r in rs] == base[name]["results"]
            rows.append(Row(name, w, sum(r.events for r in rs), wall, max(cpu), sum(cpu), m1 - m0,
                            rss, same, start))
    return rows


def print_rows(rows: list, base: dict) -> None:
    # speed-up: serial wall / parallel wall.  cpu ratio: serial CPU / the busiest worker's CPU,
    # the speed-up the split allows with a free core per worker (robust to other load).
    # overhead: all CPU of the parallel run (workers and this process) over the serial CPU.
    print(f"{'run':>7} {'workers':>7} {'events':>11} {'wall s':>7} {'events/s':>11} "
          f"{'speed-up':>8} {'busiest cpu s':>13} {'cpu ratio':>9} {'overhead':>8} "
          f"{'main cpu s':>10} {'peak RSS MB/worker':>18} {'identical':>9} {'cluster start s':>15}")
    for r in rows:
        b = base[r.run]
        print(f"{r.run:>7} {r.workers:>7} {r.events:>11,} {r.wall:>7.2f} {r.events / r.wall:>11,.0f} "
              f"{b['wall'] / r.wall:>7.2f}x {r.busiest:>13.2f} {b['cpu'] / r.busiest:>8.2f}x "
              f"{(r.workers_cpu + r.main_cpu) / b['cpu']:>7.2f}x {r.main_cpu:>10.2f} "
              f"{max(r.rss_kb) / 1024:>18.1f} {str(r.identical):>9} {r.start:>15.2f}")
    for r in rows:
        if r.workers > 1:
            b = base[r.run]
            print(f"speed-up {r.run} on {r.workers} workers: {b['wall'] / r.wall:.2f}x by wall time, "
                  f"{b['cpu'] / r.busiest:.2f}x by the busiest worker's CPU time"
                  f"{'' if r.identical else '  RESULTS DIFFER FROM SERIAL'}")
    print("(wall times exclude starting the cluster: 'cluster start s')")


def _warm() -> None:
    import emulator.decode, emulator.replay.parallel, firmware_model.devices, firmware_model.machine  # noqa: F401,E401


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
