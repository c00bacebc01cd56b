"""Subset selection inside one group of documents (normally one k-means cluster).

Each function takes the arrays of ONE group and returns positions into them,
so the pipeline can run one cluster per task on any worker. Nothing reads
global RNG state: randomness comes in as uniforms the caller derives from
(seed, doc_id) with `uniform_from_ids`, and remaining ties go to the lower
position, so the same documents give the same subset on every worker and
every resume.

* `kmq_budgets`: how many documents each cluster gets (kMQ, Yu et al. 2024,
  arXiv 2409.11378), and `iterative_weights`, the cluster weights its
  iterative variant uses to split the next round's budget;
* `gumbel_top_k`: k draws without replacement, p proportional to exp(score / T);
* `facility_location`: a subset that represents the cluster (INGENIOUS);
* `max_min_diversity`: a subset whose members are spread out (DivPrune);
* `odis`: the top documents along decorrelated quality axes (ODiS).
"""

from __future__ import annotations

import heapq

import faiss
import numpy as np

MODES = ("equal", "proportional")


def kmq_budgets(
    cluster_sizes: np.ndarray, budget: int, mode: str = "equal", weights: np.ndarray | None = None
) -> np.ndarray:
    """Documents to take from each cluster: integers summing to min(budget, pool).

    kMQ takes the same number from every cluster, so a few large clusters
    cannot crowd out the rest. Every mode follows one rule (water-filling):
    cluster c gets min(size_c, L * w_c), where L is the level at which the
    shares add up to the target, and w_c is 1 ("equal"), size_c
    ("proportional") or `weights[c]` ("proportional" with weights: the
    iterative variant). So a cluster smaller than its share is taken whole,
    and the part it cannot hold goes to the clusters that still have room, in
    proportion to their weights. Shares are rounded by the largest remainder
    method: each cluster gets the floor of its share, and the units left over
    go one each to the largest fractional parts, ties to the lower cluster
    index. "equal" and size-proportional shares are computed in exact integer
    arithmetic, so equal fractional parts really tie (the products
    budget * size and size * pool must stay below 2**63). The reference code
    (for-ai/iterative-data-selection) gives each cluster
    int(budget / K) capped at its size, so it falls short of the budget by
    what small clusters cannot hold and by the rounding; here nothing is lost.
    Its iterative variant draws each round's cluster counts from a multinomial
    over the weights; here they are the rounded shares, the same on every run.

    The pool is the total size of the clusters with a positive weight. A
    cluster of weight 0 gets nothing, and a budget larger than the pool takes
    the whole pool.
    """
    sizes = np.asarray(cluster_sizes, np.int64)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if budget < 0 or (sizes < 0).any():
        raise ValueError("budget and cluster sizes must be non-negative")
    if weights is None:
        w = np.ones_like(sizes) if mode == "equal" else sizes
    elif mode == "equal":
        raise ValueError("weights replace the sizes of mode='proportional'; 'equal' takes none")
    else:
        w = np.asarray(weights, np.float64)
        if w.shape != sizes.shape or not (w >= 0).all():
            raise ValueError("weights must be non-negative, one per cluster")
    out = np.zeros(len(sizes), np.int64)
    room = w > 0
    left = min(int(budget), int(sizes[room].sum()))
    while room.any():
        # Share of c: left * w_c / sum(w); a cluster whose share reaches its size is taken whole.
        full = room & (left * w >= sizes * w[room].sum())
        if not full.any():
            break
        out[full] = sizes[full]
        left -= int(sizes[full].sum())
        room &= ~full
    if room.any():
        idx = np.flatnonzero(room)
        wsum = w[idx].sum()
        numer = left * w[idx]  # share * wsum
        base = numer // wsum
        frac = numer - base * wsum  # fractional part * wsum: comparable across clusters
        out[idx] = base
        extra = left - int(base.sum())
        out[idx[np.lexsort((idx, -frac))[:extra]]] += 1
    return out


