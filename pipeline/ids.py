"""Repeated doc_ids: the first row in input order keeps its id, later rows are quarantined.

Every later phase keys documents by `doc_id` (duplicate maps, hash uniforms,
the output's accounting), so valid ids must be unique. Without
`input.id_column` the id is the content hash, and a repeated id is a
repeated text (`duplicate text`); with it, two rows claiming one id
(`duplicate id`) are two documents the input says are one.

Input order is (file in the sorted listing, row or byte offset in the file),
carried by every raw row as `input_file` / `input_offset`, so "first" does not
depend on how Ray split or scheduled the read. A pre-pass over the input
(read + validate, no embedding) finds the repeats before the embed phase
runs, so a repeat is never embedded and every phase after it sees unique
ids. Ids are compared by a 128-bit BLAKE2b digest, never by a salted hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from thresher.operators import schema as S

from .errors import JobError

REASON_DUPLICATE_ID = "duplicate id"
REASON_DUPLICATE_TEXT = "duplicate text (same content id as an earlier row)"
OFFSET_BITS = 40  # a position is file_index << 40 | offset: files < 2^23, offsets < 1 TiB


def positions(t: pa.Table, file_index: dict[str, int]) -> np.ndarray:
    """Each row's place in input order as one int64."""
    files = np.array([file_index[f] for f in t.column(S.INPUT_FILE).to_pylist()], np.int64)
    offsets = np.asarray(t.column(S.INPUT_OFFSET).to_numpy(zero_copy_only=False), np.int64)
    if offsets.size and offsets.max() >= 1 << OFFSET_BITS:
        raise JobError(f"an input file is over {1 << OFFSET_BITS} bytes or rows; split it")
    return (files << OFFSET_BITS) | offsets


def id_digests(t: pa.Table, file_index: dict[str, int]) -> pa.Table:
    """(two halves of a 128-bit id digest, position) for every valid row of a validated batch."""
    t = t.filter(t.column(S.INVALID_REASON).is_null())
    raw = b"".join(hashlib.blake2b(d.encode(), digest_size=16).digest() for d in t.column(S.DOC_ID).to_pylist())
    halves = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    return pa.table({"h0": halves[:, 0], "h1": halves[:, 1], "pos": positions(t, file_index)})


def repeated_in(tables: Iterable[pa.Table], file_index: dict[str, int]) -> np.ndarray:
    """Sorted positions of the valid rows whose id an earlier row (in input order) already has, over validated
    tables (doc_id, invalid_reason and the position columns) read on the driver.

    The driver holds 24 bytes per valid row (digest halves and position).
    """
    parts = [{k: c.to_numpy() for k, c in zip(("h0", "h1", "pos"), id_digests(t, file_index).columns)} for t in tables]
    if not parts:
        return np.zeros(0, np.int64)
    h0, h1, pos = (np.concatenate([p[k] for p in parts]) for k in ("h0", "h1", "pos"))
    order = np.lexsort((pos, h1, h0))  # by digest, then input order
    h0, h1, pos = h0[order], h1[order], pos[order]
    later = np.zeros(len(pos), bool)
    later[1:] = (h0[1:] == h0[:-1]) & (h1[1:] == h1[:-1])
    return np.sort(pos[later])


def mark(t: pa.Table, repeats: np.ndarray, file_index: dict[str, int], reason: str) -> pa.Table:
    """Set invalid_reason to `reason` on the valid rows whose position is in `repeats`."""
    if not repeats.size or not t.num_rows:
        return t
    pos = positions(t, file_index)
    hit = repeats[np.minimum(np.searchsorted(repeats, pos), repeats.size - 1)] == pos
    if not hit.any():
        return t
    reasons = np.asarray(t.column(S.INVALID_REASON).to_numpy(zero_copy_only=False), dtype=object)
    reasons[hit & np.equal(reasons, None)] = reason
    i = t.column_names.index(S.INVALID_REASON)
    return t.set_column(i, S.INVALID_REASON, pa.array(reasons.tolist(), pa.string()))
