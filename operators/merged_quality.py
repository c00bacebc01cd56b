"""The merged quality q̄ of several quality columns: what QuaDMix, top-k and kMQ rank by.

Its own module so the strategies that share it (operators/quadmix.py,
selection.py, kmq.py) import it from one place and not from each other.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def quality_column(batch: pa.Table, name: str) -> np.ndarray:
    """A quality column as float64, nulls and NaN read as 0."""
    return np.nan_to_num(np.asarray(batch.column(name).to_numpy(zero_copy_only=False), np.float64))


def merged_quality(batch: pa.Table, alpha: dict[str, float]) -> np.ndarray:
    """q̄ / Σα: the α-weighted mean of the quality columns, in [0, 1]."""
    total = sum(alpha.values())
    if total <= 0:
        raise ValueError("QuaDMix alpha weights must sum to a positive number")
    q = np.zeros(batch.num_rows)
    for name, weight in alpha.items():
        q += weight * quality_column(batch, name)
    return q / total
