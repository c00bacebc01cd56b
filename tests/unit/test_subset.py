import numpy as np
import pytest

from thresher.operators.selection import uniform_from_ids
from thresher.operators.subset import (
    facility_location,
    gumbel_top_k,
    iterative_weights,
    kmq_budgets,
    max_min_diversity,
    odis,
)


def test_kmq_equal_split_water_fills_the_small_cluster():
    # 12 over 3 clusters is 4 each, but cluster 0 holds 2: it is taken whole and
    # the other 10 split 5 / 5 (level L = 5: min(2, 5) + 5 + 5 = 12).
    assert kmq_budgets(np.array([2, 10, 10]), 12).tolist() == [2, 5, 5]
    # 13: L = 5.5, floors 2 + 5 + 5 = 12, the one left over ties (.5 / .5) and goes to cluster 1.
    assert kmq_budgets(np.array([2, 10, 10]), 13).tolist() == [2, 6, 5]
    # A budget above the pool (22) takes every cluster whole; budget 0 takes nothing.
    assert kmq_budgets(np.array([2, 10, 10]), 50).tolist() == [2, 10, 10]
    assert kmq_budgets(np.array([2, 10, 10]), 0).tolist() == [0, 0, 0]


def test_kmq_proportional_uses_largest_remainder():
    # Quotas 12 * [2, 10, 10] / 22 = [1.0909, 5.4545, 5.4545]: floors 1 + 5 + 5 = 11, and
    # the unit left goes to the largest fraction, a tie (.4545 / .4545) won by cluster 1.
    assert kmq_budgets(np.array([2, 10, 10]), 12, "proportional").tolist() == [1, 6, 5]
    # 7 * [3, 5, 12] / 20 = [1.05, 1.75, 4.2]: floors 1 + 1 + 4 = 6, the unit to .75 (cluster 1).
    assert kmq_budgets(np.array([3, 5, 12]), 7, "proportional").tolist() == [1, 2, 4]


