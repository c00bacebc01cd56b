import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.embed import to_fixed_list
from thresher.operators.selection import uniform_from_ids
from thresher.operators.semdedup import SemanticDuplicates, SemDeDup, semdedup_cluster, semdedup_order

# Six unit vectors with hand-picked distances to the centroid (a farthest).
# Cosines: a.b = 0.96, b.c = 0.8*0.96 + 0.6*0.28 = 0.936, a.c = 0.8, c.d = 0.6,
# e.f = 0.96, d.f = 0.28, every other pair 0 or 0.168 (c.f) / 0.28 (b.d).
HAND = {
    "a": ([1.0, 0.0, 0.0], 0.50),
    "b": ([0.96, 0.28, 0.0], 0.40),
    "c": ([0.8, 0.6, 0.0], 0.30),
    "d": ([0.0, 1.0, 0.0], 0.20),
    "e": ([0.0, 0.0, 1.0], 0.10),
    "f": ([0.0, 0.28, 0.96], 0.05),
}
ROWS = ["d", "f", "a", "c", "e", "b"]  # input order differs from every walking order


def _hand(eps, order):
    emb = np.array([HAND[r][0] for r in ROWS], np.float32)
    dist = np.array([HAND[r][1] for r in ROWS])
    is_dup, of = semdedup_cluster(ROWS, emb, dist, eps, order)
    return {r: o for r, d, o in zip(ROWS, is_dup, of) if d}, {r: o for r, o in zip(ROWS, of)}


def test_hand_computed_removal_set_hard():
    # Walk a, b, c, d, e, f. M_b = 0.96 (a), M_c = 0.936 (b), M_f = 0.96 (e);
    # M_d = 0.6, M_e = 0 stay. eps = 0.1 flags M > 0.9: c is flagged through b
    # although b is flagged too (the reference compares with every earlier item).
    removed, of = _hand(0.1, "hard")
    assert removed == {"b": "a", "c": "b", "f": "e"}
    assert of["a"] is None and of["d"] is None and of["e"] is None
    # eps = 0.05 flags M > 0.95 only.
    assert _hand(0.05, "hard")[0] == {"b": "a", "f": "e"}


def test_hand_computed_removal_set_easy():
    # Walk f, e, d, c, b, a: M_e = 0.96 (f), M_d = 0.28, M_c = 0.6 (d),
    # M_b = 0.936 (c), M_a = 0.96 (b).
    assert _hand(0.1, "easy")[0] == {"e": "f", "b": "c", "a": "b"}


def test_ties_break_by_doc_id_and_random_order_follows_uniform_from_ids():
    emb = np.ones((3, 4), np.float32)
    ids = ["z", "x", "y"]
    is_dup, of = semdedup_cluster(ids, emb, np.zeros(3), 0.01, "hard")
    assert is_dup.tolist() == [True, False, True] and of.tolist() == ["x", None, "x"]
    u = uniform_from_ids(7, ids)
    first = ids[int(np.argmin(u))]
    is_dup, of = semdedup_cluster(ids, emb, np.zeros(3), 0.01, "random", seed=7)
    assert [i for i, d in zip(ids, is_dup) if not d] == [first]
    assert semdedup_order(ids, np.zeros(3), "random", 7).tolist() == np.argsort(u).tolist()
    with pytest.raises(ValueError):
        semdedup_order(ids, np.zeros(3), "middle")


def _reference_full_matrix(ids, emb, dist, eps):
    """The reference's algorithm literally: sort, full S, triu(1), column max."""
    perm = semdedup_order(ids, dist, "hard")
    x = emb[perm] / np.linalg.norm(emb[perm], axis=1, keepdims=True)
    sim = np.triu(x @ x.T, k=1)
    m = sim.max(axis=0)
    flagged = np.zeros(len(ids), bool)
    flagged[perm] = m > 1 - eps
    return flagged


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n, d = 1500, 32
    emb = rng.standard_normal((n, d)).astype(np.float32)
    src = rng.choice(n, 200, replace=False)
    emb[src[100:]] = emb[src[:100]] + 0.05 * rng.standard_normal((100, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    dist = rng.random(n)
    ids = [f"doc-{i:05d}" for i in range(n)]
    return ids, emb, dist


def test_blocks_give_the_unblocked_result(planted):
    ids, emb, dist = planted
    full = semdedup_cluster(ids, emb, dist, 0.05, block=len(ids))
    assert 90 <= full[0].sum() <= 110
    assert np.array_equal(full[0], _reference_full_matrix(ids, emb, dist, 0.05))
    for block in (1, 7, 64, 1000):
        is_dup, of = semdedup_cluster(ids, emb, dist, 0.05, block=block)
        assert np.array_equal(is_dup, full[0])
        assert of.tolist() == full[1].tolist()


def test_semdedup_table_handles_several_clusters_and_missing_embeddings():
    emb = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    table = pa.table(
        {
            S.DOC_ID: ["p", "q", "r", "s", "t"],
            S.D_CLUSTER: pa.array([0, 0, 1, 1, 0], pa.int32()),
            S.D_CENTROID_DIST: pa.array([0.1, 0.2, 0.3, 0.3, 0.4], pa.float32()),
            S.EMB: to_fixed_list(emb, mask=np.array([False, False, False, False, True])),
        }
    )
    out = SemDeDup(eps=0.01).transform(table)
    # cluster 0: q (farther) is kept, p flagged; t has no embedding; cluster 1: r and s differ.
    assert out.column(S.D_SEMDUP).to_pylist() == [True, False, False, False, False]
    assert out.column(S.D_SEMDUP_OF).to_pylist() == ["q", None, None, None, None]


def test_semantic_duplicates_save_load_roundtrip(tmp_path):
    dups = SemanticDuplicates.from_pairs(pa.array(["b", "c"]), pa.array(["a", "a"]))
    dups.save(tmp_path)
    batch = pa.table({S.DOC_ID: ["a", "b", "c", "d"]})
    out = SemanticDuplicates.load(tmp_path).transform(batch)
    assert out.equals(dups.transform(batch))
    assert out.column(S.D_SEMDUP_OF).to_pylist() == [None, "a", "a", None]
