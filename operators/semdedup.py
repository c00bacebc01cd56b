"""SemDeDup: semantic duplicates within k-means clusters (Abbas et al. 2023, arXiv 2303.09540).

Follows facebookresearch/SemDeDup (`clustering/sort_clusters.py`, `semdedup.py`):

1. order the cluster's items by cosine distance to the centroid, descending
   by default ("hard": the farthest, least prototypical item comes first);
   "easy" is the reverse, "random" a shuffle;
2. with S the pairwise cosine similarity in that order, M_j = max_{i < j} S_ij
   (the column maxima of the strictly upper-triangular part);
3. item j is a semantic duplicate when M_j > 1 - eps.

So in every near-identical pair the item EARLIER in the order is kept and the
later one flagged: with "hard" the one farther from the centroid survives.
Like the reference, M_j looks at every earlier item, flagged or not, so a
chain a ~ b ~ c (a first) flags b and c even when a and c are not similar
enough; `d_semdup_of` is the earlier item attaining M_j (the first such
item on ties) and may itself be flagged.

Deviations, none of which changes which items are compared:

* ties in the distance are broken by doc_id (ascending, for "hard" and
  "easy" alike) instead of the reference's dataset order (reversed for
  "easy"), so the result never depends on how rows were partitioned;
* "random" orders by `uniform_from_ids(seed, doc_ids)` instead of
  Python's `random.shuffle`: the same seed and documents give the same
  order in every batch, worker and resume;
* for the first item of the order M_j is undefined (the reference uses 0,
  the value it fills below the diagonal); both never flag it;
* S is computed for `block` items at a time against every item up to the
  block's end, in one reused buffer of block x n_cluster float32 (plus the
  cluster's n x d embeddings), instead of the full n x n matrix: a large
  cluster costs block / n of the memory, not more time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import schema as S
from .dedup import DuplicateMap
from .embed import from_fixed_list
from .selection import uniform_from_ids

ORDERS = ("hard", "easy", "random")


def semdedup_order(doc_ids: list[str], dist: np.ndarray, order: str = "hard", seed: int = 0) -> np.ndarray:
    """The permutation SemDeDup walks a cluster in (positions into the inputs)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    ids = np.asarray(doc_ids, dtype=object)
    by_id = np.argsort(ids, kind="stable")  # doc_id rank breaks every tie
    rank = np.empty(len(ids), np.int64)
    rank[by_id] = np.arange(len(ids))
    dist = np.asarray(dist, np.float64)
    if order == "hard":
        key = -dist
    elif order == "easy":
        key = dist
    else:
        key = uniform_from_ids(seed, list(doc_ids))
    return np.lexsort((rank, key))


def semdedup_cluster(
    doc_ids: list[str],
    emb: np.ndarray,
    dist: np.ndarray,
    eps: float,
    order: str = "hard",
    seed: int = 0,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """(is_dup bool (n,), dup_of object (n,): doc_id or None), both in input row order.

    `emb` rows are L2-normalised here (a zero row stays zero: similarity 0).
    """
    n = len(doc_ids)
    is_dup = np.zeros(n, bool)
    dup_of = np.full(n, None, dtype=object)
    if n < 2:
        return is_dup, dup_of
    perm = semdedup_order(doc_ids, dist, order, seed)
    x = np.asarray(emb, np.float32)[perm]  # a copy: n x d float32
    x /= np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x), 1e-24))[:, None]
    best = np.full(n, -np.inf, np.float32)
    arg = np.zeros(n, np.int64)
    block = max(min(int(block), n), 1)
    buffer = np.empty(block * n, np.float32)  # the only large allocation, reused by every block
    for s in range(0, n, block):
        e = min(s + block, n)
        # Row j of the block against every item up to the block's end: S[i, j] for i < e,
        # laid out so the max over i runs along contiguous memory.
        sims = buffer[: (e - s) * e].reshape(e - s, e)
        np.matmul(x[s:e], x[:e].T, out=sims)
        for j in range(e - s):  # keep only earlier items i < j (no block x block mask)
            sims[j, s + j :] = -np.inf
        arg[s:e] = np.argmax(sims, axis=1)
        best[s:e] = sims[np.arange(e - s), arg[s:e]]
    flagged = best > np.float32(1.0 - eps)
    ids = np.asarray(doc_ids, dtype=object)
    is_dup[perm] = flagged
    dup_of[perm[flagged]] = ids[perm[arg[flagged]]]
    return is_dup, dup_of


