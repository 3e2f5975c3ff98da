"""A corpus of hand-made bad files, one per class of bad input the tool must refuse.

Each entry is built from the format's own layouts (emulator/trace/format.py),
so a file is bad in exactly the way its name says and sound otherwise.
"""
from __future__ import annotations

import functools
import json

import zstandard

from test_import import DOC_RECORD
from emulator.trace.format import (
    END_BODY, EVENT_HEAD, MAGIC, MARK_HEAD, PREAMBLE, VERSION, RecordType, record)

ROOT_TRACE = "traces/probe.zpt"
DEEP = 100_000           # far beyond any recursion limit
GOOD_HEADER = {"source": "synthetic", "stream": "zpci-only", "memory": 1 << 20,
               "functions": [], "workload": "bad", "detail": "", "extra": {}}
PCILG = bytes.fromhex("b9d20012")


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def trace(header_json: str | bytes | None = None, body: bytes = b"", end=(0, 0, 0, 0),
          with_end: bool = True) -> bytes:
    """An uncompressed trace: preamble, header (GOOD_HEADER unless given), body, END."""
    hj = header_json if header_json is not None else json.dumps(GOOD_HEADER)
    hb = hj.encode() if isinstance(hj, str) else hj
    out = PREAMBLE.pack(MAGIC, VERSION, 0, 0) + record(RecordType.HEADER, hb) + body
    if with_end:
        out += record(RecordType.END, END_BODY.pack(*end))
    return out


def header_with(**changes) -> str:
    """GOOD_HEADER as JSON text with ``changes``, each value given as JSON text."""
    parts = {k: json.dumps(v) for k, v in GOOD_HEADER.items()}
    parts.update(changes)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}"


def event_head(seq=0, in_mask=0b111, out_mask=0, nr=0, nw=0, insn=PCILG) -> bytes:
    return EVENT_HEAD.pack(seq, 0x1000, 0, 0, insn.ljust(6, b"\0"), len(insn), 0x07, 0, 0, 0,
                           in_mask, out_mask, nr, nw)


def uncompressed(path) -> bytes:
    """A (possibly zstd-compressed) trace file as the same trace uncompressed."""
    raw = open(path, "rb").read()
    magic, version, flags, res = PREAMBLE.unpack_from(raw)
    body = raw[PREAMBLE.size:]
    if flags & 1:
        body = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True).read()
    return PREAMBLE.pack(magic, version, flags & ~1, res) + body


@functools.lru_cache(maxsize=None)
def bad_traces() -> dict[str, bytes]:
    """name -> trace file bytes; every one must be refused with one line."""
    note = lambda text: record(RecordType.NOTE, text.encode())  # noqa: E731
    return {
        # the masks name 16 registers, the record holds one, and the file ends there
        "mask-claims-more-than-record": trace(body=record(
            RecordType.EVENT, event_head(in_mask=0xFFFF) + b"\0" * 8), with_end=False),
        "mask-claims-more-before-end": trace(body=record(
            RecordType.EVENT, event_head(in_mask=0xFFFF, out_mask=0xFFFF) + b"\0" * 8),
            end=(1, 0, 0, 0)),
        "memory-1e400": trace(header_with(memory="1e400")),
        "memory-infinity": trace(header_with(memory="Infinity")),
        "memory-nan": trace(header_with(memory="NaN")),
        "memory-negative": trace(header_with(memory="-1")),
        "memory-2**64": trace(header_with(memory=str(1 << 64))),
        "memory-5000-digits": trace(header_with(memory="9" * 5000)),
        "memory-string": trace(header_with(memory='"lots"')),
        "fid-2**40": trace(header_with(functions=json.dumps(
            [{"fid": 1 << 40, "uid": 1, "kind": "virtio-rng-pci"}]))),
        "vendor-id-float": trace(header_with(functions=json.dumps(
            [{"fid": 1, "uid": 1, "kind": "virtio-rng-pci", "vendor_id": 1.5}]))),
        "header-deep-json": trace(header_with(extra=deep_json())),
        "header-deep-json-33": trace(header_with(extra=deep_json(40))),
        "header-lone-surrogate": trace(header_with(workload='"\\ud800"')),
        "header-not-object": trace("[1, 2]"),
        "header-not-utf8": trace(b'{"source": "\xff"}'),
        "note-deep-json": trace(body=note('{"kind": "x", "data": {"a": ' + deep_json() + "}}")),
        "note-lone-surrogate": trace(body=note('{"kind": "\\udc80", "data": {}}')),
        "note-nan": trace(body=note('{"kind": "x", "data": {"v": NaN}}')),
        "mark-not-utf8": trace(body=record(RecordType.MARK, MARK_HEAD.pack(0) + b"\xff\xfe"),
                               end=(0, 0, 0, 1)),
        "record-length-4GiB": PREAMBLE.pack(MAGIC, VERSION, 0, 0) + b"\x01\xff\xff\xff\xff",
        "truncated-half": uncompressed(ROOT_TRACE)[:len(uncompressed(ROOT_TRACE)) // 2],
        "zstd-garbage": PREAMBLE.pack(MAGIC, VERSION, 1, 0) + b"\x28\xb5\x2f\xfd" + b"\xff" * 64,
        "empty": b"",
    }


def good_jsonl_line() -> str:
    """One sound recorder line (the documented example record)."""
    return json.dumps(DOC_RECORD)


@functools.lru_cache(maxsize=None)
def bad_jsonl() -> dict[str, bytes]:
    """name -> JSONL bytes; every one must be refused by import with one line."""
    good = good_jsonl_line()
    return {
        "deep-nesting": ('{"kind": "note", "a": ' + deep_json() + "}\n").encode(),
        "deep-nesting-40": ('{"kind": "note", "a": ' + deep_json(40) + "}\n").encode(),
        "number-1e400": b'{"kind": "note", "x": 1e400}\n',
        "number-nan": b'{"kind": "note", "x": NaN}\n',
        "number-5000-digits": b'{"kind": "note", "x": ' + b"7" * 5000 + b"}\n",
        "phase-lone-surrogate": b'{"kind": "phase", "name": "\\ud800"}\n',
        "note-key-lone-surrogate": b'{"kind": "note", "\\udfff": 1}\n',
        "not-utf8": b'{"kind": "note", "x": "\xff"}\n',
        "bad-after-good": (good + "\n" + good.replace('"seq": 9', '"seq": 10') + "\n"
                           + '{"kind": "note", "x": [1, 2\n').encode(),
        "seq-backwards": (good + "\n" + good + "\n").encode(),
        "not-an-object": b"[1, 2, 3]\n",
        "truncated-last-line": (good + "\n" + good[:40]).encode(),
        "kind-not-string": b'{"kind": 5}\n',
    }
