"""QuaDMix quality-diversity sampling (Liu et al. 2025, arXiv 2504.16511).

For a document x in domain m with quality scores q_n(x):

    q̄(x)  = Σ_n α_{n,m} σ(q_n(x))                merged quality
    r̄(x)  = token-weighted share of domain m whose q̄ is higher   (0 = best)
    S(r̄)  = (2 / (1 + exp(-λ_m (ω_m - r̄))))^η_m + ε_m   if r̄ ≤ ω_m,   ε_m otherwise
    copies = floor(S) + Bernoulli(frac(S))

Deviations, all deliberate:
- σ is the identity: every `q_*` column thresher writes is already
  rank-normalised to [0, 1] by its scorer (the paper normalises each score).
- r̄ is the mid-rank percentile, read from per-domain histograms of q̄ / Σα
  (dividing by Σα keeps ranks and maps q̄ to [0, 1]); inside a histogram bin
  documents are ordered by interpolation. Memory stays bounded by
  domains x bins, not corpus size.
- A budget is met in expectation: S is multiplied by one global factor
  c = budget / Σ S(r̄(x)) w(x) (w = tokens or 1). The paper instead tunes the
  parameters so the sample fits the training budget; c = 1 when no budget is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .histogram import DomainHistograms
from . import schema as S


@dataclass(frozen=True)
class QuaDMixParams:
    lam: float = 10.0
    omega: float = 0.5
    eta: float = 1.0
    epsilon: float = 0.0
    alpha: dict[str, float] = field(default_factory=lambda: {S.Q_HEURISTIC: 1.0})


def sampling_value(r: np.ndarray, lam: float, omega: float, eta: float, epsilon: float) -> np.ndarray:
    """S(r̄): about 2^η copies for the best document, 1 + ε at r̄ = ω, ε beyond."""
    r = np.asarray(r, np.float64)
    with np.errstate(over="ignore"):
        head = (2.0 / (1.0 + np.exp(-lam * (omega - r)))) ** eta + epsilon
    return np.where(r <= omega, head, epsilon)


def merged_quality(batch: pa.Table, alpha: dict[str, float]) -> np.ndarray:
    """q̄ / Σα: the α-weighted mean of the quality columns, in [0, 1]."""
    total = sum(alpha.values())
    if total <= 0:
        raise ValueError("QuaDMix alpha weights must sum to a positive number")
    q = np.zeros(batch.num_rows)
    for name, weight in alpha.items():
        q += weight * np.nan_to_num(np.asarray(batch.column(name).to_numpy(zero_copy_only=False), np.float64))
    return q / total


class QuaDMix:
    """fit: per-domain histograms (+ budget) -> scale; transform: expected copies per document."""

    name = "quadmix"

    def __init__(self, default: QuaDMixParams | None = None, domains: dict[str, QuaDMixParams] | None = None):
        self.default = default or QuaDMixParams()
        self.per_domain = dict(domains or {})

    def params(self, domain: str) -> QuaDMixParams:
        return self.per_domain.get(domain, self.default)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        domains = _domains(batch)
        q = np.zeros(batch.num_rows)
        for key in np.unique(domains):
            m = domains == key
            q[m] = merged_quality(batch.filter(pa.array(m)), self.params(key).alpha)
        return domains, q

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "QuaDMix":
        self.hist_ = hist
        expected = 0.0
        centres = (np.arange(hist.bins) + 0.5) / hist.bins
        for key, toks in hist.tokens.items():
            domains = np.full(hist.bins, key)
            r = hist.top_fraction(domains, centres, by_tokens=True)
            p = self.params(key)
            s = sampling_value(r, p.lam, p.omega, p.eta, p.epsilon)
            weight = toks if budget_unit == "tokens" else hist.docs[key]
            expected += float((s * weight).sum())
        self.expected_unscaled_ = expected
        self.scale_ = 1.0 if budget is None else (budget / expected if expected > 0 else 0.0)
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(expected copies S·c, percentile r̄) for every row of the batch."""
        domains, q = self.keys_and_scores(batch)
        r = self.hist_.top_fraction(domains, q, by_tokens=True)
        s = np.zeros(batch.num_rows)
        for key in np.unique(domains):
            m = domains == key
            p = self.params(key)
            s[m] = sampling_value(r[m], p.lam, p.omega, p.eta, p.epsilon)
        return s * self.scale_, r


def _domains(batch: pa.Table) -> np.ndarray:
    return np.asarray(batch.column(S.DOMAIN).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
