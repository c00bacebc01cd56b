"""Duplicates resolved on the workers: exact groups and MinHash LSH as hash shuffles over Ray tasks.

The dedup phase's signature pieces (one per input partition, `phases.signature_piece`) are the map side. Every
later stage is P reduce tasks (P = the cluster's CPUs); a task splits what it emits by a hash into P parts, one
object each, and reduce task p gathers part p of every task before it. No text, signature or per-document row
reaches the driver: it holds object references, and at the end the (duplicate, kept) doc_id pairs, which the
score phase needs anyway.

    exact  (h0, h1, rank, doc_id) routed by the text hash -> each group's smallest rank is kept
    near   signatures and doc_ids routed by rank; band rows (band, key, rank) by the band key
           1. bucket pairs where each bucket lies whole (`bucket_pairs`), routed by the pair's lower rank
           2. verification: the lower end's signature joined in its rank's partition, routed by the higher end,
              whose signature is joined there; kept when the estimated Jaccard >= threshold
           3. connected components by alternating large-star and small-star (Kiveris et al. 2014), edges routed
              by both ends, until a round leaves the edge set as it was: every component is then a star around
              its smallest rank
           4. each duplicate's and its kept document's doc_id joined from the doc_id parts

The candidate pairs, the verification and the smallest-rank labels are those of `NearDuplicates.resolve`, so the
flags are equal to the single-process detector's (tests/unit/test_dedup_shuffle.py). Deviation from the paper's
setting: it runs the two operations as MapReduce rounds over one key space; here each round is one Ray task per
partition, and convergence is checked by an order-free fingerprint of the edge set (count and a sum of hashes).
"""

from __future__ import annotations

from typing import Callable

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
)
from thresher.operators.hashing import fmix64

from . import ids
from .seen import Ranks

MAX_ROUNDS = 64  # large-star / small-star rounds; Kiveris et al. bound them by O(log^2 n)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def partition_count() -> int:
    """One reduce task per CPU of the cluster."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def resolve_exact(finder: ExactDuplicates, paths: list[str], file_index: dict[str, int], ranks: Ranks, parts: int) -> ExactDuplicates:
    """Exact groups over the pieces' `exact.parquet` files; sets the finder's decisions."""
    shared = (ray.put(file_index), ray.put(ranks))
    mapped = [_exact_map.options(num_returns=parts).remote(p, *shared, parts) for p in paths]
    found = [_exact_reduce.remote(*_column(mapped, q, parts)) for q in range(parts)]
    return _decide(finder, ray.get(found))


def resolve_near(finder: NearDuplicates, paths: list[str], file_index: dict[str, int], ranks: Ranks, parts: int) -> NearDuplicates:
    """Near-duplicate groups over the pieces' `near.parquet` files; sets the finder's decisions."""
    shared = (ray.put(file_index), ray.put(ranks))
    mapped = [_near_map.options(num_returns=3 * parts).remote(p, *shared, finder.bands, finder.rows, parts) for p in paths]
    sigs = [[m[q] for m in mapped] for q in range(parts)] if len(paths) > 0 else [[] for _ in range(parts)]
    doc_ids = [[m[parts + q] for m in mapped] for q in range(parts)] if len(paths) > 0 else [[] for _ in range(parts)]
    pairs = _stage(_buckets, [[m[2 * parts + q] for m in mapped] for q in range(parts)], parts)
    lo_side = _stage(_verify_lo, pairs, parts, sigs)
    edges = _stage(_verify_hi, lo_side, parts, sigs, finder.threshold)
    before = None
    for _ in range(MAX_ROUNDS):
        outs = [_star_large.options(num_returns=parts + 1).remote(parts, *edges[q]) for q in range(parts)]
        now = tuple(sum(f) for f in zip(*ray.get([o[parts] for o in outs])))
        if now == before:
            break
        before = now
        edges = _stage(_star_small, [[o[q] for o in outs] for q in range(parts)], parts)
    else:
        raise RuntimeError(f"near-duplicate components did not settle in {MAX_ROUNDS} rounds")
    finder.n_union_pairs_ = now[0]  # edges of the settled stars: one per duplicate
    labelled = _stage(_labels, edges, parts, doc_ids)
    return _decide(finder, ray.get([_kept_ids.remote(len(doc_ids[q]), *doc_ids[q], *labelled[q]) for q in range(parts)]))


# ---------------------------------------------------------------------------
# Driver-side plumbing: references only.
# ---------------------------------------------------------------------------


def _column(mapped: list, q: int, parts: int) -> list:
    """Part q of every map task (a single return is not a list)."""
    return [m[q] if parts > 1 else m for m in mapped]


def _stage(task: Callable, inputs: list[list], parts: int, joined: list[list] | None = None, *args) -> list[list]:
    """Run `task` once per partition q on part q of every earlier task (and part q of `joined`), each emitting P
    parts; returns, for each partition, the parts routed to it."""
    outs = []
    for q in range(parts):
        side = joined[q] if joined is not None else []
        outs.append(task.options(num_returns=parts).remote(parts, *args, len(side), *side, *inputs[q]))
    return [[o[q] if parts > 1 else o for o in outs] for q in range(parts)]


def _decide(finder, found: list[tuple[np.ndarray, pa.Array, pa.Array]]):
    """The reduce tasks' (rank, duplicate doc_id, kept doc_id), in rank order as `resolve` gives them."""
    rank = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.int64)
    order = pa.array(np.argsort(rank, kind="stable"))
    dup = pa.concat_arrays([f[1] for f in found]) if found else pa.array([], pa.string())
    kept = pa.concat_arrays([f[2] for f in found]) if found else pa.array([], pa.string())
    return finder.set_pairs(dup.take(order), kept.take(order))


