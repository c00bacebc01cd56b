"""The Vendi sample: the doc_ids of smallest hash, the same whichever way the pool is cut into parts."""

import numpy as np
import pyarrow as pa

from thresher.operators.selection import uniform_from_ids
from thresher.pipeline.output import HashSample


def test_the_sample_is_the_smallest_hashes_and_parts_merge_to_the_whole():
    ids = [f"doc-{i}" for i in range(1000)]
    u = uniform_from_ids("vendi-7", ids)
    expected = [ids[i] for i in np.argsort(u)[:50]]  # by hand: the 50 smallest uniforms

    whole = HashSample("vendi-7", size=50)
    whole.add(pa.array(ids))
    assert whole.ids.to_pylist() == expected

    parts = [HashSample("vendi-7", size=50) for _ in range(3)]
    for k, part in enumerate(parts):
        part.add(pa.array(ids[k::3][:100]))
        part.add(pa.array(ids[k::3][100:]))  # batch by batch
    merged = HashSample("vendi-7", size=50)
    for part in parts:
        merged.merge(part)
    assert merged.ids.to_pylist() == expected


def test_a_pool_smaller_than_the_sample_is_taken_whole():
    s = HashSample("vendi-0", size=10)
    s.add(pa.array(["b", "a", "c"]))
    s.add(pa.array([], pa.string()))
    assert sorted(s.ids.to_pylist()) == ["a", "b", "c"]
