"""The pool index by hand: which run first saw each document, what the keep rule's order is, and what its key holds."""

from __future__ import annotations

import numpy as np
import polars as pl

from thresher.pipeline import seen


def _docs(rows):
    return pl.DataFrame(rows, schema={"doc_id": pl.String, "c0": pl.UInt64, "c1": pl.UInt64, "input_file": pl.String, "pos": pl.Int64}, orient="row")


def test_arrivals_carry_old_documents_and_date_new_and_changed_ones_tonight():
    index = pl.DataFrame({"doc_id": ["a", "b", "c", "gone"], "c0": [1, 2, 3, 9], "c1": [1, 2, 3, 9], "since": [1, 2, 1, 2]},
                         schema={"doc_id": pl.String, "c0": pl.UInt64, "c1": pl.UInt64, "since": pl.Int64})
    # tonight: a unchanged, b with a new text, c moved to another file, d new
    docs = _docs([("d", 4, 4, "x", 0), ("a", 1, 1, "y", 5), ("b", 7, 7, "y", 6), ("c", 3, 3, "z", 9)])
    out, facts = seen.arrivals(docs, index)
    assert dict(zip(out["doc_id"], out["since"])) == {"d": 3, "a": 1, "b": 3, "c": 1}
    assert facts == {"previous": 4, "carried": 2, "new": 2, "replaced": 1, "removed": 1}


def test_the_keep_rule_orders_by_run_then_input_order():
    docs = _docs([("new", 0, 0, "x", 10), ("old2", 0, 0, "x", 30), ("old1", 0, 0, "x", 20)]).with_columns(since=pl.Series([2, 1, 1]))
    ranks = seen.Ranks(docs)
    # by (since, pos): old1 (1, 20), old2 (1, 30), new (2, 10)
    assert ranks.of(np.array([10, 20, 30])).tolist() == [2, 0, 1]
    assert ranks.contains(np.array([10, 11, 30, 40])).tolist() == [True, False, True, False]


def test_the_key_holds_the_order_not_the_run_numbers():
    base = _docs([("a", 0, 0, "x", 1), ("b", 0, 0, "x", 2), ("c", 0, 0, "x", 3)])
    one_run = base.with_columns(since=pl.Series([4, 4, 4]))
    assert seen.fingerprint(one_run) is None  # one run saw them all: input order alone, as without an index
    night = base.with_columns(since=pl.Series([1, 2, 2]))
    later = base.with_columns(since=pl.Series([3, 7, 7]))  # the same order, other run numbers
    assert seen.fingerprint(night) == seen.fingerprint(later) != seen.fingerprint(base.with_columns(since=pl.Series([2, 1, 2])))

