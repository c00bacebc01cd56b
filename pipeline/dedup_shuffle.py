"""Duplicates resolved on the workers: exact groups and MinHash LSH as hash shuffles over Ray tasks.

The dedup phase's signature pieces (one per input partition, signed in parts by `phases.signature_piece`) are the map side. Every
later stage is P reduce tasks of a hash shuffle (pipeline/shuffle.py: P = the cluster's CPUs, fewer for a small
pool; with one, every stage runs inline inside a single Ray task), in the phase's own temporary directory. The
driver holds paths and counts: each map task ranks its rows by the keep order (`seen.Order`) from its own piece's
file, and each last reduce task writes its partition's decisions (each duplicate's doc_id, its kept one's, its rank and
its piece: `dedup.write_pairs`) into the finder's directory, where its state is saved beside them; no process holds
the pool's pairs. The score phase's tasks load the pairs of their pieces where they apply them (`dedup.SavedFlags`).

    exact  (h0, h1, rank, doc_id) routed by the text hash -> each group's smallest rank is kept
    near   signatures with their doc_ids routed by rank; band rows (band, key, rank) by the band key
           1. bucket pairs where each bucket lies whole (`bucket_pairs`), routed by the pair's lower rank
           2. verification: the lower end's signature joined in its rank's partition, routed by the higher end,
              whose signature is joined there; kept when the estimated Jaccard >= threshold
           3. connected components by alternating large-star and small-star (Kiveris et al. 2014), edges routed
              by both ends, until a round leaves the edge set as it was: every component is then a star around
              its smallest rank
           4. each duplicate's and its kept document's doc_id joined from the signature parts

The candidate pairs, the verification and the smallest-rank labels are those of `NearDuplicates.resolve`, so the
flags are equal to the single-process detector's (tests/unit/test_dedup_shuffle.py). Deviation from the paper's
setting: it runs the two operations as MapReduce rounds over one key space; here each round is one Ray task per
partition, and convergence is checked by an order-free fingerprint of the edge set (count and a sum of hashes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from thresher.operators import schema as S
from thresher.operators.dedup import (
    ExactDuplicates,
    NearDuplicates,
    bucket_pairs,
    estimated_jaccard,
    large_star,
    lsh_band_keys,
    small_star,
    unique_pairs,
    write_pairs,
)
from thresher.operators.hashing import fmix64

from . import ids
from .seen import Order
from .shuffle import Exchange, exchange, run, split

MAX_ROUNDS = 64  # large-star / small-star rounds; Kiveris et al. bound them by O(log^2 n)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def resolve_exact(finder: ExactDuplicates, paths: list[tuple[str, int]], file_index: dict[str, int], order: Order | ray.ObjectRef, parts: int, scratch: Path,
                  out: Path) -> dict:
    """Exact groups over the pieces' `exact-PART.parquet` files, each given with its piece's number (one map task each);
    the finder with its decisions is saved in OUT by a task (the driver never holds the pairs); returns the counts.
    `order` may be given already put in the object store, to share one copy between calls."""
    with exchange(scratch, parts) as ex:
        return run(parts, _exact_rounds, ex, paths, ray.put(file_index), _put(order), finder, str(out))


def resolve_near(finder: NearDuplicates, paths: list[tuple[str, int]], file_index: dict[str, int], order: Order | ray.ObjectRef, parts: int, scratch: Path,
                 out: Path) -> dict:
    """Near-duplicate groups over the pieces' `near-PART.parquet` files (one map task each); saved in OUT as `resolve_exact`."""
    with exchange(scratch, parts) as ex:
        return run(parts, _near_rounds, ex, paths, ray.put(file_index), _put(order), finder, str(out))


def _exact_rounds(stage, ex: Exchange, paths: list[tuple[str, int]], file_index, order, finder: ExactDuplicates, out: str) -> dict:
    stage(_exact_map, [(ex, i, p, piece, file_index, order) for i, (p, piece) in enumerate(paths)])
    found = stage(_exact_reduce, [(ex, q, out, order) for q in range(ex.parts)])
    finder.pairs_written_apart().save(out)
    return {"duplicates": sum(found)}


def _near_rounds(stage, ex: Exchange, paths: list[tuple[str, int]], file_index, order, finder: NearDuplicates, out: str) -> dict:
    """The near-duplicate rounds, then the decisions saved; returns the counts."""
    bands, rows, threshold = finder.bands, finder.rows, finder.threshold
    stage(_near_map, [(ex, i, p, piece, file_index, order, bands, rows) for i, (p, piece) in enumerate(paths)])
    qs = range(ex.parts)
    for fn in (_buckets, _verify_lo):
        stage(fn, [(ex, q) for q in qs])
    stage(_verify_hi, [(ex, q, threshold) for q in qs])
    before, edges = None, "edges-0"
    for r in range(MAX_ROUNDS):
        now = tuple(map(sum, zip(*stage(_star, [(ex, q, edges, f"large-{r}", True) for q in qs]))))
        if now == before:
            break
        before = now
        stage(_star, [(ex, q, f"large-{r}", f"edges-{r + 1}", False) for q in qs])
        edges = f"edges-{r + 1}"
    else:
        raise RuntimeError(f"near-duplicate components did not settle in {MAX_ROUNDS} rounds")
    stage(_labels, [(ex, q, edges) for q in qs])
    found = stage(_kept_ids, [(ex, q, out, order) for q in qs])
    finder.n_union_pairs_ = now[0]  # edges of the settled stars: one per duplicate
    finder.pairs_written_apart().save(out)
    return {"duplicates": sum(found)}


