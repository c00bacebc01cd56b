"""What came before: the pool index a run publishes, so the next night dedups new documents against the old.

The index is one row per document of the pool (doc_id, the 128-bit digest of
its text, its input file, and `since`, the ordinal of the run that first saw
this doc_id with this text), published as the part files of `state/dedup/index/`
(`index.parquet` in outputs of earlier versions, still read). A run over a
versioned output reads the current version's index, so the index grows only
when a run succeeds and a job killed before it moved `latest` leaves it as it was.

With an index, the keep rule of every duplicate group is *earliest seen*,
then first in input order: a copy arriving tonight, in whatever file, is
flagged naming the document the pool already had. A document absent from
the index (new, or a new text under an old id) arrives with this run
(`since` = the latest + 1, so a changed document replaces its old version);
a document of the index absent from the input (its file removed) leaves the
index. Both are counted in the manifest.

`for_job` computes this after the embed phase as a shuffle (pipeline/shuffle.py)
of the embed pieces' narrow id files (`partitions.IDS`, never a text) and the
old index by doc_id: each reduce task joins its share, writes its share of the
new index, and sends every document's `since` back to its piece, so the driver
holds counts, never a row per document:

- the keep order (`Order`) without a global sort: pieces are runs of input
  order, so a document's rank is the documents of earlier runs, plus those of
  its run in earlier pieces (prefix sums of per-(run, piece) counts), plus its
  place in its own piece;
- the dedup phase's key holds `fingerprint`: an order-free hash of each
  document's (position, dense rank of `since`), None when every document has
  the same `since` (the keep rule is then input order alone, exactly as
  without an index). So the night after a growth night, whose index grew by
  that night's documents only, finds the same ranks and reuses that night's
  dedup and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq

from thresher.operators import schema as S
from thresher.operators.dedup import read_pairs
from thresher.operators.hashing import fmix64

from . import ids, partitions, shuffle, versions
from .confine import Roots
from .errors import JobError

STATE = "dedup"  # under an output's state/
INDEX = "index"  # a directory of part files
LEGACY_INDEX = "index.parquet"  # one file, in outputs of thresher before the index was partitioned
MATCHES = "duplicates.parquet"  # at the output's top level
CONTENT = ("c0", "c1")  # the text digest's halves (content_cache.digests)
SINCE = "since"
PIECES = "since"  # in an arrivals directory: piece-I.arrow, (pos, since) of piece I's documents by position


def index_of(out: Path) -> list[Path]:
    """The pool index's files a run writing to OUT dedups against: the current version's, for a versioned output that has one."""
    if not versions.is_versioned(out) or versions.current(out) is None:
        return []
    state = versions.resolve(out) / "state" / STATE
    if (state / LEGACY_INDEX).is_file():
        return [state / LEGACY_INDEX]
    return sorted((state / INDEX).glob("*.parquet"))


@dataclass(frozen=True)
class Order:
    """The keep rule's order: earliest `since`, then input order; a document's rank is base[since, piece] plus its
    place among its piece's documents of that since. Small: the per-piece (position, since) files stay on disk."""

    dir: str  # piece-I.arrow files
    since: tuple[int, ...]  # the pool's distinct `since`, ascending
    base: np.ndarray  # (len(since), pieces): documents ranked before each (since, piece) group

    @classmethod
    def write(cls, d: Path, pieces: list[tuple[np.ndarray, np.ndarray]]) -> "Order":
        """The order of pieces given as (positions, since) arrays, in input order (for a caller holding them)."""
        Path(d).mkdir(parents=True, exist_ok=True)
        counts: dict[tuple[int, int], int] = {}
        for i, (pos, since) in enumerate(pieces):
            if len(pos):
                by = np.argsort(pos)
                _write_piece(Path(d), i, pa.table({"pos": np.asarray(pos, np.int64)[by], SINCE: np.asarray(since, np.int64)[by]}))
                for s, n in zip(*np.unique(since, return_counts=True)):
                    counts[(int(s), i)] = int(n)
        return cls.of_counts(d, counts, len(pieces))

    @classmethod
    def of_counts(cls, d: Path, counts: dict[tuple[int, int], int], pieces: int) -> "Order":
        values = tuple(sorted({s for s, _ in counts}))
        n = np.zeros((len(values), pieces), np.int64)
        for (s, i), c in counts.items():
            n[values.index(s), i] += c
        base = (np.cumsum(n.reshape(-1)) - n.reshape(-1)).reshape(n.shape)  # row-major: since first, then piece
        return cls(str(d), values, base)

    def piece_of(self, ranks: np.ndarray) -> np.ndarray:
        """The piece of each rank: the last (since, piece) group whose base is at most the rank (an empty group shares
        its base with the next, so the last is the one holding it)."""
        ranks = np.asarray(ranks, np.int64)
        if not ranks.size:
            return np.zeros(0, np.int64)
        return (np.searchsorted(self.base.reshape(-1), ranks, side="right") - 1) % self.base.shape[1]

    def of(self, piece: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which `positions` of a piece are documents of the pool (a repeated id's later rows are not), and their ranks."""
        f = Path(self.dir) / f"piece-{piece}.arrow"
        if not f.exists():
            return np.zeros(len(positions), bool), np.zeros(0, np.int64)
        t = pa.ipc.open_file(pa.memory_map(str(f))).read_all()
        pos, since = t.column("pos").to_numpy(), t.column(SINCE).to_numpy()
        s = np.searchsorted(self.since, since)
        by = np.argsort(s, kind="stable")  # by since, then position (the file is by position)
        group = s[by]
        rank = np.empty(len(pos), np.int64)
        rank[by] = self.base[group, piece] + np.arange(len(pos)) - np.searchsorted(group, group)
        i = np.minimum(np.searchsorted(pos, positions), max(len(pos) - 1, 0))
        mine = pos[i] == positions if len(pos) else np.zeros(len(positions), bool)
        return mine, rank[i[mine]]


@dataclass(frozen=True)
class Arrivals:
    """The pool's arrivals against the previous index: the new index's part files, the keep order, the facts."""

    dir: Path  # INDEX/part-Q.parquet (this run's index) and PIECES/ (the order's files)
    parts: int  # the index's part files, by doc_id hash
    here: bool  # computed in this process (a small pool, or no Ray)
    order: Order
    fingerprint: str | None
    facts: dict  # previous, carried, new, replaced, removed

    def index_files(self) -> list[Path]:
        return sorted((self.dir / INDEX).glob("*.parquet"))


def for_job(out: Path, embed_dir: Path, work: Path, files: list[str], roots: Roots, scratch: Path, here: bool = False) -> Arrivals:
    """The pool of a job's input with the run that first saw each document, against OUT's current index (if any),
    computed in SCRATCH (on the workers, or here for a pool of at most `shuffle.PART_ROWS` rows)."""
    store = partitions.PieceStore(work)
    names = json.loads((embed_dir / partitions.LIST).read_text())
    lacking = [n for n in names if not (store.root / n / partitions.IDS).is_dir()]
    if lacking:
        raise JobError(f"embed piece {lacking[0]} in {store.root} has no {partitions.IDS}/ (an older thresher made it); remove {store.root} and rerun")
    pool = [(str(f), i) for i, n in enumerate(names) for f in store.ids_files(n)]
    return arrive(pool, [str(f) for f in index_of(out)], len(names), files, roots, scratch, here)


def arrive(pool: list[tuple[str, int]], old: list[str], pieces: int, files: list[str], roots: Roots, scratch: Path, here: bool = False, parts: int | None = None) -> Arrivals:
    """The arrivals of the documents in POOL's id files (each with its piece's number, pieces in input order) against
    the index files OLD, in PARTS partitions (by default: `shuffle.reduce_partitions`, and here for a small pool)."""
    if parts is None:
        rows = sum(pq.read_metadata(f).num_rows for f, _ in pool) + sum(pq.read_metadata(f).num_rows for f in old)
        here = here or rows <= shuffle.PART_ROWS
        parts = 1 if here else shuffle.reduce_partitions(rows)
    d = Path(scratch)
    shutil.rmtree(d, ignore_errors=True)
    (d / INDEX).mkdir(parents=True)
    (d / PIECES).mkdir()
    with shuffle.exchange(d, parts) as ex:
        found, placed = shuffle.run(parts, _rounds, ex, pool, old, roots, {f: i for i, f in enumerate(files)}, str(d), here=here)
    facts = {k: sum(f["facts"][k] for f in found) for k in ("previous", "carried", "new", "replaced", "removed")}
    counts = {(s, i): n for p in placed for i, s, n in p["counts"]}
    spans = sorted(span for p in placed for span in p["spans"])
    if any(a[2] >= b[1] for a, b in zip(spans, spans[1:])):
        raise RuntimeError("embed pieces are not runs of input order")
    order = Order.of_counts(d / PIECES, counts, pieces)
    return Arrivals(d, parts, here, order, _fingerprint([t for f in found for t in f["since"]]), facts)


def _fingerprint(per_since: list[tuple[int, int, int]]) -> str | None:
    """An order-free hash of each document's (position, dense rank of since), from the reduce tasks' (since, documents,
    sum of position hashes) rows; None when every document has the same since."""
    total: dict[int, list[int]] = {}
    for s, n, h in per_since:
        t = total.setdefault(s, [0, 0])
        t[0], t[1] = t[0] + n, (t[1] + h) % 2**64
    if len(total) <= 1:
        return None
    ranked = [[rank, *total[s]] for rank, s in enumerate(sorted(total))]
    return hashlib.sha256(json.dumps(ranked).encode()).hexdigest()[:16]


_POOL = pa.schema([(S.DOC_ID, pa.string()), ("c0", pa.uint64()), ("c1", pa.uint64()), (S.INPUT_FILE, pa.string()), ("pos", pa.int64()), ("piece", pa.int32())])
_OLD = pa.schema([(S.DOC_ID, pa.string()), ("c0", pa.uint64()), ("c1", pa.uint64()), (SINCE, pa.int64())])
_BACK = pa.schema([("piece", pa.int32()), ("pos", pa.int64()), (SINCE, pa.int64())])


def _rounds(stage, ex: shuffle.Exchange, pool: list[tuple[str, int]], old: list[str], roots: Roots, file_index: dict[str, int], d: str):
    stage(_pool_map, [(ex, i, f, piece, file_index) for i, (f, piece) in enumerate(pool)])
    latest = max([0, *stage(_index_map, [(ex, i, f, roots) for i, f in enumerate(old)])])
    found = stage(_arrive, [(ex, q, latest, d) for q in range(ex.parts)])
    return found, stage(_by_piece, [(ex, q, d) for q in range(ex.parts)])


def _pool_map(ex: shuffle.Exchange, task: int, path: str, piece: int, file_index: dict[str, int]) -> int:
    """An embed piece's id file's rows with their positions, by doc_id."""
    t = pq.read_table(path, columns=[S.DOC_ID, *CONTENT, S.INPUT_FILE, S.INPUT_OFFSET])
    out = pa.table({S.DOC_ID: t.column(S.DOC_ID), "c0": t.column("c0"), "c1": t.column("c1"), S.INPUT_FILE: t.column(S.INPUT_FILE),
                    "pos": ids.positions(t, file_index), "piece": pa.array(np.full(t.num_rows, piece, np.int32))}).cast(_POOL)
    return ex.write("pool", task, shuffle.split(out, shuffle.key_hash(out.column(S.DOC_ID)), ex.parts))


def _index_map(ex: shuffle.Exchange, task: int, path: str, roots: Roots) -> int:
    """A previous index file's rows by doc_id; returns its latest `since`."""
    with os.fdopen(roots.open_fd("output.path", path), "rb") as fh:
        t = pq.read_table(fh, columns=[S.DOC_ID, *CONTENT, SINCE]).cast(_OLD)
    ex.write("index", task, shuffle.split(t, shuffle.key_hash(t.column(S.DOC_ID)), ex.parts))
    return int(pc.max(t.column(SINCE)).as_py() or 0)


def _arrive(ex: shuffle.Exchange, q: int, latest: int, d: str) -> dict:
    """Partition q: its documents (the first row of a repeated id) joined with the old index, written as this run's
    index part; each document's since routed back to its piece."""
    pool = pl.from_arrow(ex.read("pool", q, _POOL)).sort("pos").unique(S.DOC_ID, keep="first", maintain_order=True)
    old = pl.from_arrow(ex.read("index", q, _OLD))
    found = pool.join(old, on=[S.DOC_ID, *CONTENT], how="left", maintain_order="left")
    new = found[SINCE].is_null()
    found = found.with_columns(pl.col(SINCE).fill_null(latest + 1))
    found.select([S.DOC_ID, *CONTENT, S.INPUT_FILE, SINCE]).write_parquet(Path(d) / INDEX / f"part-{q:05d}.parquet")
    back = found.select(["piece", "pos", SINCE]).to_arrow().cast(_BACK)
    ex.write("back", q, shuffle.split(back, back.column("piece").to_numpy().astype(np.uint64), ex.parts))
    since, h = found[SINCE].to_numpy(), fmix64(found["pos"].to_numpy().astype(np.uint64))
    per_since = [(int(v), int((since == v).sum()), int(h[since == v].sum(dtype=np.uint64))) for v in np.unique(since)]  # sums wrap modulo 2^64
    old_ids = old.select(S.DOC_ID)
    facts = {
        "previous": old.height,
        "carried": int((~new).sum()),
        "new": int(new.sum()),
        "replaced": found.filter(new).join(old_ids, on=S.DOC_ID, how="semi").height,  # same id, another text
        "removed": old_ids.join(pool.select(S.DOC_ID), on=S.DOC_ID, how="anti").height,  # no longer in the input
    }
    return {"facts": facts, "since": per_since}


def _by_piece(ex: shuffle.Exchange, q: int, d: str) -> dict:
    """The pieces routed here: each one's (position, since) file, its documents per since and its span of positions."""
    t = pl.from_arrow(ex.read("back", q, _BACK)).sort(["piece", "pos"])
    counts, spans = [], []
    for (piece,), rows in t.group_by("piece", maintain_order=True):
        _write_piece(Path(d) / PIECES, int(piece), rows.select(["pos", SINCE]).to_arrow())
        counts += [(int(piece), int(s), int(n)) for s, n in rows.group_by(SINCE).len().rows()]
        spans.append((int(piece), int(rows["pos"][0]), int(rows["pos"][-1])))
    return {"counts": counts, "spans": spans}


def _write_piece(d: Path, piece: int, t: pa.Table) -> None:
    with pa.OSFile(str(d / f"piece-{piece}.arrow"), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)


def publish(a: Arrivals, dedup_dir: Path, staging: Path) -> dict:
    """Into an output being published: state/dedup/INDEX (this run's index parts) and MATCHES (each flagged document,
    the document it copies, their input files and the runs that first saw them); returns the manifest's facts."""
    dst = staging / "state" / STATE / INDEX
    dst.mkdir(parents=True)
    for f in a.index_files():
        try:
            os.link(f, dst / f.name)
        except OSError:  # no hard links on this filesystem
            shutil.copyfile(f, dst / f.name)
    calls = [(a, str(dedup_dir), str(staging / MATCHES))]
    return shuffle.run(1, lambda stage: stage(_matches, calls), here=a.here)[0]  # in a task: the driver never holds the pairs


def _matches(a: Arrivals, dedup_dir: str, path: str) -> dict:
    found = [pl.from_arrow(read_pairs(Path(dedup_dir) / kind).select([S.DOC_ID, "kept"])).rename({"kept": "of"}).with_columns(kind=pl.lit(kind))
             for kind in ("exact", "near") if (Path(dedup_dir) / kind).is_dir()]
    matches = pl.concat(found) if found else pl.DataFrame(schema={S.DOC_ID: pl.String, "of": pl.String, "kind": pl.String})
    where = _where(a, pl.concat([matches[S.DOC_ID], matches["of"]]).unique())
    matches = matches.join(where, on=S.DOC_ID, how="left").join(where.rename({S.DOC_ID: "of", S.INPUT_FILE: "of_file", SINCE: "of_since"}), on="of", how="left")
    matches = matches.select([S.DOC_ID, S.INPUT_FILE, "kind", "of", "of_file", SINCE, "of_since"]).sort(["kind", S.DOC_ID])
    matches.write_parquet(path)
    return {"matches": matches.height, "of_earlier_runs": int((matches["of_since"] < matches[SINCE]).sum())}


def _where(a: Arrivals, wanted: pl.Series) -> pl.DataFrame:
    """(doc_id, input_file, since) of the wanted documents, each looked up in the index part its doc_id hashes to."""
    keys = wanted.to_arrow()
    found = [_look_up(str(a.dir / INDEX / f"part-{q:05d}.parquet"), part) for q, part in enumerate(shuffle.split(pa.table({S.DOC_ID: keys}), shuffle.key_hash(keys), a.parts))]
    return pl.concat([pl.from_arrow(t) for t in found]) if found else pl.DataFrame(schema={S.DOC_ID: pl.String, S.INPUT_FILE: pl.String, SINCE: pl.Int64})


def _look_up(path: str, wanted: pa.Table) -> pa.Table:
    if not wanted.num_rows:
        return pa.table({S.DOC_ID: pa.array([], pa.string()), S.INPUT_FILE: pa.array([], pa.string()), SINCE: pa.array([], pa.int64())})
    t = pl.read_parquet(path, columns=[S.DOC_ID, S.INPUT_FILE, SINCE])
    return t.join(pl.from_arrow(wanted), on=S.DOC_ID, how="semi").to_arrow()
