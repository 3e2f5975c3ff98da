"""Fuzzing the JSONL importer: recorder lines of any JSON text, and byte-level
mutations of a real recording.

In process: an import either writes a trace that reads back, or fails with
a one-line ``UserError`` and leaves its folder as it was.
"""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _badfiles import good_jsonl_line
from test_fuzz_trace import _mutate, deep, json_text, mutation
from emulator.errors import UserError
from emulator.trace.importer import import_jsonl
from emulator.trace.reader import read_all


def _import(folder, data: bytes) -> None:
    src = folder / "in.jsonl"
    src.write_bytes(data)
    before = sorted(p.name for p in folder.iterdir())
    try:
        import_jsonl(src, folder / "out.zpt")
    except UserError as exc:
        text = str(exc)
        assert "\n" not in text and text.isprintable() and str(src) in text
        assert sorted(p.name for p in folder.iterdir()) == before       # nothing left behind
        return
    read_all(folder / "out.zpt")            # what was written reads back


keys = st.sampled_from(["seq", "addr", "bytes", "insn", "gr_before", "gr_after", "pswm_before",
                        "pswm_after", "cc", "operands", "mem_before", "mem_after", "dma_tables",
                        "pgm", "pswa_after", "phase", "kind", "name"])


@settings(max_examples=150)
@given(changes=st.lists(st.tuples(keys, json_text | deep), min_size=1, max_size=3))
def test_record_of_any_json_text(tmp_path_factory, changes):
    """The second line of a recording with some keys' values replaced by any JSON text."""
    rec = json.loads(good_jsonl_line())
    parts = {k: json.dumps(v) for k, v in {**rec, "seq": 10}.items()}
    parts.update(changes)
    line = "{" + ",".join(f'"{k}":{v}' for k, v in parts.items()) + "}"
    _import(tmp_path_factory.mktemp("j"), (good_jsonl_line() + "\n" + line + "\n").encode())


@settings(max_examples=100)
@given(muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_recording(tmp_path_factory, muts):
    good = good_jsonl_line()
    lines = [good] + [good.replace('"seq": 9', f'"seq": {10 + i}') for i in range(3)]
    data = ("\n".join(lines) + "\n").encode()
    # _mutate leaves a trace's 16-byte preamble alone: give it 16 bytes to skip
    _import(tmp_path_factory.mktemp("m"), _mutate(b"0" * 16 + data, muts)[16:])


@settings(max_examples=60)
@given(raw=st.binary(max_size=400))
def test_random_bytes(tmp_path_factory, raw):
    _import(tmp_path_factory.mktemp("b"), raw)


def _list_pci_response(entries) -> bytes:
    """A CLP LIST PCI request block with an OK response listing (fid, fh) entries."""
    from firmware_model.arch import CLP_FH_LIST_ENTRY_SIZE, LIST_PCI_HDR_LEN, ClpCmd, ClpRsp
    req = struct.pack(">HH", 32, ClpCmd.LIST_PCI).ljust(32, b"\0")
    body = b"".join(struct.pack(">HHIII", 0x1005, 0x1AF4, 0, fid, fh).ljust(
        CLP_FH_LIST_ENTRY_SIZE, b"\0") for fid, fh in entries)
    head = struct.pack(">HH", LIST_PCI_HDR_LEN + len(body), ClpRsp.OK).ljust(
        LIST_PCI_HDR_LEN - 1, b"\0") + bytes([CLP_FH_LIST_ENTRY_SIZE])
    return req + head + body


def test_function_scan_bounds_functions_and_handles():
    """CLP responses are the recording's to invent: fids and handles per fid are bounded."""
    from emulator.trace.importer import MAX_FUNCTIONS, MAX_HANDLES, _FunctionScan, _Line
    from firmware_model.insns import BY_MNEMONIC
    clp = BY_MNEMONIC["CLP"]
    scan = _FunctionScan(_Line("x.jsonl"))
    scan.add({"ins": clp, "writes": [(0, _list_pci_response([(1, 0x80000001), (1, 1)]))]})
    assert [(f.fid, f.fhs) for f in scan.functions()] == [(1, (0x80000001, 1))]
    with pytest.raises(UserError, match="handles"):
        scan.add({"ins": clp, "writes": [(0, _list_pci_response(
            [(1, h) for h in range(2, MAX_HANDLES + 2)]))]})
    with pytest.raises(UserError, match="functions"):
        for first in range(2, MAX_FUNCTIONS + 2, 1000):      # a response lists ~4000 at most
            scan.add({"ins": clp, "writes": [(0, _list_pci_response(
                [(f, 5) for f in range(first, first + 1000)]))]})
