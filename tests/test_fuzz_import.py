"""Fuzzing the JSONL importer: recorder lines of any JSON text, and byte-level
mutations of a real recording.

In process: an import either writes a trace that reads back, or fails with
a one-line ``UserError`` and leaves its folder as it was.
"""
from __future__ import annotations

import json

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
