"""The bare-metal guests (traces/guests) and the QEMU oracle harness.

* the sources build without warnings with the cross compiler (in a temporary
  directory) and the committed ELFs have the same loaded bytes;
* no floating-point or vector instruction is in any committed ELF;
* every program of programs.json runs under QEMU, exits 0 with its done line,
  and prints the same output twice;
* the probe reproduces the R lines of the reference transcript in
  docs qemu-oracle.md for every test the two share;
* the facts the drivers and workloads print agree with their own constants;
* the harness gives one-line errors for bad input.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from conftest import CROSS_GCC, needs_cross, needs_qemu
from emulator.capture import qemu as qemu_oracle
from emulator.errors import UserError

REPO = Path(__file__).resolve().parent.parent
GUESTS = REPO / "traces" / "guests"
BUILD = GUESTS / "build"
SOURCES = sorted(p.stem for p in GUESTS.glob("*.c"))
PROGRAMS = qemu_oracle.programs()
ORACLE_DOC = REPO.parent / "shared" / "docs" / "qemu-oracle.md"

R_LINE = re.compile(r"^R (\S+) (?:cc=[0-3]|PGM=[0-9a-f]{8}) st=[0-9a-f]{2} "
                    r"reg=[0-9a-f]{16} val=[0-9a-f]{16}$")


def define(source: str, name: str) -> int:
    """Value of `#define NAME <int>` in a guest source file."""
    m = re.search(rf"^#define\s+{name}\s+(\w+)", (GUESTS / source).read_text(), re.M)
    assert m, f"{name} not defined in {source}"
    return int(m.group(1), 0)


def facts(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def info_line(lines: list[str], prefix: str) -> dict[str, str]:
    found = [ln for ln in lines if ln.startswith(prefix)]
    assert len(found) == 1, f"expected one {prefix!r} line in:\n" + "\n".join(lines)
    return facts(found[0])


# ---------------------------------------------------------------- building

@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory):
    """Copy the sources (not build/) to a temporary directory and make there."""
    if CROSS_GCC is None:
        pytest.skip("s390x-linux-gnu-gcc not installed (apt-get install gcc-s390x-linux-gnu)")
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    tmp = tmp_path_factory.mktemp("guests")
    src = tmp / "guests"
    shutil.copytree(GUESTS, src, ignore=shutil.ignore_patterns("build"))
    proc = subprocess.run(["make", "-C", str(src)], capture_output=True, text=True, timeout=600)
    return src, proc


def loaded_image(path: Path) -> tuple[int, dict[str, bytes]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        sections = {s.name: s.data() for s in elf.iter_sections()
                    if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_type"] != "SHT_NOBITS"}
        nobits = {s.name: s["sh_size"].to_bytes(8, "big") for s in elf.iter_sections()
                  if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_type"] == "SHT_NOBITS"}
        return elf.header["e_entry"], {**sections, **{k + " (size)": v for k, v in nobits.items()}}


@needs_cross
def test_sources_build_cleanly(fresh_build):
    src, proc = fresh_build
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "warning:" in ln]
    assert not warnings, "\n".join(warnings)
    for name in SOURCES:
        assert (src / "build" / f"{name}.elf").is_file(), f"no ELF built for {name}.c"


@needs_cross
@pytest.mark.parametrize("name", SOURCES)
def test_committed_elf_up_to_date(fresh_build, name):
    src, proc = fresh_build
    assert proc.returncode == 0, proc.stdout + proc.stderr
    committed = BUILD / f"{name}.elf"
    assert committed.is_file(), f"{committed} missing: run make -C traces/guests"
    entry_c, image_c = loaded_image(committed)
    entry_f, image_f = loaded_image(src / "build" / f"{name}.elf")
    assert entry_c == entry_f == 0x20000
    assert image_c.keys() == image_f.keys()
    stale = [s for s in image_c if image_c[s] != image_f[s]]
    assert not stale, f"{committed} is stale in {stale}: run make -C traces/guests"


@pytest.mark.parametrize("name", SOURCES)
def test_no_float_or_vector_instructions(name):
    """Disassemble .text with capstone, stepping over the zPCI .insn encodings
    (which it does not know) by the instruction-length code."""
    import capstone            # a test dependency (pyproject.toml [test])
    elf = BUILD / f"{name}.elf"
    assert elf.is_file(), f"{elf} missing"
    with elf.open("rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, addr = text.data(), text["sh_addr"]
    md = capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)
    md.skipdata = True
    md.skipdata_setup = (".insn", lambda buf, size, off, ud: (2, 4, 4, 6)[code[off] >> 6], None)
    insns = list(md.disasm_lite(code, addr))
    assert sum(size for _, size, _, _ in insns) == len(code)
    assert any(mn == "lpswe" for _, _, mn, _ in insns)       # the disassembly is real
    bad = [f"{a:#x}: {mn} {ops}" for a, _, mn, ops in insns if re.search(r"%[fv]\d+", ops)]
    assert not bad, "\n".join(bad[:10])


def test_programs_json_names_built_sources():
    assert PROGRAMS, "programs.json is empty"
    for name, args in PROGRAMS.items():
        assert name in SOURCES, f"programs.json names {name} but there is no {name}.c"
        assert (BUILD / f"{name}.elf").is_file()
        assert "-device" in args and any(a.startswith("zpci,") for a in args)
    for required in ("probe", "rng", "wl_rng_strict", "wl_rng_lazy", "wl_doorbell", "wl_ism"):
        assert required in PROGRAMS


# ---------------------------------------------------------------- running

_runs: dict[tuple, qemu_oracle.QemuResult] = {}


def run(name: str, args: list[str] | None = None, again: bool = False):
    args = PROGRAMS[name] if args is None else args
    key = (name, tuple(args), again)
    if key not in _runs:
        _runs[key] = qemu_oracle.run_qemu(qemu_oracle.elf_path(name), args, timeout=60)
    return _runs[key]


def check_completed(res, name: str) -> list[str]:
    assert not res.timed_out, f"{name} timed out; output:\n{res.text}"
    assert res.exit_code == 0, f"{name} exit {res.exit_code}; stderr:\n{res.stderr.decode()}"
    lines = res.lines
    assert lines, f"{name} printed nothing"
    m = re.fullmatch(r"(\S+) start", lines[0])
    assert m, f"first line of {name} is {lines[0]!r}"
    tag = m.group(1)
    assert re.fullmatch(rf"{re.escape(tag)} done pgm_count=[0-9a-f]{{4}}", lines[-1]), \
        f"{name} did not finish:\n{res.text}"
    assert not any(" FAIL " in ln or ln.startswith("FATAL") for ln in lines)
    return lines


@needs_qemu
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_runs_and_is_deterministic(name):
    first = run(name)
    check_completed(first, name)
    second = run(name, again=True)
    check_completed(second, name)
    assert first.stdout == second.stdout


@needs_qemu
def test_probe_lines_are_well_formed():
    lines = check_completed(run("probe"), "probe")
    rlines = [ln for ln in lines if ln.startswith("R ")]
    assert len(rlines) > 100
    for ln in rlines:
        assert R_LINE.match(ln), ln
    # the done line counts the program interruptions the R lines show
    pgms = sum(1 for ln in rlines if " PGM=" in ln)
    assert int(lines[-1].rsplit("=", 1)[1], 16) == pgms


def transcript_lines() -> list[str]:
    text = ORACLE_DOC.read_text()
    start = text.index("### Full reference transcript")
    block = text[start:].split("```", 2)[1]
    return [ln.strip() for ln in block.splitlines() if ln.strip()]


def transcript_r_lines() -> list[str]:
    return [ln for ln in transcript_lines() if ln.startswith("R ")]


def by_name(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in lines:
        out.setdefault(ln.split()[1], []).append(ln)
    return out


@needs_qemu
def test_probe_reproduces_reference_transcript():
    if not ORACLE_DOC.is_file():
        pytest.skip(f"reference transcript {ORACLE_DOC} not present (../shared beside the checkout)")
    ref = by_name(transcript_r_lines())
    assert len(ref) > 40, "transcript not found in qemu-oracle.md"
    got = by_name([ln for ln in run("probe").lines if ln.startswith("R ")])
    missing = sorted(set(ref) - set(got))
    assert not missing, f"probe lost tests of the reference: {missing}"
    diffs = [(name, ref[name], got[name]) for name in ref if ref[name] != got[name]]
    assert not diffs, (f"{qemu_oracle.qemu_version()} (the transcript is from 7.2.22):\n"
                       + "\n".join(f"{n}:\n  ref {r}\n  got {g}" for n, r, g in diffs))


# Dump rows that hold an address of the image (the IOTA = the table origin).
ADDRESS_ROWS = {"D fib1 0020:"}


@needs_qemu
def test_probe_reproduces_reference_dumps():
    if not ORACLE_DOC.is_file():
        pytest.skip(f"reference transcript {ORACLE_DOC} not present (../shared beside the checkout)")
    ref = [ln for ln in transcript_lines() if ln[:2] in ("D ", "F ")]
    assert len(ref) > 20
    got = {ln.split(":")[0] + ":" if ln.startswith("D ") else ln: ln
           for ln in run("probe").lines if ln[:2] in ("D ", "F ")}
    for line in ref:
        key = line.split(":")[0] + ":" if line.startswith("D ") else line
        assert key in got, f"probe no longer prints {line!r}"
        if key not in ADDRESS_ROWS:
            assert got[key] == line


@needs_qemu
def test_probe_part2_facts():
    """Facts of the extension that follow from the status-code definitions."""
    got = {n: v[-1] for n, v in by_name([ln for ln in run("probe").lines
                                         if ln.startswith("R ")]).items()}

    def field(name, key):
        return facts(got[name])[key] if "=" in got[name] else None
    seq = "%02x" % 24
    for name in ("MPCIFC_REG_INT_AGAIN", "MPCIFC_DEREG_INT_AGAIN", "MPCIFC_REREG_NONE",
                 "MPCIFC_RESET_BLOCK_AGAIN", "MPCIFC_RESET_ERR_ENABLED"):
        assert field(name, "cc") == "1" and field(name, "st") == seq, got[name]
    for name in ("MPCIFC_REG_INT", "MPCIFC_DEREG_INT", "MPCIFC_RESET_BLOCK",
                 "MPCIFC_REREG_IOAT", "RPCIT_MAP_PROTECTED"):
        assert field(name, "cc") == "0", got[name]
    # SIC leaves the preset condition code alone; undefined modes -> operand exception
    assert field("SIC_MODE0", "cc") == "2" and field("SIC_MODE1", "cc") == "1"
    for name in ("SIC_MODE2", "SIC_MODE4", "SIC_MODE16"):
        assert field(name, "PGM")[-2:] == "15", got[name]
    assert field("MPCIFC_SET_MEASURE_KEY", "cc") == "1"
    assert field("CLP_QUERY_GRP_UNKNOWN", "val")[-4:] == "010b"
    assert field("CLP_SET_DISABLE_AGAIN", "val")[-4:] == "0102"
    assert field("STPCIFC_DISABLED", "cc") == "0"
    assert field("STPCIFC_DISABLED_EFH", "cc") == "3"
    for name in ("PCILGI", "PCISTGI", "PCIWB", "PCISTBI"):
        assert field(name, "PGM")[-2:] == "01", got[name]   # operation exception
    for name in ("PCISTB_UNALIGNED_DATA", "PCISTB_LEN20", "PCISTB_CROSS_4K",
                 "PCISTB_BAR1_OVER_MAXSTBL"):
        assert field(name, "PGM")[-2:] == "06", got[name]   # specification exception


@needs_qemu
def test_probe_problem_state_follows_the_table():
    """Part 3 runs every instruction of zpci_insns.def in problem state: the
    privileged ones take a privileged-operation exception (0x02), the MIO
    forms an operation exception (0x01, QEMU 7.2 has none of them); the ILC
    is the table's instruction length."""
    from firmware_model.insns import TABLE
    got = by_name([ln for ln in run("probe").lines if ln.startswith("R PS_")])
    assert set(got) == {f"PS_{i.mnemonic}" for i in TABLE}
    for insn in TABLE:
        (line,) = got[f"PS_{insn.mnemonic}"]
        code = 0x02 if insn.privileged else 0x01
        assert facts(line).get("PGM") == "%04x%04x" % (insn.ilen, code), line


