"""The heuristic rules' repetition scans over lists of strings, in C (`rulescan_kernels.c`).

Duplicate lines and paragraphs, the top n-grams and datatrove's greedy duplicated n-gram scan are per-document set
and counter walks: in polars they took several passes and group-bys over every word (most of the rules' time on
real text, bench/RESULTS.md); the C walks each document once per n, straight over the Arrow buffers, comparing
items exactly (a hash finds candidates, the bytes decide).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from . import rulescan_kernels


def _spans(lists: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list[str] column as (UTF-8 bytes, item byte offsets, each row's first item): the C functions' input.

    A null list, or a null item, counts as no item.
    """
    arr = lists.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    arr = arr.cast(pa.large_list(pa.large_string()))
    values = arr.flatten()  # the rows' items, null lists left out
    if values.null_count:
        return _spans(lists.list.drop_nulls())
    counts = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    groups = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=groups[1:])
    _, offsets, data = values.buffers()
    offsets = np.frombuffer(offsets, np.int64)[values.offset : values.offset + len(values) + 1] if offsets else np.zeros(1, np.int64)
    data = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
    return data, offsets, groups


def duplicates(lists: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many items equal an earlier item of the row, and their characters (int64 arrays)."""
    data, offsets, groups = _spans(lists)
    n, chars = np.zeros(len(lists), np.int64), np.zeros(len(lists), np.int64)
    rulescan_kernels.duplicates(data, offsets, groups, n, chars)
    return n, chars


def ngram_chars(words: pl.Series, top_ns: list[int], dup_ns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row of words, one column per n: the top n-gram's characters times its count (datatrove's
    `find_top_duplicate` over words joined by spaces; -1 when the row has fewer than n words), and the characters of
    the duplicated n-grams datatrove's `find_all_duplicate` counts (words joined without a separator)."""
    data, offsets, groups = _spans(words)
    top = np.zeros((len(words), len(top_ns)), np.int64)
    dup = np.zeros((len(words), len(dup_ns)), np.int64)
    rulescan_kernels.ngrams(data, offsets, groups, np.asarray(top_ns, np.int64), np.asarray(dup_ns, np.int64), top, dup)
    return top, dup
