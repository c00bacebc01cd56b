"""The score cache's row keys and its namespace files, by hand."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from thresher.operators import schema as S
from thresher.pipeline import content_cache
from thresher.pipeline.shuffle import exchange
from thresher.pipeline.scoring import row_keys


def test_a_row_key_is_the_text_digest_or_a_digest_of_it_and_the_keyed_columns():
    batch = pa.table({"text": ["caf\u00e9", "cafe\u0301", "tea"], "views": [3.0, 4.0, 3.0]})
    h0, h1 = row_keys(batch, [])
    d = hashlib.blake2b("caf\u00e9".encode(), digest_size=16).digest()
    assert (int(h0[0]), int(h1[0])) == (int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little"))
    assert (h0[0], h1[0]) == (h0[1], h1[1])  # canonically equivalent spellings are one text

    k0, k1 = row_keys(batch, ["views"])
    by_hand = hashlib.blake2b(d + b"[3.0]", digest_size=16).digest()
    assert (int(k0[0]), int(k1[0])) == (int.from_bytes(by_hand[:8], "little"), int.from_bytes(by_hand[8:], "little"))
    assert (k0[0], k1[0]) != (k0[1], k1[1])  # same text, another value of a column a scorer reads: another key


def test_a_namespace_gives_back_the_values_it_was_given_and_nothing_it_was_not(tmp_path):
    h0, h1 = content_cache.digests(["a", "b", "c", "d"])
    cache = content_cache.ContentCache(tmp_path / "cache", "score-test")
    rows = pa.table({content_cache.H0: h0[:2], content_cache.H1: h1[:2], "q_x": [0.25, 0.5], "d_cluster": pa.array([1, 2], pa.int32())})
    content_cache.write(rows, str(cache.dir), ["q_x", "d_cluster"])
    again = pa.table({content_cache.H0: h0[1:2], content_cache.H1: h1[1:2], "q_x": [0.5], "d_cluster": pa.array([2], pa.int32())})
    content_cache.write(again, str(cache.dir), ["q_x", "d_cluster"])  # a digest in two files: found once
    for parts in (1, 3):
        hits = tmp_path / f"hits-{parts}"
        with exchange(tmp_path / "scratch", parts) as ex:
            lookup = content_cache.Lookup(cache, ex)
            # "a" twice (two places), "b", and "c" the cache never saw; in two calls, as two workers would
            lookup.want(pa.table({content_cache.H0: h0[[0, 1]], content_cache.H1: h1[[0, 1]], S.INPUT_FILE: ["f1", "f1"], S.INPUT_OFFSET: [10, 11]}))
            lookup.want(pa.table({content_cache.H0: h0[[2, 0]], content_cache.H1: h1[[2, 0]], S.INPUT_FILE: ["f2", "f2"], S.INPUT_OFFSET: [0, 5]}))
            assert lookup.resolve(hits, here=True) == 3
        batch = pa.table({S.INPUT_FILE: ["f2", "f1", "f1", "f2", "f3"], S.INPUT_OFFSET: [5, 11, 10, 0, 10]})
        row, found = content_cache.hits_for(str(hits), batch)
        assert found.column_names[2:] == ["q_x", "d_cluster"] and found.schema.field("d_cluster").type == pa.int32()
        got = [None if r < 0 else (found.column("q_x")[r].as_py(), found.column("d_cluster")[r].as_py()) for r in row]
        assert got == [(0.25, 1), (0.5, 2), (0.25, 1), None, None]  # by place: f2@0 is "c", f3@10 was never wanted
        row, found = content_cache.hits_for(str(hits), batch.slice(3))
        assert row.tolist() == [-1, -1] and found is None  # a batch without hits reads none
