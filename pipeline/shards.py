"""Output shards: planned on the driver, written row group by row group on Ray.

The select phase writes only doc_id + domain + sel_* beside each score file,
row-group aligned with it (same file name, same row groups); a shard's rows
are the two read side by side (`read_joined`).

Ray Data's own Parquet sink holds every block of a write task in memory and
makes each file one row group when a minimum file size is set, so a shard
would cost its whole uncompressed size in one worker.  Instead the driver
reads the narrow `sel_copies` column of the select phase's files, packs their
row groups in file order into shards of about `rows_per_shard` selected rows
(`plan`), and one Ray Data task per shard streams its row groups through a
`pyarrow.parquet.ParquetWriter` (`write_shard`).  A worker holds one input row
group and at most one output row group, whatever the corpus or shard size,
and the layout depends only on the select phase's files, not on scheduling.
"""

from __future__ import annotations

import hashlib
import json
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


@dataclass(frozen=True)
class ShardPlan:
    """One shard: its file name and the (input file, row group) pairs it is cut from."""

    name: str
    parts: tuple[tuple[str, int], ...]
    rows: int


def plan(files: list[Path], rows_per_shard: int) -> list[ShardPlan]:
    """Pack row groups holding selected rows, in order, into shards of >= rows_per_shard rows (the last may be short)."""
    groups: list[list[tuple[str, int]]] = []
    counts: list[int] = []
    current: list[tuple[str, int]] = []
    n = 0
    for f in files:
        pf = pq.ParquetFile(f)
        for rg in range(pf.num_row_groups):
            copies = pf.read_row_group(rg, columns=[S.SEL_COPIES]).column(0)
            k = int(np.count_nonzero(np.asarray(copies.to_numpy(zero_copy_only=False)) > 0))
            if k == 0:
                continue
            current.append((str(f), rg))
            n += k
            if n >= rows_per_shard:
                groups.append(current)
                counts.append(n)
                current, n = [], 0
    if current:
        groups.append(current)
        counts.append(n)
    total = len(groups)
    return [ShardPlan(f"part-{i:05d}-of-{total:05d}.parquet", tuple(g), c) for i, (g, c) in enumerate(zip(groups, counts))]


def shard_schema(files: list[Path], score_dir: Path) -> pa.Schema:
    """The shards' schema: the score columns (unified over the files), then domain and sel_*, less the decision internals."""
    score = pa.unify_schemas([pq.read_schema(score_file_of(f, score_dir)) for f in files], promote_options="permissive")
    select = pq.read_schema(files[0])
    fields = [f for f in score if f.name not in NOT_IN_SHARDS] + [f for f in select if f.name != S.DOC_ID and f.name not in NOT_IN_SHARDS]
    return pa.schema(fields)


def write_shard(shard: ShardPlan, directory: Path, schema: pa.Schema, row_group_rows: int, score_dir: Path, compression: str = "zstd") -> dict:
    """Stream one shard's selected rows into DIRECTORY/name in row groups of exactly row_group_rows (the last may be short)."""
    path = directory / shard.name
    pending: list[pa.Table] = []
    buffered = 0
    rows = 0
    open_file: tuple[str, pq.ParquetFile, pq.ParquetFile] | None = None
    with pq.ParquetWriter(path, schema, compression=compression) as writer:
        for file, rg in shard.parts:
            if open_file is None or open_file[0] != file:
                open_file = (file, pq.ParquetFile(score_file_of(file, score_dir)), pq.ParquetFile(file))
            names = set(open_file[2].schema_arrow.names)
            score_cols = [n for n in schema.names if n not in names and n in open_file[1].schema_arrow.names]
            t = read_joined(open_file[1], open_file[2], rg, score_cols, [n for n in schema.names if n in names])
            t = t.filter(pc.greater(t.column(S.SEL_COPIES), 0))
            for f in schema:  # a column some score files lack (schema drift across files) is null there
                if f.name not in t.column_names:
                    t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
            t = t.select(schema.names).cast(schema)
            pending.append(t)
            buffered += t.num_rows
            while buffered >= row_group_rows:
                block = pa.concat_tables(pending).combine_chunks()
                writer.write_table(block.slice(0, row_group_rows), row_group_size=row_group_rows)
                rest = block.slice(row_group_rows)
                pending, buffered = [rest], rest.num_rows
                rows += row_group_rows
        if buffered:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
            rows += buffered
    return {"path": f"{directory.name}/{shard.name}", "rows": rows, "bytes": path.stat().st_size, "sha256": sha256(path)}


def write_all(shards: list[ShardPlan], directory: Path, schema: pa.Schema, row_group_rows: int, score_dir: Path) -> list[dict]:
    """Write every shard, one Ray Data task each; returns the manifest entries in shard order."""
    directory.mkdir(parents=True, exist_ok=True)
    if not shards:
        return []
    # (file, row group) pairs travel as JSON: an Arrow column cannot hold mixed tuples
    items = [{"name": s.name, "parts": json.dumps(s.parts), "rows": s.rows} for s in shards]

    def write(row: dict) -> dict:
        parts = tuple((f, rg) for f, rg in json.loads(row["parts"]))
        return write_shard(ShardPlan(row["name"], parts, row["rows"]), directory, schema, row_group_rows, score_dir)

    done = ray.data.from_items(items, override_num_blocks=len(items)).map(write).take_all()
    return sorted(({k: r[k] for k in ("path", "rows", "bytes", "sha256")} for r in done), key=lambda e: e["path"])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