# ---------------------------------------------------------------------------
# Tasks.
# ---------------------------------------------------------------------------


def _route(h: np.ndarray, parts: int) -> list[np.ndarray]:
    """Row indices of each partition, by a uint64 hash."""
    part = (np.asarray(h, np.uint64) % np.uint64(parts)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [order[bounds[q] : bounds[q + 1]] for q in range(parts)]


def _of_rank(rank: np.ndarray) -> np.ndarray:
    return fmix64(np.asarray(rank, np.int64).astype(np.uint64))


def _pool_rows(path: str, file_index: dict[str, int], ranks: Ranks) -> tuple[pa.Table, np.ndarray]:
    """A signature piece's rows that are documents of the pool (a repeated id's later rows are not), and their ranks."""
    t = pq.read_table(path)
    pos = ids.positions(t, file_index)
    mine = ranks.contains(pos)
    if not mine.all():
        t, pos = t.filter(pa.array(mine)), pos[mine]
    return t, ranks.of(pos)


@ray.remote
def _exact_map(path: str, file_index: dict[str, int], ranks: Ranks, parts: int):
    t, rank = _pool_rows(path, file_index, ranks)
    h0, h1 = t.column("h0").to_numpy(), t.column("h1").to_numpy()
    doc = t.column(S.DOC_ID).combine_chunks()
    out = [(h0[i], h1[i], rank[i], doc.take(pa.array(i))) for i in _route(h0, parts)]
    return out if parts > 1 else out[0]


@ray.remote
def _exact_reduce(*parts) -> tuple[np.ndarray, pa.Array, pa.Array]:
    h0, h1, rank = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64) for k in range(3))
    doc = pa.concat_arrays([p[3] for p in parts]) if parts else pa.array([], pa.string())
    order = np.lexsort((rank, h1, h0))
    new = np.r_[True, (h0[order][1:] != h0[order][:-1]) | (h1[order][1:] != h1[order][:-1])] if len(order) else np.zeros(0, bool)
    first = order[np.flatnonzero(new)][np.cumsum(new) - 1]  # each row's group's smallest rank, in sorted order
    dup = ~new
    return rank[order[dup]], doc.take(pa.array(order[dup])), doc.take(pa.array(first[dup]))


@ray.remote
def _near_map(path: str, file_index: dict[str, int], ranks: Ranks, bands: int, rows: int, parts: int) -> list:
    """P parts of (rank, signature), P of (rank, doc_id), P of band rows (band, key, rank)."""
    t, rank = _pool_rows(path, file_index, ranks)
    a = t.column("sig").combine_chunks()
    sig = np.asarray(a.flatten().to_numpy(), np.uint32).reshape(len(a), a.type.list_size) if len(a) else np.zeros((0, a.type.list_size), np.uint32)
    doc = t.column(S.DOC_ID).combine_chunks()
    by_rank = _route(_of_rank(rank), parts)
    keys = lsh_band_keys(sig, bands, rows).reshape(-1)  # document-major: doc 0's bands, then doc 1's
    band = np.tile(np.arange(bands, dtype=np.int64), len(rank))
    band_rank = np.repeat(rank, bands)
    by_key = _route(fmix64(keys ^ (band.astype(np.uint64) * _GOLDEN)), parts)
    return ([(rank[i], sig[i]) for i in by_rank] + [(rank[i], doc.take(pa.array(i))) for i in by_rank]
            + [(band[i], keys[i], band_rank[i]) for i in by_key])


def _emit(out: list, parts: int):
    return out if parts > 1 else out[0]


@ray.remote
def _buckets(parts: int, _n: int, *bands) -> list:
    """Candidate pairs of the buckets routed here, by their lower rank."""
    band, key, rank = (np.concatenate([b[k] for b in bands]) if bands else np.zeros(0, np.int64) for k in range(3))
    pairs = unique_pairs(bucket_pairs(rank, band, key))
    return _emit([pairs[i] for i in _route(_of_rank(pairs[:, 0]), parts)], parts)


