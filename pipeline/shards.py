"""Output shards whose layout depends only on the selection: the same selection gives byte-identical files.

Every selected row has a 64-bit key, BLAKE2b(doc_id). The driver reads the
narrow columns of the selected rows (doc_id, n_tokens, sel_copies), sorts
their keys and cuts them into N ranges of about `output.shard_bytes` each
(`plan`); shard i holds the rows whose key falls in range i, ordered by
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
and no task holds more than one select file's or one shard's rows. (Ray
Data's hash-shuffle group-by does the same job but starts its aggregators
for seconds, too slow for the small jobs that dominate tests and demos.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from thresher.operators import schema as S

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


def plan(files: list[Path], score_dir: Path, shard_bytes: int, bytes_per_token: float, schema: pa.Schema) -> Layout:
    """Cut the selected rows, in key order, into shards of about shard_bytes (estimated) each."""
    keys, sizes = [], []
    overhead = row_overhead(schema)
    for f in files:
        sel, score = pq.ParquetFile(f), pq.ParquetFile(score_file_of(f, score_dir))
        for rg in range(sel.num_row_groups):
            t = read_joined(score, sel, rg, [S.N_TOKENS], [S.DOC_ID, S.SEL_COPIES])
            t = t.filter(pc.greater(t.column(S.SEL_COPIES), 0))
            keys.append(shard_keys(t.column(S.DOC_ID).to_pylist()))
            sizes.append(np.asarray(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64) * bytes_per_token + overhead)
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    if not key.size:
        return Layout(np.zeros(0, np.uint64), ())
    size = np.concatenate(sizes)
    order = np.lexsort((size, key))  # ties (a 64-bit collision) broken by size: the order is a function of the multiset
    key, size = key[order], size[order]
    before = np.cumsum(size) - size
    n = max(1, int(np.ceil(size.sum() / shard_bytes)))
    index = np.minimum((before * n / size.sum()).astype(np.int64), n - 1)
    starts = np.flatnonzero(np.diff(index)) + 1
    bounds = np.unique(key[starts])
    layout = Layout(bounds, ())
    return Layout(bounds, tuple(np.bincount(layout.shard_of(key), minlength=len(bounds) + 1).tolist()))


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
        spill = {"score_dir": str(score_dir), "schema": schema, "bounds": layout.bounds, "pieces": str(pieces)}
        spilled = ray.data.from_items([{"file": str(f)} for f in files], override_num_blocks=len(files)).map(spill_file, fn_kwargs=spill).take_all()
        parts: dict[int, list] = {i: [] for i in range(len(layout.rows))}
        for r in sorted(spilled, key=lambda r: r["piece"]):
            for rg, shard in enumerate(json.loads(r["shards"])):
                parts[shard].append((r["piece"], rg))
        items = [{"name": name, "parts": json.dumps(parts[i])} for i, name in enumerate(layout.names)]
        done = ray.data.from_items(items, override_num_blocks=len(items)).map(
            write_shard, fn_kwargs={"directory": str(directory), "schema": schema, "row_group_rows": row_group_rows}
        ).take_all()
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
