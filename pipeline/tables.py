"""Reading phase outputs back: narrow columns streamed on the driver, whole outputs as Ray Datasets, the fit samples.

Shared by the phases (`pipeline/phases.py`) and the search phase
(`pipeline/search.py`), which import it and not each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from thresher.operators import schema as S
from thresher.operators.selection import uniform_from_ids
from thresher.operators.validate import lift_json_keys

from . import shuffle
from .errors import JobError


@dataclass
class Lift:
    """JSONL keys a phase reads, lifted out of the `metadata` column (nothing for Parquet)."""

    numeric: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def apply(self, t: pa.Table, wanted: set[str]) -> pa.Table:
        num = [k for k in self.numeric if k in wanted and k not in t.column_names]
        txt = [k for k in self.text if k in wanted and k not in t.column_names]
        return lift_json_keys(t, num, txt) if num or txt else t


def iter_tables(directory: Path, columns: list[str], lift: Lift | None = None) -> Iterator[pa.Table]:
    """Stream narrow columns of a phase's output on the driver, file by file; JSONL keys lifted when asked."""
    for f in sorted((directory / "data").glob("*.parquet")):
        yield from file_tables(f, columns, lift)


def file_tables(f: Path | str, columns: list[str], lift: Lift | None = None) -> Iterator[pa.Table]:
    """One Parquet file's narrow columns, a batch at a time; JSONL keys lifted when asked."""
    pf = pq.ParquetFile(f)
    names = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in names]
    read = [c for c in columns if c in names] + (["metadata"] if missing and "metadata" in names else [])
    for rb in pf.iter_batches(columns=read, batch_size=65536):
        t = pa.Table.from_batches([rb])
        yield (lift.apply(t, set(missing)) if lift and missing else t)


