"""One large file read by many tasks (`tables.row_group_spans`): dedup signatures of a partition cut into tasks sign
every row once and as one task does; the score and cluster-count reads see every row once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S
from thresher.operators.dedup import NearDuplicates
from thresher.pipeline.phases import SIGN_MIN_ROWS, SIGN_ROWS, sign_tasks, signature_piece
from thresher.pipeline.tables import rows_per_task, span_dataset

from thresher.demo_corpus import generate


def _piece(d: Path) -> int:
    """An embed-like piece: two files, row groups of 7 and of 5 rows, one invalid row."""
    d.mkdir()
    docs = generate(40, seed=3).column("text").to_pylist()
    start = 0
    for name, n, rg in (("a.parquet", 23, 7), ("b.parquet", 17, 5)):
        part = docs[start : start + n]
        reasons = ["empty" if start + i == 10 else None for i in range(n)]
        pq.write_table(pa.table({S.DOC_ID: [f"d{start + i}" for i in range(n)], S.TEXT: part, S.INVALID_REASON: pa.array(reasons, pa.string()),
                                 S.INPUT_FILE: ["in.parquet"] * n, S.INPUT_OFFSET: pa.array(np.arange(start, start + n), pa.int64())}), d / name, row_group_size=rg)
        start += n
    (d / "ids").mkdir()  # an embed piece's id files are not its rows
    pq.write_table(pa.table({S.DOC_ID: ["x"]}), d / "ids" / "x.parquet")
    return start


def _signed(tasks: list[dict]) -> tuple[pa.Table, pa.Table, int]:
    near = NearDuplicates(0.8)
    rows = sum(signature_piece(t, True, near)["rows"] for t in tasks)
    dst = Path(tasks[0]["dst"])
    read = lambda name: pa.concat_tables([pq.read_table(f) for f in sorted(dst.glob(f"{name}-*.parquet"))]).sort_by(S.INPUT_OFFSET)  # noqa: E731
    return read("exact"), read("near"), rows


def test_spans_cover_every_row_once_and_sign_as_one_task(tmp_path):
    n = _piece(tmp_path / "embed")
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    tasks = sign_tasks(tmp_path / "embed", tmp_path / "many", "k", 6)
    spans = [s for t in tasks for s in t["spans"]]
    assert [sum(hi - lo for _, _, lo, hi in t["spans"]) for t in tasks] == [6] * 6 + [4]
    covered = [(Path(f).name, rg, r) for f, rg, lo, hi in spans for r in range(lo, hi)]
    assert len(covered) == len(set(covered)) == n
    assert any(lo > 0 for _, _, lo, _ in spans)  # a span that starts inside a row group
    exact1, near1, rows1 = _signed(sign_tasks(tmp_path / "embed", tmp_path / "one", "k", 1000))
    exact6, near6, rows6 = _signed(tasks)
    assert rows1 == rows6 == n - 1  # the invalid row is not signed
    assert exact1.equals(exact6) and near1.equals(near6)
    assert exact6.num_rows == n - 1


def test_a_piece_without_rows_and_the_task_size(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dst").mkdir()
    tasks = sign_tasks(tmp_path / "empty", tmp_path / "dst", "k", 10)
    assert tasks == [{"spans": [], "dst": str(tmp_path / "dst"), "key": "k", "part": 0}]
    assert signature_piece(tasks[0], True, NearDuplicates(0.8)) == {"key": "k", "rows": 0}
    assert rows_per_task(4_000, 2, SIGN_ROWS, SIGN_MIN_ROWS) == SIGN_MIN_ROWS  # the demo: one task
    assert rows_per_task(30_000, 2, SIGN_ROWS, SIGN_MIN_ROWS) == 15_000
    assert rows_per_task(100_000, 2, SIGN_ROWS, SIGN_MIN_ROWS) == 16_667  # 6 tasks: three waves of two, not 5 tasks of 20k
    assert rows_per_task(500, 2, SIGN_ROWS, SIGN_MIN_ROWS) == SIGN_MIN_ROWS
    assert rows_per_task(10_000_000, 2, SIGN_ROWS, SIGN_MIN_ROWS) == SIGN_ROWS
    assert rows_per_task(100_000, 3, SIGN_ROWS, SIGN_MIN_ROWS) == 16_667  # 6 tasks: two waves of three


def test_a_span_dataset_reads_every_row_once_in_many_tasks(tmp_path, local_ray):
    n = _piece(tmp_path / "embed")
    files = sorted((tmp_path / "embed").glob("*.parquet"))
    ds = span_dataset(files, 6, [S.DOC_ID, S.INPUT_OFFSET])
    got = pa.concat_tables(ds.iter_batches(batch_format="pyarrow", batch_size=None)).sort_by(S.INPUT_OFFSET)
    assert got.column(S.DOC_ID).to_pylist() == [f"d{i}" for i in range(n)]
    assert got.column_names == [S.DOC_ID, S.INPUT_OFFSET]
    assert ds.materialize().num_blocks() >= 7  # not one block per file: a span at a time
    assert span_dataset([], 6).take_all() == []  # no rows: one task that reads nothing
