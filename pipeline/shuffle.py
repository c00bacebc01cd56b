"""Hash shuffles over Ray tasks: what keeps per-document state off the driver.

A shuffle is a list of MapReduce rounds. Each task of a round splits what it
emits by a hash into P parts and writes each as an Arrow file under the
exchange directory (`Exchange`: on the shared filesystem the work directory
is on); task p of the next round reads part p of every task before it. The
driver waits for one round before starting the next and holds only paths,
small per-task returns and what the last round gives back. Parts go through
files rather than Ray's object store because Ray keeps a task's small return
values in its caller's memory: the driver would hold every small part, which
is most of them on a wide cluster.

P is one per CPU of the cluster, fewer for a small pool (`reduce_partitions`).
How a shuffle's rounds run (`run`): one Ray task per call; with one partition,
every round inline inside a single Ray task (a round of task starts costs more
than a small pool's work); `here=True` runs them in the calling process, for
narrow rows a driver may hold (`PART_ROWS` at most) or a caller without Ray.

Used by the dedup resolve (`dedup_shuffle`), the repeated-id pass (`ids`) and
the pool's arrivals against the previous index (`seen`).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import ray

from .errors import ThresherError

PART_ROWS = 50_000  # the fewest rows worth a reduce partition of their own (a round costs a task start per partition)
_KEY_SEED = 0x7E5  # doc_id routing: any fixed seed, the same in every process of a run


def partition_count() -> int:
    """One reduce task per CPU of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def reduce_partitions(rows: int) -> int:
    """Reduce partitions for `rows` rows: one per CPU, none smaller than PART_ROWS (one, without asking Ray, for fewer)."""
    return 1 if rows <= PART_ROWS else max(1, min(partition_count(), -(-rows // max(PART_ROWS, 1))))


class Exchange:
    """The parts of every round as Arrow files: ROOT/STAGE/TASK-PART.arrow, read back by part."""

    def __init__(self, root: Path, parts: int):
        self.root, self.parts = Path(root), parts

    def write(self, stage: str, task: int, tables: list[pa.Table]) -> int:
        """One task's parts (empty ones are not written); returns the rows written."""
        d = self.root / stage
        d.mkdir(parents=True, exist_ok=True)
        for part, t in enumerate(tables):
            if t.num_rows:
                with pa.OSFile(str(d / f"{task}-{part}.arrow"), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
                    w.write_table(t)
        return sum(t.num_rows for t in tables)

    def read(self, stage: str, part: int, schema: pa.Schema) -> pa.Table:
        """Part `part` of every task of a stage, as one table."""
        found = sorted((self.root / stage).glob(f"*-{part}.arrow"))
        tables = [pa.ipc.open_file(pa.memory_map(str(f))).read_all() for f in found]
        return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()


class exchange:
    """A fresh exchange directory under `scratch`, removed however the shuffle ends."""

    def __init__(self, scratch: Path, parts: int):
        self.ex = Exchange(Path(scratch) / f"exchange-{uuid.uuid4().hex[:8]}", parts)

    def __enter__(self) -> Exchange:
        return self.ex

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.ex.root, ignore_errors=True)


def run(parts: int, rounds: Callable, *args, here: bool = False):
    """`rounds(stage, *args)`, where `stage(fn, calls)` runs one round of `fn(*call)` for every call: in this process
    (`here`), inside a single Ray task (one partition), or as one Ray task per call."""
    if here:
        return rounds(_inline, *args)
    try:
        return ray.get(_in_one_task.remote(rounds, *args)) if parts == 1 else rounds(_on_workers, *args)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, ThresherError):  # a task's readable error (an index outside the roots), as one line
            raise e.cause from None
        raise


@ray.remote
def _in_one_task(rounds, *args):
    return rounds(_inline, *args)


@ray.remote
def _task(fn, *args):
    return fn(*args)


def _on_workers(fn, calls: list[tuple]) -> list:
    return ray.get([_task.remote(fn, *a) for a in calls])


def _inline(fn, calls: list[tuple]) -> list:
    return [fn(*a) for a in calls]


def route(h: np.ndarray, parts: int) -> list[pa.Array]:
    """Row indices of each part, by a uint64 hash."""
    part = (np.asarray(h, np.uint64) % np.uint64(parts)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [pa.array(order[bounds[q] : bounds[q + 1]]) for q in range(parts)]


def split(t: pa.Table, h: np.ndarray, parts: int) -> list[pa.Table]:
    """`t`'s rows in `parts` parts by a uint64 hash."""
    return [t.take(i) for i in route(h, parts)]


def key_hash(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash of string keys (doc_ids) for routing: the same in every process of a run (not across polars versions)."""
    return pl.Series(keys, dtype=pl.String).hash(seed=_KEY_SEED).to_numpy()
