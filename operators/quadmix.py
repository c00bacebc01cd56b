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
- A budget is met in expectation, and no document is given more than
  `max_copies` (M) expected copies: a document gets min(c·S(r̄(x)), M), with
  one global factor c solving Σ_x min(c·S(r̄(x)), M)·w(x) = budget
  (w = tokens or 1) exactly (`capped_scale`). Without the cap a small pool and a large budget would
  hand a few documents a hundred copies each. When M copies of every
  document with S > 0 still fall short, they all get M and `facts()` reports
  the shortfall. The paper instead tunes the parameters so the sample fits
  the training budget; with no budget c = 1, still capped.
- The sums over x are read from the histograms: each non-empty (domain, bin)
  cell counts as its weight at S of the bin centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import schema as S
from .budget import shortfall
from .histogram import DomainHistograms, index_of
from .merged_quality import quality_column


@dataclass(frozen=True)
class QuaDMixParams:
    """One domain's parameters. The metadata (bounds, description) is what the job spec's `selection.quadmix` checks and documents."""

    lam: float = field(default=10.0, metadata={"gt": 0, "description": "λ: steepness of the sigmoid decay over the percentile."})
    omega: float = field(default=0.5, metadata={"ge": 0, "le": 1, "description": "ω: the top share of a domain (by tokens) sampled at least once in expectation."})
    eta: float = field(default=1.0, metadata={"gt": 0, "description": "η: exponent; the best document gets about 2^η copies."})
    epsilon: float = field(default=0.0, metadata={"ge": 0, "description": "ε: baseline copies added everywhere, and all a document beyond ω gets."})
    alpha: dict[str, float] = field(default_factory=lambda: {S.Q_HEURISTIC: 1.0}, metadata={"description": "Weights α of the quality columns merged into q̄."})


def sampling_value(
    r: np.ndarray, lam: float | np.ndarray, omega: float | np.ndarray, eta: float | np.ndarray, epsilon: float | np.ndarray
) -> np.ndarray:
    """S(r̄): about 2^η copies for the best document, 1 + ε at r̄ = ω, ε beyond.

    The parameters are scalars or arrays that broadcast against r.
    """
    r = np.asarray(r, np.float64)
    with np.errstate(over="ignore"):
        head = (2.0 / (1.0 + np.exp(-lam * (omega - r)))) ** eta + epsilon
    return np.where(r <= omega, head, epsilon)


def capped_scale(s: np.ndarray, w: np.ndarray, budget: float, cap: float) -> float:
    """The c with Σ min(c·s, cap)·w = budget (s, w >= 0), exact up to rounding.

    E(c) = Σ min(c·s, cap)·w is concave, nondecreasing and piecewise linear,
    with a kink where a cell reaches the cap. Newton's method from the
    uncapped answer budget / Σ s·w, which is at most the root, climbs towards
    it (a tangent of a concave function lies above it), and each step solves
    the linear piece of the cells capped so far; when a step caps no new cell
    it has landed on the root. So it ends, after at most one step per cell; on
    QuaDMix's S (1 + ε to 2^η + ε, or ε) after a handful, each one pass over
    the cells, where sorting the kinks would cost n log n. When even
    E(∞) = cap·Σ_{s>0} w falls short, c = cap / min s puts every cell at the cap.
    """
    live = (s > 0) & (w > 0)
    s, w = s[live], w[live]
    if len(s) == 0:
        return 0.0
    if budget >= cap * w.sum():
        return cap / float(s.min())
    sw = s * w
    c, capped = budget / float(sw.sum()), 0
    while True:
        at_cap = c * s >= cap
        n = int(np.count_nonzero(at_cap))
        if n <= capped or n == len(s):
            return c
        capped = n
        c = (budget - cap * float(w @ at_cap)) / float(sw @ ~at_cap)


class QuaDMix:
    """fit: per-domain histograms (+ budget) -> scale; transform: expected copies per document.

    `default` applies to every domain not named in `domains`; no document is
    given more than `max_copies` expected copies.
    """

    name = "quadmix"
    needs_budget = False

    def __init__(self, default: QuaDMixParams | None = None, domains: dict[str, QuaDMixParams] | None = None, max_copies: int = 4):
        if max_copies < 1:
            raise ValueError("QuaDMix max_copies must be at least 1")
        self.default = default or QuaDMixParams()
        self.per_domain = dict(domains or {})
        self.max_copies = max_copies
        # Parameter set of a row: 0 = the default, 1 + i = the i-th named domain in sorted order.
        self._named = np.asarray(sorted(self.per_domain), str)
        sets = [self.default, *(self.per_domain[k] for k in self._named)]
        if any(sum(p.alpha.values()) <= 0 for p in sets):
            raise ValueError("QuaDMix alpha weights must sum to a positive number")
        self.columns = tuple(sorted({c for p in sets for c in p.alpha}))
        self._alpha = np.array([[p.alpha.get(c, 0.0) for c in self.columns] for p in sets])
        self._alpha_total = np.array([sum(p.alpha.values()) for p in sets])

    def params(self, domain: str) -> QuaDMixParams:
        return self.per_domain.get(domain, self.default)

    def keys_and_scores(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        domains = _domains(batch)
        p = index_of(self._named, domains) + 1
        q = np.zeros(batch.num_rows)
        for j, name in enumerate(self.columns):
            q += self._alpha[p, j] * quality_column(batch, name)
        return domains, q / self._alpha_total[p]

    def fit(self, hist: DomainHistograms, budget_unit: str | None, budget: float | None) -> "QuaDMix":
        self.hist_ = hist
        # lam, omega, eta, epsilon (rows) of each histogram domain (columns), aligned with hist.keys.
        self.domain_params_ = np.array([[p.lam, p.omega, p.eta, p.epsilon] for p in map(self.params, hist.keys)]).reshape(-1, 4).T
        d, b, r = hist.centre_ranks()
        s, w = sampling_value(r, *self.domain_params_[:, d]), hist.weights(budget_unit == "tokens")[d, b]
        self.scale_ = 1.0 if budget is None else capped_scale(s, w, budget, self.max_copies)
        copies = np.minimum(self.scale_ * s, self.max_copies)
        at_cap = self.scale_ * s >= self.max_copies
        self.budget_, self.unit_, self.pool_ = budget, budget_unit or "docs", float(w.sum())
        self.expected_ = float(copies @ w)
        self.capped_share_ = float(copies[at_cap] @ w[at_cap]) / self.expected_ if self.expected_ > 0 else 0.0
        return self

    def transform(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(expected copies min(c·S, max_copies), percentile r̄) for every row of the batch.

        A domain the histograms never saw has r̄ = NaN and no copies: the
        budget was fitted without it.
        """
        domains, q = self.keys_and_scores(batch)
        code = self.hist_.codes(domains)
        r = self.hist_.top_fraction_at(code, q, by_tokens=True)
        s, known = np.zeros(len(code)), code >= 0
        s[known] = sampling_value(r[known], *self.domain_params_[:, code[known]])
        return np.minimum(self.scale_ * s, self.max_copies), r

    def facts(self) -> dict:
        """What the fit decided, for the manifest; sizes in the budget's unit, copies counted."""

        return {
            "budget": self.budget_,
            "unit": self.unit_,
            "expected": self.expected_,
            "shortfall": shortfall(self.budget_, self.expected_),
            "max_copies": self.max_copies,
            "pool": self.pool_,
            "scale": self.scale_,
            "capped_share": self.capped_share_,
        }


def _domains(batch: pa.Table) -> np.ndarray:
    return np.asarray(batch.column(S.DOMAIN).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)).astype(str)
