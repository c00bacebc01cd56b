"""Embedding similarity to a target set: mean cosine similarity to the k nearest targets.

The embedding-space counterpart of DSIR's n-gram importance weight: a pool
document scores high when it sits close to several of the user's target
documents, not merely to one (k > 1 damps single near-duplicates of a target).
faiss finds the k nearest targets; their similarities are then recomputed in
float64 from the stored vectors, so a document's score does not depend on the
batch it arrives in (faiss switches between BLAS and scalar kernels by batch
size, which moves the last float bits).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from .embed import from_fixed_list
from .fitted import Fitted
from . import schema as S


class TargetSimilarity(Fitted):
    """fit: the target vectors; transform: append `u_target_sim` in [-1, 1]."""

    def __init__(self, k: int = 10):
        if k < 1:
            raise ValueError("TargetSimilarity needs k >= 1")
        self.k = k

    def fit(self, target_embeddings: np.ndarray) -> "TargetSimilarity":
        x = np.asarray(target_embeddings, np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError("TargetSimilarity needs a non-empty (n, d) matrix of target embeddings")
        self.targets_ = _normalised(x)
        self._build_index()
        return self

    def _build_index(self) -> None:
        self._index = faiss.IndexFlatIP(self.targets_.shape[1])
        self._index.add(self.targets_)

    def _load_extra(self, directory: Path) -> None:
        self._build_index()  # the index is derived from `targets_`, never saved

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """Mean of the top-min(k, n_targets) cosine similarities per row (float64)."""
        x = _normalised(x)
        k = min(self.k, len(self.targets_))
        if len(x) == 0:
            return np.zeros(0)
        _, ids = self._index.search(x, k)
        sims = np.einsum("nd,nkd->nk", x.astype(np.float64), self.targets_[ids].astype(np.float64))
        return sims.mean(axis=1)

    def transform(self, batch: pa.Table) -> pa.Table:
        """Append `u_target_sim` (float32); null where `emb` is null."""
        column = batch.column(S.EMB)
        sim = self.similarity(from_fixed_list(column))
        null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
        sim[null] = np.nan
        return batch.append_column(S.U_TARGET_SIM, pa.array(sim.astype(np.float32), from_pandas=True))


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