def _put(x):
    return x if isinstance(x, ray.ObjectRef) else ray.put(x)


# ---------------------------------------------------------------------------
# Tasks: each reads its inputs from the exchange and writes its P parts there.
# ---------------------------------------------------------------------------

_I64, _U64 = pa.int64(), pa.uint64()
_EXACT = pa.schema([("h0", _U64), ("h1", _U64), ("rank", _I64), ("doc", pa.string())])
_BANDS = pa.schema([("band", _I64), ("key", _U64), ("rank", _I64)])
_PAIRS = pa.schema([("lo", _I64), ("hi", _I64)])
_EDGES = pa.schema([("u", _I64), ("v", _I64)])
_LABELS = pa.schema([("member", _I64), ("dup", pa.string()), ("centre", _I64)])
_SIGS = pa.schema([("rank", _I64), ("doc", pa.string()), ("sig", pa.list_(pa.uint32()))])  # read back: a fixed-size list of num_perm
_LO_SIDE = pa.schema([("lo", _I64), ("hi", _I64), ("sig", pa.list_(pa.uint32()))])


def _of_rank(rank) -> np.ndarray:
    return fmix64(np.asarray(rank, np.int64).astype(np.uint64))


def _col(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy()


def _matrix(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    return np.asarray(a.flatten().to_numpy(), np.uint32).reshape(len(a), a.type.list_size)


def _pool_rows(path: str, piece: int, file_index: dict[str, int], order: Order) -> tuple[pa.Table, np.ndarray]:
    """A signature file's rows that are documents of the pool (a repeated id's later rows are not), and their ranks."""
    t = pq.read_table(path)
    mine, rank = order.of(piece, ids.positions(t, file_index))
    return (t if mine.all() else t.filter(pa.array(mine))), rank


def _exact_map(ex: Exchange, task: int, path: str, piece: int, file_index: dict[str, int], order: Order) -> int:
    t, rank = _pool_rows(path, piece, file_index, order)
    out = pa.table({"h0": t.column("h0"), "h1": t.column("h1"), "rank": pa.array(rank, _I64), "doc": t.column(S.DOC_ID)}, schema=_EXACT)
    return ex.write("exact", task, split(out, _col(out, "h0"), ex.parts))


def _exact_reduce(ex: Exchange, q: int, out: str, keep: Order) -> int:
    t = ex.read("exact", q, _EXACT)
    h0, h1, rank = _col(t, "h0"), _col(t, "h1"), _col(t, "rank")
    order = np.lexsort((rank, h1, h0))
    new = np.r_[True, (h0[order][1:] != h0[order][:-1]) | (h1[order][1:] != h1[order][:-1])] if len(order) else np.zeros(0, bool)
    first = order[np.flatnonzero(new)][np.cumsum(new) - 1]  # each sorted row's group's smallest rank
    dup = ~new
    doc = t.column("doc")
    return write_pairs(out, q, rank[order[dup]], doc.take(pa.array(order[dup])), doc.take(pa.array(first[dup])), keep.piece_of(rank[order[dup]]))


def _near_map(ex: Exchange, task: int, path: str, piece: int, file_index: dict[str, int], order: Order, bands: int, rows: int) -> int:
    """Signatures with doc_ids by rank; band rows (band, key, rank) by band key."""
    t, rank = _pool_rows(path, piece, file_index, order)
    sig = t.column("sig").combine_chunks()
    sigs = pa.table({"rank": pa.array(rank, _I64), "doc": t.column(S.DOC_ID), "sig": sig})
    keys = lsh_band_keys(_matrix(sig), bands, rows).reshape(-1)  # document-major: doc 0's bands, then doc 1's
    band = np.tile(np.arange(bands, dtype=np.int64), len(rank))
    band_rows = pa.table({"band": band, "key": keys, "rank": np.repeat(rank, bands)}, schema=_BANDS)
    n = ex.write("sigs", task, split(sigs, _of_rank(rank), ex.parts))
    ex.write("bands", task, split(band_rows, fmix64(keys ^ (band.astype(np.uint64) * _GOLDEN)), ex.parts))
    return n


def _buckets(ex: Exchange, q: int) -> int:
    """Candidate pairs of the buckets routed here, by their lower rank."""
    t = ex.read("bands", q, _BANDS)
    p = unique_pairs(bucket_pairs(_col(t, "rank"), _col(t, "band"), _col(t, "key")))
    pairs = pa.table({"lo": p[:, 0], "hi": p[:, 1]}, schema=_PAIRS)
    return ex.write("pairs", q, split(pairs, _of_rank(p[:, 0]), ex.parts))


def _signatures(ex: Exchange, q: int) -> tuple[np.ndarray, pa.Table]:
    """This partition's signature rows sorted by rank, and the ranks."""
    t = ex.read("sigs", q, _SIGS)
    t = t.take(pa.array(np.argsort(_col(t, "rank"))))
    return _col(t, "rank"), t


def _look_up(sorted_rank: np.ndarray, wanted: np.ndarray) -> pa.Array:
    i = np.searchsorted(sorted_rank, wanted)
    if wanted.size and (i.max() >= sorted_rank.size or not np.array_equal(sorted_rank[i], wanted)):
        raise RuntimeError("a candidate pair names a rank missing from its partition")
    return pa.array(i, _I64)


def _verify_lo(ex: Exchange, q: int) -> int:
    """Each pair with its lower end's signature, routed by the higher end."""
    rank, sigs = _signatures(ex, q)
    pairs = ex.read("pairs", q, _PAIRS)
    lo_sig = sigs.column("sig").take(_look_up(rank, _col(pairs, "lo")))
    return ex.write("lo-side", q, split(pairs.append_column("sig", lo_sig), _of_rank(_col(pairs, "hi")), ex.parts))


def _verify_hi(ex: Exchange, q: int, threshold: float) -> int:
    """Pairs whose estimated Jaccard reaches the threshold, as edges routed by both ends."""
    rank, sigs = _signatures(ex, q)
    got = ex.read("lo-side", q, _LO_SIDE)
    if got.num_rows == 0:
        return _write_edges(ex, "edges-0", q, np.zeros(0, np.int64), np.zeros(0, np.int64))
    hi_sig = _matrix(sigs.column("sig").take(_look_up(rank, _col(got, "hi"))))
    ok = estimated_jaccard(_matrix(got.column("sig")), hi_sig) >= threshold
    return _write_edges(ex, "edges-0", q, _col(got, "lo")[ok], _col(got, "hi")[ok])


def _write_edges(ex: Exchange, stage: str, q: int, a: np.ndarray, b: np.ndarray) -> int:
    """Edges (a, b) as both directions, each routed by its first end."""
    t = pa.table({"u": np.concatenate([a, b]), "v": np.concatenate([b, a])}, schema=_EDGES)
    return ex.write(stage, q, split(t, _of_rank(_col(t, "u")), ex.parts))


def _edges(ex: Exchange, stage: str, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct edges (u, v) routed here (every edge of each u here, both directions present), no self loops."""
    t = ex.read(stage, q, _EDGES)
    e = unique_pairs(np.stack([_col(t, "u"), _col(t, "v")], axis=1))
    e = e[e[:, 0] != e[:, 1]]
    return e[:, 0], e[:, 1]


def _star(ex: Exchange, q: int, given: str, stage: str, large: bool) -> tuple[int, int]:
    """Large-star or small-star over the edges routed here; returns the fingerprint (count, hash sum) of the edge
    set it was given."""
    u, v = _edges(ex, given, q)
    once = u < v
    fingerprint = (int(once.sum()), int(fmix64(u[once].astype(np.uint64) * _GOLDEN ^ v[once].astype(np.uint64)).sum(dtype=np.uint64)))
    _write_edges(ex, stage, q, *(large_star if large else small_star)(u, v))
    return fingerprint


def _labels(ex: Exchange, q: int, settled: str) -> int:
    """Each node of a settled star that is not its centre, with its doc_id, routed by the centre (its label)."""
    rank, sigs = _signatures(ex, q)
    u, v = _edges(ex, settled, q)
    hub = v < u  # settled: a member's only edge is to its centre, the smallest rank of the component
    member, centre = u[hub], v[hub]
    if len(np.unique(member)) != len(member):
        raise RuntimeError("near-duplicate components did not settle into stars")
    t = pa.table({"member": member, "dup": sigs.column("doc").take(_look_up(rank, member)), "centre": centre}, schema=_LABELS)
    return ex.write("labels", q, split(t, _of_rank(centre), ex.parts))


def _kept_ids(ex: Exchange, q: int, out: str, keep: Order) -> int:
    """Each duplicate of this partition with its kept document's doc_id and its piece: this partition's part of the map."""
    rank, sigs = _signatures(ex, q)
    t = ex.read("labels", q, _LABELS)
    kept = sigs.column("doc").take(_look_up(rank, _col(t, "centre")))
    return write_pairs(out, q, _col(t, "member"), t.column("dup"), kept, keep.piece_of(_col(t, "member")))