def iterative_weights(cluster_scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Budget shares for the next round: softmax(score / T), a higher score more budget.

    Iterative kMQ re-weights the clusters after each training round by how
    much the model still has to learn from them. In pretraining the score is
    the proxy model's mean loss (nats per token) on the cluster's unselected
    members: a high loss means not learned yet. (The reference code scores the
    members it has already selected and trained on.)

    The reference code (for-ai/iterative-data-selection, `selection/iter.py`,
    `select_new_iter`) normalises exp(mean reward difference) in its
    reward-model mode, which is a softmax at T = 1. In its perplexity mode
    (`calculate_method="ppl"`) it uses the clusters' mean perplexities
    directly as the `p` of `np.random.choice`, with neither exp nor
    normalisation, although perplexities are >= 1 and so cannot sum to 1.
    Here the weights are always normalised with a softmax, because shares must
    sum to 1 to split a budget. exp of a mean loss is a perplexity (at T = 1 a
    cluster's weight is proportional to the perplexity of its mean token loss),
    and T sets how strongly the budget follows the loss: T -> inf gives kMQ's
    equal split, T -> 0 gives everything to the cluster with the highest loss.
    A NaN score (a cluster with nothing left to score) gets weight 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = np.asarray(cluster_scores, np.float64) / temperature
    known = ~np.isnan(s)
    if not known.any():
        raise ValueError("no cluster has a score")
    e = np.zeros(len(s))
    e[known] = np.exp(s[known] - s[known].max())
    return e / e.sum()


def gumbel_top_k(scores: np.ndarray, k: int, temperature: float, u: np.ndarray) -> np.ndarray:
    """k positions drawn without replacement with p proportional to exp(score / T), in draw order.

    The Gumbel-top-k trick (Kool et al. 2019): the k largest keys
    score / T + G, with G = -log(-log u) a standard Gumbel variable per
    document, are distributed like k successive draws without replacement
    from the softmax, so one sort replaces k renormalisations. `u` holds
    uniforms in (0, 1), one per document, derived from (seed, doc_id), so a
    document keeps its key whatever else is in the group. T = 0 is plain
    top-k by score, with ties broken by G (the limit as T -> 0); T = inf
    ignores the scores and draws uniformly. Ties left after that go to the
    lower position.
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    s = np.asarray(scores, np.float64)
    eps = np.finfo(np.float64)
    # uniform_from_ids can return exactly 0, and -log(-log 0) would be -inf.
    u = np.clip(np.asarray(u, np.float64), eps.tiny, 1.0 - eps.epsneg)
    g = -np.log(-np.log(u))
    if temperature == 0:
        order = np.lexsort((-g, -s))
    else:
        keys = g if np.isinf(temperature) else s / temperature + g
        order = np.argsort(-keys, kind="stable")
    return order[: max(int(k), 0)]


def facility_location(emb: np.ndarray, k: int, n_neighbors: int = 32) -> np.ndarray:
    """Up to k positions that maximise facility-location coverage, in greedy order.

    F(S) = sum_i max_{j in S} sim(i, j): every document counts as well
    represented as its most similar pick is, so F rewards covering the dense
    regions of the cluster and gains nothing from near-copies of a pick.
    INGENIOUS (Renduchintala et al. 2023) selects pretraining subsets with F
    on a sparse kNN graph, and so does this function: sim(i, j) =
    max(0, cos(x_i, x_j)) when j is one of i's `n_neighbors` nearest documents
    (normally including i itself), 0 otherwise. The graph comes from exact
    search (faiss IndexFlatIP on L2-normalised rows): O(n^2 d) time and
    O(n * n_neighbors) memory. INGENIOUS then samples its subset with
    probabilities derived from the greedy gains, and refreshes it during
    training; this function returns the deterministic greedy order.

    The maximisation is lazy greedy (Minoux 1978). F is submodular, so a
    candidate's gain can only shrink as S grows, and a gain computed earlier
    is an upper bound on the current one. A heap of such bounds is re-evaluated
    from the top until the element on top has a fresh gain. The picks are
    those of plain greedy (the largest gain, ties to the lower position, up to
    floating-point rounding), at the cost of re-evaluating a small fraction
    of the n candidates per pick. Once every document is covered all gains
    are 0, and the remaining picks follow by position.
    """
    x = _unit(emb)
    n = len(x)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    m = min(int(n_neighbors), n)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, nbrs = index.search(x, m)
    cols = nbrs.ravel()
    vals = np.maximum(sims.ravel(), 0.0).astype(np.float64)
    bound = np.bincount(cols, weights=vals, minlength=n)  # every gain at S = {}
    # Column j of the graph, contiguous: the documents i that have j among their neighbours, and sim(i, j).
    by_col = np.argsort(cols, kind="stable")
    rows = np.repeat(np.arange(n), m)[by_col]
    vals = vals[by_col]
    start = np.concatenate(([0], np.cumsum(np.bincount(cols, minlength=n))))
    heap = list(zip((-bound).tolist(), range(n)))
    heapq.heapify(heap)
    stamp = np.zeros(n, np.int64)  # len(picks) when j's bound was computed
    cover = np.zeros(n)  # max_{j in S} sim(i, j)
    picks: list[int] = []
    while len(picks) < k:
        _, j = heapq.heappop(heap)
        r, v = rows[start[j] : start[j + 1]], vals[start[j] : start[j + 1]]
        if stamp[j] == len(picks):
            picks.append(j)
            cover[r] = np.maximum(cover[r], v)
        else:
            stamp[j] = len(picks)
            heapq.heappush(heap, (-float(np.maximum(v - cover[r], 0.0).sum()), j))
    return np.asarray(picks, np.int64)


def max_min_diversity(emb: np.ndarray, k: int, first: int | None = None) -> np.ndarray:
    """Up to k positions, each the farthest (cosine distance) from those picked before it.

    Greedy farthest-point selection for the max-min diversity problem, the
    rule DivPrune (Alvar et al. 2025) prunes tokens with: each step adds the
    point whose distance 1 - cos to its nearest pick is largest, so the subset
    spreads over the whole cluster, outliers included. It starts at `first`,
    by default the point farthest from the centroid (the lowest cosine to the
    mean direction). DivPrune instead starts at the point whose nearest other
    point is farthest, which needs the n x n distance matrix. Here each step
    is one matrix-vector product, O(n d), and no n x n matrix is ever built.
    A pick is never picked again, even when only its duplicates are left.
    """
    x = _unit(emb)
    n = len(x)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if first is None:
        first = int(np.argmin(x @ x.mean(axis=0)))
    picks = np.empty(k, np.int64)
    picks[0] = first
    gap = 1.0 - x @ x[first]  # distance from each point to its nearest pick
    gap[first] = -np.inf
    for t in range(1, k):
        j = int(np.argmax(gap))
        picks[t] = j
        np.minimum(gap, 1.0 - x @ x[j], out=gap)
        gap[j] = -np.inf
    return picks


def odis(
    scores: np.ndarray, budget: int, n_components: int = 4, quality: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """The top documents along orthogonal quality axes (ODiS, He et al. 2025, arXiv 2510.18909).

    Quality scores are correlated, so the top documents by any one of them,
    or by their sum, are mostly the same documents. ODiS decorrelates the
    scores with PCA and takes the best documents along each axis. Steps:

    1. z-score each column of `scores` (n documents x m scores); a column
       that does not vary is dropped;
    2. PCA by the SVD of that matrix, keeping the first `n_components` axes
       (an axis with no variance is dropped like a column);
    3. orient each axis so that documents high on it score high on quality
       (the mean z-score, or `quality` when given). An axis uncorrelated with
       quality keeps the sign that makes its largest loading positive
       (the first among equal loadings);
    4. split the budget equally over the axes, with the remainder going one
       each to the first axes; each axis contributes its top documents;
    5. the union of those top sets falls short by their overlaps, and the
       shortfall is back-filled round-robin: each axis in turn adds its best
       document not yet selected.

    Returns the positions in selection order, min(budget, n) of them, and
    facts: the score columns used, each axis's explained variance ratio,
    loadings, correlation with quality and share, `overlap` (k x k:
    |T_i & T_j| / min(|T_i|, |T_j|) over the axes' top sets T, before
    back-filling) and `backfilled`. The axes are fitted on this group alone.

    The paper trains a RoBERTa regressor per axis to project the whole
    corpus; here the projections are computed from the scores themselves, so
    every document needs every score. All we could read of the paper is its
    abstract, which says only that the top-scored data of each axis is
    selected; the equal split, the union and the round-robin back-fill are
    our choices.
    """
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    x = np.asarray(scores, np.float64)
    n = len(x)
    take = min(max(int(budget), 0), n)
    varies = np.ptp(x, axis=0) > 0
    z = x[:, varies]
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    _, sing, vt = np.linalg.svd(z, full_matrices=False)
    k = min(int(n_components), int((sing > 1e-9 * sing[:1].sum()).sum()))
    columns = np.flatnonzero(varies).tolist()
    if k == 0:  # nothing varies (a single document, say): only none or all can be chosen
        if 0 < take < n:
            raise ValueError("no score column varies: nothing to rank the documents by")
        empty = {"explained_variance_ratio": [], "loadings": [], "quality_corr": [], "shares": [], "overlap": []}
        return np.arange(take), {"columns": columns, **empty, "backfilled": 0}
    vt = vt[:k]
    proj = z @ vt.T
    q = z.mean(axis=1) if quality is None else np.asarray(quality, np.float64)
    q = q - q.mean()
    norms = np.linalg.norm(proj, axis=0) * np.linalg.norm(q)
    corr = np.divide(q @ proj, norms, out=np.zeros(k), where=norms > 0)
    a = np.abs(vt)
    lead = np.argmax(a >= a.max(axis=1, keepdims=True) - 1e-9, axis=1)
    sign = np.where(np.abs(corr) > 1e-9, np.sign(corr), np.sign(vt[np.arange(k), lead]))
    vt, proj, corr = vt * sign[:, None], proj * sign, corr * sign

    shares = np.full(k, take // k, np.int64)
    shares[: take % k] += 1
    orders = np.argsort(-proj, axis=0, kind="stable")  # best first on each axis, ties to the lower position
    tops = [orders[: shares[j], j] for j in range(k)]
    taken = np.zeros(n, bool)
    picks: list[int] = []
    for top in tops:
        new = top[~taken[top]]
        taken[new] = True
        picks.extend(new.tolist())
    union = len(picks)
    nxt = shares.copy()
    j = 0
    while len(picks) < take:  # a document is still free, so every axis's order reaches one
        while taken[orders[nxt[j], j]]:
            nxt[j] += 1
        picks.append(int(orders[nxt[j], j]))
        taken[picks[-1]] = True
        j = (j + 1) % k

    member = np.zeros((k, n), np.int64)
    for j, top in enumerate(tops):
        member[j, top] = 1
    denom = np.minimum.outer(shares, shares)
    overlap = np.divide(member @ member.T, denom, out=np.zeros((k, k)), where=denom > 0)
    facts = {
        "columns": columns,
        "explained_variance_ratio": (sing[:k] ** 2 / (sing**2).sum()).tolist(),
        "loadings": vt.tolist(),
        "quality_corr": corr.tolist(),
        "shares": shares.tolist(),
        "overlap": overlap.tolist(),
        "backfilled": len(picks) - union,
    }
    return np.asarray(picks, np.int64), facts


def uds_stream(emb: np.ndarray, utility: np.ndarray, order: np.ndarray, k: int, batch: int, queue: int, alpha: float,
               memory: np.ndarray | None = None) -> np.ndarray:
    """UDS's online selection rule (gfyddha/UDS, `UDSamplingTrainer.compute_top_index`) over a stream: `k` positions.

    The stream (`order`) is cut into batches of `batch`; of each, the documents
    of highest utility + alpha x diversity are taken, where diversity is the
    mean L2 distance of a document's vector to a FIFO memory of the last
    `queue` vectors taken (0 while it is empty), and the taken vectors then
    join the memory. UDS takes a fixed K of every batch; here batch b takes
    floor(k end_b / n) - floor(k start_b / n) (start_b, end_b: its rows in the
    stream), so the picks sum to exactly k and follow the stream evenly.
    `memory`, when given, is the queue's starting content (vectors taken before).
    """
    n = len(order)
    k = min(int(k), n)
    taken: list[np.ndarray] = []
    mem = np.zeros((0, emb.shape[1]), emb.dtype) if memory is None else np.asarray(memory, emb.dtype)[-queue:]
    for start in range(0, n, batch):
        end = min(start + batch, n)
        take = k * end // n - k * start // n
        if take == 0:
            continue
        rows = order[start:end]
        if len(mem):
            d2 = (emb[rows] ** 2).sum(1)[:, None] + (mem ** 2).sum(1)[None, :] - 2 * emb[rows] @ mem.T
            diversity = np.sqrt(np.maximum(d2, 0)).mean(axis=1)
        else:
            diversity = np.zeros(len(rows))
        best = rows[np.argsort(-(utility[rows] + alpha * diversity), kind="stable")[:take]]
        taken.append(best)
        mem = np.concatenate([mem, emb[best]])[-queue:]
    return np.concatenate(taken) if taken else np.zeros(0, np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised, float32 and contiguous for faiss (a zero row stays zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
