"""Shard planning and streaming writes, on a hand-built select-phase output."""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.pipeline import shards


def _write(path: pathlib.Path, groups: list[list[int]], prefix: str) -> None:
    """One file, one row group per list of copies; rows are named PREFIX-GROUP-ROW."""
    schema = pa.schema([("doc_id", pa.string()), ("sel_copies", pa.int32()), ("invalid_reason", pa.string()), ("sel_reason", pa.string())])
    with pq.ParquetWriter(path, schema) as w:
        for g, copies in enumerate(groups):
            ids = [f"{prefix}-{g}-{i}" for i in range(len(copies))]
            reasons = [None if c else "below budget" for c in copies]
            w.write_table(pa.table({"doc_id": ids, "sel_copies": pa.array(copies, pa.int32()), "invalid_reason": [None] * len(copies), "sel_reason": reasons}, schema))


def test_plan_packs_row_groups_with_selected_rows_in_order(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, [[1, 0, 2, 0], [0, 0, 0, 0], [1, 1, 0, 0]], "a")
    _write(b, [[3, 0, 0, 1]], "b")
    plan = shards.plan([a, b], rows_per_shard=3)
    # a/0 holds 2 selected rows (< 3), a/1 none (skipped), a/2 two more: 4 >= 3 closes shard 0
    assert [(p.name, p.parts, p.rows) for p in plan] == [
        ("part-00000-of-00002.parquet", ((str(a), 0), (str(a), 2)), 4),
        ("part-00001-of-00002.parquet", ((str(b), 0),), 2),
    ]


def test_write_shard_streams_selected_rows_in_full_row_groups(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, [[1, 0, 2, 0], [0, 0, 0, 0], [1, 1, 0, 0]], "a")
    _write(b, [[3, 0, 0, 1]], "b")
    out = tmp_path / "data"
    out.mkdir()
    schema = shards.shard_schema([a, b])
    assert schema.names == ["doc_id", "sel_copies"]  # decision internals stay out of the shards
    entry = shards.write_shard(shards.ShardPlan("s.parquet", ((str(a), 0), (str(a), 2), (str(b), 0)), 6), out, schema, row_group_rows=4)
    meta = pq.ParquetFile(out / "s.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 2]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(out / "s.parquet")
    assert table.column("doc_id").to_pylist() == ["a-0-0", "a-0-2", "a-2-0", "a-2-1", "b-0-0", "b-0-3"]
    assert table.column("sel_copies").to_pylist() == [1, 2, 1, 1, 3, 1]
    assert entry["rows"] == 6 and entry["path"] == "data/s.parquet" and entry["bytes"] == (out / "s.parquet").stat().st_size
    assert entry["sha256"] == shards.sha256(out / "s.parquet")
