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
    layout = shards.plan([a, b], tmp_path / "score", shard_bytes=150, bytes_per_token=2.0, schema=schema, scratch=tmp_path)
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
        layout = shards.plan(files, root / "score", shard_bytes=1000, bytes_per_token=4.0, schema=schema, scratch=root)  # 40 rows x 68 bytes
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


def _reference_layout(files, score_dir, shard_bytes, bytes_per_token, schema):
    """The cut written out in one process: every selected row's (key, size) sorted, cut at multiples of total / n."""
    keys, sizes = [], []
    for f in files:
        for t in shards.file_decisions(f, score_dir, ["n_tokens"], ["doc_id", "sel_copies"]):
            t = t.filter(pa.compute.greater(t.column("sel_copies"), 0))
            keys += shards.shard_keys(t.column("doc_id").to_pylist()).tolist()
            sizes += [round(n * bytes_per_token) + shards.row_overhead(schema) for n in t.column("n_tokens").to_pylist()]
    rows = sorted(zip(keys, sizes))
    total = sum(s for _, s in rows)
    n = max(1, -(-total // shard_bytes))
    before, index = 0, []
    for _, s in rows:
        index.append(min(before * n // total, n - 1))
        before += s
    bounds = sorted({rows[i][0] for i in range(1, len(rows)) if index[i] != index[i - 1]})
    counts = [0] * (len(bounds) + 1)
    for k, _ in rows:
        counts[sum(b <= k for b in bounds)] += 1
    return bounds, tuple(counts)


def test_the_layout_planned_in_many_parts_is_the_layout_of_one(local_ray, tmp_path: pathlib.Path, monkeypatch) -> None:
    import random

    from thresher.pipeline import shuffle

    rng = random.Random(3)
    files = []
    for name in ("a.parquet", "b.parquet", "c.parquet"):
        f = _write(tmp_path, name, [[rng.choice([0, 1, 2]) for _ in range(80)] for _ in range(2)])
        t = pq.read_table(tmp_path / "score" / "data" / name)
        t = t.set_column(2, "n_tokens", pa.array([rng.randrange(1, 400) for _ in range(t.num_rows)], pa.int64()))
        pq.write_table(t, tmp_path / "score" / "data" / name, row_group_size=80)  # the same two row groups, other sizes
        files.append(f)
    schema = shards.shard_schema(files, tmp_path / "score")
    expected = _reference_layout(files, tmp_path / "score", 4000, 3.7, schema)
    assert len(expected[1]) > 5
    one = shards.plan(files, tmp_path / "score", shard_bytes=4000, bytes_per_token=3.7, schema=schema, scratch=tmp_path)
    monkeypatch.setattr(shuffle, "PART_ROWS", 1)
    monkeypatch.setattr(shuffle, "partition_count", lambda: 5)  # five key ranges, sorted and cut by Ray tasks
    many = shards.plan(files, tmp_path / "score", shard_bytes=4000, bytes_per_token=3.7, schema=schema, scratch=tmp_path)
    for layout in (one, many):
        assert (list(layout.bounds), layout.rows) == expected
    assert not list(tmp_path.glob("exchange-*"))  # the exchange is removed
