"""Replay on several processes or a cluster with dask.distributed.

A run is split into tasks: one per trace, and for a long trace with a seek
index (emulator/trace/seekindex.py) one per chunk between seek points.  The
tasks run on Dask workers (a LocalCluster of single-threaded processes for
``--workers N``, or a running scheduler for ``--scheduler``) and their
results are merged in the order of the traces and of the chunks in each, so
counts, decisions and mismatches come out as the serial run gives them.

A chunk's machines start in the state the configuration events before it
leave them in: the worker rebuilds that from the copies in the index, never
reading the trace before its chunk.  Decisions depend only on that state
(epochs.py), so counts and routes are exact.  What ``--check`` needs besides
(IOTLB contents, measurement counters, device state) is not carried over:
the chunk's events count as unchecked ("state before a split point not
carried") until a CLP leaves every function disabled, which resets all of
it; a trace whose devices run live (boot, synthetic) stays unchecked to the
chunk's end.  No event is ever counted as passed on state the chunk guessed.

The rebuild is the split's one cost over the serial run: every configuration
event before the chunk through the full model, about 100 us under the four
policies.  On the 4 M-event trace of benchmarks/replay.py that is 5 % of the
serial CPU for the second of two chunks (the balance gives it fewer events),
so two workers reach at most 2/1.05 of the serial speed on it.  Shipping the
machines' state to a chunk instead would not help two workers: computed at
run time, the same prefix is replayed by someone before the second chunk can
start.  Only a state written into the index at ``trace index`` time would,
and that needs a declarative dump and restore of the machines (the trace is
untrusted input: no pickle); not done.

A task whose worker dies is retried on another worker, twice (the
scheduler's ``allowed-failures``); a third death stops the run with one
line.  Results are only merged when every task has finished, so partial
counts are never reported.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, field

from emulator.errors import UserError
from emulator.replay.epochs import EpochCache, decision_state
from emulator.replay.results import Mismatch, WorkloadResult
from emulator.replay.run import FileReplay, check_options
from emulator.trace.format import PREAMBLE, StreamKind
from emulator.trace.reader import TraceReader, parse_event
from emulator.trace.seekindex import SeekIndex, read_index

HELD = "state before a split point not carried"
CONNECT_TIMEOUT = 3            # seconds to reach a scheduler and see a worker
ALLOWED_FAILURES = 2           # worker deaths a task survives (retried elsewhere); one more fails the run
# A configuration event a chunk replays to rebuild its start state costs the
# full model under every policy: measured 100 us against 1.26 us for a cached
# event (the large trace of benchmarks/replay.py), so about 80 events; chunk
# sizes allow for it.
CONFIG_WEIGHT = 80
# A compressed byte of a chunk costs about a quarter of a cached event: events that
# carry guest memory (a boot trace's devices run live) parse more, and decide no
# slower.  Measured on the corpus of benchmarks/replay.py: a wl_doorbell trace
# took 20 us/event against 2 us for blk-strict at the same counts; with its bytes
# counted it no longer starts among the last (whose length is the run's tail).
BYTE_WEIGHT = 0.25
# A chunk holds at least this many events: a shorter trace is one task, since a
# split costs the chunk's rebuild and its machines, and the many traces of a
# corpus keep the workers busy by themselves.
MIN_CHUNK_EVENTS = 100_000


@dataclass(frozen=True)
class Task:
    path: str
    start: int | None = None     # seek point the chunk starts at (None: the trace's start)
    stop: int | None = None      # seek point it ends before (None: the END record)
    # estimated cost in cached-event units: the longest tasks start first, so that
    # no worker is left with a long one at the end (largest-first list scheduling)
    cost: float = 0.0


@dataclass
class TaskResult:
    result: WorkloadResult | None
    mismatches: list = field(default_factory=list)
    # (epoch, head kind bytes, handle bytes, PSW byte) of each event the decision
    # cache ran fully as the first of its key: chunks share epochs, the merge counts once
    first_keys: set = field(default_factory=set)
    error: tuple | None = None   # (message, exit code) of a UserError


# --------------------------------------------------------------------------- planning

def split_points(index: SeekIndex, parts: int, weight: int) -> list[int]:
    """Seek point numbers at which chunks start (besides the trace's start), so that
    no chunk costs much more than another: its events plus ``weight`` per configuration
    event before it (the replay that rebuilds its start state)."""
    pts = index.points
    if parts < 2 or not pts:
        return []
    cuts = [(p.events, p.configs) for p in pts]
    total = index.events

    def greedy(limit: float) -> list[int] | None:
        starts, es, cs = [], 0, 0
        for k, (e, c) in enumerate(cuts):
            nxt = cuts[k + 1][0] if k + 1 < len(cuts) else total
            if (nxt - es) + weight * cs > limit and e > es:
                starts.append(k)
                es, cs = e, c
                if len(starts) >= parts:
                    return None
        return starts if (total - es) + weight * cs <= limit else None

    lo, hi = total / parts, total + weight * index.nconfigs + 1.0
    best = greedy(hi) or []
    for _ in range(40):
        mid = (lo + hi) / 2
        got = greedy(mid)
        if got is None:
            lo = mid
        else:
            hi, best = mid, got
    return best


def plan(paths, parts: int, check: bool, min_chunk: int = MIN_CHUNK_EVENTS) -> list[list[Task]]:
    """The tasks of each trace, in order."""
    out = []
    weight = 1 if check else CONFIG_WEIGHT
    for p in paths:
        p = str(p)
        with TraceReader(p) as rd:
            splittable = rd.header.stream is StreamKind.ZPCI_ONLY and rd.compressed
        index = read_index(p) if parts > 1 and splittable else None
        if index is None:
            # no counts at hand: the file's size stands for the events (~100 bytes each
            # compressed 3 to 10 times; only the order of tasks depends on it)
            out.append([Task(p, cost=os.path.getsize(p) / 20)])
            continue
        starts = split_points(index, min(parts, index.events // max(1, min_chunk)), weight)
        cuts = [(0, 0), *((index.points[k].events, index.points[k].configs) for k in starts),
                (index.events, index.nconfigs)]
        bounds = [None, *starts, None]
        offs = [PREAMBLE.size, *(index.points[k].file_offset for k in starts), index.blob[0]]
        out.append([Task(p, a, b, cost=(e1 - e0) + weight * c1 + (f1 - f0) * BYTE_WEIGHT)
                    for a, b, (e0, _), (e1, c1), f0, f1 in zip(bounds, bounds[1:], cuts, cuts[1:],
                                                               offs, offs[1:])])
    return out


# --------------------------------------------------------------------------- one task

class _KeyedCache(EpochCache):
    """The decision cache, noting each epoch's first-of-key events with the epoch's
    number in the whole trace."""

    __slots__ = ("firsts",)

    def __init__(self, epoch0: int):
        super().__init__()
        self.epochs = epoch0
        self.firsts: list = []

    def first(self, key, decisions) -> None:
        super().first(key, decisions)
        self.firsts.append((self.epochs, key))


class ChunkReplay(FileReplay):
    """The replay of one task: a whole trace, or a chunk resumed at a seek point."""

    def __init__(self, task: Task, policies, assume, check, fast):
        self.mismatches: list[Mismatch] = []
        super().__init__(task.path, policies, assume, check, self.mismatches.append, False, fast)
        self.task = task
        epoch0 = 0
        if task.start is not None:
            index = read_index(task.path)
            if index is None or task.stop is not None and task.stop >= len(index.points) \
                    or task.start >= len(index.points):
                raise UserError("the seek index changed during the run", where=self.path)
            pt = index.points[task.start]
            epoch0 = self._rebuild(index.configs(pt.stream_offset))
            stop = None if task.stop is None else index.points[task.stop].stream_offset
            self.rd.resume_at(pt.file_offset, pt.stream_offset, pt.events, pt.last_seq, pt.marks,
                              stop)
            if check and not self._all_reset():
                self.held = HELD
        elif task.stop is not None:
            # the first chunk: from the first frame (the header's) to the next chunk's point
            index = read_index(task.path)
            if index is None or task.stop >= len(index.points):
                raise UserError("the seek index changed during the run", where=self.path)
            self.rd.resume_at(PREAMBLE.size, PREAMBLE.size, 0, -1, 0,
                              index.points[task.stop].stream_offset)
            next(self.rd.body())            # the header again
        self.cache = _KeyedCache(epoch0)
        self.new_cache = lambda: self.cache

    def _rebuild(self, configs) -> int:
        """Run the configuration events before the chunk; the number of epochs they made."""
        check, epochs = self.check, 0
        self.check = False
        try:
            state = decision_state(self.machines)
            for off, payload in configs:
                self.rd.last_seq = -1
                ev = parse_event(self.rd, payload, 0, len(payload), off)
                self.run_full(ev)
                # one state per event: the one after it is the next one's before
                before, state = state, decision_state(self.machines)
                epochs += state != before
        finally:
            self.check = check
        self.res.full_model_events = 0       # not this chunk's work: nothing else was counted
        return epochs

    def _all_reset(self) -> bool:
        """Every function disabled, so in its reset state (ZpciFunction.reset: no IOAT,
        IOTLB, interrupts or measurement), in every machine; devices that run live
        keep state of their own."""
        return not self.all_writes and not any(
            fn.enabled for m, *_ in self.machines for fn in m.bus.functions)

    def release(self, ev) -> bool:
        return ev.mnemonic == "CLP" and self._all_reset()

    def result(self) -> TaskResult:
        res = self.run()
        kinds = {spec.sid: head for head, spec in self.heads.specs.items()}
        keys = {(e, kinds.get(k[0], k[0]), bytes(k[1]), k[2]) for e, k in self.cache.firsts}
        return TaskResult(res, self.mismatches, keys)


def run_task(task: Task, policies, assume: str, check: bool, fast: bool) -> TaskResult:
    """One task on a worker; a bad trace comes back as its one-line error."""
    try:
        return ChunkReplay(task, policies, assume, check, fast).result()
    except UserError as exc:
        return TaskResult(None, error=(str(exc), exc.exit_code))


# --------------------------------------------------------------------------- merging

def merge(parts: list[TaskResult]) -> TaskResult:
    """One trace's result from its chunks' (in order), as one run over it gives."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0].result
    res = WorkloadResult(first.path, first.workload, first.source, first.stream, first.policies,
                         routes={p: {} for p in first.policies}, stand_ins=first.stand_ins,
                         instructions=first.instructions)
    keys: set = set()
    mismatches: list = []
    for part in parts:
        r = part.result
        res.events += r.events
        res.by_mnemonic.update(r.by_mnemonic)
        for p in res.policies:
            for mn, per in r.routes[p].items():
                mine = res.routes[p].setdefault(mn, {})
                for route, n in per.items():
                    mine[route] = mine.get(route, 0) + n
        res.block_execs += r.block_execs
        # an epoch's key that two chunks both ran first counts once, as in one run
        res.full_model_events += r.full_model_events - len(part.first_keys)
        keys |= part.first_keys
        res.checked += r.checked
        res.passed += r.passed
        res.mismatched += r.mismatched
        res.unchecked.update(r.unchecked)
        mismatches += part.mismatches
    res.full_model_events += len(keys)
    return TaskResult(res, mismatches, keys)


# --------------------------------------------------------------------------- the cluster

# Dask settings for the run (a scheduler started elsewhere keeps its own; README).
# On two cores every per cent the cluster spends on itself is taken from a replay.
DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    "distributed.comm.timeouts.connect": f"{CONNECT_TIMEOUT}s",
    # the statistical profiler samples the replay thread 100 times a second: a few
    # per cent of a worker's CPU for a dashboard nobody looks at here
    "distributed.worker.profile.enabled": False,
    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes
    # glibc's mmap threshold at 128 KiB: each 1 MiB read buffer of the trace reader is
    # then mapped and unmapped afresh (266,000 page faults and 0.6 s of system time for
    # 4 M events, measured; 117,000 and 0.3 s with glibc's defaults).  These
    # thresholds keep the buffers in the heap (2,600 faults, 0.01 s), the peak RSS
    # unchanged; a worker's environment still wins.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 64 << 20,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 16 << 20,
    # Housekeeping a replay needs none of: event-loop health ticks every 20 ms, system
    # and memory monitors, the active memory manager, the client's info refresh.  An
    # idle 2-worker cluster took 9 % of a core (5 % in this process, which holds the
    # scheduler and the nannies), 1 % with these (measured over 10 s).
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "10s",
    "distributed.admin.system-monitor.disk": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.active-memory-manager.start": False,
    "distributed.client.scheduler-info-interval": "10s",
}