def map_files(directory: Path, fn, args: tuple, rows: int) -> list:
    """`fn(files, *args)` over a phase's output data files in contiguous groups, one Ray task per CPU of the cluster
    (here, as one group, for a pool of at most `shuffle.PART_ROWS` rows); the results in file order. A task merges
    what its files give, so the driver receives one result per CPU, not per file."""
    files = [str(f) for f in sorted((directory / "data").glob("*.parquet"))]
    here = rows <= shuffle.PART_ROWS or not files
    k = 1 if here else min(len(files), shuffle.partition_count())
    groups = [files[len(files) * i // k : len(files) * (i + 1) // k] for i in range(k)]
    return shuffle.run(len(groups), lambda stage: stage(fn, [(g, *args) for g in groups]), here=here)


Span = tuple[str, int, int, int]  # (Parquet file, row group, first row, end row) of the rows a task reads


def rows_per_task(rows: int, cpus: int, most: int, least: int) -> int:
    """Task size for `rows` rows: tasks of at most `most` rows in whole waves over the CPUs (no last wave with CPUs
    idle), none smaller than `least` (below it a worker's start-up outweighs the work)."""
    cpus = max(cpus, 1)
    tasks = -(-max(1, -(-rows // most)) // cpus) * cpus
    return max(least, -(-rows // tasks))


def row_group_spans(files: list[Path], rows_per_task: int) -> list[list[Span]]:
    """The rows of `files` (in order) cut into tasks of `rows_per_task` rows, each a list of row-group spans read from
    the footers. Ray Data reads a Parquet file in one task whatever its size; spans let many workers share one large
    file. A span may cut a row group: its task decodes the row group and keeps its span."""
    tasks: list[list[Span]] = [[]]
    room = rows_per_task
    for f in files:
        meta = pq.ParquetFile(f).metadata
        for rg in range(meta.num_row_groups):
            lo, n = 0, meta.row_group(rg).num_rows
            while lo < n:
                if room == 0:
                    tasks.append([])
                    room = rows_per_task
                take = min(room, n - lo)
                tasks[-1].append((str(f), rg, lo, lo + take))
                lo, room = lo + take, room - take
    return tasks


def read_spans(spans: list[Span], columns: list[str] | None = None) -> pa.Table:
    """The rows of `row_group_spans` spans as one table (files of one phase share a schema)."""
    return pa.concat_tables([pq.ParquetFile(f).read_row_group(rg, columns=columns).slice(lo, hi - lo) for f, rg, lo, hi in spans])


def span_dataset(files: list[Path], rows_per_task: int, columns: list[str] | None = None) -> ray.data.Dataset:
    """`files` as a Dataset read by one task per `row_group_spans` task (a row group at a time)."""
    tasks = [{"spans": json.dumps(t)} for t in row_group_spans(files, rows_per_task)]  # [] when no rows: a task reading nothing
    return ray.data.from_items(tasks, override_num_blocks=max(1, len(tasks))).map_batches(
        _read_span_task, fn_kwargs={"columns": columns}, batch_format="pyarrow", batch_size=1)


def _read_span_task(items: pa.Table, columns: list[str] | None) -> Iterator[pa.Table]:
    """Ray task: a `span_dataset` task's rows, a span at a time."""
    for item in items.column("spans").to_pylist():
        for span in json.loads(item):
            yield read_spans([tuple(span)], columns)


def read_dataset(directory: Path, columns: list[str] | None = None) -> ray.data.Dataset:
    """A phase's output as a Dataset (optionally only some columns)."""
    return ray.data.read_parquet(str(directory / "data"), columns=columns)


def row_count(directory: Path) -> int:
    """Rows of the Parquet files in a directory, from their footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(directory.glob("*.parquet")))


def valid_rows(embed_dir: Path) -> int:
    """Valid rows of a phase's output: the nulls of its invalid_reason column, from the Parquet footers' statistics
    (the column read where a footer has none)."""
    valid = 0
    for f in sorted((embed_dir / "data").glob("*.parquet")):
        meta = pq.ParquetFile(f).metadata
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            stats = next((group.column(j).statistics for j in range(group.num_columns) if group.column(j).path_in_schema == S.INVALID_REASON), None)
            if stats is not None and stats.has_null_count:
                valid += stats.null_count
            else:
                valid += pq.ParquetFile(f).read_row_group(rg, columns=[S.INVALID_REASON]).column(0).null_count
    return valid


def domain_source(domain: str) -> str:
    """The column a `selection.domain` reads: the k-means cluster, or the named column."""
    return S.D_CLUSTER if domain == "cluster" else domain


def with_domain(t: pa.Table, domain: str) -> pa.Table:
    """`domain` as a string column: the k-means cluster id or the named column ('' where null)."""
    return t.append_column(S.DOMAIN, t.column(domain_source(domain)).cast(pa.string()).fill_null(""))


def fit_sample(embed_dir: Path, columns: list[str], size: int, valid: int, seed: int, lift: Lift, progress) -> pa.Table:
    """The `size` valid documents with the smallest hash uniform u(seed, doc_id), in that order.

    Ordering by u (not by doc_id) before any truncation keeps the sample
    unbiased whatever the ids look like, and independent of how the embed
    phase partitioned the data. Rows are pre-filtered at a rate a little
    above size / valid by tasks over the files (`_sampled_files`), so the driver
    holds about one sample and hashes no doc_id.
    """
    if valid == 0:
        raise JobError("no valid documents in the input: nothing to fit (see the quarantine counts)")
    rate = min(1.0, (size + 6 * np.sqrt(size) + 16) / valid)
    found = map_files(embed_dir, _sampled_files, (columns, rate, f"fit-{seed}", lift), valid)
    for _, _, rows in found:
        progress.add(rows)
    sample = pa.concat_tables([t for t, _, _ in found if t is not None])
    order = np.argsort(np.concatenate([u for _, u, _ in found]), kind="stable")[:size]
    return sample.take(pa.array(order))


def _sampled_files(files: list[str], columns: list[str], rate: float, key: str, lift: Lift | None) -> tuple[pa.Table | None, np.ndarray, int]:
    """Ray task: the files' valid rows whose hash uniform u(key, doc_id) is under `rate`, their u, and the rows read."""
    parts, us, rows = [], [], 0
    for f in files:
        for t in file_tables(f, columns, lift):
            rows += t.num_rows
            t = t.filter(t.column(S.INVALID_REASON).is_null())
            u = uniform_from_ids(key, t.column(S.DOC_ID).to_pylist())
            keep = u < rate
            parts.append(t.filter(pa.array(keep)))
            us.append(u[keep])
    return (pa.concat_tables(parts) if parts else None), np.concatenate(us) if us else np.zeros(0), rows
