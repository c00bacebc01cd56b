import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.embed import to_fixed_list
from thresher.operators.target_sim import TargetSimilarity

R = 1 / np.sqrt(2)
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [3, 3, 0]], np.float32)  # the last one is (1, 1, 0)/√2 once normalised


def _batch(vectors, mask=None):
    return pa.table({S.EMB: to_fixed_list(np.asarray(vectors, np.float32), mask=mask)})


def test_mean_of_top_k_cosines_by_hand():
    queries = [[2, 0, 0], [0, 0, 5], [1, 1, 0], [1, 0, 1]]
    # Cosines to the three targets, row by row:
    #   (2,0,0): 1, 0, 1/√2    (0,0,5): 0, 0, 0    (1,1,0): 1/√2, 1/√2, 1    (1,0,1): 1/√2, 0, 1/2
    top2 = TargetSimilarity(k=2).fit(TARGETS).transform(_batch(queries)).column(S.U_TARGET_SIM).to_pylist()
    assert top2 == pytest.approx([(1 + R) / 2, 0.0, (1 + R) / 2, (R + 0.5) / 2], abs=1e-6)
    # k = 10 is clipped to the 3 targets: the mean over all of them.
    all3 = TargetSimilarity(k=10).fit(TARGETS).transform(_batch(queries)).column(S.U_TARGET_SIM).to_pylist()
    assert all3 == pytest.approx([(1 + R) / 3, 0.0, (1 + 2 * R) / 3, (R + 0.5) / 3], abs=1e-6)
    top1 = TargetSimilarity(k=1).fit(TARGETS).transform(_batch(queries)).column(S.U_TARGET_SIM).to_pylist()
    assert top1 == pytest.approx([1.0, 0.0, 1.0, R], abs=1e-6)


def test_null_embeddings_give_null():
    out = TargetSimilarity(k=2).fit(TARGETS).transform(_batch([[1, 0, 0], [0, 0, 0]], mask=np.array([False, True])))
    sim = out.column(S.U_TARGET_SIM).to_pylist()
    assert sim[0] == pytest.approx((1 + R) / 2, abs=1e-6)
    assert sim[1] is None


def test_score_does_not_depend_on_the_batch():
    rng = np.random.default_rng(0)
    ts = TargetSimilarity(k=5).fit(rng.standard_normal((300, 32)))
    x = rng.standard_normal((64, 32)).astype(np.float32)
    together = np.asarray(ts.transform(_batch(x)).column(S.U_TARGET_SIM))
    alone = np.concatenate([np.asarray(ts.transform(_batch(x[i : i + 1])).column(S.U_TARGET_SIM)) for i in range(len(x))])
    assert np.array_equal(together, alone)
    # And it is the brute-force mean of the 5 largest cosines.
    t = ts.targets_.astype(np.float64)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = np.sort(xn @ t.T, axis=1)[:, -5:].mean(axis=1)
    assert together == pytest.approx(brute, abs=1e-6)


def test_save_load_roundtrip(tmp_path):
    ts = TargetSimilarity(k=2).fit(TARGETS)
    ts.save(tmp_path)
    assert (tmp_path / "targets.npy").exists()
    batch = _batch([[2, 0, 0], [1, 1, 0], [0.3, -1, 2]])
    again = TargetSimilarity.load(tmp_path)
    assert again.k == 2
    assert again.transform(batch).equals(ts.transform(batch))


def test_fit_rejects_an_empty_target_set():
    with pytest.raises(ValueError):
        TargetSimilarity().fit(np.zeros((0, 3), np.float32))