def _signatures(sig_parts) -> tuple[np.ndarray, np.ndarray]:
    """This partition's (ranks sorted, their signatures)."""
    if not sig_parts:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.uint32)
    rank = np.concatenate([s[0] for s in sig_parts])
    order = np.argsort(rank)
    return rank[order], np.concatenate([s[1] for s in sig_parts])[order]


def _look_up(sorted_rank: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    i = np.searchsorted(sorted_rank, wanted)
    if wanted.size and (i.max() >= sorted_rank.size or not np.array_equal(sorted_rank[i], wanted)):
        raise RuntimeError("a candidate pair names a rank missing from its partition")
    return i


@ray.remote
def _verify_lo(parts: int, n_sig: int, *args) -> list:
    """Each pair with its lower end's signature, routed by the higher end."""
    rank, sig = _signatures(args[:n_sig])
    pairs = np.concatenate(args[n_sig:]) if len(args) > n_sig else np.zeros((0, 2), np.int64)
    lo_sig = sig[_look_up(rank, pairs[:, 0])] if len(pairs) else np.zeros((0, sig.shape[1] if sig.ndim == 2 else 0), np.uint32)
    return _emit([(pairs[i], lo_sig[i]) for i in _route(_of_rank(pairs[:, 1]), parts)], parts)


@ray.remote
def _verify_hi(parts: int, threshold: float, n_sig: int, *args) -> list:
    """Pairs whose estimated Jaccard reaches the threshold, as edges routed by both ends."""
    rank, sig = _signatures(args[:n_sig])
    got = args[n_sig:]
    pairs = np.concatenate([g[0] for g in got]) if got else np.zeros((0, 2), np.int64)
    if len(pairs):
        lo_sig = np.concatenate([g[1] for g in got])
        pairs = pairs[estimated_jaccard(lo_sig, sig[_look_up(rank, pairs[:, 1])]) >= threshold]
    return _both_ways(pairs[:, 0], pairs[:, 1], parts)


def _both_ways(a: np.ndarray, b: np.ndarray, parts: int) -> list:
    u, v = np.concatenate([a, b]), np.concatenate([b, a])
    return _emit([(u[i], v[i]) for i in _route(_of_rank(u), parts)], parts)


def _edges(got) -> tuple[np.ndarray, np.ndarray]:
    """Distinct edges (u, v) routed here (every edge of each u here, both directions present), no self loops."""
    if not got:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    e = unique_pairs(np.stack([np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])], axis=1))
    e = e[e[:, 0] != e[:, 1]]
    return e[:, 0], e[:, 1]


@ray.remote
def _star_large(parts: int, *got) -> list:
    """Large-star over the edges routed here, then the fingerprint (count, hash sum) of the edge set it was given."""
    u, v = _edges(got)
    once = u < v
    fingerprint = (int(once.sum()), int(fmix64(u[once].astype(np.uint64) * _GOLDEN ^ v[once].astype(np.uint64)).sum(dtype=np.uint64)))
    a, b = large_star(u, v)
    routed = _both_ways(a, b, parts)
    return [*routed, fingerprint] if parts > 1 else [routed, fingerprint]


@ray.remote
def _star_small(parts: int, _n: int, *got) -> list:
    u, v = _edges(got)
    a, b = small_star(u, v)
    return _both_ways(a, b, parts)


@ray.remote
def _labels(parts: int, n_ids: int, *args) -> list:
    """Each node of a settled star that is not its centre, with its doc_id, routed by the centre (its label)."""
    doc_rank, doc = _doc_ids(args[:n_ids])
    u, v = _edges(args[n_ids:])
    hub = v < u  # settled: a member's only edge is to its centre, the smallest rank of the component
    member, centre = u[hub], v[hub]
    if len(np.unique(member)) != len(member):
        raise RuntimeError("near-duplicate components did not settle into stars")
    names = doc.take(pa.array(_look_up(doc_rank, member)))
    return _emit([(member[i], names.take(pa.array(i)), centre[i]) for i in _route(_of_rank(centre), parts)], parts)


def _doc_ids(id_parts) -> tuple[np.ndarray, pa.Array]:
    if not id_parts:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    rank = np.concatenate([p[0] for p in id_parts])
    order = np.argsort(rank)
    return rank[order], pa.concat_arrays([p[1] for p in id_parts]).take(pa.array(order))


@ray.remote
def _kept_ids(n_ids: int, *args) -> tuple[np.ndarray, pa.Array, pa.Array]:
    doc_rank, doc = _doc_ids(args[:n_ids])
    got = args[n_ids:]
    if not got:
        return np.zeros(0, np.int64), pa.array([], pa.string()), pa.array([], pa.string())
    centre = np.concatenate([g[2] for g in got])
    return (np.concatenate([g[0] for g in got]), pa.concat_arrays([g[1] for g in got]),
            doc.take(pa.array(_look_up(doc_rank, centre))))
