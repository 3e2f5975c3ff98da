"""Replay on Dask workers (emulator/replay/parallel.py) and the seek index it splits traces by.

One small LocalCluster (2 single-threaded worker processes) serves the whole
module.  Every parallel result is compared with the serial replay's, whole
result dicts included.
"""
import dataclasses
import json
import os
import struct
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from _helpers import ROOT, run_cli
from emulator.errors import UserError
from emulator.replay import parallel, replay
from emulator.trace.format import SourceKind, StreamKind
from emulator.trace.reader import read_all
from emulator.trace.seekindex import index_trace, read_index
from emulator.trace.writer import TraceWriter
from test_replay_scenario import record_scenario

sys.path.insert(0, str(ROOT))
from benchmarks.corpus import (  # noqa: E402
    build, build_indexed, event_count, event_mix, make_corpus, sources)

# the worker-killing task below travels by value: workers need not import this module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

POLICIES = ("intercept-all", "linux-6.0", "ioat-assist", "firmware-rpcit")


@pytest.fixture(scope="module")
def ex():
    with parallel.Executor(workers=2) as e:
        yield e


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six small traces of the bundled workloads and one of 60k events in ~10 frames."""
    d = tmp_path_factory.mktemp("corpus")
    many, big = make_corpus(d, seed=7, traces=6, events=(400, 1500), large=60000, every=400 << 10)
    return many, big


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Twelve enable..disable sessions of the replay scenario as a capture (devices not
    live), indexed in small frames: --check passes on every event serially."""
    d = tmp_path_factory.mktemp("sessions")
    record_scenario(d / "one.zpt", rounds=40, stream=StreamKind.ZPCI_ONLY)
    hdr, mix, offs = event_mix(d / "one.zpt")
    hdr = dataclasses.replace(hdr, source=SourceKind.CAPTURE)
    seq = 0
    with TraceWriter(d / "plain.zpt", hdr, compress=False) as w:
        for _ in range(12):
            first = seq
            for o in offs:
                struct.pack_into("<Q", mix, o, seq)
                seq += 1
            w.append_event_records(bytes(mix), len(offs), first, seq - 1)
    index_trace(d / "plain.zpt", d / "sessions.zpt", every=16 << 10)
    return d / "sessions.zpt"


def _dicts(results):
    return [r.to_json() for r in results]


def _serial(paths, **kw):
    seen = []
    res = replay(paths, on_mismatch=seen.append, progress=False, **kw)
    return res, seen


def _parallel(paths, ex, **kw):
    seen = []
    res = parallel.replay(paths, ex, on_mismatch=seen.append, min_chunk=1, **kw)
    return res, seen


# --------------------------------------------------------------------------- the seek index

def _records(path):
    """Every record after the header as (type, payload), framing checked, END included."""
    from emulator.trace.reader import TraceReader
    with TraceReader(path) as rd:
        return [(t, bytes(buf[s:s + n])) for t, buf, s, n, _ in rd.body()]


def test_index_keeps_every_record_and_old_readers_read_it(corpus, tmp_path):
    _, big = corpus
    plain = tmp_path / "plain.zpt"
    build(max(sources(), key=event_count), plain, 60000, compress=False)
    again = tmp_path / "again.zpt"
    ix = index_trace(plain, again, every=256 << 10)
    recs = _records(plain)
    assert _records(again) == _records(big) == recs            # reader ignores the index
    assert read_all(again)[0] == read_all(plain)[0]
    assert read_index(plain) is None                           # uncompressed: no index
    assert read_index(again) == ix and len(ix.points) >= 3
    assert ix.events == sum(1 for t, _ in recs if t == 4)
    assert all(p.events < q.events for p, q in zip(ix.points, ix.points[1:]))
    from emulator.trace.format import insn_of
    mnems = [insn_of(p[32:38]).mnemonic for t, p in recs if t == 4]
    assert [c[1] for c in ix.configs()] == [p for (t, p), m in zip(
        [r for r in recs if r[0] == 4], mnems) if m in ("CLP", "MPCIFC")]


def _payload(ev):
    from emulator.trace.format import encode_event
    return encode_event(ev.seq, ev.addr, ev.insn, ev.flags, ev.pswm_before, ev.pswm_after, ev.cc,
                        ev.pgm, ev.regs_in, ev.regs_out, ev.reads, ev.writes)


