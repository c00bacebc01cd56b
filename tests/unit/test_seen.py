"""The pool index by hand: which run first saw each document, what the keep rule's order is, and what its key holds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from thresher.pipeline import ids, seen
from thresher.pipeline.confine import Roots
from thresher.pipeline.errors import InputError

FILES = ["x", "y", "z"]


def _pos(file: str, offset: int) -> int:
    return FILES.index(file) << ids.OFFSET_BITS | offset


def _ids_file(path, rows) -> str:
    """An embed piece's id file: (doc_id, c0, c1, input_file, input_offset) rows."""
    pl.DataFrame(rows, schema={"doc_id": pl.String, "c0": pl.UInt64, "c1": pl.UInt64, "input_file": pl.String, "input_offset": pl.Int64}, orient="row").write_parquet(path)
    return str(path)


def _index_file(path, rows) -> str:
    pl.DataFrame(rows, schema={"doc_id": pl.String, "c0": pl.UInt64, "c1": pl.UInt64, "since": pl.Int64}, orient="row").write_parquet(path)
    return str(path)


def _arrive(tmp_path, pieces, old=(), here=True, parts=None, roots=Roots()):
    pool = [(_ids_file(tmp_path / f"ids-{i}.parquet", rows), i) for i, rows in enumerate(pieces)]
    return seen.arrive(pool, list(old), len(pieces), FILES, roots, tmp_path / "arrivals", here=here, parts=parts)


def _index(a: seen.Arrivals) -> dict:
    t = pq.read_table(a.dir / seen.INDEX)
    return dict(zip(t.column("doc_id").to_pylist(), zip(t.column("input_file").to_pylist(), t.column("since").to_pylist())))


@pytest.mark.parametrize("here, parts", [(True, None), (False, 1), (False, 3), (True, 4)])  # here, in one Ray task, on the workers
def test_arrivals_carry_old_documents_and_date_new_and_changed_ones_tonight(local_ray, tmp_path, here, parts):
    old = _index_file(tmp_path / "old.parquet", [("a", 1, 1, 1), ("b", 2, 2, 2), ("c", 3, 3, 1), ("gone", 9, 9, 2)])
    # tonight: a unchanged, b with a new text, c moved to another file, d new; a's second row repeats its id
    pieces = [[("d", 4, 4, "x", 0), ("a", 1, 1, "y", 5)], [("b", 7, 7, "y", 6), ("a", 8, 8, "y", 7)], [("c", 3, 3, "z", 9)]]
    a = _arrive(tmp_path, pieces, [old], here=here, parts=parts)
    assert len(a.index_files()) == (parts or 1)
    assert _index(a) == {"d": ("x", 3), "a": ("y", 1), "b": ("y", 3), "c": ("z", 1)}
    assert a.facts == {"previous": 4, "carried": 2, "new": 2, "replaced": 1, "removed": 1}


@pytest.mark.parametrize("parts", [None, 3])
def test_the_keep_rule_orders_by_run_then_input_order_across_pieces(tmp_path, parts):
    old = _index_file(tmp_path / "old.parquet", [("old1", 0, 0, 1), ("old2", 0, 0, 1)])
    pieces = [[("new", 0, 0, "x", 10), ("old2", 0, 0, "x", 30)], [("old1", 0, 0, "y", 20), ("new2", 0, 0, "y", 25), ("old2", 0, 0, "y", 40)]]
    a = _arrive(tmp_path, pieces, [old], parts=parts)
    # by (since, position): old2 (1, x:30), old1 (1, y:20), new (2, x:10), new2 (2, y:25); y:40 repeats old2's id
    mine, rank = a.order.of(0, np.array([_pos("x", 10), _pos("x", 11), _pos("x", 30)]))
    assert mine.tolist() == [True, False, True] and rank.tolist() == [2, 0]
    mine, rank = a.order.of(1, np.array([_pos("y", 40), _pos("y", 25), _pos("y", 20)]))
    assert mine.tolist() == [False, True, True] and rank.tolist() == [3, 1]


def test_the_order_written_from_arrays_ranks_by_since_then_piece_then_position(tmp_path):
    order = seen.Order.write(tmp_path, [(np.array([7, 3]), np.array([2, 5])), (np.array([], np.int64), np.array([], np.int64)), (np.array([9, 8]), np.array([2, 2]))])
    # (since, position): (2, 7) (2, 8) (2, 9) (5, 3)
    assert order.of(0, np.array([3, 7]))[1].tolist() == [3, 0]
    assert order.of(2, np.array([9, 8]))[1].tolist() == [2, 1]
    assert order.of(1, np.array([1]))[0].tolist() == [False]
    # bases, since-major: since 2 -> pieces 0, 1, 2 at 0, 1, 1 (piece 1 empty); since 5 -> piece 0 at 3
    assert order.piece_of(np.array([0, 1, 2, 3])).tolist() == [0, 2, 2, 0]


def test_the_key_holds_the_order_not_the_run_numbers(tmp_path):
    def fingerprint(sinces, name):
        d = tmp_path / name
        d.mkdir()
        old = _index_file(d / "old.parquet", [(doc, 0, 0, s) for doc, s in zip("abc", sinces)])
        return _arrive(d, [[(doc, 0, 0, "x", i) for i, doc in enumerate("abc")]], [old]).fingerprint

    assert _arrive(tmp_path, [[("a", 0, 0, "x", 1), ("b", 0, 0, "x", 2)]]).fingerprint is None  # one run saw them all: input order alone
    assert fingerprint([4, 4, 4], "one") is None
    night, later = fingerprint([1, 2, 2], "night"), fingerprint([3, 7, 7], "later")  # the same order, other run numbers
    assert night is not None and night == later != fingerprint([2, 1, 2], "other")


def test_an_index_file_outside_the_roots_is_refused_where_it_is_opened(local_ray, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    old = _index_file(outside / "old.parquet", [("a", 1, 1, 1)])
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "index.parquet").symlink_to(old)  # a swapped-in link: the name is inside, the file is not
    for here in (True, False):
        with pytest.raises(InputError, match="outside the allowed roots"):
            _arrive(inside, [[("a", 1, 1, "x", 0)]], [str(inside / "index.parquet")], here=here, parts=1, roots=Roots.of([inside]))
