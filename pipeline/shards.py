"""Output shards whose layout depends only on the selection: the same selection gives byte-identical files.

Every selected row has a 64-bit key, BLAKE2b(doc_id). The selected rows'
keys and estimated sizes are sorted by key range on the workers and cut into
N ranges of about `output.shard_bytes` each (`plan`); shard i holds the rows whose key falls in range i, ordered by
(key, doc_id). So where a row lands depends on which documents are
selected, never on how Ray partitioned or scheduled the earlier phases, and
a trainer can cache shards by sha256. A row's size is estimated without
reading its text: n_tokens x input.bytes_per_token plus the fixed-width
columns (`row_overhead`), so shard_bytes is a target for the uncompressed
rows; zstd files are smaller.

Writing is a map-reduce through files: one Ray task per select file reads
it and its score file side by side (`read_joined`) and spills its selected
rows into one piece file, a row group per shard (`spill_file`); one task per
shard reads its row group of every piece, sorts and writes the shard in row
groups of `output.row_group_rows` (`write_shard`). Each byte is read twice
and no task holds more than one select file's or one shard's rows. They are
plain Ray tasks (`shuffle.run`), run in the driver for a selection of at most
`shuffle.PART_ROWS` rows. (Ray Data's hash-shuffle group-by does the same job
but starts its aggregators for seconds, too slow for the small jobs that
dominate tests and demos.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import shuffle
from .errors import JobError

NOT_IN_SHARDS = (S.INVALID_REASON, S.SEL_REASON)


def score_file_of(select_file: str | Path, score_dir: Path) -> Path:
    """The score file a select file was written beside (same name)."""
    return score_dir / "data" / Path(select_file).name


def file_decisions(select_file: Path, score_dir: Path, score_columns: list[str], select_columns: list[str]):
    """A select file's rows with their score columns, row group by row group (the two files read side by side)."""
    sel = pq.ParquetFile(select_file)
    score = pq.ParquetFile(score_file_of(select_file, score_dir))
    for rg in range(sel.num_row_groups):
        yield read_joined(score, sel, rg, score_columns, select_columns)


def read_joined(score: pq.ParquetFile, select: pq.ParquetFile, rg: int, score_columns: list[str], select_columns: list[str]) -> pa.Table:
    """Row group rg of a score file and of its select file, side by side (checked to be the same rows)."""
    left = score.read_row_group(rg, columns=score_columns + [S.DOC_ID])
    right = select.read_row_group(rg, columns=select_columns + [S.DOC_ID])
    if not left.column(S.DOC_ID).equals(right.column(S.DOC_ID)):
        raise JobError(f"select output is not aligned with its score file at row group {rg}; rerun with --force select")
    out = left.select(score_columns)
    for name in select_columns:
        out = out.append_column(name, right.column(name))
    return out


SHARD, KEY = "_shard", "_key"


def shard_keys(doc_ids: list[str]) -> np.ndarray:
    """The uint64 a row is ordered by in the output: unkeyed BLAKE2b of its doc_id (the same in every run)."""
    raw = b"".join(hashlib.blake2b(d.encode(), digest_size=8).digest() for d in doc_ids)
    return np.frombuffer(raw, dtype="<u8")