class SemDeDup:
    """Adds `d_semdup` / `d_semdup_of` to a table holding whole clusters.

    Needs DOC_ID, D_CLUSTER, D_CENTROID_DIST and EMB; the table normally holds
    one cluster, and several are processed one after the other. Rows without
    an embedding or a cluster are never duplicates. `eps` has no universal
    value: the paper sweeps it per dataset and embedder for a target removal
    fraction.
    """

    def __init__(self, eps: float = 0.05, order: str = "hard", seed: int = 0, block: int = 4096):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.eps, self.order, self.seed, self.block = eps, order, seed, block

    def columns(self, table: pa.Table) -> tuple[pa.Array, pa.Array]:
        n = table.num_rows
        is_dup = np.zeros(n, bool)
        dup_of = np.full(n, None, dtype=object)
        emb_col = table.column(S.EMB)
        cluster_col = table.column(S.D_CLUSTER)
        ok = np.asarray(pc.and_(pc.is_valid(emb_col), pc.is_valid(cluster_col)).to_numpy(zero_copy_only=False), bool)
        if n and ok.any():
            emb = from_fixed_list(emb_col)
            cluster = np.asarray(cluster_col.fill_null(-1).to_numpy(zero_copy_only=False))
            dist = np.asarray(table.column(S.D_CENTROID_DIST).fill_null(0.0).to_numpy(zero_copy_only=False), np.float64)
            ids = np.asarray(table.column(S.DOC_ID).to_pylist(), dtype=object)
            for c in np.unique(cluster[ok]):
                rows = np.flatnonzero(ok & (cluster == c))
                sub = emb if len(rows) == n else emb[rows]  # the usual one-cluster table: no copy
                d, of = semdedup_cluster(list(ids[rows]), sub, dist[rows], self.eps, self.order, self.seed, self.block)
                is_dup[rows], dup_of[rows] = d, of
        return pa.array(is_dup, pa.bool_()), pa.array(dup_of.tolist(), pa.string())

    def transform(self, table: pa.Table) -> pa.Table:
        is_dup, dup_of = self.columns(table)
        return table.append_column(S.D_SEMDUP, is_dup).append_column(S.D_SEMDUP_OF, dup_of)


class SemanticDuplicates(DuplicateMap):
    """SemDeDup's decisions for the whole pool, applied to any batch by doc_id.

    SemDeDup runs cluster by cluster (a grouped pass); what comes back is just
    (duplicate doc_id, the earlier doc_id it matched), held like the exact and
    near duplicate maps so all three share `transform`, `save` and `load`.
    """

    flag_col, of_col = S.D_SEMDUP, S.D_SEMDUP_OF

    @classmethod
    def from_pairs(cls, duplicate_ids: pa.Array, kept_ids: pa.Array, pieces: pa.Array | None = None) -> "SemanticDuplicates":
        return cls().set_pairs(duplicate_ids, kept_ids, pieces)


def semdedup_group(group: pa.Table, semdedup: SemDeDup) -> pa.Table:
    """Map one cluster (a Ray Data group) to its duplicates only: doc_id and the id it duplicates (with the
    duplicate's input file and position where the group carries them: what places it in a piece)."""
    is_dup, dup_of = semdedup.columns(group)
    keep = pa.array(np.asarray(is_dup.to_numpy(zero_copy_only=False), bool))
    where = {c: group.column(c).filter(keep) for c in (S.INPUT_FILE, S.INPUT_OFFSET) if c in group.column_names}
    return pa.table({S.DOC_ID: group.column(S.DOC_ID).filter(keep), S.D_SEMDUP_OF: dup_of.filter(keep), **where})
