"""The content cache: per-document results keyed by (a 128-bit digest of the text, what computed them), in Parquet.

Pieces (`pipeline/partitions.py`) make an unchanged partition free; this
makes an unchanged *document* free wherever it turns up: in a rewritten
file, moved to another file, or again under another id. Two namespaces use
it: the embed phase's vectors (`embed-<model version>`) and the score phase's
columns (`score-<states and scorers>`, `pipeline/scoring.py`). Before a
partition is computed its rows' digests are looked up here on the workers
(`Lookup`: a hash join of the rows' digests with the namespace's, by digest,
over Ray tasks), which write the values found beside the rows' input places;
the workers computing the partition read the hits of each batch's rows
(`hits_for`) and compute only the rest, adding those to the cache as the
pieces are written. The driver holds paths and counts, never a digest.

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
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from thresher.operators import schema as S

from .shuffle import Exchange, run, split

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


WANT = pa.schema([(H0, pa.uint64()), (H1, pa.uint64()), (S.INPUT_FILE, pa.string()), (S.INPUT_OFFSET, pa.int64())])
_HAVE = pa.schema([(H0, pa.uint64()), (H1, pa.uint64()), ("_file", pa.int32()), ("_row", pa.int64())])
HITS_ROW_GROUP = 8192  # rows: a batch's filtered read of the hits skips the row groups of other places


class Lookup:
    """Rows' digests looked up in a namespace on the workers: a two-round hash shuffle by digest.

    `want` (worker side, any number of calls) routes the rows to look up, each with its input place; `resolve`
    routes the namespace's digests the same way (a task per group of its files), then a task per part joins the
    two and writes the values found, with the rows' places, as `out/part-P.parquet` (sorted by place, so that
    `hits_for` reads a batch's hits by Parquet statistics). Of a digest held by several files, the first file's
    values are taken (equal by construction: the same text, the same computation).
    """

    def __init__(self, cache: ContentCache, ex: Exchange):
        self.cache, self.ex = cache, ex

    def want(self, rows: pa.Table) -> int:
        """Route rows (H0, H1, input file, input offset) to the parts that will look them up; returns the rows."""
        rows = rows.select(WANT.names).cast(WANT)
        return self.ex.write("want", uuid.uuid4().hex, split(rows, rows.column(H0).to_numpy(), self.ex.parts))

    def resolve(self, out: Path, here: bool = False) -> int:
        """Join what was wanted with the namespace's digests; the hits go to `out`. Returns how many rows were found."""
        files = [str(f) for f in self.cache.files()]
        tasks = min(len(files), self.ex.parts)
        groups = [list(enumerate(files))[i::tasks] for i in range(tasks)]
        out.mkdir(parents=True, exist_ok=True)

        def rounds(stage):
            stage(_route_digests, [(self.ex, g) for g in groups])
            return sum(stage(_join, [(self.ex, q, files, str(out)) for q in range(self.ex.parts)]))

        return run(self.ex.parts, rounds, here=here)


def _route_digests(ex: Exchange, files: list[tuple[int, str]]) -> int:
    """Ray task: the digests of a group of the namespace's files, each with its file and row, routed by digest."""
    tables = []
    for i, f in files:
        t = pq.read_table(f, columns=["h0", "h1"])
        tables.append(pa.table([t.column("h0"), t.column("h1"), pa.array(np.full(t.num_rows, i, np.int32)), pa.array(np.arange(t.num_rows))], schema=_HAVE))
    have = pa.concat_tables(tables) if tables else _HAVE.empty_table()
    return ex.write("have", uuid.uuid4().hex, split(have, have.column(H0).to_numpy(), ex.parts))


def _join(ex: Exchange, part: int, files: list[str], out: str) -> int:
    """Ray task: one part's wanted rows joined with the namespace's digests, the values found written with their places."""
    wanted = pl.from_arrow(ex.read("want", part, WANT))
    if not wanted.height:
        return 0
    have = pl.from_arrow(ex.read("have", part, _HAVE)).sort("_file", "_row").unique([H0, H1], keep="first", maintain_order=True)
    found = wanted.join(have, on=[H0, H1], how="inner")
    if not found.height:
        return 0
    values = []
    for (i,), rows in found.group_by("_file", maintain_order=True):
        t = pq.read_table(files[i]).take(pa.array(rows.get_column("_row").to_numpy()))
        place = rows.select(S.INPUT_FILE, S.INPUT_OFFSET).to_arrow()
        values.append(pa.table({S.INPUT_FILE: place.column(0), S.INPUT_OFFSET: place.column(1), **{c: t.column(c) for c in t.column_names[2:]}}))
    hits = pa.concat_tables(values, promote_options="default").sort_by([(S.INPUT_FILE, "ascending"), (S.INPUT_OFFSET, "ascending")])
    pq.write_table(hits, Path(out) / f"part-{part:05d}.parquet", row_group_size=HITS_ROW_GROUP, compression="zstd")
    return hits.num_rows


def hits_for(directory: str | None, batch: pa.Table) -> tuple[np.ndarray, pa.Table | None]:
    """For each row of a batch (by its input file and offset): the index of its hit in the returned table, -1 for none.

    Reads only the hits of the batch's places (each input file's offset range, by row-group statistics)."""
    none = np.full(batch.num_rows, -1, np.int64)
    parts = sorted(Path(directory).glob("part-*.parquet")) if directory else []
    if not parts or not batch.num_rows:
        return none, None
    place = pl.from_arrow(batch.select([S.INPUT_FILE, S.INPUT_OFFSET])).with_row_index("_i")
    spans = place.group_by(S.INPUT_FILE).agg(pl.col(S.INPUT_OFFSET).min().alias("lo"), pl.col(S.INPUT_OFFSET).max().alias("hi"))
    found = []
    for f, lo, hi in spans.iter_rows():
        where = (pc.field(S.INPUT_FILE) == f) & (pc.field(S.INPUT_OFFSET) >= lo) & (pc.field(S.INPUT_OFFSET) <= hi)
        found.append(ds.dataset([str(p) for p in parts], format="parquet").to_table(filter=where))
    hits = pa.concat_tables(found)
    if not hits.num_rows:
        return none, None
    joined = place.join(pl.from_arrow(hits.select([S.INPUT_FILE, S.INPUT_OFFSET])).with_row_index("_hit"), on=[S.INPUT_FILE, S.INPUT_OFFSET], how="inner")
    none[joined.get_column("_i").to_numpy()] = joined.get_column("_hit").to_numpy()
    return none, hits


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