def test_bad_index_is_one_line(corpus, tmp_path):
    _, big = corpus
    data = bytearray(big.read_bytes())
    bad = tmp_path / "bad.zpt"
    ix = read_index(big)
    split = parallel.plan([big], 2, False, 1)[0][1].start
    # the split's seek point moved off its frame's first record
    from emulator.trace.seekindex import POINT, SKIPPABLE, INDEX_HEAD, TRAILER
    size = struct.unpack_from("<Q", data, len(data) - TRAILER.size)[0]
    p0 = len(data) - size + SKIPPABLE.size + INDEX_HEAD.size + split * POINT.size
    struct.pack_into("<Q", data, p0 + 8, ix.points[split].stream_offset + 5)
    bad.write_bytes(bytes(data))
    assert read_index(bad).points[split].stream_offset == ix.points[split].stream_offset + 5
    tasks = parallel.plan([bad], 2, False, 1)[0]
    assert [t.start for t in tasks] == [None, split]
    # the first chunk stops inside a record: the run fails in one line
    errors = [parallel.run_task(t, POLICIES, "passthrough", False, True).error for t in tasks]
    assert errors[0] is not None and "\n" not in errors[0][0] and str(bad) in errors[0][0]
    assert "record" in errors[0][0]
    # a corrupt index frame
    data = bytearray(big.read_bytes())
    data[len(data) - size + SKIPPABLE.size + 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match="bad seek index"):
        read_index(bad)


def test_split_points_balance_the_rebuild(corpus):
    _, big = corpus
    ix = read_index(big)
    two = parallel.split_points(ix, 2, 0)
    assert len(two) == 1
    # without a rebuild cost the chunks hold about half the events each
    assert abs(ix.points[two[0]].events - ix.events / 2) <= max(
        q.events - p.events for p, q in zip(ix.points, ix.points[1:]))
    # a costly rebuild moves the split later: the second chunk gets fewer events
    heavy = parallel.split_points(ix, 2, 10 ** 6)
    assert heavy == [] or heavy[0] >= two[0]
    assert len(parallel.split_points(ix, 3, 0)) == 2
    assert parallel.split_points(ix, 1, 0) == []
    # by default a chunk holds at least MIN_CHUNK_EVENTS: this trace stays whole
    assert ix.events < parallel.MIN_CHUNK_EVENTS and len(parallel.plan([big], 2, False)[0]) == 1


def test_cost_counts_the_bytes_an_event_carries(tmp_path):
    """Two traces of equal counts: the one whose events carry guest memory (a boot
    workload's live devices) starts first."""
    by_name = {p.stem: p for p in sources()}
    heavy, light = tmp_path / "doorbell.zpt", tmp_path / "blk.zpt"
    build_indexed(by_name["wl_doorbell"], heavy, 6000)
    build_indexed(by_name["blk-strict"], light, 6000)
    (h,), (lt,) = parallel.plan([heavy, light], 2, False)
    ih, il = read_index(heavy), read_index(light)
    assert ih.events == il.events and heavy.stat().st_size > 2 * light.stat().st_size
    # the doorbell trace has fewer configuration events, yet costs more
    assert ih.nconfigs * parallel.CONFIG_WEIGHT < il.nconfigs * parallel.CONFIG_WEIGHT + ih.events
    assert h.cost > lt.cost


# --------------------------------------------------------------------------- the workers' process

def _replay_faults(task):
    """Minor page faults of one replay of ``task`` in this thread (after a warm-up run)."""
    import resource
    parallel.run_task(task, POLICIES, "passthrough", False, True)
    f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    parallel.run_task(task, POLICIES, "passthrough", False, True)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0


def test_workers_allocate_as_a_plain_process(ex, corpus):
    """Dask's default MALLOC_TRIM_THRESHOLD_ made a worker map and unmap each read
    buffer afresh (~9x the page faults of this process on this trace); with the
    Executor's settings a worker faults no more than a plain process does."""
    _, big = corpus
    task = parallel.Task(str(big))
    here = _replay_faults(task)
    there = ex.client.submit(_replay_faults, task, pure=False).result()
    assert there <= 2 * here + 500, (there, here)


def test_workers_run_without_the_housekeeping(ex):
    """The settings reach the spawned workers: no profiler, slow health ticks."""
    import dask
    got = ex.client.run(lambda: (dask.config.get("distributed.worker.profile.enabled"),
                                 dask.config.get("distributed.admin.tick.interval")))
    assert len(got) == 2 and set(got.values()) == {(False, "1s")}


