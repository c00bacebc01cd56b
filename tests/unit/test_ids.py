"""Repeated doc_ids by hand: the first row in input order keeps its id, wherever the shuffle runs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from thresher.pipeline import ids

FILES = {"a.jsonl": 0, "b.jsonl": 1}


def _pos(file: str, offset: int) -> int:
    return FILES[file] << ids.OFFSET_BITS | offset


@pytest.mark.parametrize("here, parts", [(True, None), (False, 1), (False, 3)])  # here, in one Ray task, on the workers
def test_later_rows_of_a_repeated_id_are_found_in_input_order(local_ray, tmp_path, here, parts):
    # an id file (valid rows only) and a data file of an older piece, whose invalid rows do not count
    pl.DataFrame({"doc_id": ["x", "y", "x"], "input_file": ["b.jsonl"] * 3, "input_offset": [5, 6, 9]}).write_parquet(tmp_path / "ids.parquet")
    pl.DataFrame({"doc_id": ["y", "x", "z", "z"], "input_file": ["a.jsonl"] * 4, "input_offset": [0, 3, 4, 8],
                  "invalid_reason": [None, None, "empty text", None]}).write_parquet(tmp_path / "data.parquet")
    found = ids.repeated([tmp_path / "ids.parquet", tmp_path / "data.parquet"], FILES, tmp_path, here=here, parts=parts)
    # x: a:3 first, b:5 and b:9 repeat; y: a:0 first, b:6 repeats; z: the invalid a:4 is not a row, a:8 is the first
    assert found.tolist() == sorted([_pos("b.jsonl", 5), _pos("b.jsonl", 9), _pos("b.jsonl", 6)])
    assert not list(tmp_path.glob("exchange-*"))  # the exchange is gone


def test_positions_follow_the_file_order_not_the_names():
    t = pl.DataFrame({"input_file": ["b.jsonl", "a.jsonl", "b.jsonl"], "input_offset": [1, 2, 3]}).to_arrow()
    assert ids.positions(t, FILES).tolist() == [_pos("b.jsonl", 1), _pos("a.jsonl", 2), _pos("b.jsonl", 3)]
    assert ids.positions(t.slice(0, 0), FILES).dtype == np.int64
