"""Repeated doc_ids: the first row in input order keeps its id, later rows are quarantined.

Every later phase keys documents by `doc_id` (duplicate maps, hash uniforms,
the output's accounting), so valid ids must be unique. Without
`input.id_column` the id is the content hash, and a repeated id is a
repeated text (`duplicate text`); with it, two rows claiming one id
(`duplicate id`) are two documents the input says are one.

Input order is (file in the sorted listing, row or byte offset in the file),
carried by every raw row as `input_file` / `input_offset`, so "first" does not
depend on how Ray split or scheduled the read. Once the embed phase's pieces
are written, a shuffle of their id files by doc_id (`repeated`) finds the
repeats; they are marked as the phase's data/ is assembled, so every phase
after it sees unique ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import shuffle
from .errors import JobError

REASON_DUPLICATE_ID = "duplicate id"
REASON_DUPLICATE_TEXT = "duplicate text (same content id as an earlier row)"
OFFSET_BITS = 40  # a position is file_index << 40 | offset: files < 2^23, offsets < 1 TiB


def positions(t: pa.Table, file_index: dict[str, int]) -> np.ndarray:
    """Each row's place in input order as one int64."""
    names = pc.dictionary_encode(t.column(S.INPUT_FILE).combine_chunks())
    lut = np.array([file_index[f] for f in names.dictionary.to_pylist()], np.int64)
    files = lut[names.indices.to_numpy(zero_copy_only=False)] if t.num_rows else np.zeros(0, np.int64)
    offsets = np.asarray(t.column(S.INPUT_OFFSET).to_numpy(zero_copy_only=False), np.int64)
    if offsets.size and offsets.max() >= 1 << OFFSET_BITS:
        raise JobError(f"an input file is over {1 << OFFSET_BITS} bytes or rows; split it")
    return (files << OFFSET_BITS) | offsets


def repeated(files: list[Path], file_index: dict[str, int], scratch: Path, here: bool = False, parts: int | None = None) -> np.ndarray:
    """Sorted positions of the valid rows whose id an earlier row (in input order) already has, over FILES (an embed
    piece's id files, or its data files, whose invalid rows are skipped).

    A shuffle of (doc_id, position) by doc_id (pipeline/shuffle.py): the driver gets the repeats only, and runs it
    itself for at most `shuffle.PART_ROWS` rows (PARTS, when given, overrides the choice).
    """
    if parts is None:
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        here = here or rows <= shuffle.PART_ROWS
        parts = 1 if here else shuffle.reduce_partitions(rows)
    with shuffle.exchange(scratch, parts) as ex:
        found = shuffle.run(parts, _rounds, ex, [str(f) for f in files], file_index, here=here)
    return np.sort(np.concatenate([np.zeros(0, np.int64), *found]))


_IDS = pa.schema([("doc", pa.string()), ("pos", pa.int64())])


def _rounds(stage, ex: shuffle.Exchange, files: list[str], file_index: dict[str, int]) -> list[np.ndarray]:
    stage(_id_map, [(ex, i, f, file_index) for i, f in enumerate(files)])
    return stage(_repeats, [(ex, q) for q in range(ex.parts)])


def _id_map(ex: shuffle.Exchange, task: int, path: str, file_index: dict[str, int]) -> int:
    validity = [S.INVALID_REASON] if S.INVALID_REASON in pq.read_schema(path).names else []
    t = pq.read_table(path, columns=[S.DOC_ID, S.INPUT_FILE, S.INPUT_OFFSET, *validity])
    if validity:
        t = t.filter(t.column(S.INVALID_REASON).is_null())
    out = pa.table({"doc": t.column(S.DOC_ID), "pos": positions(t, file_index)}).cast(_IDS)
    return ex.write("ids", task, shuffle.split(out, shuffle.key_hash(out.column("doc")), ex.parts))


def _repeats(ex: shuffle.Exchange, q: int) -> np.ndarray:
    df = pl.from_arrow(ex.read("ids", q, _IDS))
    return df.filter(pl.col("pos") != pl.col("pos").min().over("doc"))["pos"].to_numpy()


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