# --------------------------------------------------------------------------- equality with serial

@pytest.mark.parametrize("policy", [None, *POLICIES])
def test_corpus_and_split_trace_equal_serial(ex, corpus, policy):
    many, big = corpus
    paths = [*many, big]
    pol = None if policy is None else [policy]
    plans = parallel.plan(paths, ex.nthreads, False, 1)
    assert [len(t) for t in plans[:-1]] == [1] * len(many) and len(plans[-1]) == 2
    costs = [t.cost for tasks in plans for t in tasks]
    assert all(c > 0 for c in costs) and len(set(costs)) > 1      # the longest start first
    (ser, _), (par, _) = _serial(paths, policies=pol), _parallel(paths, ex, policies=pol)
    assert _dicts(par) == _dicts(ser)


def test_chunks_in_process_equal_serial_for_any_number(corpus):
    """The merge, without Dask: 1..5 chunks give the serial result dict."""
    _, big = corpus
    (ser,), _ = _serial([big])
    for parts in range(1, 6):
        tasks = parallel.plan([big], parts, False, 1)[0]
        assert len(tasks) == min(parts, len(read_index(big).points) + 1)
        done = [parallel.run_task(t, POLICIES, "passthrough", False, True) for t in tasks]
        assert parallel.merge(done).result.to_json() == ser.to_json()


def test_check_on_whole_traces_equals_serial(ex, corpus):
    many, _ = corpus
    few = many[:3]
    (ser, ms), (par, mp) = _serial(few, check=True), _parallel(few, ex, check=True)
    assert _dicts(par) == _dicts(ser) and mp == ms
    assert sum(r.checked for r in ser) > 0


def test_check_across_chunks_never_passes_on_guessed_state(ex, sessions):
    (ser,), ms = _serial([sessions], check=True)
    assert ms == [] and ser.passed == ser.events           # every event reproduced serially
    assert len(parallel.plan([sessions], 3, True, 1)[0]) == 3
    done = [parallel.run_task(t, POLICIES, "passthrough", True, True)
            for t in parallel.plan([sessions], 3, True, 1)[0]]
    chunks = [d.result for d in done]
    assert chunks[0].unchecked == {}                        # the first chunk starts from the header
    for c in chunks[1:]:
        held = c.unchecked[parallel.HELD]
        assert 0 < held < c.events and c.passed == c.events - held   # held, then a disable releases
    (par,), mp = _parallel([sessions], ex, check=True)
    assert mp == []
    s, p = ser.to_json(), par.to_json()
    assert p["routes"] == s["routes"] and p["events"] == s["events"]
    held = p["check"]["unchecked"][parallel.HELD]
    assert p["check"]["passed"] + held == s["check"]["passed"] and p["check"]["mismatched"] == 0


def test_a_mismatch_after_a_split_is_reported_as_serially(ex, sessions, tmp_path):
    """A wrong recorded cc in the last chunk, after its release: both runs list it."""
    hdr, recs = read_all(sessions)
    evs = [r for r in recs if hasattr(r, "seq")]
    victim = next(e for e in reversed(evs) if e.mnemonic == "PCILG" and e.cc == 0)
    plain = tmp_path / "plain.zpt"
    with TraceWriter(plain, hdr, compress=False) as w:
        for e in evs:
            cc = 2 if e is victim else e.cc
            w.zpci_event_raw(_payload(dataclasses.replace(e, cc=cc)), e.seq)
    bad = tmp_path / "bad.zpt"
    index_trace(plain, bad, every=16 << 10)
    (ser,), ms = _serial([bad], check=True)
    (par,), mp = _parallel([bad], ex, check=True)
    assert ms and mp == ms and all(m.seq == victim.seq for m in ms)
    assert par.mismatched == ser.mismatched == 1


# --------------------------------------------------------------------------- failures

