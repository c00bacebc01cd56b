"""What came before: the pool index a run publishes, so the next night dedups new documents against the old.

The dedup phase writes `index.parquet`: one row per document of the pool
(doc_id, the 128-bit digest of its text, its input file, and `since`, the
ordinal of the run that first saw this doc_id with this text). The output
publishes it as `state/dedup/`. A run over a versioned output reads the
current version's index, so the index grows only when a run succeeds and a
job killed before it moved `latest` leaves it as it was.

With an index, the keep rule of every duplicate group is *earliest seen*,
then first in input order: a copy arriving tonight, in whatever file, is
flagged naming the document the pool already had. A document absent from
the index (new, or a new text under an old id) arrives with this run
(`since` = the latest + 1, so a changed document replaces its old version);
a document of the index absent from the input (its file removed) leaves the
index. Both are counted in the manifest.

`arrivals` runs on the driver after the embed phase, from the embed pieces'
narrow id files (`partitions.IDS`), never a text. Its digest goes into the
dedup phase's key: the dense rank of each document's `since`, in input
order, None when every document has the same (the keep rule is then input
order alone, exactly as without an index). So the night after a growth
night, whose index grew by that night's documents only, finds the same
ranks and reuses that night's dedup and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import ids, partitions, versions
from .confine import Roots
from .errors import JobError

STATE = "dedup"  # under an output's state/
INDEX = "index.parquet"
MATCHES = "duplicates.parquet"  # at the output's top level
CONTENT = ("c0", "c1")  # the text digest's halves (content_cache.digests)
SINCE = "since"


def index_of(out: Path) -> Path | None:
    """The pool index a run writing to OUT dedups against: the current version's, for a versioned output that has one."""
    if not versions.is_versioned(out) or versions.current(out) is None:
        return None
    found = versions.resolve(out) / "state" / STATE / INDEX
    return found if found.exists() else None


def read_index(path: Path, roots: Roots) -> pl.DataFrame:
    with os.fdopen(roots.open_fd("output.path", str(path)), "rb") as fh:
        return pl.from_arrow(pq.read_table(fh, columns=[S.DOC_ID, *CONTENT, SINCE]))


def pool(embed_dir: Path, work: Path, file_index: dict[str, int]) -> pl.DataFrame:
    """Every document of the pool (valid rows, the first of a repeated id) in input order: doc_id, text digest, input file, position."""
    store = partitions.PieceStore(work)
    names = json.loads((embed_dir / partitions.LIST).read_text())
    lacking = [n for n in names if not (store.root / n / partitions.IDS).is_dir()]
    if lacking:
        raise JobError(f"embed piece {lacking[0]} in {store.root} has no {partitions.IDS}/ (an older thresher made it); remove {store.root} and rerun")
    tables = [pq.read_table(f) for name in names for f in store.ids_files(name)]
    schema = pa.schema([(S.DOC_ID, pa.string()), (S.INPUT_FILE, pa.string()), (S.INPUT_OFFSET, pa.int64()), *((c, pa.uint64()) for c in CONTENT)])
    t = pa.concat_tables([x.cast(schema) for x in tables]) if tables else schema.empty_table()
    df = pl.from_arrow(t).with_columns(pos=pl.Series(ids.positions(t, file_index), dtype=pl.Int64))
    return df.sort("pos").unique(subset=[S.DOC_ID], keep="first", maintain_order=True)


def arrivals(docs: pl.DataFrame, index: pl.DataFrame | None) -> tuple[pl.DataFrame, dict]:
    """`docs` with `since` (the run that first saw each doc_id with its text), and what the index gained and lost."""
    if index is None:
        return docs.with_columns(pl.lit(1, pl.Int64).alias(SINCE)), {"previous": 0, "carried": 0, "new": docs.height, "replaced": 0, "removed": 0}
    latest = int(index[SINCE].max() or 0)
    found = docs.join(index, on=[S.DOC_ID, *CONTENT], how="left")
    new = found[SINCE].is_null()
    out = found.with_columns(pl.col(SINCE).fill_null(latest + 1).cast(pl.Int64))
    old_ids = index.select(S.DOC_ID)
    facts = {
        "previous": index.height,
        "carried": int((~new).sum()),
        "new": int(new.sum()),
        "replaced": found.filter(new).join(old_ids, on=S.DOC_ID, how="semi").height,  # same id, another text
        "removed": old_ids.join(docs.select(S.DOC_ID), on=S.DOC_ID, how="anti").height,  # no longer in the input
    }
    return out, facts


def fingerprint(docs: pl.DataFrame) -> str | None:
    """What of the arrivals the keep rule depends on: the dense rank of `since` in input order; None when all are equal."""
    if docs.height == 0 or docs[SINCE].n_unique() == 1:
        return None
    ranks = docs.sort("pos")[SINCE].rank("dense").cast(pl.UInt32).to_numpy()
    return hashlib.sha256(np.ascontiguousarray(ranks).tobytes()).hexdigest()[:16]


class Ranks:
    """The keep rule's order for signature rows given by position: earliest `since`, then input order."""

    def __init__(self, docs: pl.DataFrame):
        pos = docs.sort([SINCE, "pos"])["pos"].to_numpy()  # the i-th is the document of rank i
        self.rank = np.argsort(pos)
        self.pos = pos[self.rank]

    def contains(self, positions: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.pos, positions), max(self.pos.size - 1, 0))
        return self.pos[i] == positions if self.pos.size else np.zeros(positions.shape, bool)

    def of(self, positions: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.pos, positions)
        if positions.size and (i.max() >= self.pos.size or not np.array_equal(self.pos[i], positions)):
            raise ValueError("a signature row is not a document of the pool")
        return self.rank[i]


def for_job(out: Path, embed_dir: Path, work: Path, files: list[str], roots: Roots) -> tuple[pl.DataFrame, dict]:
    """The pool of a job's input with the run that first saw each document, against OUT's current index (if any)."""
    found = index_of(out)
    return arrivals(pool(embed_dir, work, {f: i for i, f in enumerate(files)}), read_index(found, roots) if found else None)


def publish(docs: pl.DataFrame, dedup_dir: Path, staging: Path) -> dict:
    """Into an output being published: state/dedup/INDEX (the pool with `since`) and MATCHES (each flagged document,
    the document it copies, their input files and the runs that first saw them); returns the manifest's facts."""
    (staging / "state" / STATE).mkdir(parents=True, exist_ok=True)
    docs.select([S.DOC_ID, *CONTENT, S.INPUT_FILE, SINCE]).write_parquet(staging / "state" / STATE / INDEX)
    where = docs.select([S.DOC_ID, S.INPUT_FILE, SINCE])
    found = [pl.read_parquet(dedup_dir / kind / "groups.parquet").rename({"kept": "of"}).with_columns(kind=pl.lit(kind))
             for kind in ("exact", "near") if (dedup_dir / kind / "groups.parquet").exists()]
    matches = pl.concat(found) if found else pl.DataFrame(schema={S.DOC_ID: pl.String, "of": pl.String, "kind": pl.String})
    matches = matches.join(where, on=S.DOC_ID, how="left").join(where.rename({S.DOC_ID: "of", S.INPUT_FILE: "of_file", SINCE: "of_since"}), on="of", how="left")
    matches = matches.select([S.DOC_ID, S.INPUT_FILE, "kind", "of", "of_file", SINCE, "of_since"]).sort(["kind", S.DOC_ID])
    matches.write_parquet(staging / MATCHES)
    return {"matches": matches.height, "of_earlier_runs": int((matches["of_since"] < matches[SINCE]).sum())}
