"""Spherical k-means on L2-normalised embeddings with faiss (GPU faiss when present).

`fit` runs Lloyd's iterations (faiss.Kmeans) on a bounded sample; `transform`
assigns every document its nearest centroid and the cosine distance to it,
1 - cos(x, c), the "distance to prototype" SemDeDup and SSL-prototype pruning use.
"""

from __future__ import annotations

import faiss
import numpy as np

from .fitted import Fitted


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class KMeans(Fitted):
    """scikit-learn shaped: parameters in `__init__`, learned state in `centroids_` and `inertia_`."""

    # A loaded state only assigns (CPU `transform`); it must not try a GPU on the node that loads it.
    _load_overrides = {"use_gpu": False}

    def __init__(self, n_clusters: int = 16, n_iter: int = 25, n_redo: int = 1, seed: int = 0, use_gpu: bool | None = None):
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.n_redo = n_redo
        self.seed = seed
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu

    def fit(self, x: np.ndarray) -> "KMeans":
        x = _normalised(x)
        k = min(self.n_clusters, len(x))
        if k < 1:
            raise ValueError("k-means needs at least one embedded document")
        km = faiss.Kmeans(
            x.shape[1],
            k,
            niter=self.n_iter,
            nredo=self.n_redo,
            seed=self.seed,
            spherical=True,
            gpu=self.use_gpu,
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max(256, len(x) // k + 1),
        )
        km.train(x)
        self.centroids_ = _normalised(km.centroids)
        self.inertia_ = float(km.obj[-1]) if len(km.obj) else float("nan")
        return self

    def transform(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster id int32, cosine distance to its centroid float32) for each row."""
        index = faiss.IndexFlatIP(self.centroids_.shape[1])
        index.add(self.centroids_)
        sims, ids = index.search(_normalised(x), 1)
        return ids[:, 0].astype(np.int32), (1.0 - sims[:, 0]).astype(np.float32)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
