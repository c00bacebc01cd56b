import math

import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.diversity import (
    add_cluster_features,
    cluster_entropy,
    cluster_features,
    cluster_sizes,
    vendi_score,
)


def test_cluster_features_hand_computed():
    sizes = cluster_sizes(np.array([0] * 50 + [1] * 30 + [2] * 20 + [-1] * 5), 4)
    assert sizes.tolist() == [50, 30, 20, 0]
    size, rarity = cluster_features(np.array([0, 1, 2, -1]), sizes)
    assert size.tolist() == [50, 30, 20, 0]
    assert rarity[:3] == pytest.approx([math.log(2), -math.log(0.3), -math.log(0.2)], rel=1e-6)
    assert np.isnan(rarity[3])


def test_add_cluster_features_appends_columns_with_nulls():
    batch = pa.table({S.D_CLUSTER: pa.array([1, None, 0], pa.int32())})
    out = add_cluster_features(batch, np.array([1, 3]))
    assert out.column(S.D_CLUSTER_SIZE).to_pylist() == [3, None, 1]
    r = out.column(S.D_CLUSTER_RARITY).to_pylist()
    assert r[0] == pytest.approx(math.log(4 / 3), rel=1e-6) and r[1] is None
    assert r[2] == pytest.approx(math.log(4), rel=1e-6)


def test_vendi_of_identical_vectors_is_one():
    v = np.random.default_rng(0).standard_normal(8)
    assert vendi_score(np.tile(v, (5, 1))) == pytest.approx(1.0, abs=1e-9)  # n <= d: n x n kernel
    assert vendi_score(np.tile(v, (50, 1))) == pytest.approx(1.0, abs=1e-9)  # n > d: d x d covariance


def test_vendi_of_orthogonal_vectors_is_n():
    assert vendi_score(np.eye(10, 16) * 3.0) == pytest.approx(10.0, rel=1e-9)
    # 4 orthogonal directions, 5 copies each, n = 20 > d = 4: four distinct items
    assert vendi_score(np.repeat(np.eye(4), 5, axis=0)) == pytest.approx(4.0, rel=1e-9)


def test_vendi_orders_hand_computed():
    # Two copies of one vector and one orthogonal vector: K/n has eigenvalues 2/3 and 1/3.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert vendi_score(x, q=1) == pytest.approx(math.exp(h))
    assert vendi_score(x, q=2) == pytest.approx(1 / (4 / 9 + 1 / 9))
    assert vendi_score(x, q=np.inf) == pytest.approx(1.5)


def test_vendi_covariance_path_equals_the_kernel_definition():
    x = np.random.default_rng(1).standard_normal((300, 16))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = np.linalg.eigvalsh(xn @ xn.T / len(x))
    w = w[w > 0]
    assert vendi_score(x) == pytest.approx(math.exp(-(w * np.log(w)).sum()), rel=1e-9)


def test_vendi_samples_reproducibly():
    x = np.random.default_rng(2).standard_normal((6000, 8))
    a = vendi_score(x, sample=1000, seed=3)
    assert a == vendi_score(x, sample=1000, seed=3)
    assert a != vendi_score(x, sample=1000, seed=4)
    assert 1.0 < a <= 8.0


def test_cluster_entropy_of_uniform_clusters_is_log_k():
    k = 7
    ids = np.repeat(np.arange(k), 3)
    assert cluster_entropy(ids) == pytest.approx(math.log(k))
    assert cluster_entropy(ids, normalise=True) == pytest.approx(1.0)


def test_cluster_entropy_weighs_copies_hand_computed():
    ids = np.array([0, 0, 1, 2, -1])
    copies = np.array([1, 1, 2, 0, 5])  # cluster 0: 2, cluster 1: 2, cluster 2: 0 (unselected)
    assert cluster_entropy(ids, copies) == pytest.approx(math.log(2))
    assert cluster_entropy(ids, copies, normalise=True) == pytest.approx(math.log(2) / math.log(3))
    assert cluster_entropy(ids, copies, normalise=True, n_clusters=4) == pytest.approx(0.5)
    assert cluster_entropy(ids, np.zeros(5)) == 0.0
