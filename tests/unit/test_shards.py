"""Shard planning and streaming writes, on a hand-built score + select phase output."""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline import shards
from thresher.pipeline.errors import JobError


def _write(root: pathlib.Path, name: str, groups: list[list[int]]) -> pathlib.Path:
    """A score file and its row-group aligned select file; rows are named NAME-GROUP-ROW.

    Returns the select file (what the shard plan reads).
    """
    score_schema = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("invalid_reason", pa.string())])
    select_schema = pa.schema([("doc_id", pa.string()), ("sel_copies", pa.int32()), ("sel_reason", pa.string())])
    (root / "score" / "data").mkdir(parents=True, exist_ok=True)
    (root / "select" / "data").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(root / "score" / "data" / name, score_schema) as sw, pq.ParquetWriter(root / "select" / "data" / name, select_schema) as dw:
        for g, copies in enumerate(groups):
            ids = [f"{name[0]}-{g}-{i}" for i in range(len(copies))]
            sw.write_table(pa.table({"doc_id": ids, "text": [f"text of {i}" for i in ids], "invalid_reason": [None] * len(ids)}, score_schema))
            reasons = [None if c else "not sampled" for c in copies]
            dw.write_table(pa.table({"doc_id": ids, "sel_copies": pa.array(copies, pa.int32()), "sel_reason": reasons}, select_schema))
    return root / "select" / "data" / name


def test_plan_packs_row_groups_with_selected_rows_in_order(tmp_path: pathlib.Path) -> None:
    a = _write(tmp_path, "a.parquet", [[1, 0, 2, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    b = _write(tmp_path, "b.parquet", [[3, 0, 0, 1]])
    plan = shards.plan([a, b], rows_per_shard=3)
    # a/0 holds 2 selected rows (< 3), a/1 none (skipped), a/2 two more: 4 >= 3 closes shard 0
    assert [(p.name, p.parts, p.rows) for p in plan] == [
        ("part-00000-of-00002.parquet", ((str(a), 0), (str(a), 2)), 4),
        ("part-00001-of-00002.parquet", ((str(b), 0),), 2),
    ]


def test_write_shard_joins_score_and_selection_in_full_row_groups(tmp_path: pathlib.Path) -> None:
    a = _write(tmp_path, "a.parquet", [[1, 0, 2, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    b = _write(tmp_path, "b.parquet", [[3, 0, 0, 1]])
    score_dir = tmp_path / "score"
    out = tmp_path / "data"
    out.mkdir()
    schema = shards.shard_schema([a, b], score_dir)
    assert schema.names == ["doc_id", "text", "sel_copies"]  # decision internals stay out of the shards
    plan = shards.ShardPlan("s.parquet", ((str(a), 0), (str(a), 2), (str(b), 0)), 6)
    entry = shards.write_shard(plan, out, schema, row_group_rows=4, score_dir=score_dir)
    meta = pq.ParquetFile(out / "s.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 2]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(out / "s.parquet")
    assert table.column("doc_id").to_pylist() == ["a-0-0", "a-0-2", "a-2-0", "a-2-1", "b-0-0", "b-0-3"]
    assert table.column("text").to_pylist() == [f"text of {i}" for i in table.column("doc_id").to_pylist()]
    assert table.column("sel_copies").to_pylist() == [1, 2, 1, 1, 3, 1]
    assert entry["rows"] == 6 and entry["path"] == "data/s.parquet" and entry["bytes"] == (out / "s.parquet").stat().st_size
    assert entry["sha256"] == shards.sha256(out / "s.parquet")


def test_a_select_file_out_of_step_with_its_score_file_is_refused(tmp_path: pathlib.Path) -> None:
    a = _write(tmp_path, "a.parquet", [[1, 0], [1, 1]])
    pq.write_table(pa.table({"doc_id": ["x-0-0", "x-0-1"], "text": ["p", "q"], "invalid_reason": [None, None]}), tmp_path / "score" / "data" / "a.parquet")
    with pytest.raises(JobError, match="not aligned"):
        shards.read_joined(pq.ParquetFile(tmp_path / "score" / "data" / "a.parquet"), pq.ParquetFile(a), 0, ["text"], ["sel_copies"])
