"""zpci-emu capture: recorder pipeline end to end (bare metal), parts, bundled traces.

The full Linux capture downloads the Debian kernel (~31 MB) and runs QEMU for
about 20 s per workload; it is marked ``linux_capture`` and skipped unless
ZPCI_LINUX_CAPTURE=1:

    ZPCI_LINUX_CAPTURE=1 .venv/bin/python -m pytest -q -m linux_capture tests/test_capture.py
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _helpers import run_cli
from conftest import needs_qemu
from emulator.capture import initramfs, runner, sites, workloads
from emulator.capture.linux import crosscheck
from emulator.errors import UserError
from firmware_model.insns import encode

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "traces" / "guests" / "build" / "probe.elf"
LINUX_TRACES = sorted((ROOT / "traces" / "linux").glob("*.zpt"))
GDB = shutil.which("gdb-multiarch")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb-multiarch not installed (apt-get install gdb-multiarch)")


# -- parts ---------------------------------------------------------------------------

def test_sweep_restarts_at_symbols():
    # A 6-byte-length opcode byte (0xc0) of data right before a function makes a
    # linear sweep swallow the first 4 bytes of the next instruction stream.
    pcilg = encode("PCILG", r1=1, r2=2)
    data = b"\xc0\x00" + pcilg + b"\x07\x07"
    without = sites.scan_regions([(0x1000, data)])
    with_sym = sites.scan_regions([(0x1000, data)], [(0x1002, "f")])
    assert [s.addr for s in without] == []
    assert [(s.addr, s.mnemonic, s.r1, s.r2, s.func) for s in with_sym] == [(0x1002, "PCILG", 1, 2, "f+0x0")]


def test_cpio_is_readable_by_cpio(tmp_path):
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed (apt-get install cpio)")
    c = initramfs.Cpio()
    c.dir("bin")
    c.file("bin/hello", b"hi there\n", 0o755)
    c.symlink("bin/sh", "hello")
    c.chardev("console", 5, 1)
    raw = c.bytes()
    p = subprocess.run(["cpio", "-it", "--quiet"], input=raw, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["bin", "bin/hello", "bin/sh", "console"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=raw, cwd=out, check=True)
    assert (out / "bin/hello").read_bytes() == b"hi there\n"
    assert os.readlink(out / "bin/sh") == "hello"


@pytest.mark.parametrize("args", [
    ["-netdev", "user,id=u0"],
    ["-netdev", "user,id=u0,restrict=on,hostfwd=tcp::2222-:22"],
    ["-netdev", "tap,id=t0"],
    ["-nic", "user"],
])
def test_network_refused(args):
    with pytest.raises(UserError):
        runner.check_network_safe(args)


def test_workloads_are_network_safe_and_marked():
    for w in workloads.WORKLOADS.values():
        runner.check_network_safe(w.qemu_devices("/tmp/img"))
        script = workloads.init_script(w, ["a.ko"])
        for i, phase in enumerate(workloads.PHASES):
            assert f"mark {i} {phase}" in script
        for fn in w.functions:
            assert f"ZPCI-STATS-BEGIN {fn}" in script
        assert script.rstrip().endswith("poweroff -f")


def test_native_only_workload_is_refused_by_the_gdb_capture(tmp_path):
    """blk-large's million zPCI instructions would take hours under gdb: one line, exit 1."""
    assert workloads.WORKLOADS["blk-large"].native_only
    p = run_cli("capture", "--workload", "blk-large", "-o", tmp_path / "x.zpt", timeout=60)
    assert p.returncode == 1
    assert p.stderr.startswith("zpci-emu: ") and p.stderr.count("\n") == 1
    assert "natively" in p.stderr
    assert not (tmp_path / "x.zpt").exists()


def test_parse_stats():
    lines = ["noise", "ZPCI-STATS-BEGIN 0001:00:00.0", "Update interval: 4000 ms",
             "           Load operations:\t12", "    Store block operations:\t0",
             "ZPCI-STATS-END 0001:00:00.0", "Load operations: 99"]
    assert workloads.parse_stats(lines) == {
        "0001:00:00.0": {"Update interval": 4000, "Load operations": 12, "Store block operations": 0}}


def _ev(insn, fh, cc=0, oc=None, fmb=None):
    gr = ["0"] * 16
    ops = {"r1": 1, "r2": 2}
    mb = None
    if insn in ("PCILG", "PCISTG"):
        gr[2] = "%x" % (fh << 32 | 0x40004)
    else:
        gr[1] = "%x" % (fh << 32 | (oc or 0))
    if insn == "MPCIFC":
        mb = (b"\0" * 64 + fmb.to_bytes(8, "big") + b"\0" * 8).hex()
    return {"insn": insn, "cc": cc, "gr_before": gr, "operands": ops, "mem_before": mb}