def row_overhead(schema: pa.Schema) -> int:
    """Bytes per row of the shard columns other than the text: fixed widths exact, other variable-width columns 16."""
    total = 0
    for f in schema:
        if f.name == S.TEXT:
            continue
        t = f.type
        if pa.types.is_fixed_size_list(t) and t.value_type.bit_width > 0:
            total += t.list_size * t.value_type.bit_width // 8
        else:
            try:
                total += max(1, t.bit_width // 8)
            except ValueError:  # variable width
                total += 16
    return total


@dataclass(frozen=True)
class Layout:
    """The shards of one selection: key range boundaries (shard i holds keys in [bounds[i-1], bounds[i])) and rows per shard."""

    bounds: np.ndarray
    rows: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        n = len(self.rows)
        return [f"part-{i:05d}-of-{n:05d}.parquet" for i in range(n)]

    def shard_of(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bounds, keys, side="right").astype(np.int32)


_SIZES = pa.schema([(KEY, pa.uint64()), ("_size", pa.int64())])


def plan(files: list[Path], score_dir: Path, shard_bytes: int, bytes_per_token: float, schema: pa.Schema, scratch: Path) -> Layout:
    """Cut the selected rows, in (key, size) order, into shards of about shard_bytes (estimated, whole bytes) each.

    On the workers, a sort by key range: a task per select file routes its selected rows' (key, size) to the part of
    the key range they fall in (`_route_sizes`), a task per part sorts them (`_sorted_part`); from the parts' byte
    totals each part finds where shard boundaries fall among its rows (`_cuts`) and counts its rows per shard. The
    driver holds a few numbers per part and the boundaries; a pool of at most `shuffle.PART_ROWS` rows is planned
    here. Sizes are whole bytes, so the cuts are a function of the selection alone, whatever the number of parts.
    """
    overhead = row_overhead(schema)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    with shuffle.exchange(scratch, shuffle.reduce_partitions(rows)) as ex:

        def rounds(stage):
            stage(_route_sizes, [(ex, str(f), str(score_dir), bytes_per_token, overhead) for f in files])
            parts = stage(_sorted_part, [(ex, q) for q in range(ex.parts)])  # (bytes, last row's bytes, rows) per part
            total, count = sum(p[0] for p in parts), sum(p[2] for p in parts)
            if not count:
                return Layout(np.zeros(0, np.uint64), ())
            if not total:  # no row has an estimated size: one shard
                return Layout(np.zeros(0, np.uint64), (count,))
            n = max(1, -(-total // shard_bytes))
            calls, offset, previous = [], 0, None
            for q, (part_bytes, last, part_rows) in enumerate(parts):
                calls.append((ex, q, offset, previous, total, n))
                if part_rows:
                    previous = offset + part_bytes - last  # bytes before the last row so far
                offset += part_bytes
            bounds = np.unique(np.concatenate(stage(_cuts, calls)))
            counts = np.sum(stage(_shard_rows, [(ex, q, bounds) for q in range(ex.parts)]), axis=0)
            return Layout(bounds, tuple(int(c) for c in counts))

        return shuffle.run(ex.parts, rounds, here=rows <= shuffle.PART_ROWS)


def _route_sizes(ex: shuffle.Exchange, select_file: str, score_dir: str, bytes_per_token: float, overhead: int) -> int:
    """Ray task: a select file's selected rows as (key, estimated bytes), each to the part of the key range it is in."""
    tables = []
    for t in file_decisions(Path(select_file), Path(score_dir), [S.N_TOKENS], [S.DOC_ID, S.SEL_COPIES]):
        t = t.filter(pc.greater(t.column(S.SEL_COPIES), 0))
        tokens = np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64)
        tables.append(pa.table([shard_keys(t.column(S.DOC_ID).to_pylist()), np.rint(tokens * bytes_per_token).astype(np.int64) + overhead], schema=_SIZES))
    t = pa.concat_tables(tables) if tables else _SIZES.empty_table()
    part = ((t.column(KEY).to_numpy() >> np.uint64(32)) * np.uint64(ex.parts)) >> np.uint64(32)  # key range: part order is key order
    return ex.write("sizes", uuid.uuid4().hex, [t.filter(pa.array(part == q)) for q in range(ex.parts)])


def _sorted_part(ex: shuffle.Exchange, part: int) -> tuple[int, int, int]:
    """Ray task: a part's rows in (key, size) order; returns its bytes, its last row's bytes and its rows."""
    t = ex.read("sizes", part, _SIZES).sort_by([(KEY, "ascending"), ("_size", "ascending")])
    ex.write("sorted", 0, [_SIZES.empty_table()] * part + [t])  # as part PART of one task
    size = t.column("_size").to_numpy()
    return int(size.sum()), int(size[-1]) if size.size else 0, t.num_rows


def _cuts(ex: shuffle.Exchange, part: int, offset: int, previous: int | None, total: int, n: int) -> np.ndarray:
    """Ray task: the keys of a part's rows that start a shard: shard i starts at the first row with i x total / n
    bytes before it (`previous`: the bytes before the row just before this part, None for the first part)."""
    t = ex.read("sorted", part, _SIZES)
    size, keys = t.column("_size").to_numpy(), t.column(KEY).to_numpy()
    before = offset + np.cumsum(size) - size
    index = np.minimum(before * n // total, n - 1)
    prior = np.concatenate([[-1 if previous is None else min(previous * n // total, n - 1)], index[:-1]])
    return keys[(index != prior) & (prior >= 0)]


def _shard_rows(ex: shuffle.Exchange, part: int, bounds: np.ndarray) -> np.ndarray:
    """Ray task: a part's rows per shard."""
    keys = ex.read("sorted", part, _SIZES).column(KEY).to_numpy()
    return np.bincount(Layout(bounds, ()).shard_of(keys), minlength=len(bounds) + 1)


def shard_schema(files: list[Path], score_dir: Path) -> pa.Schema:
    """The shards' schema: the score columns (unified over the files), then domain and sel_*, less the decision internals."""
    score = pa.unify_schemas([pq.read_schema(score_file_of(f, score_dir)) for f in files], promote_options="permissive")
    select = pq.read_schema(files[0])
    fields = [f for f in score if f.name not in NOT_IN_SHARDS] + [f for f in select if f.name != S.DOC_ID and f.name not in NOT_IN_SHARDS]
    return pa.schema(fields)


def spill_file(row: dict, score_dir: str, schema: pa.Schema, bounds: np.ndarray, pieces: str) -> dict:
    """Ray task (map side): a select file's selected rows, joined with its score file, grouped by shard into one piece file.

    The piece holds one row group per shard it has rows for; the task holds
    one select file's selected rows.
    """
    layout = Layout(bounds, ())
    file = row["file"]
    sel, score = pq.ParquetFile(file), pq.ParquetFile(score_file_of(file, Path(score_dir)))
    names = set(sel.schema_arrow.names)
    score_cols = [n for n in schema.names if n not in names and n in score.schema_arrow.names]
    parts = []
    for rg in range(sel.num_row_groups):
        t = read_joined(score, sel, rg, score_cols, [n for n in schema.names if n in names])
        t = t.filter(pc.greater(t.column(S.SEL_COPIES), 0))
        for f in schema:  # a column some score files lack (schema drift across files) is null there
            if f.name not in t.column_names:
                t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
        parts.append(t.select(schema.names).cast(schema))
    t = pa.concat_tables(parts) if parts else schema.empty_table()
    key = shard_keys(t.column(S.DOC_ID).to_pylist())
    shard = layout.shard_of(key)
    t = t.append_column(SHARD, pa.array(shard)).append_column(KEY, pa.array(key)).sort_by(SHARD)
    present, starts = np.unique(np.sort(shard), return_index=True)
    path = Path(pieces) / Path(file).name
    with pq.ParquetWriter(path, t.schema, compression="lz4") as writer:
        for lo, hi in zip(starts, [*starts[1:], t.num_rows]):
            writer.write_table(t.slice(lo, hi - lo), row_group_size=hi - lo)
    return {"piece": str(path), "shards": json.dumps(present.tolist())}


def write_shard(row: dict, directory: str, schema: pa.Schema, row_group_rows: int, compression: str = "zstd") -> dict:
    """Ray task (reduce side): one shard's row groups from the pieces, ordered by (key, doc_id), in row groups of row_group_rows."""
    parts = [pq.ParquetFile(piece).read_row_group(rg) for piece, rg in json.loads(row["parts"])]
    t = pa.concat_tables(parts).sort_by([(KEY, "ascending"), (S.DOC_ID, "ascending")]).select(schema.names).cast(schema).combine_chunks()
    path = Path(directory) / row["name"]
    pq.write_table(t, path, row_group_size=row_group_rows, compression=compression)
    return {"path": f"{Path(directory).name}/{path.name}", "rows": t.num_rows, "bytes": path.stat().st_size, "sha256": sha256(path)}


def write_all(layout: Layout, files: list[Path], directory: Path, schema: pa.Schema, row_group_rows: int, score_dir: Path) -> list[dict]:
    """Write every shard of the layout: a map-reduce over piece files in DIRECTORY/.pieces; returns the manifest entries."""
    directory.mkdir(parents=True, exist_ok=True)
    if not layout.rows:
        return []
    pieces = directory / ".pieces"
    pieces.mkdir()
    try:
        here = sum(layout.rows) <= shuffle.PART_ROWS  # a small selection is written here: a round of task starts costs more

        def rounds(stage):
            spilled = stage(spill_file, [({"file": str(f)}, str(score_dir), schema, layout.bounds, str(pieces)) for f in files])
            parts: dict[int, list] = {i: [] for i in range(len(layout.rows))}
            for r in sorted(spilled, key=lambda r: r["piece"]):
                for rg, shard in enumerate(json.loads(r["shards"])):
                    parts[shard].append((r["piece"], rg))
            return stage(write_shard, [({"name": name, "parts": json.dumps(parts[i])}, str(directory), schema, row_group_rows) for i, name in enumerate(layout.names)])

        done = shuffle.run(2, rounds, here=here)  # 2: never all in one task, the shards are written side by side
    finally:
        shutil.rmtree(pieces, ignore_errors=True)
    entries = sorted(({k: r[k] for k in ("path", "rows", "bytes", "sha256")} for r in done), key=lambda e: e["path"])
    if [e["rows"] for e in entries] != list(layout.rows):
        raise JobError(f"shards hold {[e['rows'] for e in entries]} rows, the layout planned {list(layout.rows)}")
    return entries


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
