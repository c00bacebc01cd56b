"""Input partitions and the pieces computed from each: what makes a new file cost only itself.

A partition is a run of consecutive read units of one input file: Parquet
row groups up to about `PARTITION_ROWS` rows, or one JSONL byte range (a
whole file when it is small or compressed). Its fingerprint is the file's
(path, size, mtime) and the partition's range in it, so a rewritten file
changes all its partitions and an untouched file none.

A per-document phase computes one *piece* per partition: a directory of
Parquet files under WORK/pieces/, named by a key that hashes the phase's
slice (without the input file list) and the partition's fingerprint. A piece
is built under a temporary name and renamed into place with its `_SUCCESS`
inside, as a phase is (`pipeline/plan.py`); a later job over a grown input
finds the pieces of unchanged partitions and computes only the others.
`thresher gc` keeps the pieces the kept phases list.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import io
from .plan import SUCCESS, TMP_PREFIX

PARTITION_ROWS = 100_000
ROW_GROUP_ROWS = 8_192  # rows per row group of a piece's files: what a later phase's task can read on its own
DIR = "pieces"
LIST = "pieces.json"  # in a phase directory: the pieces it was assembled from
IDS = "ids"  # in an embed piece: doc_id, position and text digest of its valid rows (pipeline/seen.py)
FORMAT = 2  # what a piece holds; in every piece key (2: embed pieces hold IDS)


@dataclass(frozen=True)
class Partition:
    path: str
    size: int
    mtime_ns: int
    lo: int  # first row (Parquet) or byte (JSONL) of the range
    hi: int  # one past the last; -1 = to the end of the file
    items: tuple[dict, ...]  # the read units (`io.read_items`) it is made of

    def fingerprint(self) -> dict:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "range": [self.lo, self.hi]}

    def owns(self, offsets: np.ndarray) -> np.ndarray:
        """Which rows of this partition's file (by input_offset) lie in its range."""
        return (offsets >= self.lo) & ((offsets < self.hi) if self.hi >= 0 else True)


def plan(found: io.InputFiles) -> list[Partition]:
    """The input's partitions, in input order."""
    info = {f["path"]: f for f in found.fingerprint()}
    items = io.read_items(found)
    parts: list[Partition] = []
    group: list[dict] = []

    def close() -> None:
        if group:
            f = info[group[0]["path"]]
            if found.format == "parquet":
                sizes = found.row_groups[found.files.index(group[0]["path"])]
                lo, hi = group[0]["offset"], group[-1]["offset"] + sizes[group[-1]["row_group"]]
            else:
                lo, hi = group[0]["start"], group[-1]["end"]
            parts.append(Partition(f["path"], f["size"], f["mtime_ns"], lo, hi, tuple(group)))
            group.clear()

    rows = 0
    for item in items:
        if group and (item["path"] != group[0]["path"] or found.format == "jsonl" or rows >= PARTITION_ROWS):
            close()
            rows = 0
        group.append(item)
        if found.format == "parquet":
            rows += found.row_groups[found.files.index(item["path"])][item["row_group"]]
    close()
    return parts