RNG_CONFIGS = {
    "iommu": ["-device", "zpci,uid=1,fid=1,target=r0",
              "-device", "virtio-rng-pci,id=r0,disable-legacy=on,iommu_platform=on"],
    "modern-physical": ["-device", "zpci,uid=1,fid=1,target=r0",
                        "-device", "virtio-rng-pci,id=r0,disable-legacy=on"],
    "transitional": ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"],
    "auto-zpci": ["-device", "virtio-rng-pci"],
}


@needs_qemu
@pytest.mark.parametrize("config", sorted(RNG_CONFIGS))
def test_rng_driver(config):
    args = RNG_CONFIGS[config]
    lines = check_completed(run("rng", args), f"rng ({config})")
    feats = info_line(lines, "I features")
    dev, drv = int(feats["device"], 16), int(feats["driver"], 16)
    assert drv & (1 << 32) and drv & ~dev == 0
    iommu = "iommu_platform=on" in " ".join(args)
    assert bool(drv & (1 << 33)) == iommu
    assert feats["dma"] == ("iommu" if iommu else "physical")
    fn = info_line(lines, "I fn")
    assert fn["vendor"] == "1af4"
    legacy = "disable-legacy=on" not in " ".join(args)
    assert fn["device"] == ("1005" if legacy else "1044")
    r = info_line(lines, "I rng")
    n = define("rng.c", "RNG_REQUESTS")
    assert int(r["requests"]) == n
    assert int(r["bytes"]) == n * define("rng.c", "RNG_CHUNK")
    assert int(r["chunks_changed"]) == n
    assert r["short"] == r["bad_ids"] == "0"
    assert int(r["doorbells"]) == n