def test_crosscheck_window_and_function():
    fh, other = 0x80020000, 0x80020001
    recs = [_ev("PCILG", fh), {"kind": "mark", "label": "stats-reset"},
            _ev("MPCIFC", fh, oc=0xA, fmb=0), _ev("MPCIFC", fh, oc=0xA, fmb=0x1000),
            {"kind": "mark", "label": "workload"},
            _ev("PCILG", fh), _ev("PCILG", fh, cc=3), _ev("PCISTG", fh), _ev("PCILG", other),
            _ev("RPCIT", fh), {"kind": "mark", "label": "stats-read"}, _ev("PCILG", fh)]
    guest = {"Load operations": 1, "Store operations": 1, "Store block operations": 0,
             "Refresh operations": 1}
    rows = crosscheck(recs, {"f": guest}, ["f"])
    assert rows[0]["ok"], rows
    rows = crosscheck(recs, {"f": dict(guest, **{"Load operations": 2})}, ["f"])
    assert not rows[0]["ok"]
    assert rows[0]["counters"]["Load operations"] == {"trace": 1, "guest": 2}


def _kallsyms_image(symbols, base):
    """A kernel-image fragment laid out like 6.1's kallsyms tables (see kernel.py)."""
    import struct
    def al(b):
        return b + b"\0" * (-len(b) % 8)
    toks = [b"_s", b"te", b"xt"] + [bytes([c]) for c in b"0123456789"] + \
        [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyzTtDd_"]
    toks += [b"z%d" % i for i in range(256 - len(toks))]
    index = {t: i for i, t in enumerate(toks)}

    def enc(s):
        out, i = [], 0
        while i < len(s):
            for n in (2, 1):
                if s[i:i + n] in index:
                    out.append(index[s[i:i + n]])
                    i += n
                    break
        return bytes(out)
    names = b"".join(bytes([len(e)]) + e for e in (enc(t.encode() + n.encode()) for a, t, n in symbols))
    table = b"".join(t + b"\0" for t in toks)
    idx, o = [], 0
    for t in toks:
        idx.append(o)
        o += len(t) + 1
    n = len(symbols)
    blob = al(b"".join(struct.pack(">I", a - base) for a, _, _ in symbols))
    blob += struct.pack(">Q", 0) + al(struct.pack(">I", n)) + al(names)
    blob += al(struct.pack(">I", 0)) + al(b"\0" * 3 * n) + al(table) + struct.pack(">256H", *idx)
    return b"\x07\x07" * 64 + blob + b"\0" * 64


def test_kallsyms_decoded_from_image():
    from emulator.capture import kernel
    base = 0x100000
    syms = [(base, "T", "_stext"), (base + 0x40, "t", "do_it"), (base + 0x80, "T", "_etext")]
    syms += [(base + 0x100 + 8 * i, "d", "v%d" % i) for i in range(1000)]
    got = kernel.kallsyms(_kallsyms_image(syms, base), base)
    assert [(s.addr, s.type, s.name) for s in got] == syms
    assert kernel.text_ranges(got) == [(base, base + 0x80)]


def test_bad_vmlinuz_is_a_user_error():
    from emulator.capture.kernel import extract_image
    with pytest.raises(UserError):
        extract_image(b"not a kernel" * 100)


def test_kernel_without_zpci_is_refused():
    from emulator.capture.linux import check_config
    good = "CONFIG_PCI=y\nCONFIG_S390_IOMMU=y\nCONFIG_DEBUG_FS=y\nCONFIG_KALLSYMS=y\n"
    check_config(good, "x")
    with pytest.raises(UserError, match="CONFIG_PCI=y"):
        check_config(good.replace("CONFIG_PCI=y", "# CONFIG_PCI is not set"), "x")


@pytest.fixture
def unreachable_apt(tmp_path, monkeypatch):
    """A PrivateApt whose archive cannot be reached."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not available")
    from emulator.capture import apt
    if not apt.KEYRING.exists():
        pytest.skip("debian-archive-keyring not installed")
    # a mirror nobody listens on stands for "no network to the archive"
    monkeypatch.setattr(apt, "MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setattr(apt, "SECURITY", "http://127.0.0.1:9/debian-security")
    return apt.PrivateApt(tmp_path / "apt")


def test_no_archive_is_a_user_error(unreachable_apt):
    with pytest.raises(UserError, match="deb.debian.org"):
        unreachable_apt.update(force=True)


def test_no_archive_uses_an_earlier_download(unreachable_apt):
    from emulator.capture import apt
    a = unreachable_apt
    a.ensure_setup()
    old = a.debs / "busybox-static_1%3a1.0-1_s390x.deb"
    old.write_bytes(b"x")
    assert a.download("busybox-static") == old
    assert apt.deb_version(old) == "1:1.0-1"
    with pytest.raises(UserError, match="deb.debian.org"):
        a.download("linux-image-none")


def test_missing_tool_is_one_line(monkeypatch, capsys):
    from emulator import cli
    monkeypatch.setenv("PATH", "/nonexistent")
    rc = cli.main(["capture", "--elf", str(PROBE), "-o", os.devnull])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.count("\n") == 1 and "apt-get install" in err and "Traceback" not in err


def test_recorder_jsonl_cut_short_is_one_line(tmp_path):
    """A recorder killed mid-line leaves a partial record: a UserError naming
    the file, line and offset (was a JSONDecodeError traceback)."""
    from emulator.capture.linux import finalize
    good = json.dumps({"kind": "fmb_stats", "function": 1, "counters": {}}) + "\n"
    p = tmp_path / "cut.jsonl"
    p.write_text(good + '{"kind": "capture_info", "work\n')
    for action in (lambda: list(runner.read_jsonl(p)), lambda: finalize(p, tmp_path / "o.zpt")):
        with pytest.raises(UserError) as ei:
            action()
        msg = str(ei.value)
        assert "\n" not in msg and str(p) in msg and "line 2" in msg and f"offset {len(good)}" in msg


@pytest.mark.parametrize("info", [
    {"kind": "capture_info", "workload": "rng"},
    {"kind": "capture_info", "workload": "no-such", "qemu_args": "", "kernel_package": "k",
     "kernel_version": "v", "qemu": "q", "seconds": 1},
])
def test_incomplete_capture_info_is_one_line(tmp_path, info):
    """A capture_info record without its keys, or naming an unknown workload,
    is a UserError naming the file (was a KeyError traceback)."""
    from emulator.capture.linux import finalize
    p = tmp_path / "info.jsonl"
    p.write_text(json.dumps(info) + "\n")
    with pytest.raises(UserError) as ei:
        finalize(p, tmp_path / "o.zpt")
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg and ("lacks" in msg or "unknown workload" in msg)


# -- the pipeline end to end, on a bare-metal guest (seconds) --------------------------

@needs_qemu
@needs_gdb
def test_capture_baremetal_end_to_end(tmp_path):
    assert PROBE.is_file(), f"{PROBE} missing: the guests' ELFs are committed (make guests)"
    from emulator.capture import baremetal
    from emulator.trace.reader import TraceReader

    out = tmp_path / "probe.zpt"
    ticks = []
    res = baremetal.capture(PROBE, out, jsonl=tmp_path / "probe.jsonl", log=lambda m: None,
                            progress=lambda *a: ticks.append(a))
    assert ticks and ticks[-1] == (None, 0, "")       # the progress line is ended
    recs = [json.loads(l) for l in open(tmp_path / "probe.jsonl")]
    evs = [r for r in recs if "insn" in r]
    assert res["events"] == len(evs) > 0
    site_addrs = {s.addr for s in sites.scan_elf(PROBE)}
    for e in evs:
        assert int(e["addr"], 16) in site_addrs
        ilen = len(e["bytes"]) // 2
        # the step executed the instruction: next address, or a recorded interruption
        assert int(e["pswa_after"], 16) == int(e["addr"], 16) + ilen or "pgm" in e, e["seq"]
    # the guest's console reports each CLP LIST result; the trace's CLP LIST
    # events hold the same response code in the recorded response block
    console = res["console"]
    list_line = next(l for l in console if l.startswith("R CLP_LIST "))
    want_cc = int(list_line.split("cc=")[1].split()[0], 16)
    want_rsp = int(list_line.split("val=")[1], 16)
    lists = [e for e in evs if e["insn"] == "CLP" and e["mem_after"]
             and bytes.fromhex(e["mem_after"])[2:4] == b"\x00\x02"]
    assert lists
    first = bytes.fromhex(lists[0]["mem_after"])
    req = int.from_bytes(first[0:2], "big")
    assert (lists[0]["cc"], int.from_bytes(first[req + 2:req + 4], "big")) == (want_cc, want_rsp)
    # RPCITs after an IOAT registration carry the DMA table entries they walked
    assert any(e.get("dma_tables") for e in evs if e["insn"] == "RPCIT")
    # the trace holds the same events
    with TraceReader(out) as r:
        got = [ev for ev in r if type(ev).__name__ == "Event"]
    assert [g.addr for g in got] == [int(e["addr"], 16) for e in evs]
    assert [g.cc for g in got] == [e["cc"] for e in evs]


def test_capture_baremetal_native_engine(tmp_path):
    """``capture --elf --engine native``: the guest under zpci-emu boot with the
    QEMU capture's devices; the trace is boot --trace's and replays exactly."""
    out = tmp_path / "probe.zpt"
    p = run_cli("capture", "--elf", PROBE, "--engine", "native", "-o", out)
    assert p.returncode == 0, p.stderr
    from emulator.trace.text import stats
    st = stats(out)
    assert st["source"] == "boot" and st["stream"] == "full" and st["events"] > 0
    assert f"{st['events']} zPCI events" in p.stdout
    p = run_cli("replay", "--check", "--json", out)
    chk = json.loads(p.stdout)[0]["check"]
    assert chk["mismatched"] == 0 and chk["checked"] == chk["passed"] == st["events"], chk


def test_progress_reports_records_as_they_are_written(tmp_path):
    import threading
    import time
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("")
    console = [(0.0, "booting")]
    stop = threading.Event()
    seen = []
    t = threading.Thread(target=runner.watch, args=(stop, lambda *a: seen.append(a),
                                                    time.time(), jsonl, console, 0.02))
    t.start()
    for i in range(3):
        with open(jsonl, "a") as f:
            f.write('{"insn": "PCILG"}\n' * 5)
        console.append((0.0, f"line {i}"))
        time.sleep(0.15)
    stop.set()
    t.join()
    records = [r for _, r, _ in seen]
    assert records == sorted(records) and records[-1] == 15
    assert seen[-1][2] == "line 2" and all(s >= 0 for s, _, _ in seen)


def test_progress_line_only_on_a_terminal():
    import io
    from emulator.cli.capture import terminal_progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert terminal_progress(io.StringIO()) is None
    tty = Tty()
    show = terminal_progress(tty)
    show(12.4, 7, "Run /init as init process")
    show(None, 0, "")
    assert tty.getvalue() == "\r\x1b[Krecording:   12 s, 7 records | Run /init as init process\r\x1b[K"


# -- bundled Linux traces ----------------------------------------------------------------

@pytest.mark.skipif(not LINUX_TRACES, reason="no bundled traces under traces/linux/")
@pytest.mark.parametrize("trace", LINUX_TRACES, ids=lambda p: p.name)
def test_bundled_linux_trace_replays_without_mismatch(trace):
    p = run_cli("replay", "--check", "--json", trace)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert res and all(not r.get("mismatches") for r in res), \
        [m for r in res for m in r.get("mismatches", [])][:5]
    for r in res:
        chk = r["check"]
        assert chk["mismatched"] == 0 and chk["checked"] == chk["passed"] > 0, chk


# -- the real thing (slow, downloads) ----------------------------------------------------

@pytest.mark.linux_capture
@pytest.mark.skipif(os.environ.get("ZPCI_LINUX_CAPTURE") != "1",
                    reason="full Linux capture downloads ~31 MB and boots Linux: set ZPCI_LINUX_CAPTURE=1")
@needs_qemu
@needs_gdb
@pytest.mark.parametrize("workload", ["rng", "blk-strict"])
def test_linux_capture_matches_guest_counters(tmp_path, workload):
    from emulator.capture import linux
    res = linux.capture(workload, tmp_path / "t.zpt", log=lambda m: None)
    assert res["marks"] == workloads.PHASES
    assert res["events"] > 0
    assert res["crosscheck"] and all(r["ok"] for r in res["crosscheck"]), res["crosscheck"]


@pytest.mark.linux_capture
@pytest.mark.skipif(os.environ.get("ZPCI_LINUX_CAPTURE") != "1",
                    reason="downloads the Debian kernel package (~31 MB): set ZPCI_LINUX_CAPTURE=1")
def test_kernel_sites_without_debug_package():
    from emulator.capture import linux
    kb = linux.prepare_kernel()
    by = {}
    for s in kb.sites:
        by.setdefault(s.mnemonic, []).append(s)
        assert encode(s.mnemonic, r1=s.r1, r2=s.r2, r3=s.r3, m3=s.m3, m4=s.m4, x2=s.x2, b2=s.b2,
                      d2=s.d2).hex() == s.bytes
    # the classic forms Linux 6.1 uses are all found, each inside its accessor
    assert {"CLP", "PCILG", "PCISTG", "RPCIT", "MPCIFC", "SIC", "PCISTB"} <= set(by)
    assert "STPCIFC" not in by
    assert [s.func.split("+")[0] for s in by["PCILG"]] == ["__zpci_load"]
    assert [s.func.split("+")[0] for s in by["RPCIT"]] == ["zpci_refresh_trans"]
