import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.kmeans import KMeans
from thresher.operators.quality import LOWER, RankQuality


def test_rank_normalisation_hand_computed():
    # Quantiles of 0..10 at 11 levels are 0..10, so x maps to x/10; "lower" flips it.
    sample = pa.table({"a": np.arange(11.0), "b": np.arange(11.0)})
    hq = RankQuality({"a": "higher", "b": LOWER}, n_quantiles=11).fit(sample)
    out = hq.transform(pa.table({"a": [2.5, 10.0, np.nan], "b": [2.5, 0.0, 1.0]}))
    q = out.column(S.Q_HEURISTIC).to_pylist()
    assert q[0] == pytest.approx((0.25 + 0.75) / 2)
    assert q[1] == pytest.approx((1.0 + 1.0) / 2)
    assert q[2] is None


def test_quality_save_load_roundtrip(tmp_path):
    sample = pa.table({"a": np.random.default_rng(0).random(100)})
    hq = RankQuality({"a": "typical"}).fit(sample)
    hq.save(tmp_path)
    batch = pa.table({"a": [0.1, 0.5, 0.9]})
    assert RankQuality.load(tmp_path).transform(batch).equals(hq.transform(batch))


def test_kmeans_recovers_separated_blobs(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3]
    x = np.concatenate([c + 0.05 * rng.standard_normal((200, 8)).astype(np.float32) for c in centres])
    km = KMeans(n_clusters=3, seed=0).fit(x)
    labels, dist = km.transform(x)
    for b in range(3):
        assert len(set(labels[b * 200 : (b + 1) * 200])) == 1
    assert len(set(labels)) == 3
    km.save(tmp_path)
    again = KMeans.load(tmp_path)
    assert np.array_equal(again.transform(x)[0], labels)
    assert again.inertia_ == km.inertia_


def test_loaded_kmeans_never_uses_the_gpu(tmp_path):
    km = KMeans(n_clusters=1, use_gpu=True)  # as fitted on a GPU node
    km.centroids_, km.inertia_ = np.eye(2, dtype=np.float32)[:1], 0.0
    km.save(tmp_path)
    assert KMeans.load(tmp_path).use_gpu is False


def test_centroid_distance_is_cosine_distance():
    km = KMeans(n_clusters=1)
    km.centroids_ = np.array([[1.0, 1.0]], np.float32) / np.sqrt(2)
    _, dist = km.transform(np.array([[3.0, 0.0]], np.float32))
    assert dist[0] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)