def piece_key(kind: str, reads: dict, partition: Partition) -> str:
    payload = {"kind": kind, "format": FORMAT, "reads": reads, "partition": partition.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def derived_key(kind: str, reads: dict, source: str) -> str:
    """The key of a piece computed from another piece (`source`, e.g. `embed-KEY`) and what it reads of the spec."""
    payload = {"kind": kind, "format": FORMAT, "reads": reads, "from": source}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PieceStore:
    """WORK/pieces: one complete directory per piece, `KIND-KEY`, or none."""

    def __init__(self, work: Path):
        self.root = Path(work) / DIR

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}"

    def done(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / SUCCESS).exists()

    def facts(self, kind: str, key: str) -> dict:
        """What a complete piece recorded of itself (rows, its partition)."""
        return json.loads((self.path(kind, key) / SUCCESS).read_text())

    def files(self, kind: str, key: str) -> list[Path]:
        return sorted(self.path(kind, key).glob("*.parquet"))

    def ids_files(self, name: str) -> list[Path]:
        """The IDS files of the piece NAME (`embed-KEY`)."""
        return sorted((self.root / name / IDS).glob("*.parquet"))

    def staging(self, kind: str, key: str) -> Path:
        """A fresh temporary directory for a piece being built (writers add files; `commit` publishes it)."""
        d = self.root / f"{TMP_PREFIX}{kind}-{key}"
        shutil.rmtree(d, ignore_errors=True)  # a killed job's (the work directory's lock is ours)
        d.mkdir(parents=True)
        return d

    def commit(self, kind: str, key: str, facts: dict) -> None:
        tmp, final = self.root / f"{TMP_PREFIX}{kind}-{key}", self.path(kind, key)
        (tmp / SUCCESS).write_text(json.dumps(facts))
        if final.exists():
            old = self.root / f"{TMP_PREFIX}old-{kind}-{key}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)

    def clear_staging(self) -> None:
        for d in self.root.glob(f"{TMP_PREFIX}*") if self.root.is_dir() else []:
            shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class PieceRanges:
    """The piece each row lies in, by its input file and position: pieces numbered as the embed phase lists them
    (the numbering of `seen.Order` and the dedup maps' pieces); -1 for a row of none."""

    ranges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # path -> (lo, hi, piece) sorted by lo; hi -1: to the end

    @classmethod
    def of(cls, partitions: list[dict]) -> "PieceRanges":
        """From the embed pieces' partition facts ({"path", "range": [lo, hi]}), in the embed phase's order."""
        by: dict[str, list] = {}
        for i, p in enumerate(partitions):
            by.setdefault(p["path"], []).append((p["range"][0], p["range"][1], i))
        return cls({path: tuple(np.asarray(c, np.int64) for c in zip(*sorted(rs))) for path, rs in by.items()})

    def __call__(self, batch: pa.Table) -> np.ndarray:
        files = np.asarray(batch.column(S.INPUT_FILE).to_numpy(zero_copy_only=False)).astype(str)
        offsets = np.asarray(batch.column(S.INPUT_OFFSET).to_numpy(zero_copy_only=False), np.int64)
        out = np.full(batch.num_rows, -1, np.int64)
        for path in np.unique(files):
            if path not in self.ranges:
                continue
            lo, hi, piece = self.ranges[path]
            rows = np.flatnonzero(files == path)
            i = np.searchsorted(lo, offsets[rows], side="right") - 1
            ok = (i >= 0) & ((offsets[rows] < hi[np.maximum(i, 0)]) | (hi[np.maximum(i, 0)] < 0))
            out[rows[ok]] = piece[i[ok]]
        return out


def write_rows(batch: pa.Table, owners: dict[str, list[tuple[int, int, str]]], root: str, drop: list[str] = (), subdir: str = "") -> dict[str, int]:
    """Split a batch by the partition each row belongs to (its input file and offset) and write each part into that
    piece's staging directory, or its SUBDIR (worker side); returns the rows written per piece."""
    files = np.asarray(batch.column(S.INPUT_FILE).to_numpy(zero_copy_only=False)).astype(str)
    offsets = np.asarray(batch.column(S.INPUT_OFFSET).to_numpy(zero_copy_only=False), np.int64)
    out = batch.drop_columns([c for c in drop if c in batch.column_names])
    written: dict[str, int] = {}
    for path in np.unique(files):
        in_file = files == path
        for lo, hi, staging in owners[str(path)]:
            mask = in_file & (offsets >= lo) & ((offsets < hi) if hi >= 0 else True)
            if mask.any():
                d = Path(root) / staging / subdir
                d.mkdir(exist_ok=True)
                pq.write_table(out.filter(pa.array(mask)), d / f"{uuid.uuid4().hex}.parquet", compression="zstd", row_group_size=ROW_GROUP_ROWS)
                written[staging] = written.get(staging, 0) + int(mask.sum())
    return written