def _kill_first(task, marker, *args):
    """The task, except that the first attempt kills its worker process."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(17)
    return parallel.run_task(task, *args)


def _kill_always(task, *args):
    os._exit(17)


def test_a_worker_that_dies_is_retried_or_the_run_fails_in_one_line(ex, corpus, tmp_path):
    many, _ = corpus
    tasks = [parallel.Task(str(p)) for p in many[:2]]
    args = (POLICIES, "passthrough", False, True)
    got = ex.run(_kill_first, tasks, str(tmp_path / "died"), *args)
    (ser, _) = _serial(many[:2])
    assert _dicts([g.result for g in got]) == _dicts(ser)
    with pytest.raises(UserError) as err:
        ex.run(_kill_always, tasks, *args)
    assert "died" in str(err.value) and "\n" not in str(err.value)
    ex.client.wait_for_workers(2, timeout=30)           # the nannies restart them for the next test


def test_bad_trace_on_a_worker_is_its_one_line_error(ex, corpus, tmp_path):
    many, _ = corpus
    bad = tmp_path / "trunc.zpt"
    data = many[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        parallel.replay([many[1], bad], ex)
    with pytest.raises(UserError) as want:
        replay([bad], progress=False)
    assert str(err.value) == str(want.value)


# --------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("args", [["--workers", "0"], ["--workers=-1"], ["--workers", "abc"],
                                  ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]])
@pytest.mark.parametrize("cmd", ["replay", "report"])
def test_cli_bad_options_are_usage_errors(corpus, cmd, args):
    many, _ = corpus
    res = run_cli(cmd, *args, many[0], timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("zpci-emu: ")


def test_cli_unreachable_scheduler_fails_fast_in_one_line(corpus):
    many, _ = corpus
    t0 = time.monotonic()
    res = run_cli("replay", "--scheduler", "tcp://127.0.0.1:1", many[0], timeout=60)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "scheduler" in res.stderr
    assert time.monotonic() - t0 < 30


def test_cli_on_the_cluster_prints_what_serial_prints(ex, corpus, tmp_path):
    many, big = corpus
    ser = run_cli("replay", "--json", many[0], big)
    par = run_cli("replay", "--json", "--scheduler", ex.cluster.scheduler_address, many[0], big)
    assert ser.returncode == par.returncode == 0, par.stderr
    assert json.loads(par.stdout) == json.loads(ser.stdout)
    from emulator.report import CostModel, run_report
    want = run_report([str(many[0]), str(big)], None, CostModel(), printer=lambda s: None)
    par = run_cli("report", "--out", tmp_path, "--scheduler", ex.cluster.scheduler_address,
                  many[0], big)
    assert par.returncode == 0, par.stderr
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(want))


def test_cli_trace_index_writes_a_copy_that_splits(corpus, tmp_path):
    many, _ = corpus
    src = max(many, key=lambda p: p.stat().st_size)
    out = tmp_path / "ix.zpt"
    res = run_cli("trace", "index", src, "-o", out, "--frame-mib", "0.01")
    assert res.returncode == 0, res.stderr
    ix = read_index(out)
    assert ix is not None and len(ix.points) >= 2 and f"{len(ix.points)} seek points" in res.stdout
    assert _records(out) == _records(src)
    for bad in (["--frame-mib", "0"], ["-o", src]):
        res = run_cli("trace", "index", src, *(["-o", out] if "-o" not in bad else []), *bad)
        assert res.returncode == 2 and res.stderr.count("\n") == 1


def test_cli_workers_start_a_local_cluster(corpus):
    many, big = corpus
    ser = run_cli("replay", "--json", *many[:2], big)
    par = run_cli("replay", "--json", "--workers", "2", *many[:2], big)
    assert ser.returncode == par.returncode == 0, par.stderr
    assert json.loads(par.stdout) == json.loads(ser.stdout) and par.stderr == ""


def test_long_io_trace_configures_once_then_repeats_its_workload_phase(tmp_path):
    """corpus.build(phase=...): the recording once, then only that phase's events
    repeated: configuration events (CLP, MPCIFC) as many as in the source, the rest
    from its workload phase, sequence numbers fresh."""
    from collections import Counter
    src = max(sources(), key=event_count)
    out = tmp_path / "long.zpt"
    build_indexed(src, out, 30000, every=256 << 10, phase="workload")
    def counts(p):
        return Counter(r.mnemonic for r in read_all(p)[1] if hasattr(r, "regs_in"))
    have, orig = counts(out), counts(src)
    assert sum(have.values()) == 30000
    assert have["CLP"] == orig["CLP"] and have["MPCIFC"] == orig["MPCIFC"]
    assert have["RPCIT"] > 20 * orig["RPCIT"] // 10
    seqs = [r.seq for r in read_all(out)[1] if hasattr(r, "regs_in")]
    assert seqs == list(range(30000))
