"""Diversity features per document and diversity measures of a selection.

Per document (from the k-means assignment):

* `d_cluster_size`: documents in the document's cluster, counted corpus-wide;
* `d_cluster_rarity`: -log(size / N), N the number of clustered documents -
  the surprisal (nats) of the cluster under the corpus's cluster distribution.
  Every document scores log K when the K clusters are equal in size; a cluster
  holding 1% of the corpus scores 4.6, one holding 50% scores 0.69. Prototype
  based pruning (Sorscher et al. 2022, "Beyond neural scaling laws") ranks a
  document by its distance to its cluster prototype ("far = hard", our
  `d_centroid_dist`); rarity is the cluster-level counterpart, giving a
  sampler a reason to up-weight sparse regions of embedding space as
  cluster-balanced pruning does (Tirumala et al. 2023, D4; Abbas et al. 2024,
  density-based pruning). It is at most log N (a singleton cluster).

Per selection:

* `vendi_score`: Friedman & Dieng 2022 (arXiv 2210.02410), the exponential of
  the entropy of the eigenvalues of K/n, K the cosine-similarity kernel: the
  "effective number of distinct items" (1 for n copies of one vector, n for
  n orthogonal vectors);
* `cluster_entropy`: Shannon entropy of how the selected copies spread over
  clusters, optionally normalised by log K.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import schema as S

VENDI_SAMPLE = 5000


def cluster_sizes(cluster_ids: np.ndarray, n_clusters: int) -> np.ndarray:
    """Documents per cluster id (negative ids - no cluster - are not counted); add the
    counts of every batch to get corpus-wide sizes."""
    c = np.asarray(cluster_ids, np.int64)
    return np.bincount(c[c >= 0], minlength=n_clusters).astype(np.int64)


def cluster_features(cluster_ids: np.ndarray, cluster_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size int64, rarity float32 = -log(size / N)) per document.

    `cluster_sizes[k]` is the corpus-wide count of cluster k (N = their sum).
    A negative cluster id (no embedding) gets size 0 and rarity NaN.
    """
    sizes = np.asarray(cluster_sizes, np.int64)
    total = sizes.sum()
    c = np.asarray(cluster_ids, np.int64)
    known = c >= 0
    size = np.zeros(len(c), np.int64)
    size[known] = sizes[c[known]]
    rarity = np.full(len(c), np.nan, np.float64)
    ok = known & (size > 0)
    rarity[ok] = -np.log(size[ok] / total)
    return size, rarity.astype(np.float32)


def add_cluster_features(batch: pa.Table, cluster_sizes: np.ndarray) -> pa.Table:
    """Append `d_cluster_size` and `d_cluster_rarity` (null where `d_cluster` is null)."""
    col = batch.column(S.D_CLUSTER)
    ids = np.asarray(col.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    size, rarity = cluster_features(ids, cluster_sizes)
    missing = ids < 0
    return batch.append_column(S.D_CLUSTER_SIZE, pa.array(size, mask=missing)).append_column(
        S.D_CLUSTER_RARITY, pa.array(rarity, mask=missing | np.isnan(rarity))
    )


def _entropy_q(p: np.ndarray, q: float) -> float:
    p = p[p > 0]
    if q == 1:
        return float(-(p * np.log(p)).sum())
    if q == np.inf:
        return float(-np.log(p.max()))
    return float(np.log((p**q).sum()) / (1.0 - q))


def vendi_score(emb: np.ndarray, q: float = 1.0, sample: int = VENDI_SAMPLE, seed: int = 0) -> float:
    """Vendi score of order q with the cosine kernel, on at most `sample` rows.

    K/n (n x n, K_ij = cos(x_i, x_j)) = X X^T / n with X the row-normalised
    embeddings, and X X^T and the d x d matrix X^T X share their nonzero
    eigenvalues; so for n > d the eigenvalues come from X^T X / n (O(n d^2 +
    d^3) instead of O(n^2 d + n^3)), giving the identical score. The
    eigenvalues sum to tr(K)/n = 1; tiny negative ones (rounding) are dropped,
    as in the reference implementation. Rows are sampled without replacement
    by a seeded generator, so the score of one selection is reproducible.
    Zero rows (no embedding) are dropped first.
    """
    x = np.asarray(emb, np.float64)
    norms = np.linalg.norm(x, axis=1)
    x = x[norms > 0] / norms[norms > 0, None]
    if len(x) == 0:
        return 0.0
    if len(x) > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), sample, replace=False))]
    n, d = x.shape
    gram = (x.T @ x) if n > d else (x @ x.T)
    w = np.linalg.eigvalsh(gram / n)
    return float(np.exp(_entropy_q(w, q)))


def cluster_entropy(
    cluster_ids: np.ndarray, copies: np.ndarray | None = None, normalise: bool = False, n_clusters: int | None = None
) -> float:
    """Shannon entropy (nats) of the selection's distribution over clusters.

    Each document weighs its number of selected `copies` (all 1 when None;
    0 copies = not selected); negative cluster ids are ignored. With
    `normalise`, divide by log K, K = `n_clusters` (the k-means K: a selection
    that empties clusters then scores below 1) or, when None, the number of
    distinct clusters among the given documents, selected or not. 0 when K < 2
    or nothing is selected.
    """
    c = np.asarray(cluster_ids, np.int64)
    w = np.ones(len(c)) if copies is None else np.asarray(copies, np.float64)
    keep = c >= 0
    c, w = c[keep], w[keep]
    if w.sum() <= 0:
        return 0.0
    mass = np.bincount(c, weights=w)
    p = mass[mass > 0] / mass.sum()
    h = float(-(p * np.log(p)).sum())
    if not normalise:
        return h
    k = n_clusters if n_clusters is not None else len(np.unique(c))
    return h / np.log(k) if k > 1 else 0.0
