"""The content cache: per-document results keyed by (a 128-bit digest of the text, what computed them), in Parquet.

Pieces (`pipeline/partitions.py`) make an unchanged partition free; this
makes an unchanged *document* free wherever it turns up: in a rewritten
file, moved to another file, or again under another id. Two namespaces use
it: the embed phase's vectors (`embed-<model version>`) and the score phase's
columns (`score-<states and scorers>`, `pipeline/scoring.py`). Before a
partition is computed, the driver looks its rows' digests up here and the
workers are handed the values found, computing only the rest; those are
added to the cache as the pieces are written.

Layout: DIR/<namespace>/<uuid>.parquet, columns h0, h1 (the digest's two
halves, uint64) and the namespace's value columns. Files are written whole
(temporary name, then a rename) and never changed, so any number of jobs may
read and add at once; a digest may sit in more than one file (two jobs
computed the same new text), which costs space, never correctness. The
digest is BLAKE2b-128 of the NFC-normalised UTF-8 text: canonically
equivalent spellings are one text to a tokenizer, and to the cache. Nothing
is evicted yet: remove the directory to reclaim it.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S

H0, H1 = "_h0", "_h1"  # a row's text digest while it is being embedded (never written to a piece)
MISS = "_miss"  # set by the embedding stage on rows it embedded (what the cache gains)


def digests(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """The two uint64 halves of each text's digest (zeros for a null text)."""
    raw = b"".join(hashlib.blake2b(unicodedata.normalize("NFC", t).encode(), digest_size=16).digest() if t is not None else bytes(16) for t in texts)
    halves = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    return halves[:, 0].copy(), halves[:, 1].copy()


def with_digests(batch: pa.Table) -> pa.Table:
    h0, h1 = digests(batch.column(S.TEXT).to_pylist())
    return batch.append_column(H0, pa.array(h0)).append_column(H1, pa.array(h1))


class ContentCache:
    def __init__(self, root: Path, namespace: str):
        self.dir = Path(root) / namespace

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.parquet")) if self.dir.is_dir() else []

    def lookup(self, h0: np.ndarray, h1: np.ndarray) -> pa.Table:
        """The cached rows (H0, H1, value columns) of the given digests that are here, one row per digest found."""
        files = self.files()
        empty = pa.table({H0: pa.array([], pa.uint64()), H1: pa.array([], pa.uint64())})
        if not files or not len(h0):
            return empty
        wanted = pl.DataFrame({H0: h0, H1: h1}).unique()
        found = []
        for f in files:
            index = pl.from_arrow(pq.read_table(f, columns=["h0", "h1"])).rename({"h0": H0, "h1": H1}).with_row_index("_row")
            rows = index.join(wanted, on=[H0, H1], how="semi")
            if rows.height:
                t = pq.read_table(f).take(pa.array(rows["_row"].to_numpy()))
                found.append(t.rename_columns([H0, H1, *t.column_names[2:]]))
                wanted = wanted.join(pl.from_arrow(t.select(["h0", "h1"])).rename({"h0": H0, "h1": H1}), on=[H0, H1], how="anti")
            if not wanted.height:
                break
        return pa.concat_tables(found) if found else empty


def write(rows: pa.Table, directory: str, values: list[str]) -> None:
    """Add rows (carrying H0, H1 and the value columns) to a namespace as one new file (worker side)."""
    if not rows.num_rows:
        return
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    tmp = d / f".{name}.tmp"
    pq.write_table(pa.table({"h0": rows.column(H0), "h1": rows.column(H1), **{v: rows.column(v) for v in values}}), tmp, compression="zstd")
    tmp.rename(d / f"{name}.parquet")


def add(batch: pa.Table, directory: str) -> None:
    """Write the rows the embedding stage embedded (MISS) of a batch to the embed namespace."""
    if MISS in batch.column_names:
        write(batch.filter(batch.column(MISS)), directory, [S.EMB])
