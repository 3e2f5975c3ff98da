"""Every subcommand against every class of bad input, bad output path and bad usage.

Each case runs the real ``main`` (forked, see tests/_contract.py) in a folder
of its own and checks the whole contract: exit status, one line on stderr,
no traceback, no hang, bounded memory, and that the folder holds after a
failure exactly what it held before (no output, no temporary file).
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _badfiles import bad_jsonl, bad_traces, good_jsonl_line
from _contract import assert_contract, listing, run_cli_forked
from _helpers import ROOT
from emulator.errors import UserError, one_line, quote

PROBE_ELF = ROOT / "traces/guests/build/probe.elf"
PROBE_ZPT = ROOT / "traces/probe.zpt"
DEVICES = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]
LONG_NAME = "n" * 300                                 # above NAME_MAX (255)
LONG_PATH = "/".join(["p" * 200] * 25)                # above PATH_MAX (4096)


def _case_dir(tmp_path: Path) -> Path:
    d = tmp_path / "case"
    d.mkdir()
    (d / "a-file").write_bytes(b"x")
    (d / "a-folder").mkdir()
    os.mkfifo(d / "a-fifo")
    (d / "empty").write_bytes(b"")
    (d / "good.jsonl").write_text(good_jsonl_line() + "\n")
    shutil.copy(PROBE_ZPT, d / "good.zpt")
    return d


def _input(tmp_path: Path, name: str, data: bytes) -> Path:
    """An input file outside the case's folder (whose listing the case checks)."""
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)
    return d / name


def _check(tmp_path, argv, rc, unchanged=True, env=None):
    d = _case_dir(tmp_path)
    before = listing(d)
    run = run_cli_forked(argv, d, env={"XDG_CACHE_HOME": str(tmp_path / "cache"), **(env or {})})
    assert_contract(run, rc)
    if unchanged:
        assert listing(d) == before, "files left behind: " + run.why()
    return run, d


# --------------------------------------------------------------------------- inputs

# Inputs that are not a readable regular file: (name, path as given)
NOT_REGULAR = [
    ("fifo", "a-fifo"),
    ("char-device", "/dev/zero"),
    ("proc-size-lies", "/proc/self/status"),
    ("proc-pagemap", "/proc/self/pagemap"),
    ("directory", "a-folder"),
    ("missing", "no-such-file"),
    ("name-too-long", LONG_NAME),
    ("path-too-long", LONG_PATH),
    ("newline-in-name", "no\nsuch\rfile"),
    ("not-utf8-name", "no-such-\udcff-file"),
    ("file-in-the-way", "a-file/inside"),
]

# Every way a subcommand takes an input file; X stands for the input.
INPUT_USES = {
    "decode": ["decode", "X"],
    "decode-raw": ["decode", "--raw", "X"],
    "decode-elf": ["decode", "--elf", "X"],
    "boot-kernel": ["boot", "-kernel", "X", *DEVICES],
    "replay": ["replay", "X"],
    "trace-show": ["trace", "show", "X"],
    "trace-stats": ["trace", "stats", "X"],
    "report": ["report", "X"],
    "import": ["import", "X", "-o", "out.zpt"],
    "capture-elf": ["capture", "--elf", "X", "-o", "out.zpt"],
    "capture-elf-native": ["capture", "--elf", "X", "--engine", "native", "-o", "out.zpt"],
}


def _with(argv, x):
    return [x if a == "X" else a for a in argv]


@pytest.mark.parametrize("use", sorted(INPUT_USES))
@pytest.mark.parametrize("kind,path", NOT_REGULAR, ids=[k for k, _ in NOT_REGULAR])
def test_input_not_a_regular_file(tmp_path, use, kind, path):
    _check(tmp_path, _with(INPUT_USES[use], path), 1)


@pytest.mark.parametrize("kind,path", NOT_REGULAR, ids=[k for k, _ in NOT_REGULAR])
def test_drive_image_not_a_regular_file(tmp_path, kind, path):
    # -drive errors are usage errors, as the rest of the -drive/-device strings
    argv = ["boot", "-kernel", PROBE_ELF, *DEVICES, "-drive",
            f"file={path},if=none,id=d0,format=raw,readonly=on",
            "-device", "zpci,uid=2,fid=2,target=b0", "-device", "virtio-blk-pci,id=b0,drive=d0"]
    _check(tmp_path, argv, 2)


@pytest.mark.parametrize("name", sorted(bad_traces()))
@pytest.mark.parametrize("use", ["replay", "trace-show", "report"])
def test_bad_trace_file(tmp_path, name, use):
    _check(tmp_path, _with(INPUT_USES[use], _input(tmp_path, "bad.zpt", bad_traces()[name])), 1)