def test_kmq_weights_mode_caps_and_respreads():
    # Weights .2 / .5 / .3 of 12: cluster 0's share 2.4 exceeds its size 2, so it is taken
    # whole; the other 10 split .5 : .3, i.e. 6.25 / 3.75: floors 6 + 3, the unit to .75.
    sizes = np.array([2, 10, 10])
    assert kmq_budgets(sizes, 12, "proportional", np.array([0.2, 0.5, 0.3])).tolist() == [2, 6, 4]
    # A cluster of weight 0 gets nothing, and the pool is what the others hold (5).
    assert kmq_budgets(np.array([5, 5]), 8, "proportional", np.array([1.0, 0.0])).tolist() == [5, 0]
    with pytest.raises(ValueError):
        kmq_budgets(sizes, 12, "equal", np.array([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError):
        kmq_budgets(sizes, 12, "proportional", np.array([1.0, np.nan, 1.0]))


def test_kmq_budgets_always_sum_to_the_target():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 50, size=rng.integers(1, 12))
        budget = int(rng.integers(0, 400))
        for mode, w in (("equal", None), ("proportional", None), ("proportional", rng.random(len(sizes)))):
            out = kmq_budgets(sizes, budget, mode, w)
            assert out.sum() == min(budget, sizes.sum()) and (out >= 0).all() and (out <= sizes).all()


def test_iterative_weights_softmax_by_hand():
    # e^1, e^2, e^3 = 2.71828, 7.38906, 20.08554, sum 30.19288 -> .09003, .24473, .66524.
    assert iterative_weights(np.array([1.0, 2.0, 3.0]), 1.0) == pytest.approx([0.09003, 0.24473, 0.66524], abs=1e-5)
    # T = 2 halves the scores: e^.5, e^1, e^1.5 = 1.64872, 2.71828, 4.48169, sum 8.84869.
    assert iterative_weights(np.array([1.0, 2.0, 3.0]), 2.0) == pytest.approx([0.18632, 0.30720, 0.50648], abs=1e-5)
    # A cluster without a score gets nothing; huge scores do not overflow.
    assert iterative_weights(np.array([np.nan, 1000.0, 1000.0])).tolist() == [0.0, 0.5, 0.5]
    with pytest.raises(ValueError):
        iterative_weights(np.array([1.0]), 0.0)


def _u_for_gumbel(g):
    """The uniform whose Gumbel -log(-log u) is g."""
    return np.exp(-np.exp(-np.asarray(g)))


def test_gumbel_top_k_hand_case():
    s = np.array([1.0, 2.0, 0.0])
    u = _u_for_gumbel([1.5, 0.0, 0.5])
    # T = 1: keys 1 + 1.5, 2 + 0, 0 + .5 = 2.5, 2, .5 -> item 0 beats the higher-scored item 1.
    assert gumbel_top_k(s, 2, 1.0, u).tolist() == [0, 1]
    # T = .5 doubles the scores: 2 + 1.5, 4 + 0, 0 + .5 = 3.5, 4, .5 -> [1, 0].
    assert gumbel_top_k(s, 2, 0.5, u).tolist() == [1, 0]
    # T = inf: the Gumbels alone, 1.5, 0, .5 -> [0, 2].
    assert gumbel_top_k(s, 2, np.inf, u).tolist() == [0, 2]
    # k above the group size returns all of it, in key order.
    assert gumbel_top_k(s, 5, 1.0, u).tolist() == [0, 1, 2]


def test_gumbel_top_k_tiny_temperature_is_top_k():
    s = np.array([0.3, 0.9, 0.1, 0.7, 0.5])
    u = uniform_from_ids(3, [f"d{i}" for i in range(5)])
    # Scores 0.2 apart over T = 1e-6 give key gaps of 2e5, far beyond any Gumbel (|G| < 40).
    assert gumbel_top_k(s, 3, 1e-6, u).tolist() == [1, 3, 4]
    assert gumbel_top_k(s, 3, 0.0, u).tolist() == [1, 3, 4]
    # T = 0 breaks a score tie by the Gumbel: the larger u goes first.
    tie = gumbel_top_k(np.array([1.0, 1.0]), 1, 0.0, np.array([0.2, 0.8]))
    assert tie.tolist() == [1]


def test_gumbel_top_k_inclusion_frequencies_follow_the_softmax():
    # k = 1 of scores 0, 1, 2 at T = 1: p = [1, e, e^2] / (1 + e + e^2) = [.0900, .2447, .6652].
    draws = 20000
    u = uniform_from_ids(11, [f"r{r}/d{i}" for r in range(draws) for i in range(3)]).reshape(draws, 3)
    s = np.array([0.0, 1.0, 2.0])
    won = np.array([gumbel_top_k(s, 1, 1.0, row)[0] for row in u])
    freq = np.bincount(won, minlength=3) / draws
    assert freq == pytest.approx([0.0900, 0.2447, 0.6652], abs=0.015)  # ~4 standard errors (<= .0035)
    won = np.array([gumbel_top_k(s, 1, np.inf, row)[0] for row in u[:6000]])
    assert np.bincount(won, minlength=3) / 6000 == pytest.approx([1 / 3] * 3, abs=0.025)


# Five unit vectors in 2-D; cosines (clipped at 0):
#   a = (1, 0), b = (.28, .96), c = (0, 1), d = (-.8, .6), e = (-1, 0)
#   a.b = .28, b.c = .96, b.d = -.224 + .576 = .352, c.d = .6, d.e = .8, every other pair 0.
FL = np.array([[1.0, 0.0], [0.28, 0.96], [0.0, 1.0], [-0.8, 0.6], [-1.0, 0.0]])


def test_facility_location_hand_computed_greedy():
    # Gains at S = {} (column sums): a 1.28, b 2.592, c 2.56, d .352 + .6 + 1 + .8 = 2.752, e 1.8 -> d.
    # cover = [0, .352, .6, 1, .8]. Gains: a 1 + 0 = 1, b .28 + .648 + .36 = 1.288, c .608 + .4 = 1.008,
    # e .2 -> b. cover = [.28, 1, .96, 1, .8]. Gains: a .72, c .04, e .2 -> a; then e (.2), c (.04).
    assert facility_location(FL, 5).tolist() == [3, 1, 0, 4, 2]
    assert facility_location(FL, 2).tolist() == [3, 1]
    assert facility_location(FL, 9, n_neighbors=100).tolist() == [3, 1, 0, 4, 2]


def _plain_greedy(K, k):
    """Textbook greedy on a dense similarity matrix K[i, j]: every gain, every step."""
    cover, picks = np.zeros(len(K)), []
    for _ in range(k):
        gain = np.maximum(K - cover[:, None], 0.0).sum(axis=0)
        gain[picks] = -1.0
        picks.append(int(np.argmax(gain)))
        cover = np.maximum(cover, K[:, picks[-1]])
    return picks


@pytest.mark.parametrize("n_neighbors", [200, 7])
def test_lazy_greedy_equals_plain_greedy(n_neighbors):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    K = np.zeros_like(sims, dtype=np.float64)
    nbrs = np.argsort(-sims, axis=1)[:, :n_neighbors]  # i's nearest, itself first
    rows = np.arange(200)[:, None]
    K[rows, nbrs] = np.maximum(sims[rows, nbrs], 0.0)
    assert facility_location(x, 40, n_neighbors=n_neighbors).tolist() == _plain_greedy(K, 40)


def test_max_min_diversity_hand_case():
    # a = (1, 0), b = (.96, .28), c = (.6, .8), d = (0, 1), e = (-.6, .8); distance 1 - cos.
    x = np.array([[1.0, 0.0], [0.96, 0.28], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
    # From a: b .04, c .4, d 1, e 1.6 -> e. From e: b 1.352, c .72, d .2, so the nearest-pick
    # gaps are b .04, c .4, d .2 -> c. From c: b .2, d .2 -> gaps b .04, d .2 -> d, then b.
    assert max_min_diversity(x, 5, first=0).tolist() == [0, 4, 2, 3, 1]
    # Default start: centroid (1.96, 2.88) / 5 = (.392, .576); x . centroid = .392, .5376, .696,
    # .576, .2256 -> e is farthest. From e: a 1.6 is farthest; then gaps b .04, c .4, d .2 -> c, d, b.
    assert max_min_diversity(x, 5).tolist() == [4, 0, 2, 3, 1]
    assert max_min_diversity(x, 2).tolist() == [4, 0]


def test_max_min_diversity_never_repeats_a_pick():
    x = np.repeat(np.eye(3), 2, axis=0)  # three directions, each twice
    picks = max_min_diversity(x, 6, first=0)
    assert sorted(picks.tolist()) == list(range(6))
    assert sorted(picks[:3].tolist()) == [0, 2, 4]  # one of each direction before any duplicate


# Two correlated scores over five documents (deviations from the mean; both have variance 2):
#   x = [-2, -1, 0, 1, 2], y = [-2, 1, -1, 2, 0]; cov = (4 - 1 + 0 + 2 + 0) / 5 = 1, r = .5.
# The correlation matrix [[1, .5], [.5, 1]] has eigenvectors (1, 1)/sqrt2 (eigenvalue 1.5) and
# (1, -1)/sqrt2 (eigenvalue .5): explained variance .75 / .25. With z = dev / sqrt2:
#   PC1 = (zx + zy)/sqrt2 = (x + y)/2 = [-2, 0, -.5, 1.5, 1]
#   PC2 = (zx - zy)/sqrt2 = (x - y)/2 = [0, -1, .5, -.5, 1]
ODIS = np.array([[-2.0, -2.0], [-1.0, 1.0], [0.0, -1.0], [1.0, 2.0], [2.0, 0.0]])


def test_odis_components_and_hand_selection():
    x = ODIS[:, 0]
    # quality = x: PC2 . x = 0 + 1 + 0 - .5 + 2 > 0, so PC2 keeps the (1, -1) orientation.
    picks, facts = odis(ODIS, 2, quality=x)
    assert facts["explained_variance_ratio"] == pytest.approx([0.75, 0.25])
    r = 1 / np.sqrt(2)
    assert np.array(facts["loadings"]) == pytest.approx(np.array([[r, r], [r, -r]]))
    # Budget 2: one per axis. PC1's top is doc 3 (1.5), PC2's doc 4 (1).
    assert picks.tolist() == [3, 4] and facts["overlap"] == [[1.0, 0.0], [0.0, 1.0]]
    # Budget 4: PC1 top two {3 (1.5), 4 (1)}, PC2 top two {4 (1), 2 (.5)}: they share doc 4
    # (overlap 1 / 2), the union {3, 4, 2} is one short, and PC1 back-fills its next best, doc 1 (0).
    picks, facts = odis(ODIS, 4, quality=x)
    assert picks.tolist() == [3, 4, 2, 1]
    assert facts["overlap"][0][1] == 0.5 and facts["backfilled"] == 1 and facts["shares"] == [2, 2]
    # Budget 3: shares 2 / 1, PC1 {3, 4}, PC2 {4} is inside it; PC1 back-fills doc 1.
    assert odis(ODIS, 3, quality=x)[0].tolist() == [3, 4, 1]


def test_odis_orientation_follows_quality_and_drops_constant_columns():
    # Default quality = mean z-score: PC1 correlates with it (corr 1), PC1's top is doc 3.
    picks, facts = odis(ODIS, 1)
    assert picks.tolist() == [3] and facts["quality_corr"][0] == pytest.approx(1.0)
    # Quality reversed: PC1 flips, its top is doc 0 (-(-2) = 2).
    assert odis(ODIS, 1, quality=-ODIS.mean(axis=1))[0].tolist() == [0]
    # A constant column is dropped and changes nothing.
    with_const = np.column_stack([ODIS[:, 0], np.full(5, 7.0), ODIS[:, 1]])
    picks, facts = odis(with_const, 4, quality=ODIS[:, 0])
    assert picks.tolist() == [3, 4, 2, 1] and facts["columns"] == [0, 2]
    # A single document: nothing varies, and it is simply taken.
    assert odis(np.ones((1, 3)), 5)[0].tolist() == [0]
    with pytest.raises(ValueError):
        odis(np.ones((4, 2)), 2)


def test_odis_budget_accounting():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1000, 1))
    scores = base + 0.5 * rng.normal(size=(1000, 5))  # five correlated scores
    for budget in (1, 3, 137, 999):
        picks, facts = odis(scores, budget)
        assert len(picks) == budget and len(np.unique(picks)) == budget
        assert sum(facts["shares"]) == budget and len(facts["shares"]) == 4
    picks, _ = odis(scores, 5000)
    assert sorted(picks.tolist()) == list(range(1000))


def test_uds_stream_by_hand():
    from thresher.operators.subset import uds_stream

    # Stream 0, 1 | 2, 3 (batches of 2), k = 2: each batch takes 1. Batch 0: memory empty, utility alone -> 0.
    # Batch 1: distances to the memory [(1, 0)]: doc 2 (0, 1) -> sqrt 2, doc 3 (-1, 0) -> 2.
    # alpha 0: 0.6 > 0.1 -> 2; alpha 1: 0.6 + 1.414 = 2.014 < 0.1 + 2 = 2.1 -> 3.
    emb = np.array([[1, 0], [1, 0], [0, 1], [-1, 0]], float)
    utility = np.array([0.9, 0.8, 0.6, 0.1])
    assert uds_stream(emb, utility, np.arange(4), 2, batch=2, queue=1, alpha=0.0).tolist() == [0, 2]
    assert uds_stream(emb, utility, np.arange(4), 2, batch=2, queue=1, alpha=1.0).tolist() == [0, 3]
    # queue 2, memory seeded with (-1, 0) (taken before): batch 0 takes 0 and the memory is [(-1, 0), (1, 0)]; in batch 1
    # doc 2 is sqrt 2 from both (0.6 + 1.414), doc 3 is 0 and 2 away (0.1 + 1) -> 2. Unseeded, the memory is [(1, 0)] -> 3.
    seeded = np.array([[-1.0, 0.0]])
    assert uds_stream(emb, utility, np.arange(4), 2, batch=2, queue=2, alpha=1.0, memory=seeded).tolist() == [0, 2]
    assert uds_stream(emb, utility, np.arange(4), 2, batch=2, queue=2, alpha=1.0).tolist() == [0, 3]
    # the order is the stream's: reversed, batch 0 = (3, 2) takes 2 (0.6 > 0.1)
    assert uds_stream(emb, utility, np.arange(4)[::-1], 2, batch=2, queue=1, alpha=0.0).tolist() == [2, 0]


def test_uds_stream_takes_exactly_k_spread_over_uneven_batches():
    from thresher.operators.subset import uds_stream

    rng = np.random.default_rng(0)
    emb, utility = rng.normal(size=(65, 4)), rng.random(65)
    for k in (0, 1, 7, 64, 65, 80):
        picks = uds_stream(emb, utility, rng.permutation(65), k, batch=64, queue=8, alpha=0.5)
        assert len(picks) == min(k, 65) and len(set(picks.tolist())) == len(picks)
