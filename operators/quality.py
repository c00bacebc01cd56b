"""Rank-normalised quality: each input column oriented so higher = better, then mapped to its percentile.

With the default directions this is `q_heuristic`, the merged heuristic
quality of the signals; with one user column it turns any score computed
elsewhere into a `q_<column>` in [0, 1].

`fit` stores quantiles of each oriented signal from a sample; `transform` maps a
value to its percentile in that sample by interpolation, so the score of a
document does not depend on which batch it arrives in. `q_heuristic` is the
mean of the percentiles.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import schema as S
from .fitted import Fitted

HIGHER, LOWER, TYPICAL = "higher", "lower", "typical"

# Orientation of each signal: better when higher, lower, or closer to the
# fitted median ("typical": word length is bad at both ends).
DEFAULT_DIRECTIONS = {
    S.SIG_N_WORDS: HIGHER,
    S.SIG_MEAN_WORD_LEN: TYPICAL,
    S.SIG_SYMBOL_RATIO: LOWER,
    S.SIG_DUP_LINE_FRAC: LOWER,
    S.SIG_ALPHA_RATIO: HIGHER,
    S.SIG_STOPWORD_RATIO: HIGHER,
    S.SIG_UNIQUE_WORD_FRAC: HIGHER,
}


class RankQuality(Fitted):
    def __init__(self, directions: dict[str, str] | None = None, n_quantiles: int = 1001, output: str = S.Q_HEURISTIC):
        self.directions = dict(DEFAULT_DIRECTIONS if directions is None else directions)
        self.n_quantiles = n_quantiles
        self.output = output

    def _oriented(self, name: str, x: np.ndarray) -> np.ndarray:
        direction = self.directions[name]
        if direction == HIGHER:
            return x
        if direction == LOWER:
            return -x
        return -np.abs(x - self.medians_[name])

    def fit(self, sample: pa.Table) -> "RankQuality":
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        self.medians_: dict[str, float] = {}
        self.quantiles_: dict[str, list[float]] = {}
        for name in self.directions:
            x = _values(sample, name)
            x = x[~np.isnan(x)]
            if len(x) == 0:
                raise ValueError(f"cannot fit quality: no values for {name}")
            self.medians_[name] = float(np.median(x))
            self.quantiles_[name] = np.quantile(self._oriented(name, x), levels).tolist()
        return self

    def transform(self, batch: pa.Table) -> pa.Table:
        """Append the score (`q_heuristic` by default) in [0, 1]; null where the inputs are null."""
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        parts = []
        for name in self.directions:
            x = _values(batch, name)
            q = np.asarray(self.quantiles_[name])
            parts.append(percentile_of(self._oriented(name, x), q, levels))
        score = np.mean(parts, axis=0) if parts else np.zeros(batch.num_rows)
        return batch.append_column(self.output, pa.array(score.astype(np.float32), from_pandas=True))


def _values(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def percentile_of(x: np.ndarray, quantiles: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical CDF by interpolation; ties in the sample take the middle of their run."""
    lo = np.searchsorted(quantiles, x, side="left")
    hi = np.searchsorted(quantiles, x, side="right")
    interp = np.interp(x, quantiles, levels)
    n = len(quantiles) - 1
    tied = hi > lo
    mid = (np.clip(lo, 0, n) + np.clip(hi - 1, 0, n)) / 2.0 / n
    out = np.where(tied, mid, interp)
    return np.where(np.isnan(x), np.nan, out)