class Executor:
    """A dask.distributed client: on a LocalCluster of ``workers`` single-threaded
    processes, or on the running scheduler at ``scheduler``."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        if (workers is None) == (scheduler is None):
            raise UserError("give either a number of workers or a scheduler address", exit_code=2)
        self.workers, self.scheduler = workers, scheduler
        self.cluster = self.client = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Executor":
        import dask
        from dask.distributed import Client, LocalCluster
        # the scheduler's and nanny's warnings (a restarted worker) are not the user's output
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        self._stack.enter_context(dask.config.set(DASK_CONFIG))
        try:
            if self.scheduler is not None:
                try:
                    self.client = Client(self.scheduler, timeout=CONNECT_TIMEOUT,
                                         set_as_default=False)
                except (OSError, TimeoutError, ValueError) as exc:
                    raise UserError(f"cannot reach the Dask scheduler: {exc}",
                                    where=f"--scheduler {self.scheduler}") from None
                self._stack.callback(self.client.close)
                try:
                    self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
                except (OSError, TimeoutError):
                    raise UserError(f"no worker joined the scheduler within {CONNECT_TIMEOUT} s",
                                    where=f"--scheduler {self.scheduler}") from None
            else:
                with warnings.catch_warnings():
                    # "Port 8787 is already in use": the scheduler's HTTP end point moves, fine
                    warnings.simplefilter("ignore", UserWarning)
                    try:
                        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                    processes=True, dashboard_address=None,
                                                    silence_logs=logging.CRITICAL)
                    except (OSError, RuntimeError, TimeoutError) as exc:
                        raise UserError(f"cannot start {self.workers} local Dask workers: {exc}",
                                        where="--workers") from None
                self._stack.callback(self.cluster.close)
                self.client = Client(self.cluster, set_as_default=False)
                self._stack.callback(self.client.close)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def nthreads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, fn, tasks: list, *args) -> list:
        """fn(task, *args) for every task, on the workers; the results in the tasks' order."""
        from distributed import KilledWorker
        futures = [self.client.submit(fn, t, *args, pure=False, priority=getattr(t, "cost", 0))
                   for t in tasks]
        try:
            return self.client.gather(futures)
        except KilledWorker:
            failed = [t.path for t, f in zip(tasks, futures) if f.status == "error"]
            raise UserError(f"workers died {ALLOWED_FAILURES + 1} times running "
                            f"{failed[0] if failed else 'a task'}; no result reported",
                            where="dask") from None
        finally:
            for f in futures:
                f.cancel()


def replay(paths, executor: Executor, policies=None, assume: str = "passthrough",
           check: bool = False, on_mismatch=None, fast: bool = True,
           min_chunk: int = MIN_CHUNK_EVENTS) -> list[WorkloadResult]:
    """``emulator.replay.replay`` on the executor's workers: the same results, in order."""
    policies = check_options(policies, assume)
    plans = plan(paths, executor.nthreads, check, min_chunk)
    flat = [t for tasks in plans for t in tasks]
    done = executor.run(run_task, flat, policies, assume, check, fast)
    for r in done:
        if r.error is not None:
            raise UserError(r.error[0], exit_code=r.error[1])
    out, i = [], 0
    for tasks in plans:
        merged = merge(done[i:i + len(tasks)])
        i += len(tasks)
        for m in merged.mismatches:
            (on_mismatch or print)(m)
        out.append(merged.result)
    return out
