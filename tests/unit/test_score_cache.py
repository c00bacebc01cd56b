"""The score cache's row keys and its namespace files, by hand."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from thresher.pipeline import content_cache
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
    h0, h1 = content_cache.digests(["a", "b", "c"])
    rows = pa.table({content_cache.H0: h0[:2], content_cache.H1: h1[:2], "q_x": [0.25, 0.5], "d_cluster": pa.array([1, 2], pa.int32())})
    cache = content_cache.ContentCache(tmp_path, "score-test")
    content_cache.write(rows, str(cache.dir), ["q_x", "d_cluster"])
    found = cache.lookup(h0, h1)
    assert found.column_names == [content_cache.H0, content_cache.H1, "q_x", "d_cluster"] and found.schema.field("d_cluster").type == pa.int32()
    got = {(a, b): (q, c) for a, b, q, c in zip(*(found.column(i).to_pylist() for i in range(4)))}
    assert got == {(int(h0[0]), int(h1[0])): (0.25, 1), (int(h0[1]), int(h1[1])): (0.5, 2)}
    assert not cache.lookup(np.array([h0[2]]), np.array([h1[2]])).num_rows