@pytest.mark.parametrize("name", sorted(bad_jsonl()))
@pytest.mark.parametrize("use", ["import", "report"])
def test_bad_jsonl_file(tmp_path, name, use):
    _check(tmp_path, _with(INPUT_USES[use], _input(tmp_path, "bad.jsonl", bad_jsonl()[name])), 1)


def test_compressed_code_section_is_refused(tmp_path):
    """An ELF whose .text says SHF_COMPRESSED: pyelftools would inflate it."""
    from elftools.elf.elffile import ELFFile
    raw = bytearray(PROBE_ELF.read_bytes())
    with open(PROBE_ELF, "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".text")
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 8        # sh_flags, ELF64
    flags = int.from_bytes(raw[at:at + 8], "big")
    raw[at:at + 8] = (flags | 0x800).to_bytes(8, "big")
    run, _ = _check(tmp_path, ["decode", _input(tmp_path, "z.elf", raw)], 1)
    assert "SHF_COMPRESSED" in run.stderr


# --------------------------------------------------------------------------- outputs

# Output paths that cannot be written: (name, path as given)
BAD_OUTPUTS = [
    ("missing-folder", "no-folder/out.x"),
    ("file-in-the-way", "a-file/out.x"),
    ("existing-folder", "a-folder"),
    ("dot", "."),
    ("dot-dot", ".."),
    ("trailing-slash", "new-folder/"),
    ("name-too-long", LONG_NAME),
    ("path-too-long", LONG_PATH),
    ("newline-in-missing-folder", "no\nfolder/out.x"),
    ("empty", ""),
]

OUTPUT_USES = {
    "import": ["import", "good.jsonl", "-o", "O"],
    "boot-stats": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--stats", "O"],
    "boot-trace": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--trace", "O"],
    "capture": ["capture", "--elf", PROBE_ELF, "-o", "O"],
    "capture-jsonl": ["capture", "--elf", PROBE_ELF, "-o", "o.zpt", "--jsonl", "O"],
    "capture-native": ["capture", "--elf", PROBE_ELF, "--engine", "native", "-o", "O"],
    "trace-index": ["trace", "index", "good.zpt", "-o", "O"],
}


@pytest.mark.parametrize("use", sorted(OUTPUT_USES))
@pytest.mark.parametrize("kind,path", BAD_OUTPUTS, ids=[k for k, _ in BAD_OUTPUTS])
def test_output_path_cannot_be_written(tmp_path, use, kind, path):
    argv = [path if a == "O" else a for a in OUTPUT_USES[use]]
    _check(tmp_path, argv, 1)


REPORT_BAD_OUT = [
    ("missing-parent", "no-folder/rep"),
    ("file-in-the-way", "a-file"),
    ("under-a-file", "a-file/rep"),
    ("name-too-long", LONG_NAME),
    ("newline-in-missing-parent", "no\nfolder/rep"),
    ("empty", ""),
]


@pytest.mark.parametrize("kind,path", REPORT_BAD_OUT, ids=[k for k, _ in REPORT_BAD_OUT])
def test_report_out_cannot_be_written(tmp_path, kind, path):
    _check(tmp_path, ["report", "good.zpt", "--out", path], 1)


def test_failed_import_leaves_nothing(tmp_path):
    bad = _input(tmp_path, "bad.jsonl", bad_jsonl()["bad-after-good"])
    _check(tmp_path, ["import", bad, "-o", "out.zpt"], 1)


@pytest.mark.parametrize("out", ["rep", "a-folder", "."])
def test_failed_report_leaves_nothing(tmp_path, out):
    bad = _input(tmp_path, "bad.zpt", bad_traces()["truncated-half"])
    _check(tmp_path, ["report", "good.zpt", bad, "--out", out], 1)


@pytest.mark.parametrize("extra,rc", [
    (["-device", "virtio-rng-pci,id=r1,vectors=nope"], 2),      # bad device: usage
    (["--policy", "nope"], 2),
    (["-kernel", "empty"], 1),                                   # not an ELF
], ids=["bad-device", "bad-policy", "empty-kernel"])
def test_failed_boot_leaves_no_stats_or_trace(tmp_path, extra, rc):
    _check(tmp_path, ["boot", "-kernel", PROBE_ELF, *DEVICES, *extra,
                      "--stats", "s.json", "--trace", "t.zpt"], rc)


def test_boot_writes_outputs_only_at_the_end(tmp_path):
    run, d = _check(tmp_path, ["boot", "-kernel", PROBE_ELF, *DEVICES,
                               "--stats", "s.json", "--trace", "t.zpt"], 0, unchanged=False)
    new = sorted(set(listing(d)) - {"a-file", "a-folder", "a-fifo", "empty", "good.jsonl",
                                     "good.zpt"})
    assert new == ["s.json", "t.zpt"], new          # no temporary file beside them
    assert (d / "s.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_output_to_a_device_is_written_in_place(tmp_path):
    _check(tmp_path, ["boot", "-kernel", PROBE_ELF, *DEVICES, "--stats", "/dev/null"], 0)


def test_one_file_for_two_outputs_is_refused(tmp_path):
    _check(tmp_path, ["boot", "-kernel", PROBE_ELF, *DEVICES,
                      "--stats", "x", "--trace", "./x"], 2)


# --------------------------------------------------------------------------- usage

USAGE = {
    "no-command": [],
    "unknown-command": ["nope"],
    "unknown-option-newline": ["replay", "good.zpt", "--x\ny"],
    "replay-policy-unknown": ["replay", "good.zpt", "--policy", "nope"],
    "replay-policy-newline": ["replay", "good.zpt", "--policy", "a\nb"],
    "replay-policy-surrogate": ["replay", "good.zpt", "--policy", "\udcff"],
    "replay-assume-unknown": ["replay", "good.zpt", "--assume", "x"],
    "replay-no-trace": ["replay"],
    "decode-base-zz": ["decode", "--base", "zz", "good.zpt"],
    "decode-base-negative": ["decode", "--base", "-1", "good.zpt"],
    "decode-base-2**64": ["decode", "--base", str(1 << 64), "good.zpt"],
    "decode-base-with-elf": ["decode", "--base", "0", PROBE_ELF],
    "decode-elf-and-raw": ["decode", "--elf", "--raw", PROBE_ELF],
    "report-cost-negative": ["report", "good.zpt", "--cost-kvm-us", "-5"],
    "report-cost-inf": ["report", "good.zpt", "--cost-kvm-us", "inf"],
    "report-cost-nan": ["report", "good.zpt", "--cost-userspace-us", "nan"],
    "report-cost-1e400": ["report", "good.zpt", "--cost-kvm-us", "1e400"],
    "report-cost-1e300": ["report", "good.zpt", "--cost-kvm-us", "1e300"],
    "report-cost-word": ["report", "good.zpt", "--cost-kvm-us", "two"],
    "import-memory-word": ["import", "good.jsonl", "-o", "o.zpt", "--memory", "zz"],
    "import-memory-negative": ["import", "good.jsonl", "-o", "o.zpt", "--memory", "-5"],
    "import-memory-1e400": ["import", "good.jsonl", "-o", "o.zpt", "--memory", "1e400"],
    "import-memory-2**64": ["import", "good.jsonl", "-o", "o.zpt", "--memory", f"{1 << 34}G"],
    "import-no-output": ["import", "good.jsonl"],
    "trace-no-action": ["trace"],
    "trace-show-limit-0": ["trace", "show", "good.zpt", "-n", "0"],
    "trace-show-limit-negative": ["trace", "show", "good.zpt", "-n", "-1"],
    "trace-show-limit-word": ["trace", "show", "good.zpt", "-n", "x"],
    "capture-timeout-inf": ["capture", "--elf", PROBE_ELF, "-o", "o.zpt", "--timeout", "inf"],
    "capture-timeout-zero": ["capture", "--elf", PROBE_ELF, "-o", "o.zpt", "--timeout", "0"],
    "capture-engine-unknown": ["capture", "--elf", PROBE_ELF, "-o", "o.zpt", "--engine", "kvm"],
    "capture-engine-newline": ["capture", "--elf", PROBE_ELF, "-o", "o.zpt", "--engine", "a\nb"],
    "capture-native-jsonl": ["capture", "--workload", "rng", "--engine", "native", "-o", "o.zpt",
                             "--jsonl", "j.jsonl"],
    "capture-native-timeout": ["capture", "--elf", PROBE_ELF, "--engine", "native", "-o", "o.zpt",
                               "--timeout", "5"],
    "capture-native-no-dma-tables": ["capture", "--workload", "rng", "--engine", "native",
                                     "-o", "o.zpt", "--no-dma-tables"],
    "boot-no-kernel": ["boot", *DEVICES],
    "boot-policy-unknown": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--policy", "nope"],
    "boot-policy-twice": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--policy", "linux-6.0",
                          "--policy", "ioat-assist"],
    "boot-stats-twice": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--stats", "a", "--stats", "b"],
    "boot-max-insns-word": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--max-insns", "lots"],
    "boot-policy-newline": ["boot", "-kernel", PROBE_ELF, *DEVICES, "--policy", "a\nb"],
    "replay-workers-huge": ["replay", "good.zpt", "--workers", str(10 ** 11)],
    "report-workers-zero": ["report", "good.zpt", "--workers", "0"],
    "workers-and-scheduler": ["replay", "good.zpt", "--workers", "2", "--scheduler", "tcp://x:1"],
    "trace-index-frame-inf": ["trace", "index", "good.zpt", "-o", "i.zpt", "--frame-mib", "inf"],
    "trace-index-frame-zero": ["trace", "index", "good.zpt", "-o", "i.zpt", "--frame-mib", "0"],
}


@pytest.mark.parametrize("name", sorted(USAGE))
def test_bad_usage_exits_2_in_one_line(tmp_path, name):
    _check(tmp_path, USAGE[name], 2)


def test_repeated_policy_replays_each(tmp_path):
    run, _ = _check(tmp_path, ["replay", "good.zpt", "--policy", "linux-6.0",
                               "--policy", "ioat-assist", "--policy", "linux-6.0"], 0)
    text = run.stdout.decode()
    assert "linux-6.0" in text and "ioat-assist" in text
    assert text.count("linux-6.0 ") == 1 and "firmware-rpcit" not in text


def test_report_json_is_strict_json(tmp_path):
    import json
    _, d = _check(tmp_path, ["report", "good.zpt", "--out", "rep", "--cost-kvm-us", "1e9",
                             "--cost-userspace-us", "0"], 0, unchanged=False)
    text = (d / "rep" / "report.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    assert sorted(p.name for p in (d / "rep").iterdir()) == ["report.csv", "report.json",
                                                              "report.png"]


# --------------------------------------------------------------------------- stdout closed

def _pipe_to_head(args, lines=1):
    p = subprocess.Popen([sys.executable, "-m", "emulator.cli", *map(str, args)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(lines):
        p.stdout.readline()
    p.stdout.close()             # what head does after its lines (0: before any is written)
    err = p.stderr.read().decode()
    return p.wait(timeout=120), err


@pytest.mark.parametrize("args,lines", [
    (["boot", "-kernel", PROBE_ELF, *DEVICES], 0),
    (["decode", PROBE_ELF], 0),
    # 134 KB of output, more than a pipe holds: the writer meets the closed end
    (["trace", "show", ROOT / "traces/wl_doorbell.zpt"], 2),
], ids=["boot", "decode", "trace-show-after-2-lines"])
def test_closed_stdout_stops_quietly(args, lines):
    rc, err = _pipe_to_head(args, lines)
    assert err == "" and rc == 141, (rc, err)


# --------------------------------------------------------------------------- one line

@pytest.mark.parametrize("text", ["a\nb", "a\rb", "x\x1b[31m", "\u2028", "\udcff", "\ud800",
                                  "tab\there", "\x85next", "\x00"])
def test_one_line_escapes_what_would_split_or_break_a_line(text):
    line = one_line(f"zpci-emu: {text}: bad")
    assert line.isprintable() and len(line.splitlines()) == 1
    line.encode("utf-8")                       # printable in any terminal encoding
    assert str(UserError("bad", where=text)) == one_line(f"{text}: bad")


def test_quote_keeps_plain_text_readable():
    assert quote("linux-6.0") == "'linux-6.0'"
    assert quote("a\nb") == "'a\\nb'"
    assert quote("it's") == "'it\\'s'"


def test_random_arguments_keep_the_contract(tmp_path):
    """Arguments of random printable and control characters to every subcommand."""
    rng = random.Random(12)
    alphabet = "ab-_=,./:0x9\n\t\r\x1b\u2028\udcff\ud800 "
    for i in range(40):
        cmd = rng.choice([["decode"], ["replay"], ["trace", "show"], ["import"], ["report"],
                          ["boot"], ["capture"]])
        argv = cmd + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
                      for _ in range(rng.randrange(1, 4))]
        case = tmp_path / str(i)
        case.mkdir()
        run = run_cli_forked(argv, case, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
        assert run.rc in (1, 2), run.why()
        assert_contract(run, run.rc)
        assert listing(case) == [], run.why()


def test_undecodable_file_names_give_readable_traces(tmp_path):
    """A name with a byte that is not UTF-8 (a lone surrogate in Python) ends up in
    headers and on stdout: printed escaped, and the traces written read back."""
    odd = "k-\udcff"
    run, d = _check(tmp_path, ["import", "good.jsonl", "-o", odd + ".zpt"], 0, unchanged=False)
    assert "\\udcff" in run.stdout.decode()
    shutil.copy(PROBE_ELF, d / (odd + ".elf"))
    run = run_cli_forked(["boot", "-kernel", odd + ".elf", *DEVICES, "--trace", "b.zpt"], d)
    assert_contract(run, 0)
    for name in (odd + ".zpt", "b.zpt"):
        run = run_cli_forked(["trace", "show", name], d)
        assert_contract(run, 0)
        assert "\\udcff" in run.stdout.decode()
