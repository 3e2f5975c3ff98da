"""emulator.io_safe in process: the opener's bound, the outputs' commit and discard,
and the JSON bounds."""
from __future__ import annotations

import os

import pytest

from emulator.errors import UserError
from emulator.io_safe import JSON_MAX_DEPTH, load_json, open_input, output_folder, outputs


def test_a_file_growing_under_the_reader_is_read_to_its_size_at_opening(tmp_path):
    p = tmp_path / "grows"
    p.write_bytes(b"a" * 100)
    with open_input(p) as f:
        with open(p, "ab") as w:
            w.write(b"b" * 10_000)
        assert f.read() == b"a" * 100 and f.size == 100


def test_outputs_commit_together_and_discard_together(tmp_path):
    with outputs(tmp_path / "a", None, tmp_path / "b") as (a, none, b):
        assert none is None and os.path.exists(a.path) and os.path.exists(b.path)
        for o in (a, b):
            open(o.path, "w").write("x")
        assert sorted(os.listdir(tmp_path)) != ["a", "b"]        # temporary names until the end
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]
    with pytest.raises(KeyboardInterrupt):
        with outputs(tmp_path / "c", tmp_path / "d"):
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_second_output_unwritable_releases_the_first(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        with outputs(tmp_path / "a", tmp_path / "no" / "b"):
            pass
    assert os.listdir(tmp_path) == []


def test_output_folder_made_and_removed_on_failure(tmp_path):
    with pytest.raises(ValueError):
        with output_folder(tmp_path / "rep", ["x.json"]):
            raise ValueError
    assert os.listdir(tmp_path) == []
    with output_folder(tmp_path / "rep", ["x.json"]) as (x,):
        open(x.path, "w").write("{}")
    assert os.listdir(tmp_path / "rep") == ["x.json"]


@pytest.mark.parametrize("text", ["[" * (JSON_MAX_DEPTH + 1) + "]" * (JSON_MAX_DEPTH + 1),
                                  "[" * 100_000 + "]" * 100_000, "NaN", "-Infinity", "1e400",
                                  '"\\ud800"', '{"\\udfff": 1}', '["a", "\\udc80"]'])
def test_json_beyond_the_bounds_is_a_value_error(text):
    with pytest.raises(ValueError):
        load_json(text.encode())


@pytest.mark.parametrize("text", ["[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH, "1.5e300",
                                  '"\\ud83d\\ude00"', '{"a": [1, {"b": null}]}'])
def test_json_within_the_bounds_loads(text):
    load_json(text.encode())