@needs_qemu
def test_rng_without_a_device_fails_cleanly():
    res = run("rng", [])
    assert not res.timed_out and res.exit_code == 0       # still quiesces
    lines = res.lines
    assert lines[0] == "VIRTIO-RNG start"
    assert len(lines) == 2 and lines[1].startswith("VIRTIO-RNG FAIL "), res.text
    assert not any(" done " in ln for ln in lines)


@needs_qemu
@pytest.mark.parametrize("name,mode", [("wl_rng_strict", "strict"), ("wl_rng_lazy", "lazy")])
def test_rng_mapping_workloads(name, mode):
    lines = check_completed(run(name), name)
    w = info_line(lines, "I workload")
    n = define("lib/rngwl.h", "RNGWL_REQUESTS")
    pool = define("lib/rngwl.h", "RNGWL_POOL_PAGES")
    assert w["mode"] == mode
    assert int(w["requests"]) == int(w["maps"]) == int(w["unmaps"]) == int(w["doorbells"]) == n
    assert int(w["bytes"]) == n * define("lib/rngwl.h", "RNGWL_CHUNK")
    assert w["short"] == "0"
    if mode == "strict":
        assert int(w["rpcits"]) == 2 * n and w["global_flushes"] == "0"
    else:
        flushes = -(-n // pool)             # one per pool wrap, the last at the end
        assert int(w["global_flushes"]) == flushes
        assert int(w["rpcits"]) == n + flushes


@needs_qemu
def test_doorbell_workload():
    w = info_line(check_completed(run("wl_doorbell"), "wl_doorbell"), "I workload")
    n = define("wl_doorbell.c", "DB_REQUESTS")
    assert int(w["requests"]) == int(w["doorbells"]) == n
    assert int(w["bytes"]) == n * define("wl_doorbell.c", "DB_CHUNK")
    assert int(w["depth"]) == define("wl_doorbell.c", "DB_DEPTH")
    assert w["short"] == "0"


@needs_qemu
def test_ism_workload():
    w = info_line(check_completed(run("wl_ism"), "wl_ism"), "I workload")
    n = define("wl_ism.c", "ISM_BLOCKS")
    assert int(w["blocks"]) == int(w["readback_ok"]) == n
    assert sum(64 + 8 * (i % 9) for i in range(n)) == int(w["bytes"])
    assert w["readback_bad"] == w["errors"] == "0"


# ---------------------------------------------------------------- harness

def test_missing_qemu_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ZPCI_QEMU", str(tmp_path / "no-such-qemu"))
    with pytest.raises(UserError) as exc:
        qemu_oracle.run_qemu(BUILD / "probe.elf", [])
    assert "not found" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_elf_is_a_one_line_error(tmp_path, capsys):
    assert qemu_oracle.main([str(tmp_path / "nothing.elf")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such guest ELF" in err


def test_bad_programs_json(tmp_path):
    bad = tmp_path / "programs.json"
    bad.write_text('{"probe": "-device"}')
    with pytest.raises(UserError, match="list of strings"):
        qemu_oracle.programs(bad)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a valid programs list"):
        qemu_oracle.programs(bad)


@needs_qemu
def test_timeout_is_reported(tmp_path):
    # -S: the CPU never starts, so QEMU never quiesces
    res = qemu_oracle.run_qemu(BUILD / "probe.elf", [*PROGRAMS["probe"], "-S"], timeout=1.5)
    assert res.timed_out and res.exit_code is None


@needs_qemu
def test_command_line_is_the_recipe():
    argv = qemu_oracle.command_line(BUILD / "probe.elf", PROGRAMS["probe"], memory="128M")
    assert os.path.basename(argv[0]) == "qemu-system-s390x"
    joined = " ".join(argv)
    for part in ("-nodefaults", "-nographic", "-machine s390-ccw-virtio,accel=tcg",
                 "-cpu qemu", "-m 128M", "-chardev stdio,id=con0",
                 "-device sclpconsole,chardev=con0"):
        assert part in joined
    assert argv[argv.index("-kernel") + 1].endswith("probe.elf")
    assert argv[argv.index("-kernel") + 2:] == PROGRAMS["probe"]


def test_programs_json_is_valid_json():
    data = json.loads((GUESTS / "programs.json").read_text())
    assert data == PROGRAMS
