"""Fuzzing the trace reader and replay: bundled traces mutated, random record
streams, and headers and NOTEs of any JSON text.

In process: anything but a complete read (or replay) or a one-line
``UserError`` naming the file is a failure.
"""
from __future__ import annotations

import functools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from _badfiles import GOOD_HEADER, trace, uncompressed
from _helpers import ROOT
from emulator.errors import UserError
from emulator.trace.format import RecordType, record
from emulator.trace.reader import TraceReader

BUNDLED = sorted((ROOT / "traces").glob("*.zpt"))


@functools.lru_cache(maxsize=None)
def _plain(path) -> bytes:
    return uncompressed(path)


def _read(path) -> None:
    with TraceReader(path) as rd:
        for _ in rd:
            pass


def _expect_ok_or_one_line(path, *, replay: bool) -> None:
    try:
        _read(path)
    except UserError as exc:
        text = str(exc)
        assert "\n" not in text and text.isprintable() and str(path) in text
        return
    if replay:
        from emulator.replay import replay as run
        try:
            run([path], progress=False)
        except UserError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


mutation = st.tuples(st.sampled_from(["flip", "drop", "insert", "overwrite", "cut"]),
                     st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8))


def _mutate(raw: bytes, muts) -> bytes:
    b = bytearray(raw)
    for op, where, data in muts:
        i = 16 + int(where * max(1, len(b) - 16))          # past the preamble: the records
        i = min(i, len(b) - 1)
        if op == "flip":
            b[i] ^= data[0] or 1
        elif op == "drop":
            del b[i:i + len(data)]
        elif op == "insert":
            b[i:i] = data
        elif op == "overwrite":
            b[i:i + len(data)] = data
        else:
            del b[i:]
    return bytes(b)


@settings(max_examples=80)
@given(which=st.sampled_from(BUNDLED), muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_bundled_trace_reads_or_fails_in_one_line(tmp_path_factory, which, muts):
    p = tmp_path_factory.mktemp("m") / "t.zpt"
    p.write_bytes(_mutate(_plain(which), muts))
    _expect_ok_or_one_line(p, replay=False)


@settings(max_examples=40)
@given(muts=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_trace_replays_or_fails_in_one_line(tmp_path_factory, muts):
    p = tmp_path_factory.mktemp("r") / "t.zpt"
    p.write_bytes(_mutate(_plain(ROOT / "traces/probe.zpt"), muts))
    _expect_ok_or_one_line(p, replay=True)


@settings(max_examples=100)
@given(records=st.lists(st.tuples(st.sampled_from([int(t) for t in RecordType] + [0, 0x99]),
                                  st.binary(max_size=120)), max_size=8),
       masks=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)))
def test_random_record_stream(tmp_path_factory, records, masks):
    """Records of random type and payload after a sound header; EVENT payloads
    get a head whose masks and counts may claim anything."""
    from _badfiles import event_head
    body = b""
    for rtype, payload in records:
        if rtype == RecordType.EVENT:
            payload = event_head(in_mask=masks[0], out_mask=masks[1],
                                 nr=payload[0] if payload else 0) + payload
        body += record(rtype, payload)
    p = tmp_path_factory.mktemp("s") / "t.zpt"
    p.write_bytes(trace(body=body, with_end=False))
    _expect_ok_or_one_line(p, replay=True)


@settings(max_examples=100)
@given(raw=st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, raw):
    p = tmp_path_factory.mktemp("b") / "t.zpt"
    p.write_bytes(raw)
    _expect_ok_or_one_line(p, replay=False)


# JSON *text* of any shape, including what json.dumps never writes: numbers out
# of range, NaN, deep nesting, escapes of lone surrogates.
json_number = st.sampled_from(["0", "-1", "1e400", "-1e400", "NaN", "Infinity", "1.5", "1e3",
                               str(1 << 64), str((1 << 64) - 1), "9" * 5000, "true", "null"])
json_text = st.recursive(
    json_number | st.sampled_from(['"x"', '"\\ud800"', '"\\udc80x"', '"0x10"', '""']),
    lambda kids: st.lists(kids, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
    | st.dictionaries(st.sampled_from(['"fid"', '"uid"', '"kind"', '"fhs"', '"vendor_id"',
                                       '"x"']), kids, max_size=4).map(
        lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"),
    max_leaves=12)
deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)


@settings(max_examples=150)
@given(changes=st.dictionaries(st.sampled_from(sorted(GOOD_HEADER)), json_text | deep,
                               min_size=1, max_size=3))
def test_header_of_any_json_text(tmp_path_factory, changes):
    parts = {k: json.dumps(v) for k, v in GOOD_HEADER.items()}
    parts.update(changes)
    header = "{" + ",".join(f'"{k}":{v}' for k, v in parts.items()) + "}"
    p = tmp_path_factory.mktemp("h") / "t.zpt"
    p.write_bytes(trace(header))
    _expect_ok_or_one_line(p, replay=True)


@settings(max_examples=100)
@given(data=json_text | deep)
def test_note_of_any_json_text(tmp_path_factory, data):
    note = record(RecordType.NOTE, ('{"kind": "k", "data": {"v": ' + data + "}}").encode())
    p = tmp_path_factory.mktemp("n") / "t.zpt"
    p.write_bytes(trace(body=note))
    _expect_ok_or_one_line(p, replay=False)
    # what was read must print: trace show renders every NOTE
    import io
    from emulator.trace.text import show
    try:
        show(p, io.StringIO())
    except UserError:
        pass


def test_register_masks_past_the_buffer_are_a_user_error(tmp_path):
    """The class behind a struct.error: masks claiming 32 registers, record and file ending."""
    from _badfiles import event_head
    p = tmp_path / "t.zpt"
    p.write_bytes(trace(body=record(RecordType.EVENT, event_head(in_mask=0xFFFF, out_mask=0xFFFF)),
                        with_end=False))
    try:
        _read(p)
    except UserError as exc:
        assert "registers" in str(exc)
    else:
        raise AssertionError("read a record shorter than its registers")
