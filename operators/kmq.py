"""kMQ (Yu et al. 2024, "Diversify and Conquer", arXiv 2409.11378): a budget per k-means cluster, quality sampling inside it.

The pool is split by domain (the k-means cluster by default). Each domain
gets a share of the budget (`subset.kmq_budgets`: the same share for every
domain as in the paper, `equal`, or in proportion to its size,
`proportional`; a domain smaller than its share is taken whole and the rest
goes to the others), and inside a domain documents are drawn without
replacement with probability proportional to exp(q / T), q the `by`-weighted
quality. The draw is Gumbel top-k (Kool et al. 2019): document i's key is
q_i / T + g_i with g_i standard Gumbel from (seed, doc_id), and a domain
keeps its b highest keys.

Deviations, all deliberate:
- The paper samples in proportion to the quality score itself; exp(q / T)
  makes the sharpness a parameter (T -> 0 is per-cluster top-k, large T
  uniform inside each cluster). q is rank-normalised to [0, 1] by its scorer.
- Keys stream: each domain's b-th highest key is read from a per-domain
  histogram of the keys (squashed into [0, 1] by a Cauchy CDF, as
  `DSIRResample` does) and interpolated inside its bin, so a domain's count
  matches its budget up to ties within one bin.
- Budgets count documents or tokens (the budget's unit); the paper counts
  examples. Shares are whole units (`kmq_budgets` rounds by largest
  remainder).
- Iterative kMQ (`pipeline/search.py`, `refine_kmq`) runs its rounds on a
  sample and hands the shares each cluster ended with to `weights`; the
  budget is then split in proportion to them (water-filling as above).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import schema as S
from .dsir import GUMBEL_IQR, GUMBEL_MEDIAN, gumbel_from_ids
from .histogram import DomainHistograms
from .budget import without_replacement
from .merged_quality import merged_quality
from .selection import top_threshold
from .subset import kmq_budgets


class KMQ:
    name = "kmq"
    needs_budget = True
    max_copies = 1

    def __init__(self, by: dict[str, float], temperature: float = 0.1, split: str = "equal", seed: int = 0, weights: dict[str, float] | None = None):
        if not temperature > 0:
            raise ValueError("kMQ temperature must be positive")
        self.by = dict(by)
        self.temperature = float(temperature)
        self.split = split
        self.seed = seed
        self.weights = dict(weights) if weights else None
        self.columns = tuple(sorted({S.DOC_ID, *self.by}))
        # the histogram's resolution (never who wins): centred on the typical key, a quarter of its spread
        self._center = 0.5 / self.temperature + GUMBEL_MEDIAN
        self._scale = max(0.5 / self.temperature, GUMBEL_IQR) / 2.0

    def keys(self, batch: pa.Table) -> np.ndarray:
        return merged_quality(batch, self.by) / self.temperature + gumbel_from_ids(self.seed, batch.column(S.DOC_ID).to_pylist())

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        domains = np.asarray(batch.column(S.DOMAIN).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
        return domains, 0.5 + np.arctan((self.keys(batch) - self._center) / self._scale) / np.pi

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "KMQ":
        if budget is None:
            raise ValueError("kmq needs a budget")
        w = hist.weights(budget_unit == "tokens")  # (domains, bins)
        sizes = np.rint(w.sum(axis=1)).astype(np.int64)
        weights = None if self.weights is None else np.array([self.weights.get(k, 0.0) for k in hist.keys], np.float64)
        self.budgets_ = kmq_budgets(sizes, int(round(budget)), self.split if weights is None else "proportional", weights)
        self.thresholds_ = np.array([top_threshold(w[d], float(b), hist.bins) for d, b in enumerate(self.budgets_)])
        self.hist_ = hist
        self.budget_, self.unit_, self.pool_ = budget, budget_unit or "docs", float(w.sum())
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        domains, score = self.keys_and_scores(batch)
        code = self.hist_.codes(domains)
        keep = np.zeros(batch.num_rows, bool)
        known = code >= 0
        keep[known] = score[known] > self.thresholds_[code[known]]
        return keep.astype(np.float64), None

    def facts(self) -> dict:
        return {
            **without_replacement(self.budget_, self.unit_, self.pool_),
            "split": self.split,
            "temperature": self.temperature,
            "domain_budgets": {k: int(b) for k, b in zip(self.hist_.keys, self.budgets_)},
        }
