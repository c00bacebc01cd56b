"""Shard layout and writes on a hand-built score + select phase output: placement depends only on the selection."""

from __future__ import annotations

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.pipeline import shards
from thresher.pipeline.errors import JobError


def _write(root: pathlib.Path, name: str, groups: list[list[int]], ids: list[str] | None = None) -> pathlib.Path:
    """A score file and its row-group aligned select file; rows are named NAME-GROUP-ROW unless `ids` names them.

    Every row has n_tokens 10. Returns the select file (what the shard plan reads).
    """
    score_schema = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("n_tokens", pa.int64()), ("invalid_reason", pa.string())])
    names = iter(ids) if ids else None
    select_schema = pa.schema([("doc_id", pa.string()), ("sel_copies", pa.int32()), ("sel_reason", pa.string())])
    (root / "score" / "data").mkdir(parents=True, exist_ok=True)
    (root / "select" / "data").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(root / "score" / "data" / name, score_schema) as sw, pq.ParquetWriter(root / "select" / "data" / name, select_schema) as dw:
        for g, copies in enumerate(groups):
            ids = [next(names) if names else f"{name[0]}-{g}-{i}" for i in range(len(copies))]
            sw.write_table(pa.table({"doc_id": ids, "text": [f"text of {i}" for i in ids], "n_tokens": [10] * len(ids), "invalid_reason": [None] * len(ids)}, score_schema))
            reasons = [None if c else "not sampled" for c in copies]
            dw.write_table(pa.table({"doc_id": ids, "sel_copies": pa.array(copies, pa.int32()), "sel_reason": reasons}, select_schema))
    return root / "select" / "data" / name


def test_the_layout_cuts_selected_rows_in_key_order_into_equal_estimated_sizes(tmp_path: pathlib.Path) -> None:
    a = _write(tmp_path, "a.parquet", [[1, 0, 2, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    b = _write(tmp_path, "b.parquet", [[3, 0, 0, 1]])
    schema = shards.shard_schema([a, b], tmp_path / "score")
    assert schema.names == ["doc_id", "text", "n_tokens", "sel_copies"]  # decision internals stay out of the shards
    assert shards.row_overhead(schema) == 16 + 8 + 4  # doc_id (variable: 16), n_tokens int64, sel_copies int32
    # 6 selected rows of 10 tokens x 2 bytes + 28 = 48 bytes each, 288 in all: 150-byte shards -> 2 shards of 3
    layout = shards.plan([a, b], tmp_path / "score", shard_bytes=150, bytes_per_token=2.0, schema=schema)
    selected = ["a-0-0", "a-0-2", "a-2-0", "a-2-1", "b-0-0", "b-0-3"]
    ordered = sorted(selected, key=lambda d: shards.shard_keys([d])[0])
    assert layout.rows == (3, 3) and layout.names == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert list(layout.bounds) == [shards.shard_keys([ordered[3]])[0]]
    assert list(layout.shard_of(shards.shard_keys(ordered))) == [0, 0, 0, 1, 1, 1]


def test_write_shard_orders_a_shard_by_key_in_full_row_groups(tmp_path: pathlib.Path) -> None:
    ids = [f"d{i}" for i in range(7)]
    key = shards.shard_keys(ids)
    schema = pa.schema([("doc_id", pa.string()), ("sel_copies", pa.int32())])
    piece = tmp_path / "piece.parquet"
    t = pa.table({"doc_id": ids, "sel_copies": pa.array(range(7), pa.int32()), "_shard": pa.array([1] * 7, pa.int32()), "_key": key})
    with pq.ParquetWriter(piece, t.schema) as w:  # two row groups of one shard, as two pieces would hold them
        w.write_table(t.slice(0, 4))
        w.write_table(t.slice(4))
    row = {"name": "p1.parquet", "parts": json.dumps([[str(piece), 0], [str(piece), 1]])}
    entry = shards.write_shard(row, str(tmp_path), schema, row_group_rows=3)
    f = pq.ParquetFile(tmp_path / "p1.parquet")
    assert [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)] == [3, 3, 1]
    assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    assert f.read().column("doc_id").to_pylist() == [ids[i] for i in sorted(range(7), key=lambda i: key[i])]
    assert entry == {"path": f"{tmp_path.name}/p1.parquet", "rows": 7, "bytes": (tmp_path / "p1.parquet").stat().st_size, "sha256": shards.sha256(tmp_path / "p1.parquet")}


def test_the_same_selection_in_another_upstream_layout_gives_byte_identical_shards(local_ray, tmp_path: pathlib.Path) -> None:
    """Two runs whose earlier phases split the same rows into other files and row groups write the same bytes."""
    ids = [f"doc-{i:03d}" for i in range(60)]
    copies = [i % 3 for i in range(60)]
    one = tmp_path / "one"
    files_one = [_write(one, "x.parquet", [copies[:25], copies[25:]], ids)]
    two = tmp_path / "two"
    order = list(reversed(range(60)))
    files_two = [
        _write(two, "p.parquet", [[copies[i] for i in order[:7]], [copies[i] for i in order[7:30]]], [ids[i] for i in order[:30]]),
        _write(two, "q.parquet", [[copies[i] for i in order[30:]]], [ids[i] for i in order[30:]]),
    ]
    written = []
    for root, files in ((one, files_one), (two, files_two)):
        schema = shards.shard_schema(files, root / "score")
        layout = shards.plan(files, root / "score", shard_bytes=1000, bytes_per_token=4.0, schema=schema)  # 40 rows x 68 bytes
        written.append(shards.write_all(layout, files, root / "out" / "data", schema, row_group_rows=8, score_dir=root / "score"))
    assert len(written[0]) == 3 and sum(e["rows"] for e in written[0]) == 40
    assert written[0] == written[1]  # same names, rows, bytes and sha256
    assert [p.read_bytes() for p in sorted((one / "out" / "data").iterdir())] == [p.read_bytes() for p in sorted((two / "out" / "data").iterdir())]
    assert not (one / "out" / "data" / ".pieces").exists()


def test_a_select_file_out_of_step_with_its_score_file_is_refused(tmp_path: pathlib.Path) -> None:
    a = _write(tmp_path, "a.parquet", [[1, 0], [1, 1]])
    pq.write_table(pa.table({"doc_id": ["x-0-0", "x-0-1"], "text": ["p", "q"], "invalid_reason": [None, None]}), tmp_path / "score" / "data" / "a.parquet")
    with pytest.raises(JobError, match="not aligned"):
        shards.read_joined(pq.ParquetFile(tmp_path / "score" / "data" / "a.parquet"), pq.ParquetFile(a), 0, ["text"], ["sel_copies"])
